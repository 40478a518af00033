//! The connection state machine: bytes in, events out, bytes to send out, and the
//! connection's timers, with the time passed in.
//!
//! A [`Connection`] starts OPEN, after the opening handshake. See [`Connection`] for the
//! order in which an I/O layer calls it. The connection answers pings, echoes the peer's
//! close code to complete the close handshake, fails with the right close code on any
//! protocol violation, and runs keepalive, the idle timeout, the close timeout and the
//! write timeout; the application only sees [`Event`]s.

use crate::budget::{chargeable, granules, Account, MemoryBudget, GRANULE};
use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::deflate::{Compressor, Decompressor, DeflateError, DeflateParams};
use crate::error::{ProtocolError, SendError};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::mask::{apply_mask, apply_mask_at};
use crate::message::Message;
use crate::prepared::PreparedMessage;
use crate::trace::{pop_earliest, Direction, FrameTrace, TraceConfig, Tracer};
use crate::utf8::Utf8Bytes;
use crate::utf8::Utf8Validator;
use bytes::{Buf, Bytes, BytesMut};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod timer;
pub use timer::RELEASE_BUFFERS_AFTER;
use timer::{Seen, Timers};

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Masks what it sends; expects unmasked frames.
    Client,
    /// Expects masked frames; sends unmasked.
    Server,
}

/// Connection state, as in the browser's `WebSocket.readyState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// A close frame was sent or received; the close handshake is under way.
    Closing,
    /// The close handshake is complete, or the connection failed or was cut.
    Closed,
}

/// Kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// How the connection ended, like the browser's `CloseEvent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    /// The code from the peer's close frame; 1005 when it had none, 1006 when the
    /// connection was cut without a close frame; the code we sent when we failed it.
    pub code: CloseCode,
    /// The reason from the close frame (or a description of the failure).
    pub reason: String,
    /// True when the close handshake completed.
    pub was_clean: bool,
}

/// A piece of a message, in streaming mode ([`Config::streaming`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Kind of the message this belongs to.
    pub kind: MessageKind,
    /// The payload (decompressed). For text, the concatenation of a message's fragments is
    /// validated UTF-8; a single fragment may end inside a code point.
    pub data: Bytes,
    /// First fragment of the message.
    pub first: bool,
    /// Last fragment of the message.
    pub fin: bool,
}

/// Something that happened on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete message, or a control frame (already answered).
    Message(Message),
    /// A piece of a data message (streaming mode only).
    Fragment(Fragment),
    /// The peer broke the protocol; a close frame with the matching code was queued and the
    /// connection is CLOSED (write the output, then close the transport).
    Error(ProtocolError),
    /// The connection reached CLOSED. Always the last event.
    Closed(CloseEvent),
}

/// The frame whose header has been read, while its payload arrives: the header's fields
/// stored flat, the yes/no ones as bits of one byte (24 bytes, also as an `Option`, where a
/// `FrameHeader` inside would take 40: every connection's state is sized for it).
struct PartialFrame {
    /// Payload length (`check_header` bounded it by `max_frame_size`, so it fits `usize`).
    len: usize,
    /// Payload bytes already unmasked (and UTF-8 checked when that applies).
    done: usize,
    /// The masking key; meaningful only with [`PartialFrame::MASKED`] set.
    mask: [u8; 4],
    opcode: OpCode,
    /// FIN, RSV1-3, masked, and whether the payload is checked as text: the bits named by
    /// the constants below.
    bits: u8,
}

impl PartialFrame {
    /// Final fragment of a message.
    const FIN: u8 = 1 << 0;
    /// RSV1 (permessage-deflate: a compressed message).
    const RSV1: u8 = 1 << 1;
    /// RSV2.
    const RSV2: u8 = 1 << 2;
    /// RSV3.
    const RSV3: u8 = 1 << 3;
    /// The payload is masked with [`PartialFrame::mask`].
    const MASKED: u8 = 1 << 4;
    /// Payload bytes to check as text as they arrive.
    const CHECK_TEXT: u8 = 1 << 5;

    fn new(h: &FrameHeader, check_text: bool) -> Self {
        let bit = |on: bool, bit: u8| if on { bit } else { 0 };
        PartialFrame {
            len: h.payload_len as usize,
            done: 0,
            mask: h.mask.unwrap_or_default(),
            opcode: h.opcode,
            bits: bit(h.fin, Self::FIN)
                | bit(h.rsv1, Self::RSV1)
                | bit(h.rsv2, Self::RSV2)
                | bit(h.rsv3, Self::RSV3)
                | bit(h.mask.is_some(), Self::MASKED)
                | bit(check_text, Self::CHECK_TEXT),
        }
    }

    /// Whether `bit` (one of the `PartialFrame::FIN`... constants) is set.
    #[inline]
    fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// The masking key, when the frame is masked.
    #[inline]
    fn mask(&self) -> Option<[u8; 4]> {
        self.has(Self::MASKED).then_some(self.mask)
    }

    /// Whether the payload is checked as text as it arrives.
    #[inline]
    fn check_text(&self) -> bool {
        self.has(Self::CHECK_TEXT)
    }

    fn header(&self) -> FrameHeader {
        FrameHeader {
            fin: self.has(Self::FIN),
            rsv1: self.has(Self::RSV1),
            rsv2: self.has(Self::RSV2),
            rsv3: self.has(Self::RSV3),
            opcode: self.opcode,
            mask: self.mask(),
            payload_len: self.len as u64,
        }
    }
}

struct Incoming {
    kind: MessageKind,
    compressed: bool,
    /// Reassembly buffer (empty for single-frame uncompressed messages and in streaming mode).
    buf: BytesMut,
    /// Bytes of the message so far (decompressed).
    size: usize,
    /// Frames of the message so far.
    frames: u32,
    first_delivered: bool,
}

/// What the receiver holds only now and then: the frames it owes the peer, how the
/// connection ended, and the frame trace. One box for all of them (allocated when the first
/// is needed, freed when none is left, except once the connection ended): a pointer in
/// every connection's state instead of one per field.
#[derive(Default)]
struct ReceiverAside {
    /// The latest unanswered ping's payload.
    pong: Option<Bytes>,
    /// The close frame owed to the peer (`Some(None)`: an empty close frame).
    reply: Option<Option<CloseFrame>>,
    /// How the connection ended.
    event: Option<CloseEvent>,
    /// The trace of received frames, while it is on.
    trace: Option<Tracer>,
}

impl ReceiverAside {
    /// Whether it holds nothing, so that the box can go.
    fn is_empty(&self) -> bool {
        self.pong.is_none() && self.reply.is_none() && self.event.is_none() && self.trace.is_none()
    }
}

/// A frame the receiving side owes the peer: the sending side writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer to a ping (only the latest unanswered ping is kept, RFC 6455 §5.5.3).
    Pong(Bytes),
    /// Close frame: the echo of the peer's close, or the failure code.
    Close(Option<CloseFrame>),
}

/// Do not turn more pongs into output while this much output is waiting: a peer that
/// floods pings and never reads gets only its latest ping answered.
const PONG_OUTPUT_LIMIT: usize = 64 * 1024;

