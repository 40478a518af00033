//! In-memory tests of the state machine: no sockets, bytes passed by hand.

use super::*;
use crate::close::CloseFrame;
use crate::frame::FrameHeader;

fn pair() -> (Connection, Connection) {
    let config = Config {
        deflate: None,
        ..Config::default()
    };
    (
        Connection::new(Role::Client, &config, None),
        Connection::new(Role::Server, &config, None),
    )
}

/// Moves everything `from` has to send into `to`.
fn pump(from: &mut Connection, to: &mut Connection) {
    let out = from.take_output();
    to.receive(&out);
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// A raw frame as a client would send it (masked) or a server (unmasked).
fn raw(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let h = FrameHeader {
        fin: first_byte & 0x80 != 0,
        rsv1: first_byte & 0x40 != 0,
        rsv2: first_byte & 0x20 != 0,
        rsv3: first_byte & 0x10 != 0,
        opcode: OpCode::from_u8(first_byte & 0x0F).unwrap_or(OpCode::Binary),
        mask,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    let mut out = head[..n].to_vec();
    // Keep reserved opcodes as given.
    out[0] = first_byte;
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k);
    }
    out
}

const K: Option<[u8; 4]> = Some([1, 2, 3, 4]);

/// Feeds client-style frames to a fresh server and returns its events and its output.
fn server_gets(bytes: &[u8]) -> (Vec<Event>, Vec<u8>, Connection) {
    let (_, mut server) = pair();
    server.receive(bytes);
    let ev = events(&mut server);
    let out = server.take_output().to_vec();
    (ev, out, server)
}

fn close_code_sent(out: &[u8]) -> Option<u16> {
    let (h, n) = FrameHeader::parse(out).ok()??;
    if h.opcode != OpCode::Close || h.payload_len < 2 {
        return None;
    }
    let mut code = [out[n], out[n + 1]];
    if let Some(key) = h.mask {
        apply_mask(&mut code, key);
    }
    Some(u16::from_be_bytes(code))
}

#[test]
fn echo_text_and_binary_both_ways() {
    let (mut c, mut s) = pair();
    c.send(Message::text("héllo")).unwrap();
    c.send(Message::binary(vec![0u8, 1, 2])).unwrap();
    pump(&mut c, &mut s);
    let got = events(&mut s);
    assert_eq!(
        got,
        vec![
            Event::Message(Message::text("héllo")),
            Event::Message(Message::binary(vec![0u8, 1, 2]))
        ]
    );
    for e in got {
        if let Event::Message(m) = e {
            s.send(m).unwrap();
        }
    }
    pump(&mut s, &mut c);
    assert_eq!(events(&mut c).len(), 2);
}

#[test]
fn every_length_form_one_byte_at_a_time_and_whole() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70_000] {
        let (mut c, mut s) = pair();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        c.send(Message::binary(data.clone())).unwrap();
        let out = c.take_output();
        if len < 200 {
            let mut got = Vec::new();
            for b in out.iter() {
                s.receive(&[*b]);
                got.extend(events(&mut s));
            }
            assert_eq!(
                got,
                vec![Event::Message(Message::binary(data))],
                "len {len}"
            );
        } else {
            s.receive(&out);
            assert_eq!(events(&mut s), vec![Event::Message(Message::binary(data))]);
        }
    }
}

#[test]
fn client_masks_server_does_not() {
    let (mut c, mut s) = pair();
    c.send(Message::text("x")).unwrap();
    assert_eq!(c.output()[1] & 0x80, 0x80);
    s.send(Message::text("x")).unwrap();
    assert_eq!(s.output()[1] & 0x80, 0);
}

#[test]
fn fragmented_message_with_interleaved_ping() {
    let mut bytes = raw(0x01, "Hel".as_bytes(), K);
    bytes.extend(raw(0x89, b"p", K));
    bytes.extend(raw(0x00, "lo €".as_bytes()[..4].as_ref(), K));
    bytes.extend(raw(0x80, &"lo €".as_bytes()[4..], K));
    let (ev, out, _) = server_gets(&bytes);
    assert_eq!(
        ev,
        vec![
            Event::Message(Message::Ping(Bytes::from_static(b"p"))),
            Event::Message(Message::text("Hello €")),
        ]
    );
    // The pong went out with the same payload.
    assert_eq!(out, vec![0x8A, 0x01, b'p']);
}

fn assert_fails(bytes: &[u8], code: u16) {
    let (ev, out, server) = server_gets(bytes);
    assert!(
        matches!(ev.first(), Some(Event::Error(_))) || matches!(ev.get(1), Some(Event::Error(_))),
        "{ev:?}"
    );
    assert_eq!(close_code_sent(&out), Some(code), "{ev:?}");
    assert_eq!(server.state(), State::Closed);
    match ev.last() {
        Some(Event::Closed(e)) => assert!(!e.was_clean && e.code.0 == code),
        other => panic!("{other:?}"),
    }
}

#[test]
fn protocol_violations_get_1002() {
    assert_fails(&raw(0xC1, b"x", K), 1002); // RSV1 without deflate
    assert_fails(&raw(0xA1, b"x", K), 1002); // RSV2
    assert_fails(&raw(0x91, b"x", K), 1002); // RSV3
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        assert_fails(&raw(0x80 | op, b"", K), 1002);
    }
    assert_fails(&raw(0x89, &[0u8; 126], K), 1002); // long ping
    assert_fails(&raw(0x09, b"", K), 1002); // fragmented ping
    assert_fails(&raw(0x81, b"x", None), 1002); // unmasked at server
    assert_fails(&raw(0x80, b"x", K), 1002); // continuation, no message
    let mut b = raw(0x01, b"a", K);
    b.extend(raw(0x81, b"b", K));
    assert_fails(&b, 1002); // new message inside fragmented one
    assert_fails(&raw(0x88, &[3], K), 1002); // 1-byte close
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_fails(&raw(0x88, &code.to_be_bytes(), K), 1002);
    }
}

