//! The server side of the opening handshake: `parse_request` then `accept`.
//!
//! Input: the bytes the client sent (an HTTP request head, possibly followed by more data).
//!
//! Invariants:
//! - `parse_request(data, 4096)` never panics; errors have status 400, 405, 426 or 431 and
//!   render (`to_response`) as a well-formed HTTP response with that status, clean CRLF line
//!   endings in the head and a `Content-Length` matching the body.
//! - With a 256-byte limit the result is the same, or a 431.
//! - On success: the head length `n` is within the input and the limit, and parsing just the
//!   head gives the same request; the path starts with `/`; the key is 16 bytes of base64.
//! - `accept` with several server configurations (with and without permessage-deflate,
//!   subprotocols, an origin allow-list) either rejects with 403 (origin not allowed, only
//!   when the request has an `Origin`), or yields a `101 Switching Protocols` head with clean
//!   line endings (no CR/LF/NUL injected from header values), exactly one correct
//!   `Sec-WebSocket-Accept`, and a subprotocol / extension only when one was agreed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsx_fuzz::{assert_clean_http_head, parse_http_response};
use wsx_proto::deflate::DeflateConfig;
use wsx_proto::handshake::accept_key;
use wsx_proto::handshake::server::{
    accept, parse_request, NoHook, RequestError, ServerHandshakeConfig,
};

const LIMIT: usize = 4096;

fn check_error(e: &RequestError) {
    let status = e.status();
    let resp = e.to_response();
    let (got, _) = parse_http_response(&resp);
    assert_eq!(got, status, "{e:?}");
    let prefix = format!("HTTP/1.1 {status} ");
    assert!(resp.starts_with(prefix.as_bytes()));
}

fn configs() -> Vec<ServerHandshakeConfig> {
    vec![
        ServerHandshakeConfig::default(),
        {
            let mut c = ServerHandshakeConfig::default();
            c.protocols = vec!["chat".into(), "superchat".into()];
            c.deflate = Some(DeflateConfig::default());
            c
        },
        {
            let mut c = ServerHandshakeConfig::default();
            c.deflate = Some({
                let mut c = DeflateConfig::default();
                c.server_max_window_bits = 10;
                c.client_max_window_bits = 9;
                c.server_no_context_takeover = true;
                c.client_no_context_takeover = true;
                c
            });
            c.allowed_origins = Some(vec![
                "https://app.example.com".into(),
                "https://*.example.org".into(),
                "http://*.\u{e9}t\u{e9}.test".into(),
            ]);
            c
        },
        {
            let mut c = ServerHandshakeConfig::default();
            c.allowed_origins = Some(vec!["*".into()]);
            c.protocols = vec!["v2.wsx".into()];
            c
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let result = parse_request(data, LIMIT);

    // A smaller limit changes nothing, or answers 431.
    let small = parse_request(data, 256);
    if small != result {
        match &small {
            Err(e) => assert_eq!(e.status(), 431, "{e:?} vs {result:?}"),
            Ok(_) => panic!("limit 256 gave {small:?}, limit {LIMIT} gave {result:?}"),
        }
    }

    match result {
        Ok(None) => assert!(data.len() <= LIMIT),
        Err(e) => {
            assert!(matches!(e.status(), 400 | 405 | 426 | 431), "{e:?}");
            check_error(&e);
        }
        Ok(Some((req, n))) => {
            assert!(n <= data.len() && n <= LIMIT);
            assert_eq!(parse_request(&data[..n], LIMIT), Ok(Some((req.clone(), n))));
            assert!(req.target.starts_with('/'));
            assert!(req.path().starts_with('/'));
            assert!(!req.host().trim().is_empty());
            assert!(!req.key().is_empty());
            for p in req.protocols() {
                assert!(
                    !p.is_empty() && !p.contains([',', ' ', '\r', '\n']),
                    "{p:?}"
                );
            }
            let expected_accept = accept_key(req.key().as_bytes());
            for config in configs() {
                match accept(&req, &config, NoHook) {
                    Err(e) => {
                        // Only the origin check may refuse a valid request under NoHook.
                        assert_eq!(e.status(), 403, "{e:?}");
                        assert!(config.allowed_origins.is_some() && req.origin().is_some());
                        check_error(&e);
                    }
                    Ok((resp, negotiated)) => {
                        assert!(resp.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
                        assert_clean_http_head(&resp);
                        let (status, len) = parse_http_response(&resp);
                        assert_eq!((status, len), (101, resp.len()));
                        let text = std::str::from_utf8(&resp).expect("response is UTF-8");
                        let accept_line =
                            format!("\r\nSec-WebSocket-Accept: {expected_accept}\r\n");
                        assert_eq!(text.matches(&accept_line).count(), 1, "{text}");
                        assert_eq!(text.matches("Sec-WebSocket-Accept").count(), 1, "{text}");
                        match &negotiated.protocol {
                            Some(p) => {
                                assert!(req.protocols().contains(p));
                                assert!(config.protocols.contains(p));
                                assert!(
                                    text.contains(&format!("\r\nSec-WebSocket-Protocol: {p}\r\n"))
                                );
                            }
                            None => assert!(!text.contains("Sec-WebSocket-Protocol")),
                        }
                        match &negotiated.deflate {
                            Some(p) => {
                                assert!(config.deflate.is_some());
                                assert!((8..=15).contains(&p.server_max_window_bits));
                                assert!((8..=15).contains(&p.client_max_window_bits));
                                assert_eq!(
                                    text.matches(
                                        "\r\nSec-WebSocket-Extensions: permessage-deflate"
                                    )
                                    .count(),
                                    1,
                                    "{text}"
                                );
                            }
                            None => assert!(!text.contains("Sec-WebSocket-Extensions"), "{text}"),
                        }
                    }
                }
            }
        }
    }
});
