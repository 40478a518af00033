//! The whole connection state machine, in either role, with and without permessage-deflate,
//! in whole-message and streaming mode, fed arbitrary bytes and well-formed frames while the
//! application sends, closes, aborts, splits and joins.
//!
//! Limits: max_message_size 64 KiB, max_frame_size 32 KiB, max_fragments 64.
//!
//! Input: two setup bytes, then operations until the input is used up.
//! - byte 0: bit 0 role (0 server, 1 client); bit 1 deflate negotiated; bit 2 streaming;
//!   bit 3 server_no_context_takeover; bit 4 client_no_context_takeover; bit 5 compression
//!   threshold 0 (else 200); bits 6-7 our compression level (1, 0, 6, 9).
//! - byte 1: server_max_window_bits = 8 + (b & 7), client_max_window_bits = 8 + (b >> 3 & 7).
//! - operations, `op % 16`:
//!   - 0 `n:u8 bytes` / 1 `n:u16 bytes`: raw bytes into `receive`;
//!   - 2 `b0 b1 n:u8 payload`: one frame, first header byte `b0`, masked as the role
//!     expects (inverted when `b1` bit 0), delivered in two pieces split at `b1 >> 1`;
//!   - 3 / 4 `ctl len:u16 data`: a data message from a well-behaved peer, compressed with the
//!     peer's compressor (3; with RSV1 even if deflate is off) or not (4); `ctl` bit 0 text,
//!     bits 1-3 the number of frames (1, 2, 3, 4, 6, 8, 64, 65), bit 4 a ping between the
//!     first two frames, bit 5 make the text valid UTF-8, bits 6-7 repeat `data` 1, 2, 4 or
//!     8 times;
//!   - 5 `t n:u8 data`: `send` (t % 6: text, binary, ping, pong, close with code `u16` read
//!     before `n`, uncompressed text);
//!   - 6 `t n:u8 data`: `send_fragment` (t bit 0 text, bit 1 fin);
//!   - 7: `take_output`; 8 `n:u16`: write `n` bytes (`output` + `advance_output`);
//!   - 9 `code:u16 n:u8 reason`: `close` (code 0: no status); 10 `code:u16 n:u8 reason`: `abort`;
//!   - 11 `n:u8 bytes t`: `split`, receive `bytes` and poll on the receiver, move replies with
//!     `take_reply` / `reply`, send a text if `t` bit 0, `join`;
//!   - 12: `shrink_buffers`; 13: `receive_eof`; 14 `n:u8 bytes`: append to `read_buf`;
//!   - 15: just poll.
//!
//! Events are drained after every operation; at the end the stream ends (`receive_eof`).
//!
//! Invariants:
//! - no panic; `memory_usage()` stays below 16 MiB;
//! - events: a `Closed` event comes last and exactly when `state()` becomes `Closed`; an
//!   `Error` is followed by `Closed` with the error's close code; a received `Close` by a
//!   clean `Closed`; text is valid UTF-8; messages and fragment sums are within the limits;
//!   whole messages in whole-message mode, fragments (correctly flagged) in streaming mode;
//! - `state()` is Open / Closing / Closed exactly as the close frames sent and received say;
//!   after `receive_eof` and draining it is `Closed`;
//! - while the byte stream is known to be in sync (only operations 2-4 so far), a
//!   well-formed message is delivered intact (with any interleaved ping), and an invalid one
//!   fails with the right close code (1002 / 1007 / 1008 / 1009);
//! - send results: `Closed` after a close, `FragmentInProgress`, `ControlFrameTooLong`,
//!   `InvalidCloseCode` for codes not allowed on the wire, `InvalidUtf8` exactly when the text
//!   fragments so far are no valid UTF-8 prefix;
//! - the output is a sequence of complete, well-formed frames: unmasked from a server, masked
//!   from a client; no RSV2/RSV3; RSV1 only on the first frame of a data message and only
//!   with deflate; control frames final and at most 125 bytes; correct fragmentation; every
//!   message sent comes out, in order and intact (inflated with the peer's decompressor);
//!   the first close frame is the one expected (ours, the echo of the peer's code, or the
//!   failure code), its code allowed on the wire (never 1005 / 1006 / 1015) with a UTF-8
//!   reason, and nothing follows it.
#![no_main]

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wsx_fuzz::Cursor;
use wsx_proto::close::{CloseCode, CloseFrame};
use wsx_proto::deflate::{Compressor, Decompressor, DeflateConfig, DeflateParams};
use wsx_proto::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use wsx_proto::mask::apply_mask;
use wsx_proto::{
    CloseEvent, Config, Connection, Event, Message, MessageKind, Role, SendError, State,
};