#[test]
fn masked_frame_at_client_is_1002() {
    let (mut c, _) = pair();
    c.receive(&raw(0x81, b"x", K));
    assert!(matches!(
        c.poll_event(),
        Some(Event::Error(ProtocolError::MaskedFrame))
    ));
    assert_eq!(close_code_sent(&c.take_output()), Some(1002));
}

#[test]
fn invalid_utf8_fails_fast_with_1007() {
    // The bad byte arrives in the first half of a frame whose second half never comes.
    let frame = raw(0x81, &[b'a', 0xFF, b'b', b'c'], K);
    let (_, mut server) = pair();
    server.receive(&frame[..frame.len() - 2]);
    assert!(matches!(
        server.poll_event(),
        Some(Event::Error(ProtocolError::InvalidUtf8))
    ));
    assert_eq!(close_code_sent(&server.take_output()), Some(1007));

    // Invalid across a fragment boundary: first fragment valid, continuation breaks it.
    let mut b = raw(0x01, &[0xE2, 0x82], K);
    b.extend(raw(0x80, &[0x28], K));
    assert_fails(&b, 1007);
    // Incomplete code point at the end of the message.
    assert_fails(&raw(0x81, &[0xE2, 0x82], K), 1007);
    // Bad close reason.
    assert_fails(&raw(0x88, &[0x03, 0xE8, 0xFF], K), 1007);
}

#[test]
fn limits_get_1009() {
    let config = Config {
        max_frame_size: 100,
        max_message_size: 150,
        deflate: None,
        ..Config::default()
    };
    let mut s = Connection::new(Role::Server, &config, None);
    s.receive(&raw(0x82, &[0u8; 101], K)[..8]); // header alone is enough
    assert!(matches!(
        s.poll_event(),
        Some(Event::Error(ProtocolError::FrameTooLarge { .. }))
    ));
    assert_eq!(close_code_sent(&s.take_output()), Some(1009));

    let mut s = Connection::new(Role::Server, &config, None);
    let mut b = raw(0x02, &[0u8; 100], K);
    b.extend(raw(0x80, &[0u8; 51], K));
    s.receive(&b);
    assert!(matches!(
        s.poll_event(),
        Some(Event::Error(ProtocolError::MessageTooLarge { .. }))
    ));
    assert_eq!(close_code_sent(&s.take_output()), Some(1009));
}