/// The receiving side of a connection: parses frames, validates, reassembles and inflates
/// messages. Obtained from [`Connection::split`]; the frames it owes the peer (pongs, close
/// replies) are taken with [`Receiver::take_reply`] and given to [`Sender::reply`].
pub struct Receiver {
    role: Role,
    max_message_size: usize,
    max_frame_size: usize,
    /// `Config::max_fragments`, saturated to `u32` (a connection's state is kept small: every
    /// idle connection carries it).
    max_fragments: u32,
    streaming: bool,
    rbuf: BytesMut,
    frame: Option<PartialFrame>,
    incoming: Option<Incoming>,
    utf8: Utf8Validator,
    inflate: Option<Box<Inflate>>,
    close_received: bool,
    closed: bool,
    eof: bool,
    /// A `Closed` event (for `close_event`) is due after the event just returned.
    closed_pending: bool,
    /// The pong and close frame owed to the peer, how the connection ended and the frame
    /// trace, boxed together: all are rare, and one pointer keeps every connection's state
    /// small (see [`ReceiverAside`]). `None` while none of them is held.
    aside: Option<Box<ReceiverAside>>,
    /// What the message being received, the read buffer and the inflate state charge to
    /// the memory budget.
    account: Account,
}

/// The sending side of a connection: encodes, masks and compresses frames into an output
/// buffer. Obtained from [`Connection::split`].
pub struct Sender {
    role: Role,
    /// Encoded frames; `wbuf[wpos..]` is still to be written. Emptied (kept allocated) as
    /// soon as all of it is written, so the next frame starts at the front without a copy.
    wbuf: Vec<u8>,
    wpos: usize,
    sending: Option<MessageKind>,
    send_utf8: Utf8Validator,
    deflate: Option<Box<Deflate>>,
    close_sent: bool,
    /// Output queued by reference and the frame trace, boxed together: both are rare, and
    /// one pointer keeps every connection's state small (see [`SenderAside`]). `None` while
    /// neither is in use.
    aside: Option<Box<SenderAside>>,
    /// What queued output and the deflate state charge to the memory budget.
    account: Account,
}

/// Payloads at least this large are queued as they are (a reference to the message's
/// buffer) instead of being copied into the output buffer, when nothing has to change in
/// them on the way out: a server's uncompressed frames (a client masks its payload). The
/// I/O layer writes header and payload with one vectored write. Below it, copying the
/// payload (just unmasked, so in cache) costs about as much as a second I/O slice.
pub(crate) const ZERO_COPY_MIN: usize = 8 * 1024;

/// What the sender holds only now and then: output queued by reference and the frame
/// trace. One box for both (allocated on first use; dropped by [`Sender::shrink_buffers`]
/// or when the trace is turned off, once no output is queued and the trace is off): a
/// pointer in every connection's state instead of one per field.
#[derive(Default)]
struct SenderAside {
    /// Output that goes out before `wbuf`: large payloads queued without copying (see
    /// [`ZERO_COPY_MIN`]), with the frames before them.
    queued: Queued,
    /// The trace of sent frames, while it is on.
    trace: Option<Tracer>,
}

/// Chunks of output ahead of the output buffer.
#[derive(Default)]
struct Queued {
    chunks: std::collections::VecDeque<Chunk>,
    /// Their total length.
    len: usize,
}

/// A piece of queued output: a frame header kept inline (no allocation per frame), or
/// shared bytes (a payload, or output encoded before it).
enum Chunk {
    Head {
        bytes: [u8; MAX_HEADER_LEN],
        /// The header is `bytes[pos..end]`.
        pos: u8,
        end: u8,
    },
    Data(Bytes),
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Head { bytes, pos, end } => &bytes[*pos as usize..*end as usize],
            Chunk::Data(b) => b,
        }
    }

    fn len(&self) -> usize {
        match self {
            Chunk::Head { pos, end, .. } => (*end - *pos) as usize,
            Chunk::Data(b) => b.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the first `n` bytes (`n <= len`).
    fn advance(&mut self, n: usize) {
        match self {
            // n <= end - pos <= MAX_HEADER_LEN, so it fits u8.
            Chunk::Head { pos, .. } => *pos += n as u8,
            Chunk::Data(b) => b.advance(n),
        }
    }
}

/// The receiver's permessage-deflate state (boxed: most connections have none).
struct Inflate {
    codec: Decompressor,
    /// What the current frame inflated to, in streaming mode.
    out: BytesMut,
}

/// The sender's permessage-deflate state (boxed: most connections have none).
struct Deflate {
    codec: Compressor,
    /// Smaller payloads are sent uncompressed.
    threshold: usize,
    /// Where a message is compressed to before it is framed.
    scratch: BytesMut,
}

/// A WebSocket connection in the OPEN state or later.
///
/// # Calling order
///
/// The connection never reads a clock and never blocks. An I/O layer drives it like this,
/// each time its task wakes:
///
/// 1. **Input.** Append received bytes with [`Connection::receive`] (or read straight into
///    [`Connection::read_buf`]), then call [`Connection::mark_received`] with the time they
///    arrived: keepalive and the idle timeout count from it. At end of stream call
///    [`Connection::receive_eof`].
/// 2. **Events.** Drain [`Connection::poll_event`] until it returns `None`. Replies the
///    protocol owes the peer (pongs, the close echo) are queued as a side effect.
/// 3. **Application output.** [`Connection::send`] and friends queue frames; while
///    [`Connection::write_buffer_full`] the I/O layer should stop taking messages and
///    stop reading (backpressure).
/// 4. **Output.** Write [`Connection::output`] (or [`Connection::output_vectored`]) and
///    report what was written with [`Connection::advance_output`].
/// 5. **Timers.** Before sleeping, ask [`Connection::poll_timeout`] when the connection next
///    has something to do, and sleep at most until then (as well as until the transport is
///    readable or writable). When that time has come, call [`Connection::handle_timeout`]
///    with the current time and go back to step 2: a timer may queue a ping, a close frame,
///    or end the connection. Calling it early is harmless. Call it once when you start
///    driving the connection: the clocks start with the first time given.
/// 6. **End.** Once [`Connection::state`] is [`State::Closed`], write the rest of the
///    output, (client) wait for the server to close the transport first (RFC 6455 §7.1.1),
///    and close the transport; keep calling steps 4 and 5 meanwhile and give up when
///    [`Connection::linger_expired`] says the close timeout ran out.
///
/// Timers, all configured in [`Config`]: a keepalive ping after
/// [`Config::ping_interval`] without input, failed with 1011 when its pong does not come
/// within [`Config::pong_timeout`]; a 1001 close after [`Config::idle_timeout`] without
/// input; 1006 when our close frame is not answered within [`Config::close_timeout`] or
/// queued output makes no progress for [`Config::write_timeout`]; and buffers released
/// after [`RELEASE_BUFFERS_AFTER`] without input.
pub struct Connection {
    rx: Receiver,
    tx: Sender,
    /// Boxed: the connection's state stays small enough for an I/O layer's task to fit a
    /// smaller allocation (a tokio task is sized in 128-byte steps).
    timers: Box<Timers>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.rx.role)
            .field("state", &self.state())
            .field("buffered_in", &self.rx.rbuf.len())
            .field("buffered_out", &self.tx.buffered_amount())
            .field("deflate", &self.is_compressed())
            .finish()
    }
}