const MAX_MESSAGE: usize = 64 * 1024;
const MAX_FRAME: usize = 32 * 1024;
const MAX_FRAGMENTS: usize = 64;
const MEMORY_LIMIT: usize = 16 << 20;

/// `WSX_FUZZ_TRACE=1` prints the operations and events (for triaging a crash input).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("WSX_FUZZ_TRACE").is_some())
}

/// (valid prefix of some UTF-8 text, ends inside a code point)
fn utf8_prefix(b: &[u8]) -> (bool, bool) {
    match std::str::from_utf8(b) {
        Ok(_) => (true, false),
        Err(e) if e.error_len().is_none() => (true, true),
        Err(_) => (false, false),
    }
}

fn cut_points(n: usize, len: usize, data: &[u8]) -> Vec<(usize, usize)> {
    let mut cuts: Vec<usize> = (0..n.saturating_sub(1))
        .map(|i| usize::from(*data.get(i).unwrap_or(&0)) * len / 255)
        .collect();
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for c in cuts {
        out.push((start, c));
        start = c;
    }
    out.push((start, len));
    out
}

/// Decodes and checks everything the connection writes, as its peer would.
struct Wire {
    role: Role,
    deflate: bool,
    buf: Vec<u8>,
    pos: usize,
    inflate: Option<Decompressor>,
    /// Data message being reassembled: kind, compressed, bytes.
    msg: Option<(MessageKind, bool, BytesMut)>,
    /// The first close frame: `Some(None)` for an empty one.
    close: Option<Option<u16>>,
}

impl Wire {
    fn push(&mut self, bytes: &[u8], h: &mut Expect) {
        self.buf.extend_from_slice(bytes);
        loop {
            let rest = &self.buf[self.pos..];
            let (header, n) = match FrameHeader::parse(rest) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => panic!("our output has a bad frame header: {e:?}"),
            };
            let len = usize::try_from(header.payload_len).expect("length");
            if rest.len() < n + len {
                break;
            }
            let mut payload = rest[n..n + len].to_vec();
            self.pos += n + len;
            self.frame(header, &mut payload, h);
        }
        // Keep memory flat for long runs.
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    fn frame(&mut self, header: FrameHeader, payload: &mut [u8], h: &mut Expect) {
        if trace() {
            eprintln!("  wire {header:?}");
        }
        assert!(
            self.close.is_none(),
            "frame {header:?} after our close frame"
        );
        match (self.role, header.mask) {
            (Role::Server, Some(_)) => panic!("server output is masked"),
            (Role::Client, None) => panic!("client output is not masked"),
            (_, Some(key)) => apply_mask(payload, key),
            _ => {}
        }
        assert!(!header.rsv2 && !header.rsv3, "RSV2/RSV3 in our output");
        if header.opcode.is_control() {
            assert!(header.fin, "fragmented control frame in our output");
            assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
            assert!(!header.rsv1, "RSV1 on a control frame");
        }
        match header.opcode {
            OpCode::Close => {
                let code = match payload.len() {
                    0 => None,
                    1 => panic!("1-byte close payload in our output"),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        assert!(
                            CloseCode(code).is_allowed_on_wire(),
                            "close code {code} on the wire"
                        );
                        assert!(
                            std::str::from_utf8(&payload[2..]).is_ok(),
                            "close reason not UTF-8"
                        );
                        Some(code)
                    }
                };
                match h.close {
                    Some(expected) => assert_eq!(code, expected, "first close frame"),
                    None => panic!("close frame {code:?} that nothing asked for"),
                }
                self.close = Some(code);
            }
            OpCode::Ping | OpCode::Pong => {}
            OpCode::Text | OpCode::Binary => {
                assert!(
                    self.msg.is_none(),
                    "new data message inside a fragmented one"
                );
                assert!(!header.rsv1 || self.deflate, "RSV1 without deflate");
                let kind = if header.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                self.msg = Some((kind, header.rsv1, BytesMut::new()));
                self.data(header.fin, payload, h);
            }
            OpCode::Continuation => {
                assert!(self.msg.is_some(), "continuation without a message");
                assert!(!header.rsv1, "RSV1 on a continuation frame");
                self.data(header.fin, payload, h);
            }
        }
    }

    fn data(&mut self, fin: bool, payload: &[u8], h: &mut Expect) {
        let (kind, compressed, buf) = self.msg.as_mut().expect("message");
        if *compressed {
            let d = self.inflate.as_mut().expect("deflate");
            d.decompress(payload, fin, buf, 1 << 30)
                .unwrap_or_else(|e| panic!("our compressed output does not inflate: {e:?}"));
        } else {
            buf.extend_from_slice(payload);
        }
        if !fin {
            return;
        }
        let kind = *kind;
        let (_, _, data) = self.msg.take().expect("message");
        if kind == MessageKind::Text {
            assert!(
                std::str::from_utf8(&data).is_ok(),
                "invalid UTF-8 text sent: {data:x?}"
            );
        }
        let (ekind, edata) = h.sent.pop_front().expect("a data message nobody sent");
        assert_eq!(kind, ekind, "sent message kind");
        assert!(
            data[..] == edata[..],
            "sent message changed: {data:x?} vs {edata:x?}"
        );
    }

    /// At the end of the output; `fragmenting` is the message still being sent with
    /// `send_fragment`, if any.
    fn finish(&self, fragmenting: Option<&(MessageKind, Vec<u8>)>) {
        assert_eq!(self.pos, self.buf.len(), "output ends inside a frame");
        match (&self.msg, fragmenting) {
            (Some((kind, _, data)), Some((fkind, fdata))) => {
                assert_eq!(kind, fkind);
                assert!(
                    data[..] == fdata[..],
                    "unfinished fragmented message differs"
                );
            }
            (Some(_), None) => {
                assert!(
                    self.close.is_some(),
                    "output ends inside a message without a close"
                )
            }
            (None, Some(_)) => panic!("fragments sent but not in the output"),
            (None, None) => {}
        }
    }
}

