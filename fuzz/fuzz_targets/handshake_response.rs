//! The client side of the opening handshake: `parse_response` then `finish`.
//!
//! Input: one flags byte, then the response bytes.
//! - bit 0: prefix the response with a valid head start for this handshake
//!   (`HTTP/1.1 101 Switching Protocols`, `Upgrade`, `Connection` and the right
//!   `Sec-WebSocket-Accept` lines, without the final empty line);
//! - bits 1-2: the client's permessage-deflate config: 0 none, 1 default, 2 custom
//!   (server_no_context_takeover, server_max_window_bits=10, client_max_window_bits=12),
//!   3 two custom offers;
//! - bit 3: offer the subprotocols `chat` and `superchat`.
//!
//! Every occurrence of `@ACCEPT@` in the response bytes is replaced by the right
//! `Sec-WebSocket-Accept` value (the key is random, so the fuzzer could not produce it).
//!
//! Invariants: never panics; `Ok(None)` only within the head size limit; a parsed head
//! re-parses the same on its own; `finish` succeeds only for status 101, and then agrees
//! only to what was offered, with window bits in 8..=15 and a requested
//! server_no_context_takeover confirmed; the plain valid response is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsx_proto::deflate::DeflateConfig;
use wsx_proto::handshake::accept_key;
use wsx_proto::handshake::client::{ClientHandshake, ResponseError};

const LIMIT: usize = 4096;

fn replace_all(data: &[u8], pat: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + with.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(pat) {
            out.extend_from_slice(with);
            i += pat.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let deflate = match (flags >> 1) & 3 {
        0 => None,
        1 => Some(DeflateConfig::default()),
        2 => Some({
            let mut c = DeflateConfig::default();
            c.server_no_context_takeover = true;
            c.server_max_window_bits = 10;
            c.client_max_window_bits = 12;
            c
        }),
        _ => Some({
            let mut c = DeflateConfig::default();
            c.client_offers = Some(vec![
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits".into(),
                "permessage-deflate".into(),
            ]);
            c
        }),
    };
    let offers_protocols = flags & 8 != 0;
    let mut builder = ClientHandshake::builder("ws://localhost/")
        .expect("valid URL")
        .deflate(deflate.clone())
        .max_head_size(LIMIT);
    if offers_protocols {
        builder = builder.protocol("chat").protocol("superchat");
    }
    let (hs, request) = builder.build().expect("request builds");
    assert!(request.starts_with(b"GET / HTTP/1.1\r\nHost: localhost\r\n"));
    wsx_fuzz::assert_clean_http_head(&request);

    let accept = accept_key(hs.key().as_bytes());
    let mut buf = Vec::new();
    if flags & 1 != 0 {
        buf.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
            )
            .as_bytes(),
        );
    }
    buf.extend_from_slice(&replace_all(rest, b"@ACCEPT@", accept.as_bytes()));

    let parsed = hs.parse_response(&buf);
    if flags & 1 != 0 && rest == b"\r\n" {
        let (resp, n) = parsed.clone().expect("valid response").expect("complete");
        assert_eq!(n, buf.len());
        let neg = hs
            .finish(resp)
            .expect("the plain valid response is accepted");
        assert_eq!(neg.protocol, None);
        assert_eq!(neg.deflate, None);
    }
    match parsed {
        Ok(None) => assert!(buf.len() <= LIMIT),
        Err(ResponseError::HeadTooLarge(l)) => {
            assert_eq!(l, LIMIT);
            assert!(buf.len() > LIMIT);
        }
        Err(_) => {}
        Ok(Some((resp, n))) => {
            assert!(n <= buf.len() && n <= LIMIT);
            assert_eq!(hs.parse_response(&buf[..n]), Ok(Some((resp.clone(), n))));
            let status = resp.status;
            let _ = resp.content_length();
            match hs.finish(resp) {
                Err(ResponseError::Status(r)) => assert_ne!(r.status, 101),
                Err(_) => assert_eq!(status, 101),
                Ok(neg) => {
                    assert_eq!(status, 101);
                    if let Some(p) = &neg.protocol {
                        assert!(
                            offers_protocols && (p == "chat" || p == "superchat"),
                            "{p:?}"
                        );
                    }
                    if let Some(p) = &neg.deflate {
                        let cfg = deflate.as_ref().expect("deflate agreed without an offer");
                        assert!((8..=15).contains(&p.server_max_window_bits));
                        assert!((8..=15).contains(&p.client_max_window_bits));
                        if cfg.client_offers.is_none() {
                            assert!(p.server_max_window_bits <= cfg.server_max_window_bits);
                            assert!(p.client_max_window_bits <= cfg.client_max_window_bits);
                            assert!(
                                p.server_no_context_takeover || !cfg.server_no_context_takeover
                            );
                            assert!(
                                p.client_no_context_takeover || !cfg.client_no_context_takeover
                            );
                        }
                    }
                }
            }
        }
    }
});
