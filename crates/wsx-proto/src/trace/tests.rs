//! The frame trace, in memory: both roles, both directions, every frame kind.

use super::*;
use crate::config::Config;
use crate::connection::{Connection, Event, MessageKind, Role};
use crate::deflate::{Compressor, DeflateConfig, DeflateParams};
use crate::frame::MAX_HEADER_LEN;
use crate::mask::apply_mask;
use crate::message::Message;
use bytes::BytesMut;

fn config(deflate: bool) -> Config {
    Config {
        deflate: deflate.then(|| DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        }),
        ..Config::default()
    }
}

/// A client and a server, both tracing with `trace`.
fn traced_pair(deflate: bool, trace: TraceConfig) -> (Connection, Connection) {
    let cfg = config(deflate);
    let params = deflate.then(DeflateParams::default);
    let mut c = Connection::new(Role::Client, &cfg, params);
    let mut s = Connection::new(Role::Server, &cfg, params);
    c.set_frame_trace(Some(trace));
    s.set_frame_trace(Some(trace));
    (c, s)
}

fn pair() -> (Connection, Connection) {
    traced_pair(false, TraceConfig::default())
}

/// Moves `from`'s output to `to` and processes it.
fn pump(from: &mut Connection, to: &mut Connection) -> Vec<Event> {
    let out = from.take_output();
    to.receive(&out);
    std::iter::from_fn(|| to.poll_event()).collect()
}

fn traces(c: &mut Connection) -> Vec<FrameTrace> {
    c.take_frame_traces().collect()
}

/// (direction, opcode, fin) of each record.
fn shape(t: &[FrameTrace]) -> Vec<(Direction, OpCode, bool)> {
    t.iter()
        .map(|t| (t.direction, t.header.opcode, t.header.fin))
        .collect()
}

/// A raw frame; `first_byte` holds FIN, RSV and opcode.
fn raw(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let h = FrameHeader {
        mask,
        ..FrameHeader::new(true, OpCode::Binary, payload.len() as u64)
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    let mut out = head[..n].to_vec();
    out[0] = first_byte;
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = mask {
        apply_mask(&mut out[start..], k);
    }
    out
}

const K: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

use Direction::{Incoming as In, Outgoing as Out};

#[test]
fn off_by_default_and_off_records_nothing() {
    let cfg = config(true);
    let p = Some(DeflateParams::default());
    let mut c = Connection::new(Role::Client, &cfg, p);
    let mut s = Connection::new(Role::Server, &cfg, p);
    assert!(!c.frame_trace_enabled());
    c.send(Message::text("hello".repeat(10))).unwrap();
    c.send(Message::Ping(Bytes::from_static(b"p"))).unwrap();
    pump(&mut c, &mut s);
    pump(&mut s, &mut c);
    s.receive(&raw(0xA2, b"x", K)); // RSV2: rejected
    pump(&mut s, &mut c);
    for conn in [&mut c, &mut s] {
        assert_eq!(conn.take_frame_traces().count(), 0);
        assert_eq!(conn.frame_traces_dropped(), 0);
    }
    // Turned on, then off again: nothing more is recorded, and what was not taken is gone.
    let (mut c, mut s) = pair();
    c.send(Message::text("a")).unwrap();
    c.set_frame_trace(None);
    c.send(Message::text("b")).unwrap();
    pump(&mut c, &mut s);
    assert!(!c.frame_trace_enabled());
    assert_eq!(c.take_frame_traces().count(), 0);
    assert_eq!(traces(&mut s).len(), 2, "the server still traces");
}

#[test]
fn text_and_binary_both_directions_and_roles() {
    let (mut c, mut s) = pair();
    c.send(Message::text("hello")).unwrap();
    c.send(Message::binary(vec![0u8, 1, 0xFF])).unwrap();
    let wire = c.output().to_vec();
    let ev = pump(&mut c, &mut s);
    assert_eq!(ev.len(), 2);
    s.send(Message::text("back")).unwrap();
    pump(&mut s, &mut c);

    let ct = traces(&mut c);
    assert_eq!(
        shape(&ct),
        [
            (Out, OpCode::Text, true),
            (Out, OpCode::Binary, true),
            (In, OpCode::Text, true)
        ]
    );
    // Client frames are masked, with the key that is on the wire; previews are unmasked.
    let (on_wire, _) = FrameHeader::parse(&wire).unwrap().unwrap();
    assert!(ct[0].masked() && ct[1].masked());
    assert_eq!(ct[0].header.mask, on_wire.mask);
    assert_eq!(&ct[0].preview[..], b"hello");
    assert_eq!(&ct[1].preview[..], &[0, 1, 0xFF]);
    assert_eq!(ct[0].header.payload_len, 5);
    assert_eq!(ct[0].wire_len(), 2 + 4 + 5);
    assert!(!ct[2].masked());
    assert_eq!(&ct[2].preview[..], b"back");
    for t in &ct {
        assert_eq!(t.uncompressed_len, None);
        assert_eq!(t.close, None);
        assert_eq!(t.rejected, None);
        assert!(!t.compressed() && !t.header.rsv2 && !t.header.rsv3);
        assert!(!t.preview_truncated());
    }
    assert!(ct
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));

    let st = traces(&mut s);
    assert_eq!(
        shape(&st),
        [
            (In, OpCode::Text, true),
            (In, OpCode::Binary, true),
            (Out, OpCode::Text, true)
        ]
    );
    // The server sees the client's masking key and shows the unmasked payload.
    assert_eq!(st[0].header.mask, ct[0].header.mask);
    assert_eq!(st[1].header.mask, ct[1].header.mask);
    assert_eq!(&st[0].preview[..], b"hello");
    assert_eq!(&st[1].preview[..], &[0, 1, 0xFF]);
    assert!(!st[2].masked());
}