/// What the application side did that the output must reflect.
struct Expect {
    /// Data messages accepted by `send`/`send_fragment`, oldest first.
    sent: VecDeque<(MessageKind, Vec<u8>)>,
    /// The first close frame that must appear, once one was queued.
    close: Option<Option<u16>>,
}

/// What the event stream must look like next.
#[derive(Default)]
struct Events {
    closed: bool,
    /// The next event must be `Closed` with this code and cleanliness.
    next_closed: Option<(u16, bool)>,
    /// Streaming: the fragmented message being delivered.
    frag: Option<(MessageKind, Vec<u8>)>,
}

/// One thing the receiver delivered, for comparing with a message op's expectation.
#[derive(Debug, PartialEq)]
enum Got {
    Data(MessageKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Error(u16),
    Other,
}

struct Harness {
    conn: Option<Connection>,
    role: Role,
    streaming: bool,
    /// The peer's compressor, for the compressed messages we feed.
    peer_deflate: Option<Compressor>,
    events: Events,
    expect: Expect,
    wire: Wire,
    /// Whether the receiver's byte stream is known: only whole structured frames so far.
    in_sync: bool,
    /// A text/binary message being sent with `send_fragment`.
    fragmenting: Option<(MessageKind, Vec<u8>)>,
    /// A text fragment of the message in `fragmenting` was refused as invalid UTF-8.
    fragment_rejected: bool,
    /// A close frame was queued (tracks the sender's `close_sent`).
    close_queued: bool,
    mask_counter: u8,
    input_len: usize,
    events_seen: usize,
}

impl Harness {
    fn conn(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection")
    }