impl Connection {
    /// A connection in the OPEN state. `deflate` is what the handshake agreed on, if anything;
    /// the compression level and threshold come from `config.deflate` (or its defaults).
    pub fn new(role: Role, config: &Config, deflate: Option<DeflateParams>) -> Self {
        let is_server = role == Role::Server;
        let settings = deflate.map(|p| (p, config.deflate.clone().unwrap_or_default()));
        Connection {
            rx: Receiver {
                role,
                max_message_size: config.max_message_size,
                max_frame_size: config.max_frame_size,
                max_fragments: u32::try_from(config.max_fragments).unwrap_or(u32::MAX),
                streaming: config.streaming,
                rbuf: BytesMut::new(),
                frame: None,
                incoming: None,
                utf8: Utf8Validator::new(),
                inflate: settings.as_ref().map(|(p, _)| {
                    Box::new(Inflate {
                        codec: p.decompressor(is_server),
                        out: BytesMut::new(),
                    })
                }),
                close_received: false,
                closed: false,
                eof: false,
                closed_pending: false,
                aside: None,
                account: Account::new(config.memory_budget.clone()),
            },
            tx: Sender {
                role,
                wbuf: Vec::new(),
                wpos: 0,
                sending: None,
                send_utf8: Utf8Validator::new(),
                deflate: settings.map(|(p, s)| {
                    Box::new(Deflate {
                        codec: p.compressor(is_server, s.level),
                        threshold: s.threshold,
                        scratch: BytesMut::new(),
                    })
                }),
                close_sent: false,
                aside: None,
                account: Account::new(config.memory_budget.clone()),
            },
            timers: Box::new(Timers::new(config)),
        }
    }

    /// Separates the receiving and sending sides, e.g. to use them from two threads. Replies
    /// the receiver owes (pongs, close) must then be moved by the caller from
    /// [`Receiver::take_reply`] to [`Sender::reply`]. The halves run no timers: the caller
    /// takes that over.
    pub fn split(mut self) -> (Receiver, Sender) {
        self.pump_replies();
        (self.rx, self.tx)
    }

    /// Joins halves obtained from [`Connection::split`]; the timers start again with the
    /// next time given, with the settings of `config`.
    pub fn join(rx: Receiver, tx: Sender, config: &Config) -> Self {
        let mut c = Connection {
            rx,
            tx,
            timers: Box::new(Timers::new(config)),
        };
        c.pump_replies();
        c
    }

    /// Turns what the receiver owes the peer into output. Inlined for the common case of
    /// nothing owed (called after every event and every write): nothing is owed without
    /// the receiver's aside box, so that is the one check.
    #[inline]
    fn pump_replies(&mut self) {
        if self.rx.aside.is_some() {
            self.pump_replies_owed();
        }
    }

    #[inline(never)]
    fn pump_replies_owed(&mut self) {
        if let Some(reply) = self.rx.take_close_reply() {
            self.tx.reply(Reply::Close(reply));
        } else if self.tx.buffered_amount() < PONG_OUTPUT_LIMIT {
            if let Some(p) = self.rx.take_pong() {
                self.tx.reply(Reply::Pong(p));
            }
        }
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.rx.role
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> State {
        if self.rx.closed {
            State::Closed
        } else if self.tx.close_sent {
            State::Closing
        } else {
            State::Open
        }
    }

    /// Whether permessage-deflate is active.
    pub fn is_compressed(&self) -> bool {
        self.rx.inflate.is_some()
    }

    /// How the connection ended, once it is CLOSED.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        self.rx.close_event()
    }

    /// Approximate memory held by this connection: buffers and compression state.
    pub fn memory_usage(&self) -> usize {
        std::mem::size_of::<Self>() + self.rx.memory_usage() + self.tx.memory_usage()
    }

    /// The buffer received bytes go into; an I/O layer may read into it directly.
    #[inline]
    pub fn read_buf(&mut self) -> &mut BytesMut {
        self.rx.read_buf()
    }

    /// Bytes still missing from the frame being received (0 between frames): an I/O layer
    /// can make room for a large frame once instead of growing its buffer step by step.
    #[inline]
    pub fn frame_remaining(&self) -> usize {
        self.rx.frame_remaining()
    }

    /// Whether received bytes wait to be parsed (with no frame half-received): more events
    /// are probably ready without another read. An I/O layer can hold back the replies to
    /// the events it hands over while this is true, and write them all at once when it is
    /// not (see `wsx`'s write batching).
    #[inline]
    pub fn has_buffered_input(&self) -> bool {
        self.rx.has_buffered_input()
    }

    /// Appends received bytes (ignored once the connection stopped reading).
    #[inline]
    pub fn receive(&mut self, data: &[u8]) {
        self.rx.receive(data);
    }

    /// Reports the end of the received stream. Unless the close handshake completed, the
    /// connection ends with 1006 (abnormal closure) once buffered bytes are processed.
    pub fn receive_eof(&mut self) {
        self.rx.receive_eof();
    }

    /// Tells the connection that bytes arrived at `now` (after [`Connection::receive`], or
    /// after reading into [`Connection::read_buf`]): the keepalive ping, the idle timeout
    /// and the release of idle buffers count from the last arrival.
    ///
    /// Returns true when this arrival started a clock that was not running (the release of
    /// idle buffers, after they were released): [`Connection::poll_timeout`] may then be
    /// earlier than the deadline last seen. Otherwise arrivals only move deadlines later,
    /// and an I/O layer that sleeps until the old deadline loses nothing but an early
    /// wake-up.
    #[inline]
    pub fn mark_received(&mut self, now: Instant) -> bool {
        self.timers.mark_received(now)
    }

    fn seen(&self) -> Seen {
        Seen {
            state: self.state(),
            output_waiting: self.tx.buffered_amount() > 0,
        }
    }