#[test]
fn fragmented_message_both_ways() {
    let (mut c, mut s) = pair();
    c.send_fragment(MessageKind::Text, b"hel", false).unwrap();
    c.send(Message::Ping(Bytes::from_static(b"mid"))).unwrap();
    c.send_fragment(MessageKind::Text, b"lo", true).unwrap();
    pump(&mut c, &mut s);
    s.send_fragment(MessageKind::Binary, b"ab", false).unwrap();
    s.send_fragment(MessageKind::Binary, b"c", true).unwrap();
    pump(&mut s, &mut c);
    let expect_client = [
        (Out, OpCode::Text, false),
        (Out, OpCode::Ping, true),
        (Out, OpCode::Continuation, true),
        (In, OpCode::Pong, true),
        (In, OpCode::Binary, false),
        (In, OpCode::Continuation, true),
    ];
    let ct = traces(&mut c);
    assert_eq!(shape(&ct), expect_client);
    let st = traces(&mut s);
    assert_eq!(
        shape(&st),
        [
            (In, OpCode::Text, false),
            (In, OpCode::Ping, true),
            (Out, OpCode::Pong, true),
            (In, OpCode::Continuation, true),
            (Out, OpCode::Binary, false),
            (Out, OpCode::Continuation, true),
        ]
    );
    assert_eq!(&st[0].preview[..], b"hel");
    assert_eq!(&st[3].preview[..], b"lo");
    assert_eq!(&ct[4].preview[..], b"ab");
    assert_eq!(&ct[5].preview[..], b"c");
}

#[test]
fn compressed_messages_show_uncompressed_size_and_bytes() {
    let (mut c, mut s) = traced_pair(true, TraceConfig::default());
    let text = "compress me please ".repeat(20);
    c.send(Message::text(text.as_str())).unwrap();
    pump(&mut c, &mut s);
    s.send(Message::text(text.as_str())).unwrap();
    pump(&mut s, &mut c);
    let ct = traces(&mut c);
    let st = traces(&mut s);
    for (out, inn) in [(&ct[0], &st[0]), (&st[1], &ct[1])] {
        assert_eq!((out.direction, inn.direction), (Out, In));
        for t in [out, inn] {
            assert!(t.compressed(), "{t:?}");
            assert_eq!(t.uncompressed_len, Some(text.len() as u64));
            assert!(t.header.payload_len < text.len() as u64 / 4, "{t:?}");
            assert_eq!(&t.preview[..], &text.as_bytes()[..32]);
            assert!(t.preview_truncated());
        }
    }
    assert!(ct[0].masked() && !st[1].masked());
}

#[test]
fn fragmented_compressed_message_is_inflated_per_frame() {
    for streaming in [false, true] {
        let cfg = Config {
            streaming,
            ..config(true)
        };
        let mut s = Connection::new(Role::Server, &cfg, Some(DeflateParams::default()));
        s.set_frame_trace(Some(TraceConfig::default()));
        let text = "abcdefgh".repeat(1000);
        let mut comp = Compressor::new(15, false, 6);
        let mut deflated = BytesMut::new();
        comp.compress(text.as_bytes(), &mut deflated).unwrap();
        let (a, b) = deflated.split_at(deflated.len() / 2);
        s.receive(&[raw(0x41, a, K), raw(0x80, b, K)].concat());
        while s.poll_event().is_some() {}
        let st = traces(&mut s);
        assert_eq!(
            shape(&st),
            [(In, OpCode::Text, false), (In, OpCode::Continuation, true)]
        );
        assert!(st[0].compressed() && !st[1].compressed());
        let (n0, n1) = (
            st[0].uncompressed_len.unwrap(),
            st[1].uncompressed_len.unwrap(),
        );
        assert_eq!(n0 + n1, text.len() as u64, "streaming {streaming}");
        assert!(n0 > 0, "the first half inflates to something");
        assert_eq!(&st[0].preview[..], &text.as_bytes()[..32]);
        let off = n0 as usize;
        let want = &text.as_bytes()[off..(off + 32).min(text.len())];
        assert_eq!(&st[1].preview[..], want);
    }
}