    /// Checks one event; `closed` and `close_event` are the receiver's state after it.
    fn on_event(
        &mut self,
        ev: &Event,
        closed: bool,
        close_event: Option<&CloseEvent>,
        got: &mut Vec<Got>,
    ) {
        if trace() {
            eprintln!("  event {ev:?}");
        }
        self.events_seen += 1;
        assert!(
            self.events_seen <= 32 * self.input_len + 64,
            "too many events"
        );
        assert!(!self.events.closed, "event {ev:?} after Closed");
        if let Some((code, clean)) = self.events.next_closed.take() {
            match ev {
                Event::Closed(ce) => {
                    assert_eq!((ce.code.0, ce.was_clean), (code, clean), "{ce:?}");
                }
                other => panic!("expected Closed({code}), got {other:?}"),
            }
        }
        match ev {
            Event::Error(e) => {
                let code = e.close_code().0;
                assert!(CloseCode(code).is_allowed_on_wire());
                assert!(closed, "Error without closing");
                self.events.next_closed = Some((code, false));
                if !self.close_queued {
                    self.close_queued = true;
                    self.expect.close = Some(Some(code));
                    self.fragmenting = None;
                }
                got.push(Got::Error(code));
            }
            Event::Message(Message::Close(f)) => {
                let code = match f {
                    Some(f) => {
                        assert!(f.code.is_allowed_on_wire(), "{f:?}");
                        assert!(f.reason.len() <= 123);
                        f.code.0
                    }
                    None => CloseCode::NO_STATUS.0,
                };
                assert!(closed, "close received but not closed");
                self.events.next_closed = Some((code, true));
                if !self.close_queued {
                    self.close_queued = true;
                    self.expect.close = Some(f.as_ref().map(|f| f.code.0));
                    self.fragmenting = None;
                }
                got.push(Got::Other);
            }
            Event::Message(Message::Ping(p)) => {
                assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                got.push(Got::Ping(p.to_vec()));
            }
            Event::Message(Message::Pong(p)) => {
                assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                got.push(Got::Pong(p.to_vec()));
            }
            Event::Message(Message::Text(t)) => {
                assert!(!self.streaming, "whole message in streaming mode");
                assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                assert!(t.len() <= MAX_MESSAGE);
                got.push(Got::Data(MessageKind::Text, t.as_bytes().to_vec()));
            }
            Event::Message(Message::Binary(b)) => {
                assert!(!self.streaming, "whole message in streaming mode");
                assert!(b.len() <= MAX_MESSAGE);
                got.push(Got::Data(MessageKind::Binary, b.to_vec()));
            }
            Event::Fragment(f) => {
                assert!(self.streaming, "fragment in whole-message mode");
                match &mut self.events.frag {
                    None => assert!(f.first, "first fragment not flagged first"),
                    Some((kind, _)) => {
                        assert!(!f.first, "fragment flagged first inside a message");
                        assert_eq!(*kind, f.kind);
                    }
                }
                let (kind, data) = self.events.frag.get_or_insert_with(|| (f.kind, Vec::new()));
                data.extend_from_slice(&f.data);
                assert!(
                    data.len() <= MAX_MESSAGE,
                    "fragments exceed the message limit"
                );
                if f.fin {
                    let (kind, data) = (*kind, std::mem::take(data));
                    self.events.frag = None;
                    if kind == MessageKind::Text {
                        assert!(
                            std::str::from_utf8(&data).is_ok(),
                            "streamed text not UTF-8"
                        );
                    }
                    got.push(Got::Data(kind, data));
                }
            }
            Event::Closed(ce) => {
                assert!(closed, "Closed event but the receiver is not closed");
                assert_eq!(close_event, Some(ce));
                if ce.was_clean {
                    assert!(
                        ce.code.is_allowed_on_wire() || ce.code == CloseCode::NO_STATUS,
                        "{ce:?}"
                    );
                }
                if ce.code == CloseCode::ABNORMAL {
                    assert!(!ce.was_clean);
                }
                self.events.closed = true;
                self.events.frag = None;
                got.push(Got::Other);
            }
            other => panic!("an event this harness does not know: {other:?}"),
        }
    }

    fn check_state(&mut self) {
        let c = self.conn.as_ref().expect("connection");
        let state = c.state();
        assert_eq!(
            state == State::Closed,
            self.events.closed,
            "state {state:?} vs Closed event"
        );
        if !self.events.closed {
            let expected = if self.close_queued {
                State::Closing
            } else {
                State::Open
            };
            assert_eq!(state, expected);
        }
        let mem = c.memory_usage();
        assert!(mem < MEMORY_LIMIT, "memory_usage {mem}");
    }

    fn drain(&mut self) -> Vec<Got> {
        let mut got = Vec::new();
        while let Some(ev) = self.conn().poll_event() {
            let c = self.conn.as_ref().expect("connection");
            let closed = c.state() == State::Closed;
            let ce = c.close_event().cloned();
            self.on_event(&ev, closed, ce.as_ref(), &mut got);
        }
        assert!(self.conn().poll_event().is_none());
        self.check_state();
        got
    }

    fn receive(&mut self, bytes: &[u8]) -> Vec<Got> {
        self.conn().receive(bytes);
        self.drain()
    }