    /// When [`Connection::handle_timeout`] next has something to do; `None` while nothing
    /// is scheduled (or before the clocks started). May be in the past: a timer that has
    /// just become needed (a close frame queued, output left waiting) is started by the
    /// next `handle_timeout`.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.poll_timeout(self.seen())
    }

    /// Runs the timers at `now` (see the calling order on [`Connection`]): starts those
    /// that just became needed, queues a keepalive ping when one is due, and closes or
    /// fails the connection when a timeout ran out. The results show as output and events.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = self.timers.handle_timeout(now, self.seen());
        if due.pong_timeout {
            self.abort(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
        } else if due.idle {
            let _ = self.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout")));
        } else if let Some(payload) = due.ping {
            let _ = self
                .tx
                .send(Message::Ping(Bytes::copy_from_slice(&payload)));
        }
        if due.close_timeout {
            // The peer did not answer our close frame: end as if the transport were cut.
            self.rx.receive_eof();
        }
        if due.write_timeout {
            self.abort(
                CloseCode::ABNORMAL,
                "write timed out: the peer is not reading",
            );
        }
        if due.release {
            self.shrink_buffers();
        }
    }

    /// Round-trip time of the last answered keepalive ping.
    pub fn rtt(&self) -> Option<Duration> {
        self.timers.rtt()
    }

    /// True once the close timeout ran out after CLOSED: the I/O layer should stop waiting
    /// for the transport to wind down (see the calling order on [`Connection`]).
    pub fn linger_expired(&self) -> bool {
        self.timers.linger_expired()
    }

    /// True once the write timeout ran out: the connection ended (1006) with output that
    /// will not be written.
    pub fn write_timed_out(&self) -> bool {
        self.timers.write_timed_out()
    }

    /// Whether more than [`Config::write_buffer_high_water`] bytes are queued for writing.
    #[inline]
    pub fn write_buffer_full(&self) -> bool {
        self.tx.buffered_amount() > self.timers.high_water as usize
    }

    /// Whether no more input will be looked at (close received, failed, or closed).
    #[inline]
    pub fn stopped_reading(&self) -> bool {
        self.rx.stopped_reading()
    }

    /// The next event, or `None` when more input is needed (or nothing more will happen).
    /// Pongs and close replies are queued for output as a side effect.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            let ev = self.rx.poll_event();
            self.pump_replies();
            if let Some(Event::Message(Message::Pong(p))) = &ev {
                if self.timers.on_pong(p) {
                    // The answer to the keepalive ping: the connection's own (see `rtt`).
                    continue;
                }
            }
            return ev;
        }
    }

    /// Queues a message (see [`Sender::send`]).
    #[inline]
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.check_open()?;
        self.tx.send(msg)
    }

    /// Like [`Connection::send`], but never compresses this message.
    pub fn send_uncompressed(&mut self, msg: Message) -> Result<(), SendError> {
        self.check_open()?;
        self.tx.send_uncompressed(msg)
    }

    /// Queues a message framed once for many connections (see [`PreparedMessage`]), with
    /// as little work per connection as its parameters allow.
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), SendError> {
        self.check_open()?;
        self.tx.send_prepared(msg)
    }

    /// Sends one fragment of a message (see [`Sender::send_fragment`]).
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.check_open()?;
        self.tx.send_fragment(kind, data, fin)
    }

    /// Fails the connection from the application's side (a keepalive timeout, say): queues a
    /// close frame with `code` (when it may be sent on the wire), stops reading, and ends
    /// with a `Closed` event that is not clean. Does nothing once closed.
    pub fn abort(&mut self, code: CloseCode, reason: &str) {
        self.rx.abort(code, reason);
        self.pump_replies();
    }

    /// Starts the close handshake (see [`Sender::close`]). Does nothing once closed.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        if let Some(f) = &frame {
            if !f.code.is_allowed_on_wire() {
                return Err(SendError::InvalidCloseCode(f.code.0));
            }
        }
        if self.rx.closed {
            return Ok(());
        }
        self.tx.close(frame)
    }

    #[inline]
    fn check_open(&self) -> Result<(), SendError> {
        if self.rx.closed {
            Err(SendError::Closed)
        } else {
            Ok(())
        }
    }

    /// Bytes waiting to be written to the transport.
    #[inline]
    pub fn output(&self) -> &[u8] {
        self.tx.output()
    }

    /// Marks `n` bytes of output as written ([`Connection::output`], or across the slices
    /// of [`Connection::output_vectored`]).
    #[inline]
    pub fn advance_output(&mut self, n: usize) {
        if n > 0 {
            self.timers.on_progress();
        }
        self.tx.advance_output(n);
        self.pump_replies();
    }

    /// Fills `dst` with the output waiting to be written, in order, for a vectored write;
    /// returns how many slices it filled (0: nothing to write).
    pub fn output_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        self.tx.output_vectored(dst)
    }

    /// Exchanges the output buffer with `buf` when no output is waiting (returns false,
    /// and changes nothing, when some is). The connection's next frames are encoded into
    /// `buf`'s allocation (cleared first); `buf` gets the connection's (empty) one.
    ///
    /// For an I/O layer that serves many connections from one thread: lending each the same
    /// buffer while it encodes a burst and writes it, and taking it back once written, keeps
    /// the bytes about to be written in the CPU's cache instead of in one of thousands of
    /// per-connection buffers.
    pub fn exchange_output_buffer(&mut self, buf: &mut Vec<u8>) -> bool {
        self.tx.exchange_output_buffer(buf)
    }

    /// Takes all bytes waiting to be written.
    pub fn take_output(&mut self) -> BytesMut {
        let out = self.tx.take_output();
        self.pump_replies();
        out
    }

    /// Number of bytes queued but not yet written (the browser's `bufferedAmount`).
    #[inline]
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered_amount()
    }

    /// Releases buffer memory that is not in use (call when the connection goes idle).
    pub fn shrink_buffers(&mut self) {
        self.rx.shrink_buffers();
        self.tx.shrink_buffers();
    }

    /// Whether an I/O layer should stop reading from this connection for now: its memory
    /// budget is under pressure ([`MemoryBudget::under_pressure`]) and this connection is
    /// one of those that hold the most (at least the average of the connections charged
    /// anything). Reading again once this turns false lets TCP hold the peer back
    /// meanwhile. Always false without a budget, and for connections that hold less than
    /// [`crate::budget::FREE`] on each side.
    #[inline]
    pub fn should_pause_reading(&self) -> bool {
        let Some(budget) = self.rx.account.budget() else {
            return false;
        };
        let held = self.rx.account.held() + self.tx.account.held();
        held > 0 && budget.under_pressure() && held >= budget.fair_share()
    }

    /// The memory budget this connection charges, if any (from [`Config::memory_budget`]).
    pub fn memory_budget(&self) -> Option<&MemoryBudget> {
        self.rx.account.budget()
    }

    /// Turns the frame trace on (`Some`) or off (`None`); see [`crate::trace`]. Every frame
    /// received and sent from then on is recorded, to be drained with
    /// [`Connection::take_frame_traces`]. Turning it on again, or off, discards the records
    /// not yet taken. Off by default.
    pub fn set_frame_trace(&mut self, config: Option<TraceConfig>) {
        let seq = Arc::new(AtomicU64::new(0));
        self.rx
            .set_trace(config.map(|c| Tracer::new(c, seq.clone())));
        self.tx.set_trace(config.map(|c| Tracer::new(c, seq)));
    }

    /// Whether the frame trace is on.
    pub fn frame_trace_enabled(&self) -> bool {
        self.rx.tracing()
    }

    /// The oldest frame trace record not yet taken (both directions, in the order the core
    /// saw or produced the frames).
    pub fn pop_frame_trace(&mut self) -> Option<FrameTrace> {
        pop_earliest(self.rx.tracer(), self.tx.tracer())
    }

    /// Drains the frame trace records, oldest first (see [`Connection::pop_frame_trace`]).
    pub fn take_frame_traces(&mut self) -> impl Iterator<Item = FrameTrace> + '_ {
        std::iter::from_fn(move || self.pop_frame_trace())
    }

    /// How many frame trace records were dropped because the queue was full (see
    /// [`TraceConfig::capacity`]) since the trace was turned on.
    pub fn frame_traces_dropped(&self) -> u64 {
        self.rx.frame_traces_dropped() + self.tx.frame_traces_dropped()
    }
}