#[test]
fn close_handshake_peer_initiated_echoes_code() {
    let (mut c, mut s) = pair();
    c.close(Some(CloseFrame::new(CloseCode(4321), "bye")))
        .unwrap();
    assert_eq!(c.state(), State::Closing);
    assert_eq!(c.send(Message::text("late")), Err(SendError::Closed));
    pump(&mut c, &mut s);
    let ev = events(&mut s);
    assert_eq!(
        ev[0],
        Event::Message(Message::Close(Some(CloseFrame::new(
            CloseCode(4321),
            "bye"
        ))))
    );
    assert!(
        matches!(&ev[1], Event::Closed(e) if e.was_clean && e.code.0 == 4321 && e.reason == "bye")
    );
    assert_eq!(s.state(), State::Closed);
    assert_eq!(close_code_sent(s.output()), Some(4321));
    pump(&mut s, &mut c);
    let ev = events(&mut c);
    assert!(matches!(&ev[1], Event::Closed(e) if e.was_clean && e.code.0 == 4321));
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn close_without_status_is_1005_and_echoed_empty() {
    let (ev, out, _) = server_gets(&raw(0x88, b"", K));
    assert_eq!(ev[0], Event::Message(Message::Close(None)));
    assert!(matches!(&ev[1], Event::Closed(e) if e.code == CloseCode::NO_STATUS && e.was_clean));
    assert_eq!(out, vec![0x88, 0x00]);
}

#[test]
fn data_after_close_is_ignored() {
    let mut b = raw(0x88, &1000u16.to_be_bytes(), K);
    b.extend(raw(0x81, b"late", K));
    let (ev, _, mut s) = server_gets(&b);
    assert_eq!(ev.len(), 2);
    s.receive(&raw(0x81, b"later", K));
    assert_eq!(s.poll_event(), None);
}

#[test]
fn eof_without_close_is_1006() {
    let (_, mut s) = pair();
    s.receive(&raw(0x81, b"hi", K));
    s.receive_eof();
    let ev = events(&mut s);
    assert_eq!(ev[0], Event::Message(Message::text("hi")));
    assert!(matches!(&ev[1], Event::Closed(e) if e.code == CloseCode::ABNORMAL && !e.was_clean));
}

#[test]
fn never_sends_reserved_close_codes() {
    let (mut c, _) = pair();
    for code in [1005u16, 1006, 1015, 999, 2000] {
        assert_eq!(
            c.close(Some(CloseFrame::new(CloseCode(code), ""))),
            Err(SendError::InvalidCloseCode(code))
        );
    }
    assert_eq!(
        c.send(Message::Ping(Bytes::from(vec![0u8; 126]))),
        Err(SendError::ControlFrameTooLong)
    );
}

#[test]
fn streaming_fragments_both_ways() {
    let config = Config {
        streaming: true,
        deflate: None,
        ..Config::default()
    };
    let mut c = Connection::new(Role::Client, &config, None);
    let mut s = Connection::new(Role::Server, &config, None);
    let text = "€uro".as_bytes();
    c.send_fragment(MessageKind::Text, &text[..2], false)
        .unwrap();
    c.send(Message::Ping(Bytes::new())).unwrap();
    assert_eq!(
        c.send(Message::text("x")),
        Err(SendError::FragmentInProgress)
    );
    assert_eq!(
        c.send_fragment(MessageKind::Binary, b"x", true),
        Err(SendError::FragmentKindMismatch)
    );
    c.send_fragment(MessageKind::Text, &text[2..], true)
        .unwrap();
    pump(&mut c, &mut s);
    let ev = events(&mut s);
    assert_eq!(ev.len(), 3);
    assert_eq!(
        ev[0],
        Event::Fragment(Fragment {
            kind: MessageKind::Text,
            data: Bytes::copy_from_slice(&text[..2]),
            first: true,
            fin: false
        })
    );
    assert!(matches!(&ev[2], Event::Fragment(f) if !f.first && f.fin));
    assert_eq!(
        c.send_fragment(MessageKind::Text, &[0xFF], true),
        Err(SendError::InvalidUtf8)
    );
}

#[test]
fn pong_not_sent_after_close() {
    let (mut c, mut s) = pair();
    s.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        .unwrap();
    let _ = s.take_output();
    c.send(Message::Ping(Bytes::from_static(b"x"))).unwrap();
    pump(&mut c, &mut s);
    let ev = events(&mut s);
    assert_eq!(
        ev,
        vec![Event::Message(Message::Ping(Bytes::from_static(b"x")))]
    );
    assert!(s.output().is_empty());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Arbitrary bytes, in arbitrary chunks, never panic, and a server always ends up
        /// either waiting for more or CLOSED with a close frame queued.
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512),
                                        chunk in 1usize..64, server: bool) {
            let config = Config { max_frame_size: 256, max_message_size: 400, deflate: None, ..Config::default() };
            let role = if server { Role::Server } else { Role::Client };
            let mut conn = Connection::new(role, &config, None);
            for piece in data.chunks(chunk) {
                conn.receive(piece);
                while conn.poll_event().is_some() {}
            }
            conn.receive_eof();
            while conn.poll_event().is_some() {}
            prop_assert_eq!(conn.state(), State::Closed);
        }

        /// Messages survive the trip client -> server for any sizes and split points.
        #[test]
        fn messages_round_trip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..5),
                               chunk in 1usize..97) {
            let (mut c, mut s) = pair();
            for m in &msgs {
                c.send(Message::binary(m.clone())).unwrap();
            }
            let out = c.take_output();
            let mut got = Vec::new();
            for piece in out.chunks(chunk) {
                s.receive(piece);
                got.extend(events(&mut s));
            }
            let want: Vec<Event> = msgs.into_iter().map(|m| Event::Message(Message::binary(m))).collect();
            prop_assert_eq!(got, want);
        }
    }
}

mod deflate {
    use super::*;
    use crate::deflate::{Compressor, DeflateConfig, DeflateParams};

    fn deflate_pair(params: DeflateParams, config: &Config) -> (Connection, Connection) {
        (
            Connection::new(Role::Client, config, Some(params)),
            Connection::new(Role::Server, config, Some(params)),
        )
    }

    fn config(threshold: usize) -> Config {
        Config {
            deflate: Some(DeflateConfig {
                threshold,
                ..DeflateConfig::default()
            }),
            ..Config::default()
        }
    }

    #[test]
    fn compressed_messages_round_trip_with_every_takeover_mode() {
        for (snct, cnct, bits) in [
            (false, false, 15),
            (true, false, 9),
            (false, true, 12),
            (true, true, 8),
        ] {
            let params = DeflateParams {
                server_no_context_takeover: snct,
                client_no_context_takeover: cnct,
                server_max_window_bits: bits,
                client_max_window_bits: bits,
            };
            let (mut c, mut s) = deflate_pair(params, &config(0));
            let texts: Vec<String> = (0..5)
                .map(|i| format!("message {i} ").repeat(200 + i))
                .collect();
            for t in &texts {
                c.send(Message::text(t.as_str())).unwrap();
            }
            let wire = c.take_output();
            assert!(wire.len() < texts.iter().map(String::len).sum::<usize>() / 4);
            assert_eq!(wire[0] & 0x40, 0x40, "RSV1 on a compressed message");
            s.receive(&wire);
            let got = events(&mut s);
            let want: Vec<Event> = texts
                .iter()
                .map(|t| Event::Message(Message::text(t.as_str())))
                .collect();
            assert_eq!(got, want);
            for ev in got {
                if let Event::Message(m) = ev {
                    s.send(m).unwrap();
                }
            }
            pump(&mut s, &mut c);
            assert_eq!(events(&mut c).len(), texts.len());
        }
    }