    fn encode_frame(&mut self, b0: u8, wrong_mask: bool, payload: &[u8]) -> Vec<u8> {
        let masked = (self.role == Role::Server) != wrong_mask;
        self.mask_counter = self.mask_counter.wrapping_add(1);
        let key = [0x37, 0xfa, 0x21, self.mask_counter];
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode: OpCode::from_u8(b0 & 0x0F).unwrap_or(OpCode::Binary),
            mask: masked.then_some(key),
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let mut out = head[..n].to_vec();
        let start = out.len();
        out.extend_from_slice(payload);
        if masked {
            apply_mask(&mut out[start..], key);
        }
        if OpCode::from_u8(b0 & 0x0F).is_none() {
            out[0] = (out[0] & 0xF0) | (b0 & 0x0F); // keep a reserved opcode
        }
        out
    }

    fn can_expect(&mut self) -> bool {
        self.in_sync && !self.conn().stopped_reading() && self.conn().state() != State::Closed
    }

    /// Operation 2: one frame.
    fn op_frame(&mut self, input: &mut Cursor<'_>) {
        let b0 = input.u8();
        let b1 = input.u8();
        let n = usize::from(input.u8());
        let payload = input.bytes(n).to_vec();
        let wrong_mask = b1 & 1 != 0;
        let frame = self.encode_frame(b0, wrong_mask, &payload);
        let expect = self.can_expect();
        let op = b0 & 0x0F;
        let clean_control = !wrong_mask
            && b0 & 0xF0 == 0x80
            && (op == 0x9 || op == 0xA)
            && payload.len() <= MAX_CONTROL_PAYLOAD;
        let split = usize::from(b1 >> 1).min(frame.len());
        let mut got = self.receive(&frame[..split]);
        got.extend(self.receive(&frame[split..]));
        if expect && clean_control {
            let want = if op == 0x9 {
                Got::Ping(payload)
            } else {
                Got::Pong(payload)
            };
            assert_eq!(got, vec![want]);
        } else {
            self.in_sync = false;
        }
    }

    /// Operations 3 and 4: a data message from a well-behaved peer.
    fn op_message(&mut self, compress: bool, input: &mut Cursor<'_>) {
        let ctl = input.u8();
        let len = usize::from(input.u16());
        let raw = input.bytes(len);
        let kind = if ctl & 1 != 0 {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        let mut msg: Vec<u8> = if kind == MessageKind::Text && ctl & 0x20 != 0 {
            String::from_utf8_lossy(raw).into_owned().into_bytes()
        } else {
            raw.to_vec()
        };
        msg = msg.repeat(1 << (ctl >> 6));
        let nframes =
            [1, 2, 3, 4, 6, 8, MAX_FRAGMENTS, MAX_FRAGMENTS + 1][usize::from((ctl >> 1) & 7)];
        let ping = ctl & 0x10 != 0 && nframes >= 2;
        let negotiated = self.peer_deflate.is_some();
        let wire_payload: Vec<u8> = match (&mut self.peer_deflate, compress) {
            (Some(c), true) => {
                let mut out = BytesMut::new();
                c.compress(&msg, &mut out).expect("peer compress");
                out.to_vec()
            }
            _ => msg.clone(),
        };
        let pieces: Vec<Vec<u8>> = cut_points(nframes, wire_payload.len(), &msg)
            .into_iter()
            .map(|(a, b)| wire_payload[a..b].to_vec())
            .collect();

        // What the receiver must do with it: the close codes it may fail with (empty: deliver
        // the message). Headers are checked (frame size, fragment count, message size) before
        // the frame's payload (UTF-8 of uncompressed text); compressed data is checked as it
        // inflates, somewhere in the message.
        let mut codes: Vec<u16> = Vec::new();
        if compress && !negotiated {
            codes.push(1002);
        } else {
            let mut size = 0usize;
            let mut text = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                let header_error = if p.len() > MAX_FRAME {
                    Some(1009)
                } else if i + 1 > MAX_FRAGMENTS {
                    Some(1008)
                } else if !compress && size + p.len() > MAX_MESSAGE {
                    Some(1009)
                } else {
                    None
                };
                if let Some(code) = header_error {
                    codes.push(code);
                    break;
                }
                size += p.len();
                if kind == MessageKind::Text && !compress {
                    text.extend_from_slice(p);
                    let (ok, incomplete) = utf8_prefix(&text);
                    if !ok || (i + 1 == pieces.len() && incomplete) {
                        codes.push(1007);
                        break;
                    }
                }
            }
            if compress {
                if msg.len() > MAX_MESSAGE {
                    codes.push(1009);
                }
                if kind == MessageKind::Text && std::str::from_utf8(&msg).is_err() {
                    codes.push(1007);
                }
            }
        }

        let expect = self.can_expect();
        let mut got = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let fin = i + 1 == pieces.len();
            let mut b0 = if fin { 0x80 } else { 0 };
            if i == 0 {
                b0 |= if kind == MessageKind::Text { 0x1 } else { 0x2 };
                if compress {
                    b0 |= 0x40;
                }
            }
            let frame = self.encode_frame(b0, false, p);
            got.extend(self.receive(&frame));
            if i == 0 && ping {
                let frame = self.encode_frame(0x89, false, b"ping");
                got.extend(self.receive(&frame));
            }
        }
        if !expect {
            return;
        }
        if codes.is_empty() {
            let mut want = vec![Got::Data(kind, msg)];
            if ping {
                want.insert(0, Got::Ping(b"ping".to_vec()));
            }
            assert!(
                got == want,
                "message op (compress {compress}, {nframes} frames): got {got:?}"
            );
        } else {
            let err = got.iter().find_map(|g| match g {
                Got::Error(c) => Some(*c),
                _ => None,
            });
            let err = err.unwrap_or_else(|| panic!("expected an error {codes:?}, got {got:?}"));
            assert!(codes.contains(&err), "error {err}, expected {codes:?}");
            assert!(!got.iter().any(|g| matches!(g, Got::Data(..))));
            self.in_sync = false;
        }
    }