#[test]
fn ping_pong_and_close_both_ways() {
    let (mut c, mut s) = pair();
    c.send(Message::Ping(Bytes::from_static(b"are you there")))
        .unwrap();
    pump(&mut c, &mut s);
    pump(&mut s, &mut c);
    s.send(Message::Ping(Bytes::from_static(b"and you?")))
        .unwrap();
    pump(&mut s, &mut c);
    pump(&mut c, &mut s);
    c.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
        .unwrap();
    pump(&mut c, &mut s);
    pump(&mut s, &mut c);
    let ct = traces(&mut c);
    let st = traces(&mut s);
    assert_eq!(
        shape(&ct),
        [
            (Out, OpCode::Ping, true),
            (In, OpCode::Pong, true),
            (In, OpCode::Ping, true),
            (Out, OpCode::Pong, true),
            (Out, OpCode::Close, true),
            (In, OpCode::Close, true),
        ]
    );
    assert_eq!(
        shape(&st),
        [
            (In, OpCode::Ping, true),
            (Out, OpCode::Pong, true),
            (Out, OpCode::Ping, true),
            (In, OpCode::Pong, true),
            (In, OpCode::Close, true),
            (Out, OpCode::Close, true),
        ]
    );
    assert_eq!(&ct[1].preview[..], b"are you there");
    assert_eq!(&st[1].preview[..], b"are you there");
    assert_eq!(&ct[3].preview[..], b"and you?");
    assert!(ct[3].masked(), "the client's pong reply is masked");
    let bye = Some(CloseFrame::new(CloseCode::NORMAL, "bye"));
    assert_eq!(ct[4].close, bye);
    assert_eq!(st[4].close, bye);
    // The echo carries the code only.
    let echo = Some(CloseFrame::new(CloseCode::NORMAL, ""));
    assert_eq!(st[5].close, echo);
    assert_eq!(ct[5].close, echo);
    assert!(ct.iter().chain(&st).all(|t| t.rejected.is_none()));
}

#[test]
fn preview_is_bounded() {
    let (mut c, mut s) = pair();
    let big: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    c.send(Message::binary(big.clone())).unwrap();
    pump(&mut c, &mut s);
    let t = &traces(&mut s)[0];
    assert_eq!(&t.preview[..], &big[..32]);
    assert_eq!(t.header.payload_len, 100_000);
    assert!(t.preview_truncated());

    let small = TraceConfig {
        preview_len: 4,
        ..TraceConfig::default()
    };
    let (mut c, mut s) = traced_pair(false, small);
    c.send(Message::text("abcdefgh")).unwrap();
    c.close(Some(CloseFrame::new(
        CloseCode::GOING_AWAY,
        "a long reason",
    )))
    .unwrap();
    pump(&mut c, &mut s);
    let st = traces(&mut s);
    assert_eq!(&st[0].preview[..], b"abcd");
    assert_eq!(st[1].preview.len(), 4);
    // The close code and reason are decoded whatever the preview length.
    assert_eq!(
        st[1].close,
        Some(CloseFrame::new(CloseCode::GOING_AWAY, "a long reason"))
    );
    let none = TraceConfig {
        preview_len: 0,
        ..TraceConfig::default()
    };
    let (mut c, _) = traced_pair(false, none);
    c.send(Message::text("abc")).unwrap();
    assert!(traces(&mut c)[0].preview.is_empty());
}

#[test]
fn queue_is_bounded_and_counts_drops() {
    let cap = TraceConfig {
        capacity: 3,
        ..TraceConfig::default()
    };
    let (mut c, mut s) = traced_pair(false, cap);
    for i in 0..10u8 {
        c.send(Message::binary(vec![i])).unwrap();
    }
    pump(&mut c, &mut s);
    assert_eq!(c.frame_traces_dropped(), 7);
    assert_eq!(s.frame_traces_dropped(), 7);
    let ct = traces(&mut c);
    // The oldest were dropped: the newest three remain, with their sequence numbers.
    assert_eq!(
        ct.iter().map(|t| (t.seq, t.preview[0])).collect::<Vec<_>>(),
        [(7, 7), (8, 8), (9, 9)]
    );
    assert_eq!(traces(&mut s).len(), 3);
    // Draining makes room again; the count stays.
    c.send(Message::binary(vec![10])).unwrap();
    assert_eq!(traces(&mut c).len(), 1);
    assert_eq!(c.frame_traces_dropped(), 7);
    // A capacity of 0 keeps one record.
    let zero = TraceConfig {
        capacity: 0,
        ..TraceConfig::default()
    };
    let (mut c, _) = traced_pair(false, zero);
    c.send(Message::text("a")).unwrap();
    c.send(Message::text("b")).unwrap();
    assert_eq!(traces(&mut c).len(), 1);
    assert_eq!(c.frame_traces_dropped(), 1);
}