    #[test]
    fn fragmented_compressed_message_and_threshold() {
        let params = DeflateParams::default();
        let (_, mut s) = deflate_pair(params, &config(0));
        let text = "abcdefgh".repeat(1000);
        let mut comp = Compressor::new(15, false, 6);
        let mut deflated = BytesMut::new();
        comp.compress(text.as_bytes(), &mut deflated).unwrap();
        let (a, b) = deflated.split_at(deflated.len() / 2);
        let mut bytes = raw(0x41, a, K); // text, RSV1, not final
        bytes.extend(raw(0x89, b"ping", K)); // control frame in between
        bytes.extend(raw(0x80, b, K)); // continuation, final, no RSV1
        s.receive(&bytes);
        let got = events(&mut s);
        assert_eq!(got[1], Event::Message(Message::text(text.as_str())));

        // Below the threshold messages go out uncompressed; send_uncompressed opts out.
        let (mut c, _) = deflate_pair(params, &config(100));
        c.send(Message::text("short")).unwrap();
        assert_eq!(c.take_output()[0] & 0x40, 0);
        c.send_uncompressed(Message::text("x".repeat(1000)))
            .unwrap();
        assert_eq!(c.take_output()[0] & 0x40, 0);
        // Control frames are never compressed.
        c.send(Message::Ping(Bytes::from(vec![b'p'; 125]))).unwrap();
        assert_eq!(c.take_output()[0] & 0x40, 0);
    }

    #[test]
    fn rsv1_on_continuation_or_control_is_1002_even_with_deflate() {
        let params = DeflateParams::default();
        for bytes in [
            [raw(0x01, b"a", K), raw(0xC0, b"b", K)].concat(),
            raw(0xC9, b"", K),
        ] {
            let (_, mut s) = deflate_pair(params, &config(0));
            s.receive(&bytes);
            let ev = events(&mut s);
            assert!(
                ev.contains(&Event::Error(ProtocolError::ReservedBits)),
                "{ev:?}"
            );
            assert_eq!(close_code_sent(&s.take_output()), Some(1002));
        }
    }

    #[test]
    fn decompression_bomb_ends_in_1009_with_bounded_memory() {
        // 4 MiB of zeros deflates to about 4 KiB: one frame far below the frame limit.
        let mut comp = Compressor::new(15, false, 9);
        let mut bomb = BytesMut::new();
        comp.compress(&vec![0u8; 4 << 20], &mut bomb).unwrap();
        assert!(bomb.len() < 8 * 1024, "{}", bomb.len());
        let limit = 256 * 1024;
        let config = Config {
            max_message_size: limit,
            ..config(0)
        };
        let mut s = Connection::new(Role::Server, &config, Some(DeflateParams::default()));
        s.receive(&raw(0xC2, &bomb, K));
        let ev = events(&mut s);
        assert_eq!(
            ev[0],
            Event::Error(ProtocolError::MessageTooLarge { limit })
        );
        assert_eq!(close_code_sent(&s.take_output()), Some(1009));
        assert!(
            s.memory_usage() < 2 * limit + 512 * 1024,
            "{}",
            s.memory_usage()
        );
    }

    #[test]
    fn corrupt_compressed_data_is_1007() {
        let (_, mut s) = deflate_pair(DeflateParams::default(), &config(0));
        s.receive(&raw(0xC2, &[0xFF, 0xFF, 0xFF, 0xFF], K));
        assert!(matches!(
            s.poll_event(),
            Some(Event::Error(ProtocolError::CorruptCompressedData))
        ));
        assert_eq!(close_code_sent(&s.take_output()), Some(1007));
    }

    #[test]
    fn invalid_utf8_inside_compressed_text_is_1007() {
        let mut comp = Compressor::new(15, false, 6);
        let mut deflated = BytesMut::new();
        comp.compress(&[b'a', 0xFF, b'b'], &mut deflated).unwrap();
        let (_, mut s) = deflate_pair(DeflateParams::default(), &config(0));
        s.receive(&raw(0xC1, &deflated, K));
        assert!(matches!(
            s.poll_event(),
            Some(Event::Error(ProtocolError::InvalidUtf8))
        ));
    }
}

#[test]
fn fragment_cap_is_1008() {
    let config = Config {
        max_fragments: 3,
        deflate: None,
        ..Config::default()
    };
    let mut s = Connection::new(Role::Server, &config, None);
    let mut b = raw(0x01, b"a", K);
    b.extend(raw(0x00, b"b", K));
    b.extend(raw(0x80, b"c", K));
    s.receive(&b);
    assert_eq!(events(&mut s), vec![Event::Message(Message::text("abc"))]);
    let mut b = raw(0x01, b"a", K);
    for _ in 0..3 {
        b.extend(raw(0x00, b"b", K));
    }
    s.receive(&b);
    assert_eq!(
        s.poll_event(),
        Some(Event::Error(ProtocolError::TooManyFragments { limit: 3 }))
    );
    assert_eq!(close_code_sent(&s.take_output()), Some(1008));
}