    /// Operation 5: `send`.
    fn op_send(&mut self, input: &mut Cursor<'_>) {
        let t = input.u8() % 6;
        let code = if t == 4 { input.u16() } else { 0 };
        let n = usize::from(input.u8());
        let data = input.bytes(n).to_vec();
        let closed = self.conn().state() == State::Closed;
        let text = String::from_utf8_lossy(&data).into_owned();
        let (msg, uncompressed) = match t {
            0 => (Message::text(text.clone()), false),
            1 => (Message::binary(data.clone()), false),
            2 => (Message::Ping(Bytes::from(data.clone())), false),
            3 => (Message::Pong(Bytes::from(data.clone())), false),
            4 => (
                Message::Close(
                    (code != 0).then(|| CloseFrame::new(CloseCode(code), text.as_str())),
                ),
                false,
            ),
            _ => (Message::text(text.clone()), true),
        };
        let r = if uncompressed {
            self.conn().send_uncompressed(msg)
        } else {
            self.conn().send(msg)
        };
        let expected: Result<(), SendError> = if closed {
            Err(SendError::Closed)
        } else if t == 4 {
            if code != 0 && !CloseCode(code).is_allowed_on_wire() {
                Err(SendError::InvalidCloseCode(code))
            } else {
                Ok(())
            }
        } else if self.close_queued {
            Err(SendError::Closed)
        } else if (t == 2 || t == 3) && data.len() > MAX_CONTROL_PAYLOAD {
            Err(SendError::ControlFrameTooLong)
        } else if (t < 2 || t == 5) && self.fragmenting.is_some() {
            Err(SendError::FragmentInProgress)
        } else {
            Ok(())
        };
        assert_eq!(r, expected, "send type {t}");
        if r.is_ok() {
            match t {
                0 | 5 => self
                    .expect
                    .sent
                    .push_back((MessageKind::Text, text.into_bytes())),
                1 => self.expect.sent.push_back((MessageKind::Binary, data)),
                4 if !self.close_queued => {
                    self.close_queued = true;
                    self.expect.close = Some((code != 0).then_some(code));
                    self.fragmenting = None;
                }
                _ => {}
            }
        }
    }