impl Receiver {
    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// How the connection ended, once the receiving side is done.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        self.aside.as_ref().and_then(|a| a.event.as_ref())
    }

    /// True once a close frame was received, the connection failed, or the stream ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Approximate memory held: buffers, decompression state and frame trace records.
    pub fn memory_usage(&self) -> usize {
        self.rbuf.capacity()
            + self.incoming.as_ref().map_or(0, |m| m.buf.capacity())
            + self
                .inflate
                .as_ref()
                .map_or(0, |d| d.out.capacity() + d.codec.memory_estimate())
            + self
                .aside
                .as_ref()
                .and_then(|a| a.trace.as_ref())
                .map_or(0, |t| t.memory_usage())
    }

    /// The oldest trace record of a received frame not yet taken (see
    /// [`Connection::set_frame_trace`]; the trace stays on after [`Connection::split`]).
    pub fn pop_frame_trace(&mut self) -> Option<FrameTrace> {
        self.tracer()?.pop()
    }

    /// How many trace records of received frames were dropped because the queue was full.
    pub fn frame_traces_dropped(&self) -> u64 {
        self.aside
            .as_ref()
            .and_then(|a| a.trace.as_ref())
            .map_or(0, |t| t.dropped())
    }

    /// Whether received frames are traced.
    #[inline]
    fn tracing(&self) -> bool {
        self.aside.as_ref().is_some_and(|a| a.trace.is_some())
    }

    /// The trace of received frames, while it is on.
    fn tracer(&mut self) -> Option<&mut Tracer> {
        self.aside.as_mut()?.trace.as_mut()
    }

    /// Turns the trace of received frames on (`Some`) or off.
    fn set_trace(&mut self, trace: Option<Tracer>) {
        match trace {
            Some(t) => self.aside_mut().trace = Some(t),
            None => {
                if let Some(a) = self.aside.as_mut() {
                    a.trace = None;
                    self.release_aside();
                }
            }
        }
    }

    /// Releases buffer memory that is not in use.
    pub fn shrink_buffers(&mut self) {
        if self.rbuf.is_empty() && self.frame.is_none() {
            self.rbuf = BytesMut::new();
        }
        if let Some(d) = self.inflate.as_mut() {
            d.out = BytesMut::new();
        }
        self.settle();
    }

    /// The buffer received bytes go into; an I/O layer may read into it directly.
    /// Bytes added after a close frame was received, or after a failure, are ignored.
    #[inline]
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Bytes still missing from the frame being received (0 between frames).
    #[inline]
    pub fn frame_remaining(&self) -> usize {
        self.frame.as_ref().map_or(0, |f| {
            // check_header bounded the length by max_frame_size, so it fits usize.
            f.len.saturating_sub(self.rbuf.len())
        })
    }

    /// Whether received bytes wait to be parsed, with no frame half-received: more events
    /// are probably ready without another read.
    #[inline]
    pub fn has_buffered_input(&self) -> bool {
        !self.rbuf.is_empty() && self.frame_remaining() == 0 && !self.stopped_reading()
    }

    /// Appends received bytes.
    #[inline]
    pub fn receive(&mut self, data: &[u8]) {
        if !self.stopped_reading() {
            self.rbuf.extend_from_slice(data);
        }
    }

    /// Reports the end of the received stream.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// Whether no more input will be looked at (close received, failed, or closed).
    #[inline]
    pub fn stopped_reading(&self) -> bool {
        self.closed || self.close_received
    }

    /// Whether a pong or close reply is waiting for [`Receiver::take_reply`].
    pub fn has_reply(&self) -> bool {
        self.aside
            .as_ref()
            .is_some_and(|a| a.reply.is_some() || a.pong.is_some())
    }

    /// The close frame owed to the peer, if any; a pong still waiting is dropped with it
    /// (moot once we close).
    fn take_close_reply(&mut self) -> Option<Option<CloseFrame>> {
        let a = self.aside.as_mut()?;
        let reply = a.reply.take()?;
        a.pong = None;
        self.release_aside();
        Some(reply)
    }

    /// The pong owed to the peer, if any.
    fn take_pong(&mut self) -> Option<Bytes> {
        let pong = self.aside.as_mut()?.pong.take()?;
        self.release_aside();
        Some(pong)
    }

    /// The aside box, allocated on first use.
    fn aside_mut(&mut self) -> &mut ReceiverAside {
        self.aside.get_or_insert_with(Default::default)
    }

    /// Frees the aside box once it holds nothing: a connection that answered a ping does
    /// not keep it.
    fn release_aside(&mut self) {
        if self.aside.as_ref().is_some_and(|a| a.is_empty()) {
            self.aside = None;
        }
    }

    /// The frame owed to the peer, if any: a close reply first, else the latest pong.
    pub fn take_reply(&mut self) -> Option<Reply> {
        if let Some(c) = self.take_close_reply() {
            return Some(Reply::Close(c));
        }
        self.take_pong().map(Reply::Pong)
    }

    /// The next event, or `None` when more input is needed (or nothing more will happen).
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        // Nothing new to look at (the common case between reads): a frame is never left
        // pending with all of its payload in, so no event can come out of an empty buffer.
        if self.rbuf.is_empty() && !self.eof && !self.closed_pending {
            return None;
        }
        self.poll_buffered()
    }

    fn poll_buffered(&mut self) -> Option<Event> {
        if self.closed_pending {
            self.closed_pending = false;
            return self.close_event().cloned().map(Event::Closed);
        }
        if self.stopped_reading() {
            return None;
        }
        match self.step() {
            Ok(Some(ev)) => Some(ev),
            Ok(None) if self.eof => {
                let ev = self.finish(CloseCode::ABNORMAL, String::new(), false);
                Some(Event::Closed(ev))
            }
            Ok(None) => None,
            Err(e) => Some(self.fail(e)),
        }
    }

    fn step(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if self.frame.is_none() {
                let Some((header, n)) = FrameHeader::parse(&self.rbuf)? else {
                    return Ok(None);
                };
                let check_text = match self.check_header(&header) {
                    Ok(c) => c,
                    Err(e) => {
                        let end = (n as u64).saturating_add(header.payload_len);
                        let end = usize::try_from(end).unwrap_or(usize::MAX);
                        self.trace_rejected(&header, n, end, header.mask, e.clone());
                        return Err(e);
                    }
                };
                self.rbuf.advance(n);
                self.frame = Some(PartialFrame::new(&header, check_text));
            }
            let Some(frame) = self.frame.as_mut() else {
                return Ok(None);
            };
            let len = frame.len;
            let avail = self.rbuf.len().min(len);
            if avail > frame.done {
                let fresh = &mut self.rbuf[frame.done..avail];
                if let Some(key) = frame.mask() {
                    apply_mask_at(fresh, key, frame.done);
                }
                if frame.check_text() && self.utf8.feed(fresh).is_err() {
                    let header = frame.header();
                    // Bytes up to `avail` are unmasked already.
                    self.trace_rejected(&header, 0, avail, None, ProtocolError::InvalidUtf8);
                    return Err(ProtocolError::InvalidUtf8);
                }
                frame.done = avail;
            }
            if avail < len {
                return Ok(None);
            }
            let header = frame.header();
            self.frame = None;
            let payload = self.rbuf.split_to(len);
            // The one check the trace costs per frame while it is off and no aside box
            // exists (the common case).
            let ev = if self.tracing() {
                self.on_frame_traced(header, payload)
            } else {
                self.on_frame(header, payload)
            };
            if let Some(ev) = ev? {
                return Ok(Some(ev));
            }
        }
    }

    /// [`Receiver::on_frame`] with the frame recorded in the trace: as received, then with
    /// what it inflated to or why it was rejected.
    #[inline(never)]
    fn on_frame_traced(
        &mut self,
        header: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Event>, ProtocolError> {
        let compressed =
            !header.opcode.is_control() && self.incoming.as_ref().is_some_and(|m| m.compressed);
        let before = self.incoming.as_ref().map_or(0, |m| m.size);
        if let Some(t) = self.tracer() {
            t.record(Direction::Incoming, &header, &payload, None, None);
        }
        let res = self.on_frame(header, payload);
        let Some(t) = self.aside.as_mut().and_then(|a| a.trace.as_mut()) else {
            return res;
        };
        match &res {
            Err(e) => t.reject_last(e),
            Ok(ev) if compressed => {
                // What this frame inflated to: the fragment (streaming), the tail of the
                // message (its last frame), or the tail of the reassembly buffer.
                let plain: Option<&[u8]> = match ev {
                    Some(Event::Fragment(f)) => Some(&f.data),
                    Some(Event::Message(Message::Text(s))) => s.as_bytes().get(before..),
                    Some(Event::Message(Message::Binary(b))) => b.get(before..),
                    None => self.incoming.as_ref().and_then(|m| m.buf.get(before..)),
                    Some(_) => None,
                };
                if let Some(p) = plain {
                    t.set_plain_last(p);
                }
            }
            Ok(_) => {}
        }
        res
    }

    /// Records a frame rejected before its payload was processed: the payload bytes it has
    /// so far are `rbuf[start..end]` (cut to what is buffered), still masked with `mask`.
    #[cold]
    fn trace_rejected(
        &mut self,
        header: &FrameHeader,
        start: usize,
        end: usize,
        mask: Option<[u8; 4]>,
        err: ProtocolError,
    ) {
        let Some(t) = self.aside.as_mut().and_then(|a| a.trace.as_mut()) else {
            return;
        };
        // Enough for the preview, and for the code and reason of a close frame.
        let keep = MAX_CONTROL_PAYLOAD.max(t.preview_len());
        let end = end.min(self.rbuf.len()).min(start.saturating_add(keep));
        let mut payload = self.rbuf.get(start..end).unwrap_or_default().to_vec();
        if let Some(key) = mask {
            apply_mask(&mut payload, key);
        }
        t.record(Direction::Incoming, header, &payload, None, Some(err));
    }

    /// Applies the framing rules to a new header; returns whether its payload is text to be
    /// validated as it arrives.
    fn check_header(&mut self, h: &FrameHeader) -> Result<bool, ProtocolError> {
        let data_start = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv2 || h.rsv3 || (h.rsv1 && !(data_start && self.inflate.is_some())) {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            return Ok(false);
        }
        match (h.opcode, self.incoming.is_some()) {
            (OpCode::Continuation, false) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        if h.payload_len > self.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge {
                size: h.payload_len,
                limit: self.max_frame_size,
            });
        }
        if data_start {
            self.utf8.reset();
            self.incoming = Some(Incoming {
                kind: if h.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                },
                compressed: h.rsv1,
                buf: BytesMut::new(),
                size: 0,
                frames: 0,
                first_delivered: false,
            });
        }
        let Some(msg) = self.incoming.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        msg.frames = msg.frames.saturating_add(1);
        if msg.frames > self.max_fragments {
            return Err(ProtocolError::TooManyFragments {
                limit: self.max_fragments as usize,
            });
        }
        if !msg.compressed && msg.size as u64 + h.payload_len > self.max_message_size as u64 {
            return Err(ProtocolError::MessageTooLarge {
                limit: self.max_message_size,
            });
        }
        let check_text = msg.kind == MessageKind::Text && !msg.compressed;
        if self.account.budget().is_some() {
            // The frame (in the read buffer until complete: the buffer's capacity, or the
            // frame where larger) and the message so far; the header bounded the frame by
            // max_frame_size, so it fits usize.
            let so_far = if self.streaming { 0 } else { msg.buf.len() };
            let frame = usize::try_from(h.payload_len).unwrap_or(usize::MAX);
            let buffered = granules(frame.max(self.rbuf.capacity()));
            let want = (self.inflate_state() + so_far).saturating_add(buffered);
            if !self.account.grow_to(chargeable(want)) {
                return Err(ProtocolError::OverBudget);
            }
        }
        Ok(check_text)
    }

    fn on_frame(
        &mut self,
        h: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Event>, ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                let payload = payload.freeze();
                self.aside_mut().pong = Some(payload.clone());
                Ok(Some(Event::Message(Message::Ping(payload))))
            }
            OpCode::Pong => Ok(Some(Event::Message(Message::Pong(payload.freeze())))),
            OpCode::Close => self.on_close(payload.freeze()).map(Some),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => self.on_data(h.fin, payload),
        }
    }

    fn on_close(&mut self, payload: Bytes) -> Result<Event, ProtocolError> {
        let frame = CloseFrame::parse(payload)?;
        self.close_received = true;
        self.rbuf = BytesMut::new();
        // Echo the peer's code (RFC 6455 §5.5.1), or an empty close if it sent none. The
        // sender drops the echo if it already sent a close frame.
        self.aside_mut().reply = Some(
            frame
                .as_ref()
                .map(|f| CloseFrame::new(f.code, Utf8Bytes::new())),
        );
        let (code, reason) = match &frame {
            Some(f) => (f.code, f.reason.to_string()),
            None => (CloseCode::NO_STATUS, String::new()),
        };
        self.finish(code, reason, true);
        self.closed_pending = true;
        Ok(Event::Message(Message::Close(frame)))
    }

    fn on_data(&mut self, fin: bool, payload: BytesMut) -> Result<Option<Event>, ProtocolError> {
        let Some(msg) = self.incoming.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        let limit = self.max_message_size;
        let data: Option<BytesMut> = if msg.compressed {
            let Some(inflate) = self.inflate.as_deref_mut() else {
                return Err(ProtocolError::ReservedBits);
            };
            let decompressor = &mut inflate.codec;
            let out = if self.streaming {
                &mut inflate.out
            } else {
                &mut msg.buf
            };
            let before = out.len();
            let room = limit - msg.size;
            // Each output chunk is charged before it is written (free without a budget).
            let account = &mut self.account;
            let state = decompressor.memory_estimate();
            let mut grant = |len: usize| account.grow_to(chargeable(state.saturating_add(len)));
            decompressor
                .decompress_within(&payload, fin, out, before + room, &mut grant)
                .map_err(|e| match e {
                    DeflateError::TooLarge => ProtocolError::MessageTooLarge { limit },
                    DeflateError::Refused => ProtocolError::OverBudget,
                    DeflateError::Corrupt(_) => ProtocolError::CorruptCompressedData,
                    _ => ProtocolError::InflateInternal,
                })?;
            msg.size += out.len() - before;
            if msg.kind == MessageKind::Text {
                self.utf8
                    .feed(&out[before..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            if self.streaming {
                Some(out.split())
            } else {
                None
            }
        } else {
            msg.size += payload.len();
            if self.streaming || (fin && msg.buf.is_empty()) {
                Some(payload)
            } else {
                // Never past the message limit (the frame's header was checked against it).
                crate::growth::reserve_within(&mut msg.buf, payload.len(), limit);
                msg.buf.extend_from_slice(&payload);
                None
            }
        };
        if fin && msg.kind == MessageKind::Text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if self.streaming {
            let first = !msg.first_delivered;
            msg.first_delivered = true;
            let kind = msg.kind;
            if fin {
                self.incoming = None;
            }
            let data = data.map(BytesMut::freeze).unwrap_or_default();
            self.settle();
            return Ok(Some(Event::Fragment(Fragment {
                kind,
                data,
                first,
                fin,
            })));
        }
        if !fin {
            return Ok(None);
        }
        let kind = msg.kind;
        let body = match data {
            Some(d) => d.freeze(),
            None => {
                let mut buf = std::mem::take(&mut msg.buf);
                crate::growth::fit(&mut buf);
                buf.freeze()
            }
        };
        self.incoming = None;
        self.settle();
        Ok(Some(Event::Message(match kind {
            MessageKind::Text => Message::Text(Utf8Bytes::from_bytes_unchecked(body)),
            MessageKind::Binary => Message::Binary(body),
        })))
    }

    /// The inflate state's size, charged to the budget with the message.
    fn inflate_state(&self) -> usize {
        self.inflate
            .as_ref()
            .map_or(0, |d| d.codec.memory_estimate())
    }

    /// A message (or a fragment, when streaming) has been handed over, or buffers were
    /// released: the charge comes down to the inflate state and read buffer that stay.
    #[inline]
    fn settle(&mut self) {
        if self.account.held() > 0 {
            let keep = chargeable(self.inflate_state() + granules(self.rbuf.capacity()));
            self.account.set(keep);
        }
    }

    /// Fails the connection for a local reason (see [`Connection::abort`]).
    pub fn abort(&mut self, code: CloseCode, reason: &str) {
        if self.closed {
            return;
        }
        if code.is_allowed_on_wire() {
            self.aside_mut().reply = Some(Some(CloseFrame::new(code, reason)));
        }
        self.finish(code, reason.to_owned(), false);
        self.closed_pending = true;
    }

    /// Fails the connection: queue a close frame with the error's code and stop reading.
    fn fail(&mut self, err: ProtocolError) -> Event {
        let code = err.close_code();
        let reason = err.to_string();
        self.aside_mut().reply = Some(Some(CloseFrame::new(code, reason.as_str())));
        self.finish(code, reason, false);
        self.closed_pending = true;
        Event::Error(err)
    }

    fn finish(&mut self, code: CloseCode, reason: String, was_clean: bool) -> CloseEvent {
        self.closed = true;
        self.frame = None;
        self.incoming = None;
        self.account.set(0);
        let ev = CloseEvent {
            code,
            reason,
            was_clean,
        };
        self.aside_mut().event = Some(ev.clone());
        ev
    }
}

impl Sender {
    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once a close frame was queued.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Approximate memory held: buffers, compression state and frame trace records.
    pub fn memory_usage(&self) -> usize {
        self.wbuf.capacity()
            + self
                .deflate
                .as_ref()
                .map_or(0, |d| d.scratch.capacity() + d.codec.memory_estimate())
            + self.aside.as_ref().map_or(0, |a| {
                a.queued.len + a.trace.as_ref().map_or(0, |t| t.memory_usage())
            })
    }

    /// The oldest trace record of a sent frame not yet taken (see
    /// [`Connection::set_frame_trace`]; the trace stays on after [`Connection::split`]).
    pub fn pop_frame_trace(&mut self) -> Option<FrameTrace> {
        self.tracer()?.pop()
    }

    /// How many trace records of sent frames were dropped because the queue was full.
    pub fn frame_traces_dropped(&self) -> u64 {
        self.aside
            .as_ref()
            .and_then(|a| a.trace.as_ref())
            .map_or(0, |t| t.dropped())
    }

    /// The trace of sent frames, while it is on.
    #[inline]
    fn tracer(&mut self) -> Option<&mut Tracer> {
        self.aside.as_mut()?.trace.as_mut()
    }

    /// Turns the trace of sent frames on (`Some`) or off.
    fn set_trace(&mut self, trace: Option<Tracer>) {
        match trace {
            Some(t) => self.aside.get_or_insert_with(Default::default).trace = Some(t),
            None => {
                if let Some(a) = self.aside.as_mut() {
                    a.trace = None;
                    self.release_queue();
                }
            }
        }
    }

    /// Releases the queue of output by reference once it is empty: the whole aside box
    /// unless the trace is on, else the queue's allocation.
    fn release_queue(&mut self) {
        let Some(a) = self.aside.as_mut() else {
            return;
        };
        if a.queued.len != 0 {
            return;
        }
        if a.trace.is_none() {
            self.aside = None;
        } else {
            a.queued = Queued::default();
        }
    }

    /// Queues a frame the receiver owes the peer. A pong or close after our own close frame
    /// is dropped.
    pub fn reply(&mut self, reply: Reply) {
        if self.close_sent {
            return;
        }
        match reply {
            Reply::Pong(p) => self.write_frame(OpCode::Pong, true, false, &p, None),
            Reply::Close(f) => self.write_close(f.as_ref()),
        }
        self.recharge();
    }

    /// Queues a message. Text and binary messages are compressed when permessage-deflate is
    /// active and they are at least the configured threshold long. `Close` starts the close
    /// handshake (see [`Sender::close`]).
    #[inline]
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.send_with(msg, true)
    }

    /// Like [`Sender::send`], but never compresses this message.
    pub fn send_uncompressed(&mut self, msg: Message) -> Result<(), SendError> {
        self.send_with(msg, false)
    }

    /// Queues a message framed once for many connections (see [`PreparedMessage`]): its
    /// frame is copied or shared, or its compressed frame shared when this side compresses
    /// every message alone; otherwise it is sent as [`Sender::send`] would.
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), SendError> {
        let sent = self.encode_prepared(msg);
        self.recharge();
        sent
    }

    fn encode_prepared(&mut self, msg: &PreparedMessage) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closed);
        }
        if self.sending.is_some() {
            return Err(SendError::FragmentInProgress);
        }
        if self.role == Role::Client {
            // Masked with a fresh key per frame: nothing to share.
            return self.encode(msg.to_message(), true);
        }
        if let Some(d) = self.deflate.as_ref() {
            if msg.len() >= d.threshold {
                if !d.codec.no_context_takeover() {
                    // Our compressor's history must hold everything the peer has seen.
                    return self.encode(msg.to_message(), true);
                }
                let (bits, level) = (d.codec.window_bits(), d.codec.level());
                let Some(frame) = msg.compressed(bits, level) else {
                    return self.encode(msg.to_message(), true);
                };
                self.queue_frame(frame, Some(msg.payload()));
                return Ok(());
            }
        }
        self.queue_frame(msg.frame(), None);
        Ok(())
    }

    /// Queues a whole encoded server frame: copied into the output buffer when small, else
    /// queued as it is. `plain` is the message before compression, for the trace.
    fn queue_frame(&mut self, frame: &Bytes, plain: Option<&[u8]>) {
        if let Some(t) = self.tracer() {
            if let Ok(Some((header, n))) = FrameHeader::parse(frame) {
                t.record(Direction::Outgoing, &header, &frame[n..], plain, None);
            }
        }
        if frame.len() < ZERO_COPY_MIN {
            if self.wbuf.capacity() - self.wbuf.len() < frame.len() && self.wpos > 0 {
                // Make room by dropping what was written rather than by growing.
                self.wbuf.drain(..self.wpos);
                self.wpos = 0;
            }
            self.wbuf.extend_from_slice(frame);
            return;
        }
        let q = self.queue();
        q.len += frame.len();
        q.chunks.push_back(Chunk::Data(frame.clone()));
    }

    /// The chunk queue, for output queued by reference, with what is in the output buffer
    /// (queued before, so it goes first) moved to its end: handed over as it is (no copy),
    /// the output buffer starts again empty.
    fn queue(&mut self) -> &mut Queued {
        let q = &mut self.aside.get_or_insert_with(Default::default).queued;
        if self.wbuf.len() > self.wpos {
            let earlier = Bytes::from(std::mem::take(&mut self.wbuf)).slice(self.wpos..);
            self.wpos = 0;
            q.len += earlier.len();
            q.chunks.push_back(Chunk::Data(earlier));
        }
        q
    }

    fn send_with(&mut self, msg: Message, compress: bool) -> Result<(), SendError> {
        let sent = self.encode(msg, compress);
        self.recharge();
        sent
    }

    #[inline]
    fn encode(&mut self, msg: Message, compress: bool) -> Result<(), SendError> {
        match msg {
            Message::Text(t) if self.zero_copy(t.len(), compress) => {
                self.send_queued(OpCode::Text, t.into_bytes())
            }
            Message::Binary(b) if self.zero_copy(b.len(), compress) => {
                self.send_queued(OpCode::Binary, b)
            }
            Message::Text(t) => self.send_data(OpCode::Text, t.as_bytes(), compress),
            Message::Binary(b) => self.send_data(OpCode::Binary, &b, compress),
            Message::Ping(p) => self.send_control(OpCode::Ping, &p),
            Message::Pong(p) => self.send_control(OpCode::Pong, &p),
            Message::Close(f) => self.close(f),
        }
    }

    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        compress: bool,
    ) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closed);
        }
        if self.sending.is_some() {
            return Err(SendError::FragmentInProgress);
        }
        if let Some(d) = self.deflate.as_mut() {
            if compress && payload.len() >= d.threshold {
                let mut out = std::mem::take(&mut d.scratch);
                out.clear();
                d.codec
                    .compress(payload, &mut out)
                    .map_err(|_| SendError::Compression)?;
                self.write_frame(opcode, true, true, &out, Some(payload));
                if let Some(d) = self.deflate.as_mut() {
                    d.scratch = out;
                }
                return Ok(());
            }
        }
        self.write_frame(opcode, true, false, payload, None);
        Ok(())
    }

    /// Whether a data message of `len` bytes goes out without being copied.
    fn zero_copy(&self, len: usize, compress: bool) -> bool {
        len >= ZERO_COPY_MIN
            && self.role == Role::Server
            && !(compress && self.deflate.as_ref().is_some_and(|d| len >= d.threshold))
            && !self.close_sent
            && self.sending.is_none()
    }

    /// Sends a whole unmasked, uncompressed message, queueing `payload` itself.
    fn send_queued(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), SendError> {
        let header = FrameHeader::new(true, opcode, payload.len() as u64);
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut bytes);
        if let Some(t) = self.tracer() {
            t.record(Direction::Outgoing, &header, &payload, None, None);
        }
        let q = self.queue();
        q.len += n + payload.len();
        q.chunks.push_back(Chunk::Head {
            bytes,
            pos: 0,
            end: n as u8,
        });
        if !payload.is_empty() {
            q.chunks.push_back(Chunk::Data(payload));
        }
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closed);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlFrameTooLong);
        }
        self.write_frame(opcode, true, false, payload, None);
        Ok(())
    }

    /// Sends one fragment of a message, for streaming large messages without holding them
    /// whole. The first call starts a message of `kind`; later calls continue it until one
    /// with `fin`. Control messages may be sent in between. Fragments are not compressed.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        if self.close_sent {
            return Err(SendError::Closed);
        }
        let opcode = match self.sending {
            None => match kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            },
            Some(k) if k == kind => OpCode::Continuation,
            Some(_) => return Err(SendError::FragmentKindMismatch),
        };
        if kind == MessageKind::Text {
            // Check on a copy: a rejected fragment must leave the state as it was, or the
            // next fragment would be judged from the wrong place (found by fuzzing).
            let mut v = if self.sending.is_none() {
                Utf8Validator::new()
            } else {
                self.send_utf8.clone()
            };
            v.feed(data).map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                v.finish().map_err(|_| SendError::InvalidUtf8)?;
            }
            self.send_utf8 = v;
        }
        self.write_frame(opcode, fin, false, data, None);
        self.sending = if fin { None } else { Some(kind) };
        self.recharge();
        Ok(())
    }

    /// Starts the close handshake with `frame` (`None`: a close frame without a status code).
    /// Does nothing if a close frame was already sent.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        if let Some(f) = &frame {
            if !f.code.is_allowed_on_wire() {
                return Err(SendError::InvalidCloseCode(f.code.0));
            }
        }
        if !self.close_sent {
            self.write_close(frame.as_ref());
            self.recharge();
        }
        Ok(())
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let mut len = 0;
        if let Some(f) = frame {
            let mut buf = BytesMut::with_capacity(MAX_CONTROL_PAYLOAD);
            f.encode_into(&mut buf);
            len = buf.len();
            payload[..len].copy_from_slice(&buf);
        }
        self.write_frame(OpCode::Close, true, false, &payload[..len], None);
        self.close_sent = true;
        self.sending = None;
    }

    /// Queues one frame. `plain` is the message before compression, for the trace.
    fn write_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
        plain: Option<&[u8]>,
    ) {
        let mask = match self.role {
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let need = n + payload.len();
        if self.wbuf.capacity() - self.wbuf.len() < need && self.wpos > 0 {
            // Make room by dropping what was written rather than by growing.
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        self.wbuf.reserve(need);
        self.wbuf.extend_from_slice(&head[..n]);
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut self.wbuf[start..], key);
        }
        if let Some(t) = self.tracer() {
            t.record(Direction::Outgoing, &header, payload, plain, None);
        }
    }

    /// Bytes waiting to be written to the transport: the first contiguous piece of them
    /// (see [`Sender::output_vectored`] for all of it). Empty when nothing is waiting.
    #[inline]
    pub fn output(&self) -> &[u8] {
        match self.aside.as_ref().and_then(|a| a.queued.chunks.front()) {
            Some(first) => first.as_slice(),
            None => &self.wbuf[self.wpos..],
        }
    }

    /// Fills `dst` with the output waiting to be written, in order; returns how many
    /// slices it filled.
    pub fn output_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let queued = self.aside.as_ref().map(|a| a.queued.chunks.iter());
        let pieces = queued
            .into_iter()
            .flatten()
            .map(Chunk::as_slice)
            .chain(std::iter::once(&self.wbuf[self.wpos..]))
            .filter(|p| !p.is_empty());
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(pieces) {
            *slot = std::io::IoSlice::new(piece);
            n += 1;
        }
        n
    }

    /// Marks `n` bytes of output as written (they may span several pieces).
    pub fn advance_output(&mut self, mut n: usize) {
        if let Some(q) = self.aside.as_mut().map(|a| &mut a.queued) {
            while n > 0 {
                let Some(front) = q.chunks.front_mut() else {
                    break;
                };
                let k = n.min(front.len());
                front.advance(k);
                q.len -= k;
                n -= k;
                if front.is_empty() {
                    q.chunks.pop_front();
                }
            }
        }
        self.wpos += n.min(self.wbuf.len() - self.wpos);
        if self.wpos == self.wbuf.len() {
            // All written: the next frame goes to the front of the same allocation.
            self.wbuf.clear();
            self.wpos = 0;
        }
        self.recharge();
    }

    /// See [`Connection::exchange_output_buffer`].
    pub fn exchange_output_buffer(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.buffered_amount() != 0 {
            return false;
        }
        buf.clear();
        std::mem::swap(&mut self.wbuf, buf);
        self.wpos = 0;
        true
    }

    /// Takes all bytes waiting to be written.
    pub fn take_output(&mut self) -> BytesMut {
        let out = self.take_output_inner();
        self.recharge();
        out
    }

    fn take_output_inner(&mut self) -> BytesMut {
        let wpos = std::mem::take(&mut self.wpos);
        match self
            .aside
            .as_mut()
            .map(|a| &mut a.queued)
            .filter(|q| q.len > 0)
        {
            None => {
                let mut out = std::mem::take(&mut self.wbuf);
                out.drain(..wpos);
                BytesMut::from(Bytes::from(out))
            }
            Some(q) => {
                let mut out = BytesMut::with_capacity(q.len + self.wbuf.len() - wpos);
                for c in q.chunks.drain(..) {
                    out.extend_from_slice(c.as_slice());
                }
                q.len = 0;
                out.extend_from_slice(&self.wbuf[wpos..]);
                self.wbuf.clear();
                out
            }
        }
    }

    /// Number of bytes queued but not yet written.
    #[inline]
    pub fn buffered_amount(&self) -> usize {
        self.wbuf.len() - self.wpos + self.aside.as_ref().map_or(0, |a| a.queued.len)
    }

    /// Brings the budget's charge up to date with the queued output (in [`GRANULE`]s) and
    /// the deflate state. Called wherever either changes; without a budget, or while both
    /// are small, it changes nothing shared.
    #[inline]
    fn recharge(&mut self) {
        if self.account.budget().is_none() {
            return;
        }
        let queued = self.buffered_amount() / GRANULE * GRANULE;
        let state = self
            .deflate
            .as_ref()
            .map_or(0, |d| d.codec.memory_estimate());
        self.account.set(chargeable(queued + state));
    }

    /// Releases buffer memory that is not in use, and the compressor's state when it does
    /// not carry context from one message to the next.
    pub fn shrink_buffers(&mut self) {
        if self.wbuf.is_empty() {
            self.wbuf = Vec::new();
        }
        self.release_queue();
        if let Some(d) = self.deflate.as_mut() {
            d.scratch = BytesMut::new();
            d.codec.release();
        }
        self.recharge();
    }
}

#[cfg(test)]
mod tests;