#[test]
fn abort_sends_code_and_closes_uncleanly() {
    let (_, mut s) = pair();
    s.abort(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
    assert_eq!(s.state(), State::Closed);
    assert!(matches!(s.poll_event(), Some(Event::Closed(e)) if !e.was_clean && e.code.0 == 1011));
    assert_eq!(close_code_sent(&s.take_output()), Some(1011));
    // 1006 never goes on the wire.
    let (_, mut s) = pair();
    s.abort(CloseCode::ABNORMAL, "gone");
    assert!(s.take_output().is_empty());
}

#[test]
fn rejected_text_fragment_leaves_the_message_state_unchanged() {
    // Found by fuzzing: after a rejected fragment the next one was validated from scratch.
    let (_, mut s) = pair();
    s.send_fragment(MessageKind::Text, &[0xCE, 0xBA, 0xCF], false)
        .unwrap();
    assert_eq!(
        s.send_fragment(MessageKind::Text, &[0x8C, 0xFF], false),
        Err(SendError::InvalidUtf8)
    );
    assert_eq!(
        s.send_fragment(MessageKind::Text, b"!", true),
        Err(SendError::InvalidUtf8)
    );
    s.send_fragment(MessageKind::Text, &[0x8C], true).unwrap();

    let (_, mut s) = pair();
    s.send_fragment(MessageKind::Text, &[0xCE], false).unwrap();
    assert_eq!(
        s.send_fragment(MessageKind::Text, b"", true),
        Err(SendError::InvalidUtf8)
    );
    assert_eq!(
        s.send_fragment(MessageKind::Text, b"A", true),
        Err(SendError::InvalidUtf8)
    );
    s.send_fragment(MessageKind::Text, &[0xBA], true).unwrap();
    // What went on the wire is valid UTF-8 text: ce ba.
    let (mut c, _) = pair();
    c.receive(&s.take_output());
    assert_eq!(events(&mut c), vec![Event::Message(Message::text("κ"))]);
}

/// Writes exactly `n` of the bytes `from` has queued, with vectored writes.
fn drain_vectored_upto(from: &mut Connection, mut n: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    while n > 0 {
        let mut slots = vec![std::io::IoSlice::new(&[]); 4];
        let k = from.output_vectored(&mut slots);
        let mut took = 0;
        for sl in &slots[..k] {
            let part = &sl[..sl.len().min(n - took)];
            wire.extend_from_slice(part);
            took += part.len();
        }
        from.advance_output(took);
        n -= took;
    }
    wire
}

/// Writes everything `from` has queued the way a vectored I/O layer would: slices of at most
/// `max_slices` pieces, each write taking at most `take` bytes.
fn drain_vectored(from: &mut Connection, max_slices: usize, take: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    loop {
        let mut slots = vec![std::io::IoSlice::new(&[]); max_slices];
        let k = from.output_vectored(&mut slots);
        if k == 0 {
            assert_eq!(from.buffered_amount(), 0);
            return wire;
        }
        let mut n = 0;
        for s in &slots[..k] {
            let room = take - n;
            let part = &s[..s.len().min(room)];
            wire.extend_from_slice(part);
            n += part.len();
            if n == take {
                break;
            }
        }
        let before = from.buffered_amount();
        from.advance_output(n);
        assert_eq!(from.buffered_amount(), before - n);
    }
}

#[test]
fn large_server_payloads_go_out_without_a_copy_and_in_order() {
    let (mut client, mut server) = pair();
    let big = Bytes::from((0..200_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    let text: String = "κόσμε ".repeat(ZERO_COPY_MIN / 10);
    server.send(Message::text("before")).unwrap();
    server.send(Message::Binary(big.clone())).unwrap();
    server
        .send(Message::Ping(Bytes::from_static(b"p")))
        .unwrap();
    server.send(Message::text(text.clone())).unwrap();
    server.send(Message::text("after")).unwrap();
    // The big payload is referenced, not copied: one of the slices is its buffer.
    let mut slots = vec![std::io::IoSlice::new(&[]); 16];
    let k = server.output_vectored(&mut slots);
    assert!(k >= 5, "{k} slices");
    assert!(slots[..k]
        .iter()
        .any(|s| s.as_ptr() == big.as_ptr() && s.len() == big.len()));
    let total = server.buffered_amount();
    assert!(total > big.len() + text.len());
    // Written a few odd-sized bytes at a time, the stream is exactly the messages in order.
    for (slices, take) in [(1, 7), (3, 1000), (16, 65_536), (2, usize::MAX)] {
        let (mut c2, mut s2) = pair();
        s2.send(Message::text("before")).unwrap();
        s2.send(Message::Binary(big.clone())).unwrap();
        s2.send(Message::Ping(Bytes::from_static(b"p"))).unwrap();
        s2.send(Message::text(text.clone())).unwrap();
        s2.send(Message::text("after")).unwrap();
        let wire = drain_vectored(&mut s2, slices, take);
        assert_eq!(wire.len(), total);
        c2.receive(&wire);
        let evs = events(&mut c2);
        assert_eq!(
            evs,
            vec![
                Event::Message(Message::text("before")),
                Event::Message(Message::Binary(big.clone())),
                Event::Message(Message::Ping(Bytes::from_static(b"p"))),
                Event::Message(Message::text(text.clone())),
                Event::Message(Message::text("after")),
            ]
        );
    }
    // take_output gives the same bytes.
    pump(&mut server, &mut client);
    assert_eq!(events(&mut client).len(), 5);
    assert_eq!(server.buffered_amount(), 0);
    assert!(server.output().is_empty());
}

#[test]
fn output_written_in_part_keeps_its_order_around_queued_payloads() {
    let big = Bytes::from(
        (0..ZERO_COPY_MIN as u32 + 5)
            .map(|i| i as u8)
            .collect::<Vec<_>>(),
    );
    let mid = "m".repeat(3000);
    for first_write in [1, 3, 7, 9] {
        let (mut c, mut s) = pair();
        s.send(Message::text("one")).unwrap();
        s.send(Message::text("two")).unwrap();
        // Part of the output is written before a large payload is queued: the rest of it
        // must still go first.
        let mut wire = s.output()[..first_write].to_vec();
        s.advance_output(first_write);
        s.send(Message::Binary(big.clone())).unwrap();
        s.send(Message::text("three")).unwrap();
        // All but the last 5 bytes ("three" is a 7-byte frame) written, then a frame
        // larger than the buffer's free room: the written front is dropped to make room,
        // and nothing unwritten moves out of order.
        let keep = 5;
        let upto = s.buffered_amount() - keep;
        wire.extend(drain_vectored_upto(&mut s, upto));
        assert_eq!(s.output(), &b"\x81\x05three"[2..]);
        s.send(Message::text(mid.clone())).unwrap();
        wire.extend(drain_vectored(&mut s, 3, 5));
        assert!(s.output().is_empty());
        c.receive(&wire);
        assert_eq!(
            events(&mut c),
            vec![
                Event::Message(Message::text("one")),
                Event::Message(Message::text("two")),
                Event::Message(Message::Binary(big.clone())),
                Event::Message(Message::text("three")),
                Event::Message(Message::text(mid.clone())),
            ],
            "first write of {first_write} bytes"
        );
    }
}

#[test]
fn a_small_frame_after_a_written_one_reuses_the_buffer_front() {
    let (_, mut s) = pair();
    s.send(Message::text("hello")).unwrap();
    let cap = s.tx.wbuf.capacity();
    let n = s.output().len();
    s.advance_output(n);
    assert_eq!((s.tx.wpos, s.tx.wbuf.len()), (0, 0), "emptied once written");
    for _ in 0..1000 {
        s.send(Message::text("hello")).unwrap();
        let n = s.output().len();
        s.advance_output(n);
    }
    assert_eq!(
        s.tx.wbuf.capacity(),
        cap,
        "no growth for frames written as they come"
    );
}

#[test]
fn client_payloads_are_always_copied_and_masked() {
    let (mut client, mut server) = pair();
    let big = Bytes::from(vec![0x5a; ZERO_COPY_MIN * 2]);
    client.send(Message::Binary(big.clone())).unwrap();
    let mut slots = vec![std::io::IoSlice::new(&[]); 4];
    assert_eq!(client.output_vectored(&mut slots), 1);
    assert_ne!(slots[0].as_ptr(), big.as_ptr());
    let wire = drain_vectored(&mut client, 4, 10_000);
    server.receive(&wire);
    assert_eq!(
        events(&mut server),
        vec![Event::Message(Message::Binary(big))]
    );
}

/// Every idle connection carries a `Connection` inside its task, and tokio sizes tasks in
/// 128-byte steps: at most 248 bytes keeps an idle connection's task in the 640-byte class
/// (BENCHMARKS.md, "Memory per idle connection"). Raise the bounds only on purpose.
#[cfg(target_pointer_width = "64")]
#[test]
fn connection_state_stays_small() {
    use std::mem::size_of;
    println!(
        "Connection {} B (Receiver {} B, Sender {} B), Option<PartialFrame> {} B",
        size_of::<Connection>(),
        size_of::<Receiver>(),
        size_of::<Sender>(),
        size_of::<Option<PartialFrame>>(),
    );
    assert!(size_of::<Option<PartialFrame>>() <= 24);
    assert!(size_of::<Option<Incoming>>() <= 48);
    assert!(
        size_of::<Connection>() <= 248,
        "{}",
        size_of::<Connection>()
    );
}

#[test]
fn the_aside_boxes_are_freed_when_empty() {
    // Answering a ping leaves nothing behind.
    let (mut c, mut s) = pair();
    c.send(Message::Ping(Bytes::from_static(b"p"))).unwrap();
    pump(&mut c, &mut s);
    assert_eq!(events(&mut s).len(), 1);
    assert!(s.rx.aside.is_none());
    assert_eq!(s.output(), b"\x8a\x01p");

    // Queued output by reference goes with shrink_buffers, but not while tracing.
    let big = Bytes::from(vec![7u8; ZERO_COPY_MIN]);
    s.send(Message::Binary(big.clone())).unwrap();
    let n = s.buffered_amount();
    s.advance_output(n);
    s.shrink_buffers();
    assert!(s.tx.aside.is_none());
    s.set_frame_trace(Some(TraceConfig::default()));
    s.send(Message::Binary(big)).unwrap();
    let n = s.buffered_amount();
    s.advance_output(n);
    s.shrink_buffers();
    assert!(s.frame_trace_enabled() && s.tx.aside.is_some());
    assert_eq!(s.take_frame_traces().count(), 1);
    s.set_frame_trace(None);
    assert!(s.rx.aside.is_none() && s.tx.aside.is_none());

    // The close event stays.
    s.abort(CloseCode::INTERNAL_ERROR, "bye");
    assert!(s.close_event().is_some());
    assert!(s.rx.aside.is_some() && !s.rx.has_reply());
}

#[test]
fn the_output_buffer_is_exchanged_only_when_nothing_waits_in_it() {
    let mut c = Connection::new(Role::Server, &Config::default(), None);
    let mut lent = Vec::with_capacity(4096);
    lent.extend_from_slice(b"stale");
    let lent_at = lent.as_ptr();
    assert!(c.exchange_output_buffer(&mut lent));
    // The connection encodes into the lent allocation; what was in it is gone.
    c.send(Message::text("hi")).unwrap();
    assert_eq!(c.output(), b"\x81\x02hi");
    assert_eq!(c.output().as_ptr(), lent_at);
    // Output waiting: nothing changes.
    let mut other = Vec::new();
    assert!(!c.exchange_output_buffer(&mut other));
    assert_eq!(c.output(), b"\x81\x02hi");
    let n = c.output().len();
    c.advance_output(n);
    // Written: the lent buffer comes back.
    assert!(c.exchange_output_buffer(&mut other));
    assert_eq!(other.as_ptr(), lent_at);
    assert!(other.is_empty());
}

#[test]
fn a_partial_frame_gives_back_its_header() {
    let h = FrameHeader {
        fin: false,
        rsv1: true,
        rsv2: false,
        rsv3: true,
        opcode: OpCode::Binary,
        mask: Some([1, 2, 3, 4]),
        payload_len: 70_000,
    };
    assert_eq!(PartialFrame::new(&h, false).header(), h);
}

mod prepared {
    use super::*;
    use crate::deflate::{DeflateConfig, DeflateParams};
    use crate::prepared::PreparedMessage;

    fn deflate_config() -> Config {
        Config {
            deflate: Some(DeflateConfig {
                threshold: 0,
                ..DeflateConfig::default()
            }),
            ..Config::default()
        }
    }

    /// A server connection with `params` and the client that reads it.
    fn pair_with(params: Option<DeflateParams>) -> (Connection, Connection) {
        let config = deflate_config();
        (
            Connection::new(Role::Client, &config, params),
            Connection::new(Role::Server, &config, params),
        )
    }

    fn no_takeover(bits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: true,
            server_max_window_bits: bits,
            ..DeflateParams::default()
        }
    }

    #[test]
    fn uncompressed_frames_are_the_bytes_send_would_write() {
        let big: Vec<u8> = (0..3 * ZERO_COPY_MIN).map(|i| (i % 251) as u8).collect();
        for msg in [
            Message::text(""),
            Message::text("héllo"),
            Message::binary(vec![7u8; 126]),
            Message::binary(vec![9u8; 70_000]),
            Message::Binary(Bytes::from(big)),
        ] {
            let prepared = PreparedMessage::from_message(&msg).unwrap();
            assert_eq!(prepared.to_message(), msg);
            let (_, mut a) = pair();
            let (_, mut b) = pair();
            a.send(msg.clone()).unwrap();
            b.send_prepared(&prepared).unwrap();
            assert_eq!(
                drain_vectored(&mut b, 8, usize::MAX),
                a.take_output().to_vec()
            );
        }
        assert!(PreparedMessage::from_message(&Message::Ping(Bytes::new())).is_none());
    }

    #[test]
    fn a_large_frame_is_shared_not_copied() {
        let prepared = PreparedMessage::binary(vec![1u8; 2 * ZERO_COPY_MIN]);
        let (mut client, mut server) = pair();
        server.send(Message::text("first")).unwrap();
        server.send_prepared(&prepared).unwrap();
        let mut slots = [std::io::IoSlice::new(&[]); 4];
        let k = server.output_vectored(&mut slots);
        // What was queued before, then the shared frame itself.
        assert_eq!(k, 2);
        assert_eq!(slots[1].as_ptr(), prepared.frame().as_ptr());
        client.receive(&drain_vectored(&mut server, 8, 1000));
        assert_eq!(
            events(&mut client),
            vec![
                Event::Message(Message::text("first")),
                Event::Message(prepared.to_message())
            ]
        );
    }

    #[test]
    fn connections_that_compress_alone_share_one_compressed_frame() {
        let text = "a publication to many subscribers ".repeat(40);
        let prepared = PreparedMessage::text(text.as_str());
        let mut frames = Vec::new();
        for _ in 0..3 {
            let (mut client, mut server) = pair_with(Some(no_takeover(12)));
            server.send_prepared(&prepared).unwrap();
            let mut slots = [std::io::IoSlice::new(&[]); 4];
            assert_eq!(server.output_vectored(&mut slots), 1);
            let wire = slots[0].to_vec();
            assert_eq!(wire[0] & 0x40, 0x40, "RSV1 on a compressed message");
            assert!(wire.len() < text.len() / 4);
            frames.push(wire);
            pump(&mut server, &mut client);
            assert_eq!(
                events(&mut client),
                vec![Event::Message(Message::text(text.as_str()))]
            );
        }
        assert!(frames.windows(2).all(|w| w[0] == w[1]));
        // Another window size gets its own frame, made from the same message.
        let (mut client, mut server) = pair_with(Some(no_takeover(9)));
        server.send_prepared(&prepared).unwrap();
        pump(&mut server, &mut client);
        assert_eq!(
            events(&mut client),
            vec![Event::Message(Message::text(text.as_str()))]
        );
    }

    #[test]
    fn with_context_takeover_the_connection_compresses_itself() {
        // Prepared and ordinary messages interleaved: the peer's window must follow ours.
        let (mut client, mut server) = pair_with(Some(DeflateParams::default()));
        let texts: Vec<String> = (0..6)
            .map(|i| format!("message {} ", i % 2).repeat(50))
            .collect();
        let prepared: Vec<PreparedMessage> = texts
            .iter()
            .map(|t| PreparedMessage::text(t.as_str()))
            .collect();
        for (i, p) in prepared.iter().enumerate() {
            if i % 2 == 0 {
                server.send_prepared(p).unwrap();
            } else {
                server.send(p.to_message()).unwrap();
            }
        }
        pump(&mut server, &mut client);
        let want: Vec<Event> = texts
            .iter()
            .map(|t| Event::Message(Message::text(t.as_str())))
            .collect();
        assert_eq!(events(&mut client), want);
    }

    #[test]
    fn clients_mask_prepared_messages_and_closed_connections_refuse_them() {
        let prepared = PreparedMessage::binary(b"from a client");
        let (mut client, mut server) = pair();
        client.send_prepared(&prepared).unwrap();
        let out = client.take_output();
        assert!(FrameHeader::parse(&out).unwrap().unwrap().0.mask.is_some());
        server.receive(&out);
        assert_eq!(
            events(&mut server),
            vec![Event::Message(prepared.to_message())]
        );
        server.close(None).unwrap();
        assert_eq!(server.send_prepared(&prepared), Err(SendError::Closed));
    }
}

mod budget {
    use super::*;
    use crate::budget::{MemoryBudget, FREE, GRANULE};
    use crate::deflate::{Compressor, DeflateParams};

    fn server(budget: &MemoryBudget, deflate: Option<DeflateParams>) -> Connection {
        let config = Config {
            memory_budget: Some(budget.clone()),
            ..Config::default()
        };
        Connection::new(Role::Server, &config, deflate)
    }

    #[test]
    fn small_messages_charge_nothing() {
        let budget = MemoryBudget::new(1 << 20);
        let mut s = server(&budget, None);
        s.receive(&raw(0x82, &[7u8; FREE], K));
        assert!(matches!(events(&mut s)[..], [Event::Message(_)]));
        s.send(Message::binary(vec![1u8; GRANULE - 100])).unwrap();
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.stats().holders, 0);
    }

    #[test]
    fn a_frame_that_would_pass_the_budget_is_refused_at_its_header() {
        let budget = MemoryBudget::new(1 << 20);
        let mut a = server(&budget, None);
        // A fragment of 600 KiB: charged from its header on, before its payload arrives.
        let first = raw(0x02, &vec![1u8; 600 << 10], K);
        a.receive(&first[..100]);
        assert_eq!(events(&mut a), vec![]);
        assert_eq!(budget.used(), 608 << 10, "in 16 KiB granules");
        assert!(
            !a.should_pause_reading(),
            "under three quarters of the budget"
        );
        // A second connection's 500 KiB frame does not fit: 1009 at once.
        let mut b = server(&budget, None);
        b.receive(&raw(0x82, &vec![2u8; 500 << 10], K)[..20]);
        let ev = events(&mut b);
        assert_eq!(ev[0], Event::Error(ProtocolError::OverBudget));
        assert_eq!(close_code_sent(&b.take_output()), Some(1009));
        assert_eq!(budget.stats().refused_messages, 1);
        assert_eq!(budget.used(), 608 << 10, "the refused one holds nothing");
        // The first completes; its charge ends when it is handed over.
        a.receive(&[&first[100..], &raw(0x80, &[3u8; 10], K)[..]].concat());
        match &events(&mut a)[..] {
            [Event::Message(Message::Binary(m))] => assert_eq!(m.len(), (600 << 10) + 10),
            other => panic!("{other:?}"),
        }
        // What stays charged is the read buffer's spare capacity, until it is released.
        assert_eq!(budget.used(), crate::budget::granules(a.rx.rbuf.capacity()));
        a.shrink_buffers();
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.stats().holders, 0);
    }

    #[test]
    fn the_biggest_holders_pause_under_pressure() {
        let budget = MemoryBudget::new(1 << 20);
        let mut big = server(&budget, None);
        big.receive(&raw(0x02, &vec![1u8; 700 << 10], K));
        assert_eq!(events(&mut big), vec![]);
        let mut small = server(&budget, None);
        small.receive(&raw(0x02, &vec![1u8; 100 << 10], K));
        assert_eq!(events(&mut small), vec![]);
        let idle = server(&budget, None);
        assert!(budget.under_pressure());
        assert!(big.should_pause_reading());
        assert!(!small.should_pause_reading(), "holds less than the average");
        assert!(!idle.should_pause_reading());
        drop(big);
        assert!(!budget.under_pressure());
        assert!(!small.should_pause_reading());
        drop(small);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn queued_output_is_charged_in_granules_until_written() {
        let budget = MemoryBudget::new(1 << 20);
        let mut s = server(&budget, None);
        s.send(Message::binary(vec![1u8; 100 << 10])).unwrap();
        let queued = s.buffered_amount();
        assert_eq!(budget.used(), queued / GRANULE * GRANULE);
        s.advance_output(queued - 1000);
        assert_eq!(budget.used(), 0, "less than one granule left");
        // Output is charged even past the limit (it is already held), and then counts.
        for _ in 0..12 {
            s.send(Message::binary(vec![1u8; 100 << 10])).unwrap();
        }
        assert!(budget.used() > budget.limit());
        assert!(!budget.admits_connections());
        drop(s);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn inflating_stops_where_the_budget_does() {
        // 8 MiB of zeros in one small frame; message limit 64 MiB, budget 1 MiB.
        let mut comp = Compressor::new(15, false, 9);
        let mut bomb = BytesMut::new();
        comp.compress(&vec![0u8; 8 << 20], &mut bomb).unwrap();
        let budget = MemoryBudget::new(1 << 20);
        let mut s = server(&budget, Some(DeflateParams::default()));
        s.receive(&raw(0xC2, &bomb, K));
        let ev = events(&mut s);
        assert_eq!(ev[0], Event::Error(ProtocolError::OverBudget));
        assert_eq!(close_code_sent(&s.take_output()), Some(1009));
        assert!(s.memory_usage() < 2 << 20, "{}", s.memory_usage());
        assert_eq!(budget.used(), 0);
        // A compressed message that fits is received, and leaves the inflate state
        // (kept for the next message, context takeover) charged.
        let mut ok = server(&budget, Some(DeflateParams::default()));
        let mut msg = BytesMut::new();
        Compressor::new(15, false, 6)
            .compress(&vec![5u8; 300 << 10], &mut msg)
            .unwrap();
        ok.receive(&raw(0xC2, &msg, K));
        match &events(&mut ok)[..] {
            [Event::Message(Message::Binary(m))] => assert_eq!(m.len(), 300 << 10),
            other => panic!("{other:?}"),
        }
        let state = ok.rx.inflate_state();
        assert!(state > FREE, "{state}");
        assert_eq!(budget.used(), state);
        drop(ok);
        assert_eq!(budget.used(), 0);
    }
}
