//! permessage-deflate negotiation (RFC 7692 §7.1): `server_negotiate` and `client_accept`
//! on arbitrary `Sec-WebSocket-Extensions` values.
//!
//! Input: a server-config byte, a client-config byte, then header values separated by `\n`
//! (each converted to text lossily, as only UTF-8 values reach these functions). A config
//! byte sets `server_max_window_bits` (bits 0-2: 0 = 15, n = 7 + n), `client_max_window_bits`
//! (bits 3-5, same coding), `server_no_context_takeover` (bit 6) and
//! `client_no_context_takeover` (bit 7).
//!
//! Invariants:
//! - Server: an accepted offer yields parameters within our config (window bits 8..=15, not
//!   above ours, our no_context_takeover settings included) and a response value without
//!   CR/LF that renders exactly those parameters; a client that sent these values as its
//!   offers (`client_offers`) accepts the response and agrees on the server's window and
//!   takeover and on a client window / takeover at least as strict (the round trip of
//!   `check_client_sees_same` in the unit tests).
//! - Client: whatever `client_accept` accepts lies within what the config offered.
//! - Our own offer is always accepted by our server, and the answer by our client.
//! - Offers that pass `DeflateConfig::validate` as `client_offers` are accepted by a default
//!   server, identically whether sent as separate header lines or joined into one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsx_proto::deflate::{
    client_accept, client_offer, server_negotiate, DeflateConfig, DeflateParams,
};

fn config(b: u8) -> DeflateConfig {
    let bits = |x: u8| if x == 0 { 15 } else { 7 + x };
    {
        let mut c = DeflateConfig::default();
        c.server_max_window_bits = bits(b & 7);
        c.client_max_window_bits = bits((b >> 3) & 7);
        c.server_no_context_takeover = b & 0x40 != 0;
        c.client_no_context_takeover = b & 0x80 != 0;
        c
    }
}

fn in_range(p: &DeflateParams) {
    assert!((8..=15).contains(&p.server_max_window_bits), "{p:?}");
    assert!((8..=15).contains(&p.client_max_window_bits), "{p:?}");
}

/// The server's answer `header` (parameters `sp`) as seen by a client configured by `client`.
fn client_agrees(client: &DeflateConfig, sp: &DeflateParams, header: &str) -> DeflateParams {
    let cp = client_accept(client, &[header])
        .unwrap_or_else(|e| panic!("client refuses {header:?} ({client:?}): {e}"))
        .unwrap_or_else(|| panic!("client ignores {header:?}"));
    in_range(&cp);
    assert_eq!(
        cp.server_max_window_bits, sp.server_max_window_bits,
        "{header}"
    );
    assert_eq!(
        cp.server_no_context_takeover, sp.server_no_context_takeover,
        "{header}"
    );
    assert!(
        cp.client_max_window_bits <= sp.client_max_window_bits,
        "{header}: {cp:?} {sp:?}"
    );
    assert!(
        cp.client_no_context_takeover || !sp.client_no_context_takeover,
        "{header}"
    );
    cp
}

fn check_server_answer(server: &DeflateConfig, sp: &DeflateParams, header: &str) {
    in_range(sp);
    assert!(sp.server_max_window_bits <= server.server_max_window_bits);
    assert!(sp.client_max_window_bits <= server.client_max_window_bits);
    assert!(sp.server_no_context_takeover || !server.server_no_context_takeover);
    assert!(sp.client_no_context_takeover || !server.client_no_context_takeover);
    assert!(!header.contains(['\r', '\n', '\0', ',']), "{header:?}");
    let plain = sp.to_header_value();
    if header != plain {
        // The only allowed difference: an offered server_max_window_bits echoed as 15.
        assert_eq!(sp.server_max_window_bits, 15, "{header:?} vs {plain:?}");
        let forced = match plain.find("; client_max_window_bits") {
            Some(i) => format!("{}; server_max_window_bits=15{}", &plain[..i], &plain[i..]),
            None => format!("{plain}; server_max_window_bits=15"),
        };
        assert_eq!(header, forced);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let server = config(data[0]);
    let client = config(data[1]);
    let values: Vec<String> = data[2..]
        .split(|&b| b == b'\n')
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();

    // Server side, then the round trip through a client that sent exactly these offers.
    if let Some((sp, header)) = server_negotiate(&server, &refs) {
        check_server_answer(&server, &sp, &header);
        let offering_client = {
            let mut c = DeflateConfig::default();
            c.client_offers = Some(values.clone());
            c
        };
        client_agrees(&offering_client, &sp, &header);
    }
    // Deterministic.
    assert_eq!(
        server_negotiate(&server, &refs),
        server_negotiate(&server, &refs)
    );

    // Client side on arbitrary responses.
    if let Ok(Some(cp)) = client_accept(&client, &refs) {
        in_range(&cp);
        assert!(
            cp.server_max_window_bits <= client.server_max_window_bits,
            "{cp:?}"
        );
        assert!(
            cp.client_max_window_bits <= client.client_max_window_bits,
            "{cp:?}"
        );
        assert!(cp.server_no_context_takeover || !client.server_no_context_takeover);
        assert!(cp.client_no_context_takeover || !client.client_no_context_takeover);
    }

    // Our own offer always works with our server.
    let offer = client_offer(&client);
    let (sp, header) = server_negotiate(&server, &[&offer])
        .unwrap_or_else(|| panic!("server {server:?} declines our offer {offer:?}"));
    check_server_answer(&server, &sp, &header);
    let cp = client_agrees(&client, &sp, &header);
    assert!(cp.client_max_window_bits <= client.client_max_window_bits);
    assert!(sp.server_max_window_bits <= client.server_max_window_bits);

    // Valid custom offers: accepted by a default server, the same as one joined line.
    let custom = {
        let mut c = DeflateConfig::default();
        c.client_offers = Some(values.clone());
        c
    };
    if !values.is_empty() && custom.validate().is_ok() {
        let default = DeflateConfig::default();
        let separate = server_negotiate(&default, &refs);
        let joined = client_offer(&custom);
        let together = server_negotiate(&default, &[&joined]);
        assert!(separate.is_some(), "validated offers {values:?} declined");
        assert_eq!(separate, together, "{values:?} vs {joined:?}");
        let (sp, header) = separate.unwrap();
        client_agrees(&custom, &sp, &header);
    }
});