    /// Operation 6: `send_fragment`.
    fn op_send_fragment(&mut self, input: &mut Cursor<'_>) {
        let t = input.u8();
        let n = usize::from(input.u8());
        let data = input.bytes(n).to_vec();
        let kind = if t & 1 != 0 {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        let fin = t & 2 != 0;
        let closed = self.conn().state() == State::Closed;
        if self.fragmenting.is_none() {
            self.fragment_rejected = false;
        }
        let r = self.conn().send_fragment(kind, &data, fin);
        let mut all = match &self.fragmenting {
            Some((_, d)) => d.clone(),
            None => Vec::new(),
        };
        all.extend_from_slice(&data);
        let expected = if closed || self.close_queued {
            Err(SendError::Closed)
        } else if self.fragmenting.as_ref().is_some_and(|(k, _)| *k != kind) {
            Err(SendError::FragmentKindMismatch)
        } else if kind == MessageKind::Text && {
            let (ok, incomplete) = utf8_prefix(&all);
            !ok || (fin && incomplete)
        } {
            Err(SendError::InvalidUtf8)
        } else {
            Ok(())
        };
        // After a rejected text fragment a sender may either carry on as if it had not been
        // offered (the model above) or refuse the rest of the message; it may not accept
        // what would put invalid UTF-8 on the wire.
        let poisoned =
            self.fragment_rejected && expected.is_ok() && r == Err(SendError::InvalidUtf8);
        if !poisoned {
            assert_eq!(
                r, expected,
                "send_fragment({kind:?}, {data:x?}, fin {fin}) after {:x?}",
                self.fragmenting
            );
        }
        if r == Err(SendError::InvalidUtf8) && self.fragmenting.is_some() {
            self.fragment_rejected = true;
        }
        if r.is_ok() {
            if fin {
                self.fragmenting = None;
                self.expect.sent.push_back((kind, all));
            } else {
                self.fragmenting = Some((kind, all));
            }
        }
    }

    fn take_output(&mut self) {
        let out = self.conn().take_output();
        self.wire.push(&out, &mut self.expect);
    }

    fn write_output(&mut self, n: usize) {
        let c = self.conn.as_mut().expect("connection");
        let n = n.min(c.output().len());
        let bytes = c.output()[..n].to_vec();
        c.advance_output(n);
        self.wire.push(&bytes, &mut self.expect);
    }

    /// Operation 9: `close`.
    fn op_close(&mut self, input: &mut Cursor<'_>) {
        let code = input.u16();
        let n = usize::from(input.u8());
        let reason = String::from_utf8_lossy(input.bytes(n)).into_owned();
        let closed = self.conn().state() == State::Closed;
        let frame = (code != 0).then(|| CloseFrame::new(CloseCode(code), reason.as_str()));
        let r = self.conn().close(frame);
        if code != 0 && !CloseCode(code).is_allowed_on_wire() {
            assert_eq!(r, Err(SendError::InvalidCloseCode(code)));
            return;
        }
        assert_eq!(r, Ok(()));
        if !closed && !self.close_queued {
            self.close_queued = true;
            self.expect.close = Some((code != 0).then_some(code));
            self.fragmenting = None;
        }
    }

    /// Operation 10: `abort`.
    fn op_abort(&mut self, input: &mut Cursor<'_>) {
        let code = input.u16();
        let n = usize::from(input.u8());
        let reason = String::from_utf8_lossy(input.bytes(n)).into_owned();
        let closed = self.conn().state() == State::Closed;
        self.conn().abort(CloseCode(code), &reason);
        assert_eq!(self.conn().state(), State::Closed);
        if !closed {
            self.events.next_closed = Some((code, false));
            if CloseCode(code).is_allowed_on_wire() && !self.close_queued {
                self.close_queued = true;
                self.expect.close = Some(Some(code));
                self.fragmenting = None;
            }
        }
    }

    /// Operation 11: split, receive on the halves, join.
    fn op_split(&mut self, input: &mut Cursor<'_>) {
        let n = usize::from(input.u8());
        let bytes = input.bytes(n).to_vec();
        let t = input.u8();
        if !bytes.is_empty() {
            self.in_sync = false;
        }
        let conn = self.conn.take().expect("connection");
        let (mut rx, mut tx) = conn.split();
        rx.receive(&bytes);
        let mut got = Vec::new();
        while let Some(ev) = rx.poll_event() {
            let closed = rx.is_closed();
            let ce = rx.close_event().cloned();
            self.on_event(&ev, closed, ce.as_ref(), &mut got);
            while let Some(reply) = rx.take_reply() {
                tx.reply(reply);
            }
            assert!(!rx.has_reply());
        }
        if t & 1 != 0 {
            let r = tx.send(Message::text("split"));
            if self.close_queued {
                assert_eq!(r, Err(SendError::Closed));
            } else if self.fragmenting.is_some() {
                assert_eq!(r, Err(SendError::FragmentInProgress));
            } else {
                assert_eq!(r, Ok(()));
                self.expect
                    .sent
                    .push_back((MessageKind::Text, b"split".to_vec()));
            }
        }
        assert_eq!(tx.close_sent(), self.close_queued);
        self.conn = Some(Connection::join(rx, tx, &Config::default()));
        self.check_state();
    }
}

fn step(h: &mut Harness, op: u8, input: &mut Cursor<'_>) {
    if trace() {
        eprintln!(
            "op {} ({} input bytes left, state {:?})",
            op % 16,
            input.len(),
            h.conn().state()
        );
    }
    match op % 16 {
        code @ (0 | 1) => {
            let n = if code == 0 {
                usize::from(input.u8())
            } else {
                usize::from(input.u16())
            };
            let bytes = input.bytes(n);
            if !bytes.is_empty() {
                h.in_sync = false;
            }
            h.receive(bytes);
        }
        2 => h.op_frame(input),
        3 => h.op_message(true, input),
        4 => h.op_message(false, input),
        5 => h.op_send(input),
        6 => h.op_send_fragment(input),
        7 => h.take_output(),
        8 => {
            let n = usize::from(input.u16());
            h.write_output(n);
        }
        9 => h.op_close(input),
        10 => h.op_abort(input),
        11 => h.op_split(input),
        12 => h.conn().shrink_buffers(),
        13 => {
            h.conn().receive_eof();
            h.drain();
            assert_eq!(h.conn().state(), State::Closed, "not closed after EOF");
        }
        14 => {
            let n = usize::from(input.u8());
            let bytes = input.bytes(n);
            if !bytes.is_empty() {
                h.in_sync = false;
            }
            h.conn().read_buf().extend_from_slice(bytes);
        }
        _ => {}
    }
    h.drain();
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let setup = input.u8();
    let bits = input.u8();
    let role = if setup & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let is_server = role == Role::Server;
    let params = (setup & 2 != 0).then(|| DeflateParams {
        server_no_context_takeover: setup & 8 != 0,
        client_no_context_takeover: setup & 16 != 0,
        server_max_window_bits: 8 + (bits & 7),
        client_max_window_bits: 8 + ((bits >> 3) & 7),
    });
    let level = [1, 0, 6, 9][usize::from(setup >> 6)];
    let config = {
        let mut c = Config::default();
        c.max_message_size = MAX_MESSAGE;
        c.max_frame_size = MAX_FRAME;
        c.max_fragments = MAX_FRAGMENTS;
        c.streaming = setup & 4 != 0;
        c.deflate = Some({
            let mut c = DeflateConfig::default();
            c.level = level;
            c.threshold = if setup & 32 != 0 { 0 } else { 200 };
            c
        });
        c
    };
    let conn = Connection::new(role, &config, params);
    assert_eq!(conn.role(), role);
    assert_eq!(conn.state(), State::Open);
    assert_eq!(conn.is_compressed(), params.is_some());
    let mut h = Harness {
        conn: Some(conn),
        role,
        streaming: config.streaming,
        peer_deflate: params.map(|p| p.compressor(!is_server, 1)),
        events: Events::default(),
        expect: Expect {
            sent: VecDeque::new(),
            close: None,
        },
        wire: Wire {
            role,
            deflate: params.is_some(),
            buf: Vec::new(),
            pos: 0,
            inflate: params.map(|p| p.decompressor(!is_server)),
            msg: None,
            close: None,
        },
        in_sync: true,
        fragmenting: None,
        fragment_rejected: false,
        close_queued: false,
        mask_counter: 0,
        input_len: data.len(),
        events_seen: 0,
    };

    while !input.is_empty() {
        let op = input.u8();
        step(&mut h, op, &mut input);
    }

    // End of stream: the connection must end up CLOSED, and its output must be complete.
    h.conn().receive_eof();
    h.drain();
    assert_eq!(h.conn().state(), State::Closed, "not closed after EOF");
    assert!(h.conn().close_event().is_some());
    assert!(h.conn().send(Message::text("late")).is_err());
    h.take_output();
    assert!(h.conn().output().is_empty());
    h.wire.finish(h.fragmenting.as_ref());
    assert!(
        h.expect.sent.is_empty(),
        "sent messages missing from the output: {:?}",
        h.expect.sent.len()
    );
    if h.expect.close.is_some() {
        assert!(h.wire.close.is_some(), "queued close frame never written");
    }
});