#[test]
fn rejected_header_is_traced_with_its_payload() {
    let (_, mut s) = pair();
    s.receive(&raw(0xA2, b"hi", K)); // FIN, RSV2, binary
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(ev[0], Event::Error(ProtocolError::ReservedBits));
    let st = traces(&mut s);
    assert_eq!(
        shape(&st),
        [(In, OpCode::Binary, true), (Out, OpCode::Close, true)]
    );
    assert_eq!(st[0].rejected, Some(ProtocolError::ReservedBits));
    assert!(st[0].header.rsv2 && !st[0].header.rsv1);
    assert_eq!(st[0].header.mask, K);
    assert_eq!(&st[0].preview[..], b"hi", "unmasked");
    // The failure close frame that followed.
    assert_eq!(st[1].close.as_ref().map(|f| f.code), Some(CloseCode(1002)));

    // An unmasked frame to a server; a header that arrived without its payload.
    let (_, mut s) = pair();
    let mut bytes = raw(0x81, b"hello", None);
    bytes.truncate(4);
    s.receive(&bytes);
    while s.poll_event().is_some() {}
    let st = traces(&mut s);
    assert_eq!(st[0].rejected, Some(ProtocolError::UnmaskedFrame));
    assert_eq!(&st[0].preview[..], b"he");
    assert_eq!(st[0].header.payload_len, 5);

    // A header that does not decode at all is not a frame: nothing to trace but our close.
    let (_, mut s) = pair();
    s.receive(&raw(0x83, b"", K));
    while s.poll_event().is_some() {}
    assert_eq!(shape(&traces(&mut s)), [(Out, OpCode::Close, true)]);
}

#[test]
fn rejected_payloads_are_traced() {
    // Invalid UTF-8 found while the payload arrives.
    let (_, mut s) = pair();
    s.receive(&raw(0x81, b"ok\xFF", K));
    while s.poll_event().is_some() {}
    let st = traces(&mut s);
    assert_eq!(st[0].rejected, Some(ProtocolError::InvalidUtf8));
    assert_eq!(&st[0].preview[..], b"ok\xFF");
    assert_eq!(st[1].close.as_ref().map(|f| f.code), Some(CloseCode(1007)));

    // A close code that may not be sent: rejected, the code is still shown.
    let (_, mut s) = pair();
    s.receive(&raw(0x88, &[0x03, 0xED, b'x'], K)); // 1005
    while s.poll_event().is_some() {}
    let st = traces(&mut s);
    assert_eq!(st[0].rejected, Some(ProtocolError::InvalidCloseCode(1005)));
    assert_eq!(st[0].close, Some(CloseFrame::new(CloseCode(1005), "x")));

    // Corrupt compressed data: the preview shows the bytes as received.
    let cfg = config(true);
    let mut s = Connection::new(Role::Server, &cfg, Some(DeflateParams::default()));
    s.set_frame_trace(Some(TraceConfig::default()));
    s.receive(&raw(0xC2, &[0xFF, 0xFF, 0xFF], K));
    while s.poll_event().is_some() {}
    let st = traces(&mut s);
    assert_eq!(st[0].rejected, Some(ProtocolError::CorruptCompressedData));
    assert!(st[0].compressed());
    assert_eq!(st[0].uncompressed_len, None);
    assert_eq!(&st[0].preview[..], &[0xFF, 0xFF, 0xFF]);
}

#[test]
fn split_halves_keep_tracing_in_one_sequence() {
    let (c, mut s) = pair();
    let (mut rx, mut tx) = c.split();
    tx.send(Message::text("one")).unwrap();
    s.receive(&tx.take_output());
    while s.poll_event().is_some() {}
    s.send(Message::text("two")).unwrap();
    rx.receive(&s.take_output());
    while rx.poll_event().is_some() {}
    let out = tx.pop_frame_trace().unwrap();
    let inn = rx.pop_frame_trace().unwrap();
    assert_eq!((out.direction, out.seq), (Out, 0));
    assert_eq!((inn.direction, inn.seq), (In, 1));
    assert!(tx.pop_frame_trace().is_none() && rx.pop_frame_trace().is_none());
    assert_eq!(rx.frame_traces_dropped() + tx.frame_traces_dropped(), 0);
}
