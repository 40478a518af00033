//! [`WebSocket`]: a connection over any async byte stream, driven by the sans-I/O core.

use crate::error::{Error, Result};
use crate::shared_timer::{self, later, SharedTimer};
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::task::AtomicWaker;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use wsx_proto::handshake::client::Response;
use wsx_proto::{
    CloseCode, CloseEvent, CloseFrame, Connection, Event, FrameTrace, Message, MessageKind, Role,
    State, TraceConfig,
};

/// Read buffer size of an active connection to begin with (released after a second
/// without traffic); it doubles, up to [`MAX_READ_CHUNK`], each time a read fills it.
const READ_CHUNK: usize = 16 * 1024;
/// The largest read buffer the adaptive sizing grows to, and the most one read asks for,
/// even into a buffer made for a whole large frame.
///
/// Larger reads are slower, not faster: a read of everything queued drains the socket, the
/// next one waits in epoll for the peer's next segment, and the payload is unmasked after
/// it has left the cache. On the 2 x 1 MiB echo, reads of up to 1 MiB gave 1.90k msg/s at
/// 304 us of server CPU per message; reads of at most 64 KiB (one loopback segment) gave
/// 2.21k msg/s at 280 us (BENCHMARKS.md, "Large messages").
const MAX_READ_CHUNK: usize = 64 * 1024;
/// The most room made at once for the rest of a frame whose header has arrived (a peer
/// announcing a huge frame does not get it reserved up front; beyond this the buffer grows
/// as the bytes arrive).
const MAX_FRAME_RESERVE: usize = 4 * 1024 * 1024;

/// A connection that has received nothing for this long gives its buffers back.
const RELEASE_BUFFERS_AFTER: Duration = Duration::from_secs(1);

/// Runtime options of an open connection.
#[derive(Clone, Copy, Debug)]
pub struct WebSocketOptions {
    /// How long to wait for the peer's close frame after sending ours, and (client) for the
    /// server to close TCP after the close handshake (default 5 s).
    pub close_timeout: Duration,
    /// `poll_ready` (and so `send`) waits, [`WebSocket::try_send`] refuses, and reading
    /// pauses while more than this many bytes are queued for writing (default 1 MiB; at
    /// most 4 GiB, larger values are clamped to that).
    pub write_buffer_high_water: usize,
    /// Send a ping when nothing has been received for this long (default 20 s; `None`: no
    /// automatic pings).
    pub ping_interval: Option<Duration>,
    /// Fail the connection with 1011 when a ping is not answered within this time
    /// (default 20 s).
    pub pong_timeout: Duration,
    /// Close with 1001 when nothing has been received for this long (default: never).
    pub idle_timeout: Option<Duration>,
    /// Drop the connection when queued output makes no progress for this long: a peer that
    /// stops reading cannot hold memory forever (default 30 s; `None`: wait forever).
    pub write_timeout: Option<Duration>,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        WebSocketOptions {
            close_timeout: Duration::from_secs(5),
            write_buffer_high_water: 1 << 20,
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(20),
            idle_timeout: None,
            write_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// [`WebSocketOptions`] as each connection keeps them: 24 bytes instead of 88, since every
/// idle connection carries a copy. Timeouts are whole milliseconds, rounded up, at most
/// about 49 days (longer ones are clamped to that); the high-water mark is at most
/// `u32::MAX` bytes (4 GiB; larger ones are clamped to that).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedOptions {
    high_water: u32,
    close_timeout: u32,
    pong_timeout: u32,
    ping_interval: u32,
    idle_timeout: u32,
    write_timeout: u32,
}

/// The packed form of `None`.
const NO_TIMEOUT: u32 = u32::MAX;

fn pack_ms(d: Duration) -> u32 {
    d.as_nanos()
        .div_ceil(1_000_000)
        .min(u128::from(NO_TIMEOUT - 1)) as u32
}

fn pack_opt_ms(d: Option<Duration>) -> u32 {
    d.map_or(NO_TIMEOUT, pack_ms)
}

fn unpack_opt_ms(ms: u32) -> Option<Duration> {
    (ms != NO_TIMEOUT).then(|| Duration::from_millis(ms.into()))
}

impl PackedOptions {
    pub(crate) fn new(o: &WebSocketOptions) -> Self {
        PackedOptions {
            high_water: u32::try_from(o.write_buffer_high_water).unwrap_or(u32::MAX),
            close_timeout: pack_ms(o.close_timeout),
            pong_timeout: pack_ms(o.pong_timeout),
            ping_interval: pack_opt_ms(o.ping_interval),
            idle_timeout: pack_opt_ms(o.idle_timeout),
            write_timeout: pack_opt_ms(o.write_timeout),
        }
    }

    pub(crate) fn unpack(&self) -> WebSocketOptions {
        WebSocketOptions {
            close_timeout: self.close_timeout(),
            write_buffer_high_water: self.write_buffer_high_water(),
            ping_interval: self.ping_interval(),
            pong_timeout: self.pong_timeout(),
            idle_timeout: self.idle_timeout(),
            write_timeout: self.write_timeout(),
        }
    }

    pub(crate) fn write_buffer_high_water(&self) -> usize {
        self.high_water as usize
    }

    pub(crate) fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.close_timeout.into())
    }

    fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout.into())
    }

    fn ping_interval(&self) -> Option<Duration> {
        unpack_opt_ms(self.ping_interval)
    }

    fn idle_timeout(&self) -> Option<Duration> {
        unpack_opt_ms(self.idle_timeout)
    }

    fn write_timeout(&self) -> Option<Duration> {
        unpack_opt_ms(self.write_timeout)
    }
}

/// When a keepalive timer next has something to check, at least 1 ms from `now`: the pong
/// deadline of the ping in flight (else when the next ping is due), the idle timeout, and
/// `other` (the buffer release). `timeouts` are the ping interval, pong timeout and idle
/// timeout; `last_recv` is when bytes last arrived and `ping_sent` when the ping in flight
/// went out. All times are [`shared_timer::now`] microseconds.
pub(crate) fn keepalive_due(
    now: u64,
    last_recv: u64,
    ping_sent: Option<u64>,
    timeouts: (Option<Duration>, Duration, Option<Duration>),
    other: Option<u64>,
) -> u64 {
    let (ping_interval, pong_timeout, idle_timeout) = timeouts;
    let ping_due = match (ping_sent, ping_interval) {
        (Some(sent), _) => Some(later(sent, pong_timeout)),
        (None, Some(every)) => Some(later(last_recv, every)),
        (None, None) => None,
    };
    let idle_due = idle_timeout.map(|idle| later(last_recv, idle));
    [ping_due, idle_due, other]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(later(now, Duration::from_secs(86400)))
        .max(later(now, Duration::from_millis(1)))
}

/// Keepalive, idle timeout and buffer release: one timer, re-armed lazily when it fires.
/// Times are [`shared_timer::now`] microseconds. 48 bytes, and every connection has one.
struct Heartbeat {
    timer: SharedTimer,
    last_recv: u64,
    /// When the ping in flight was sent (0: none). Its payload is this time, 8 bytes big
    /// endian: unique per connection without a counter.
    ping_sent: u64,
    /// The server's shutdown request, on connections a [`crate::Server`] serves. Here
    /// rather than in the `WebSocket`: this box exists anyway, and the connection's task
    /// is sized for the `WebSocket`.
    shutdown: Option<Arc<ShutdownSignal>>,
    /// Round-trip time of the last answered ping in microseconds, plus one (0: none yet).
    rtt: u32,
    /// Current read buffer size in KiB (see [`READ_CHUNK`]).
    read_chunk_kib: u16,
    /// Buffers were released since the last received bytes.
    released: bool,
}

impl Heartbeat {
    fn new() -> Self {
        Heartbeat {
            timer: SharedTimer::new(),
            last_recv: shared_timer::now(),
            ping_sent: 0,
            shutdown: None,
            rtt: 0,
            read_chunk_kib: (READ_CHUNK / 1024) as u16,
            released: false,
        }
    }

    fn read_chunk(&self) -> usize {
        usize::from(self.read_chunk_kib) * 1024
    }

    fn ping(&self) -> Option<u64> {
        (self.ping_sent != 0).then_some(self.ping_sent)
    }
}

/// A request to shut the connection down, shared with a server (see
/// [`crate::Server::serve_until`]). Checking it costs one atomic load.
#[derive(Debug, Default)]
pub(crate) struct ShutdownSignal {
    requested: AtomicBool,
    waker: AtomicWaker,
    /// Set when the handshake completed (only such connections are reported on).
    pub(crate) upgraded: AtomicBool,
    /// Set when the connection ended with a clean close handshake.
    pub(crate) clean: AtomicBool,
}

impl ShutdownSignal {
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Polls `timer`, starting it with `after` if needed; true once it has fired.
pub(crate) fn fired(
    timer: &mut Option<Pin<Box<Sleep>>>,
    after: Duration,
    cx: &mut Context<'_>,
) -> bool {
    timer
        .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)))
        .as_mut()
        .poll(cx)
        .is_ready()
}

/// What the core has to write: a [`Connection`] or, after a split, its [`wsx_proto::connection::Sender`].
pub(crate) trait Output {
    fn output(&self) -> &[u8];
    fn buffered_amount(&self) -> usize;
    fn output_vectored<'a>(&'a self, dst: &mut [io::IoSlice<'a>]) -> usize;
}

impl Output for Connection {
    fn output(&self) -> &[u8] {
        Connection::output(self)
    }
    fn buffered_amount(&self) -> usize {
        Connection::buffered_amount(self)
    }
    fn output_vectored<'a>(&'a self, dst: &mut [io::IoSlice<'a>]) -> usize {
        Connection::output_vectored(self, dst)
    }
}

impl Output for wsx_proto::connection::Sender {
    fn output(&self) -> &[u8] {
        wsx_proto::connection::Sender::output(self)
    }
    fn buffered_amount(&self) -> usize {
        wsx_proto::connection::Sender::buffered_amount(self)
    }
    fn output_vectored<'a>(&'a self, dst: &mut [io::IoSlice<'a>]) -> usize {
        wsx_proto::connection::Sender::output_vectored(self, dst)
    }
}

/// Writes what `conn` has queued: with one vectored write when the output is in several
/// pieces (a frame header and a large payload queued without a copy) and the transport
/// takes vectored writes, else the first piece.
pub(crate) fn write_some<S: AsyncWrite + Unpin>(
    io: &mut S,
    conn: &impl Output,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let first = conn.output();
    if first.len() < conn.buffered_amount() && io.is_write_vectored() {
        let mut slices = [io::IoSlice::new(&[]); 8];
        let k = conn.output_vectored(&mut slices);
        if k > 1 {
            return Pin::new(io).poll_write_vectored(cx, &slices[..k]);
        }
    }
    Pin::new(io).poll_write(cx, first)
}

/// Makes room for `want` more bytes in `buf`: in place when its allocation allows, else in a
/// new buffer holding only the unread bytes, with `slack` bytes more. (`BytesMut::reserve`
/// on a buffer whose front was split off can reallocate the whole allocation, consumed front
/// included: a large copy per message in the 1 MiB echo profile.)
///
/// The slack matters for frames sized to the buffer: a new buffer exactly as large as the
/// frame is empty after it, so the next message starts with no buffer at all, and costs
/// two allocations and an extra copy (10 x 16 KiB echo: 8% of throughput).
fn make_room(buf: &mut bytes::BytesMut, want: usize, slack: usize) {
    if buf.capacity() - buf.len() >= want || buf.try_reclaim(want) {
        return;
    }
    let mut fresh = bytes::BytesMut::with_capacity(buf.len() + want + slack);
    fresh.extend_from_slice(buf);
    *buf = fresh;
}

/// Reads and throws away what the peer still sends (while waiting for its FIN after the
/// close handshake); `Ready(Ok(0))` at end of stream.
pub(crate) fn poll_discard<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut sink = [0u8; 512];
    let mut buf = tokio::io::ReadBuf::new(&mut sink);
    ready!(Pin::new(io).poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(buf.filled().len()))
}

/// Where the transport is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading and writing frames.
    Open,
    /// The core is CLOSED: flush, (client) wait for the server's FIN, shut down.
    Flushing,
    AwaitingEof,
    ShuttingDown,
    /// The transport is closed; the Closed event is due.
    Done,
    /// Closed event delivered; the stream has ended.
    Finished,
}

/// A WebSocket connection over the transport `S` (a `TcpStream`, a TLS stream, or anything
/// `AsyncRead + AsyncWrite + Unpin`).
///
/// It is a [`Stream`] of received [`Message`]s and a [`Sink`] of messages to send. Pings are
/// answered and the close handshake is completed without help: when the peer closes, the
/// stream yields `Message::Close` and then ends. Protocol violations yield one
/// [`Error::Protocol`] after the matching close frame was sent and the transport closed.
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    options: PackedOptions,
    phase: Phase,
    eof: bool,
    /// What most connections never need (a subprotocol, the handshake record, how it
    /// ended, the close and write timers): allocated on first use, so an idle connection
    /// does not carry it.
    extras: Option<Box<Extras>>,
    heartbeat: Box<Heartbeat>,
    write_failed: bool,
}

/// The future returned by [`WebSocket::send`]. Written out by hand rather than as an
/// `async fn`: a task that awaits it holds 56 bytes for it instead of 128, and every
/// connection's task is sized for its largest await.
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, S> {
    ws: &'a mut WebSocket<S>,
    /// The message, until it is queued.
    msg: Option<Message>,
}

impl<S> std::fmt::Debug for SendFuture<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("queued", &self.msg.is_none())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for SendFuture<'_, S> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.msg.is_some() {
            ready!(this.ws.poll_ready_inner(cx))?;
            if let Some(msg) = this.msg.take() {
                this.ws.conn.send(msg)?;
            }
        }
        this.ws.poll_flush_inner(cx)
    }
}

/// Why [`WebSocket::try_send`] did not queue a message; the message is handed back.
#[derive(Debug)]
pub enum TrySendError {
    /// More than the high-water mark is queued: wait (e.g. `send().await`) or drop it.
    Full(Message),
    /// The connection is closing or closed.
    Closed(Message),
    /// The message itself cannot be sent (oversized control frame, bad close code, ...).
    Invalid(wsx_proto::SendError),
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("write buffer full"),
            TrySendError::Closed(_) => f.write_str("connection closed"),
            TrySendError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TrySendError {}

/// The opening handshake as it happened on a client connection.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The request head sent.
    pub request: Vec<u8>,
    /// The server's response head.
    pub response: Response,
}

/// The rarely used parts of a [`WebSocket`].
#[derive(Default)]
struct Extras {
    protocol: Option<String>,
    pending_error: Option<Error>,
    close_event: Option<CloseEvent>,
    handshake: Option<Handshake>,
    request_target: Option<String>,
    /// The close timer: the peer's close frame, the server's FIN, our shutdown.
    timer: Option<Pin<Box<Sleep>>>,
    /// Runs while output is waiting for the transport (see `WebSocketOptions::write_timeout`).
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl Extras {
    fn is_unused(&self) -> bool {
        // Destructured, so that a new field cannot be forgotten here.
        let Extras {
            protocol,
            pending_error,
            close_event,
            handshake,
            request_target,
            timer,
            write_timer,
        } = self;
        protocol.is_none()
            && pending_error.is_none()
            && close_event.is_none()
            && handshake.is_none()
            && request_target.is_none()
            && timer.is_none()
            && write_timer.is_none()
    }
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.conn)
            .field(
                "protocol",
                &self.extras.as_ref().and_then(|e| e.protocol.as_deref()),
            )
            .field("phase", &self.phase)
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport whose opening handshake is complete. `leftover` holds bytes read
    /// after the handshake head (the first frames).
    pub fn from_parts(
        io: S,
        mut conn: Connection,
        protocol: Option<String>,
        leftover: &[u8],
        options: WebSocketOptions,
    ) -> Self {
        conn.receive(leftover);
        WebSocket {
            io,
            conn,
            options: PackedOptions::new(&options),
            phase: Phase::Open,
            eof: false,
            extras: protocol.map(|p| {
                Box::new(Extras {
                    protocol: Some(p),
                    ..Default::default()
                })
            }),
            heartbeat: Box::new(Heartbeat::new()),
            write_failed: false,
        }
    }

    /// Lets a server ask this connection to close with 1001 (graceful shutdown).
    pub(crate) fn with_shutdown(mut self, signal: Arc<ShutdownSignal>) -> Self {
        self.heartbeat.shutdown = Some(signal);
        self
    }

    /// Records the target of the upgrade request (server side).
    pub(crate) fn with_request_target(mut self, target: String) -> Self {
        self.extras_mut().request_target = Some(target);
        self
    }

    /// The request target (path and query, as sent) of the upgrade request, on connections
    /// accepted with [`crate::accept_with`] or [`crate::Server`] when
    /// [`crate::ServerConfig::keep_request_target`] is set.
    pub fn request_target(&self) -> Option<&str> {
        self.extras.as_ref()?.request_target.as_deref()
    }

    /// Round-trip time of the last answered keepalive ping.
    pub fn rtt(&self) -> Option<Duration> {
        match self.heartbeat.rtt {
            0 => None,
            us => Some(Duration::from_micros(u64::from(us) - 1)),
        }
    }

    /// Queues a message without waiting: refused with [`TrySendError::Full`] while more than
    /// the high-water mark is buffered. What can be written at once is written; the rest goes
    /// out on the next `flush`, `send` or read.
    pub fn try_send(&mut self, msg: Message) -> std::result::Result<(), TrySendError> {
        // Checked before the message goes to the core, so it can be handed back.
        if self.phase != Phase::Open || self.write_failed || self.conn.state() != State::Open {
            return Err(TrySendError::Closed(msg));
        }
        if self.conn.buffered_amount() > self.options.write_buffer_high_water() {
            return Err(TrySendError::Full(msg));
        }
        self.conn.send(msg).map_err(TrySendError::Invalid)?;
        let mut cx = Context::from_waker(Waker::noop());
        let _ = self.poll_flush_inner(&mut cx);
        Ok(())
    }

    /// Records the opening handshake (client side), see [`WebSocket::handshake`].
    pub(crate) fn with_handshake(mut self, handshake: Handshake) -> Self {
        self.extras_mut().handshake = Some(handshake);
        self
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }

    /// Takes the error to report once the connection has wound down.
    fn take_pending_error(&mut self) -> Option<Error> {
        self.extras.as_mut()?.pending_error.take()
    }

    fn own_close_event(&self) -> Option<&CloseEvent> {
        self.extras.as_ref()?.close_event.as_ref()
    }

    /// The request sent and the response received (client connections only).
    pub fn handshake(&self) -> Option<&Handshake> {
        self.extras.as_ref()?.handshake.as_ref()
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.extras.as_ref()?.protocol.as_deref()
    }

    /// The connection state.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Whether permessage-deflate is active.
    pub fn is_compressed(&self) -> bool {
        self.conn.is_compressed()
    }

    /// How the connection ended (code, reason, clean or not), once it has.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        self.own_close_event().or(self.conn.close_event())
    }

    /// Bytes queued for sending but not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.conn.buffered_amount()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The protocol state machine (for inspection).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Turns the frame-level trace on (`Some`) or off (`None`), like the frames pane of
    /// browser devtools; see [`wsx_proto::trace`] for what each [`FrameTrace`] holds.
    ///
    /// Every frame the connection receives or queues for sending from then on is recorded:
    /// messages sent by any path (`send`, `try_send`, the `Sink`), keepalive pings, and the
    /// pongs and close replies sent without help. Drain the records with
    /// [`WebSocket::take_frame_traces`], e.g. after each `next()`; records that are not
    /// drained are kept up to [`TraceConfig::capacity`] per direction, then the oldest are
    /// dropped ([`WebSocket::frame_traces_dropped`]). Off by default, where it costs one
    /// branch per frame. After [`WebSocket::split`] the halves keep tracing (see
    /// [`wsx_proto::connection::Receiver::pop_frame_trace`]) but offer no way to drain it.
    pub fn set_frame_trace(&mut self, config: Option<TraceConfig>) {
        self.conn.set_frame_trace(config);
    }

    /// Drains the frame trace records, oldest first, both directions interleaved in the
    /// order the frames were parsed or queued. Empty while the trace is off.
    pub fn take_frame_traces(&mut self) -> impl Iterator<Item = FrameTrace> + '_ {
        self.conn.take_frame_traces()
    }

    /// How many frame trace records were dropped because they were not drained in time.
    pub fn frame_traces_dropped(&self) -> u64 {
        self.conn.frame_traces_dropped()
    }

    /// Splits into a reading half (a `Stream`) and a writing half (a `Sink`) for use from
    /// two tasks. See [`crate::split`] for how they cooperate.
    pub fn split(self) -> (crate::split::WsReader<S>, crate::split::WsWriter<S>) {
        let (rx, tx) = self.conn.split();
        crate::split::split(self.io, rx, tx, self.options.unpack())
    }

    /// Sends a message and flushes it: waits while more than
    /// [`WebSocketOptions::write_buffer_high_water`] bytes are queued, queues the message,
    /// then writes until the output is empty.
    pub fn send(&mut self, msg: Message) -> SendFuture<'_, S> {
        SendFuture {
            ws: self,
            msg: Some(msg),
        }
    }

    /// Sends a message without compressing it, and flushes it.
    pub async fn send_uncompressed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.conn.send_uncompressed(msg)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends one fragment of a message (see [`Connection::send_fragment`]) and flushes it.
    pub async fn send_fragment(&mut self, kind: MessageKind, data: &[u8], fin: bool) -> Result<()> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.conn.send_fragment(kind, data, fin)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next event (messages, fragments in streaming mode, and the final `Closed`).
    pub async fn next_event(&mut self) -> Option<Result<Event>> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Closes the connection: sends a close frame (`None`: without status code), waits for
    /// the peer's (up to the close timeout; messages that arrive meanwhile are discarded)
    /// and closes the transport. Returns how the connection ended.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<CloseEvent> {
        self.conn.close(frame)?;
        while let Some(ev) = self.next_event().await {
            if let Ok(Event::Closed(ev)) = ev {
                return Ok(ev);
            }
        }
        Ok(self.close_event().cloned().unwrap_or(CloseEvent {
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            was_clean: false,
        }))
    }

    /// Writes queued output; `Ready(Ok)` once all of it is written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        while !self.conn.output().is_empty() {
            match write_some(&mut self.io, &self.conn, cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.conn.advance_output(n);
                    // Progress: the stall clock starts again.
                    let timer = self.extras.as_mut().and_then(|e| e.write_timer.as_mut());
                    if let (Some(t), Some(after)) = (timer, self.options.write_timeout()) {
                        t.as_mut().reset(Instant::now() + after);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if let Some(after) = self.options.write_timeout() {
                        if fired(&mut self.extras_mut().write_timer, after, cx) {
                            self.stop_write_timer();
                            self.write_failed = true;
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "write timed out: the peer is not reading",
                            )));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
        self.stop_write_timer();
        Poll::Ready(Ok(()))
    }

    /// Writes whatever is queued, without waiting; a failed or timed-out write ends the
    /// connection (1006).
    #[inline]
    fn flush_queued(&mut self, cx: &mut Context<'_>) {
        if self.conn.output().is_empty() || self.write_failed {
            return;
        }
        self.flush_queued_now(cx);
    }

    fn flush_queued_now(&mut self, cx: &mut Context<'_>) {
        if let Poll::Ready(Err(e)) = self.poll_flush_inner(cx) {
            tracing::debug!("write failed: {e}");
            if matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::TimedOut) {
                self.extras_mut().pending_error = Some(Error::Timeout("write"));
            }
            self.write_failed = true;
            self.conn.receive_eof();
            self.eof = true;
        }
    }

    /// Keepalive pings, pong timeout and idle timeout; registers the timer's waker.
    fn poll_heartbeat(&mut self, cx: &mut Context<'_>) {
        let opts = self.options;
        let hb = &mut self.heartbeat;
        // Two atomic loads while the timer is armed for this task and has not fired.
        if !hb.timer.expired(cx.waker()) {
            return;
        }
        let now = shared_timer::now();
        if let Some(sent) = hb.ping() {
            if now >= later(sent, opts.pong_timeout()) {
                self.conn
                    .abort(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                return;
            }
        }
        if let Some(idle) = opts.idle_timeout() {
            if now >= later(hb.last_recv, idle) {
                let _ = self
                    .conn
                    .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout")));
            }
        }
        if let (None, Some(every)) = (hb.ping(), opts.ping_interval()) {
            if now >= later(hb.last_recv, every) && self.conn.state() == State::Open {
                let payload = wsx_proto::Bytes::copy_from_slice(&now.to_be_bytes());
                if self.conn.send(Message::Ping(payload)).is_ok() {
                    hb.ping_sent = now;
                }
            }
        }
        if !hb.released && now >= later(hb.last_recv, RELEASE_BUFFERS_AFTER) {
            // Idle: hold no read or write buffer until traffic resumes.
            self.conn.shrink_buffers();
            hb.released = true;
            hb.read_chunk_kib = (READ_CHUNK / 1024) as u16;
        }
        let release_due = (!hb.released).then(|| later(hb.last_recv, RELEASE_BUFFERS_AFTER));
        let due = keepalive_due(
            now,
            hb.last_recv,
            hb.ping(),
            (
                opts.ping_interval(),
                opts.pong_timeout(),
                opts.idle_timeout(),
            ),
            release_due,
        );
        hb.timer.arm(due, cx.waker());
    }

    /// Notes a pong: answers our keepalive ping when the payload matches.
    fn on_pong(&mut self, payload: &[u8]) {
        let hb = &mut self.heartbeat;
        if let Some(sent) = hb.ping() {
            if payload == sent.to_be_bytes() {
                let us = shared_timer::now().saturating_sub(sent);
                hb.rtt = u32::try_from(us).unwrap_or(u32::MAX - 1) + 1;
                hb.ping_sent = 0;
            }
        }
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.phase != Phase::Open {
            return Poll::Ready(Err(Error::Closed));
        }
        while self.conn.buffered_amount() > self.options.write_buffer_high_water() {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        ready!(self.poll_write_out(cx))?;
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Polls the close timer, starting it if needed; true once it has fired.
    fn timer_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let after = self.options.close_timeout();
        fired(&mut self.extras_mut().timer, after, cx)
    }

    fn stop_timer(&mut self) {
        if self
            .extras
            .as_mut()
            .is_some_and(|e| e.timer.take().is_some())
        {
            self.release_unused_extras();
        }
    }

    /// Called after every completed flush: looks at the rest of the extras only when a
    /// stall's timer was actually running.
    fn stop_write_timer(&mut self) {
        if self
            .extras
            .as_mut()
            .is_some_and(|e| e.write_timer.take().is_some())
        {
            self.release_unused_extras();
        }
    }

    /// Frees the extras once nothing is in them, e.g. after a write stall that ended:
    /// a connection that once had to wait for the transport goes back to idle size.
    fn release_unused_extras(&mut self) {
        if self.extras.as_deref().is_some_and(Extras::is_unused) {
            self.extras = None;
        }
    }

    /// Drives the connection and returns the next event (see [`WebSocket::next_event`]).
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
        loop {
            match self.phase {
                Phase::Open => {}
                Phase::Flushing => {
                    // The peer may be gone; a write error just ends the flush.
                    if !self.write_failed
                        && self.poll_flush_inner(cx).is_pending()
                        && !self.timer_fired(cx)
                    {
                        return Poll::Pending;
                    }
                    let clean = self.conn.close_event().is_some_and(|e| e.was_clean);
                    self.phase = if self.conn.role() == Role::Client && clean && !self.eof {
                        // RFC 6455 §7.1.1: the server closes TCP first.
                        self.stop_timer();
                        Phase::AwaitingEof
                    } else {
                        Phase::ShuttingDown
                    };
                    continue;
                }
                Phase::AwaitingEof => {
                    loop {
                        match poll_discard(&mut self.io, cx) {
                            Poll::Ready(Ok(n)) if n > 0 => {}
                            Poll::Ready(_) => break,
                            Poll::Pending if self.timer_fired(cx) => break,
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    self.eof = true;
                    self.phase = Phase::ShuttingDown;
                    continue;
                }
                Phase::ShuttingDown => {
                    if Pin::new(&mut self.io).poll_shutdown(cx).is_pending()
                        && !self.timer_fired(cx)
                    {
                        return Poll::Pending;
                    }
                    self.stop_timer();
                    self.phase = Phase::Done;
                    continue;
                }
                Phase::Done => {
                    if let Some(e) = self.take_pending_error() {
                        return Poll::Ready(Some(Err(e)));
                    }
                    self.phase = Phase::Finished;
                    self.conn.shrink_buffers();
                    if let (Some(signal), Some(ev)) =
                        (&self.heartbeat.shutdown, self.own_close_event())
                    {
                        signal.clean.store(ev.was_clean, Ordering::Release);
                    }
                    return Poll::Ready(
                        self.own_close_event()
                            .cloned()
                            .map(|e| Ok(Event::Closed(e))),
                    );
                }
                Phase::Finished => return Poll::Ready(None),
            }
            // Phase::Open.
            if let Some(signal) = &self.heartbeat.shutdown {
                if signal.requested.load(Ordering::Acquire) && self.conn.state() == State::Open {
                    let _ = self.conn.close(Some(CloseFrame::new(
                        CloseCode::GOING_AWAY,
                        "server shutting down",
                    )));
                }
            }
            let ev = self.conn.poll_event();
            // Pongs and close replies go out as soon as the transport takes them.
            self.flush_queued(cx);
            if let Some(ev) = ev {
                match ev {
                    Event::Closed(ce) => {
                        self.extras_mut().close_event = Some(ce);
                        self.stop_timer();
                        self.phase = Phase::Flushing;
                    }
                    Event::Error(e) => self.extras_mut().pending_error = Some(Error::Protocol(e)),
                    Event::Message(Message::Pong(p)) => {
                        self.on_pong(&p);
                        return Poll::Ready(Some(Ok(Event::Message(Message::Pong(p)))));
                    }
                    other => return Poll::Ready(Some(Ok(other))),
                }
                continue;
            }
            self.poll_heartbeat(cx);
            self.flush_queued(cx);
            if self.conn.state() == State::Closed {
                continue;
            }
            // Waiting for the peer's close frame is bounded by the close timeout.
            if self.conn.state() == State::Closing && self.timer_fired(cx) {
                self.conn.receive_eof();
                continue;
            }
            if let Some(signal) = &self.heartbeat.shutdown {
                signal.waker.register(cx.waker());
            }
            // Backpressure: while the peer does not take our output, stop reading its input.
            if self.conn.buffered_amount() > self.options.write_buffer_high_water() {
                return Poll::Pending;
            }
            let polled = if self.conn.read_buf().capacity() == 0 {
                // No buffer (a fresh or idle connection): read into the stack and keep only
                // what arrived, so connections that stay quiet hold no read buffer.
                // Uninitialized: zeroing 2 KiB on every read showed up as 7.5% of the
                // server's instructions per message (callgrind, 100 x 20 B echo).
                let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
                let mut rb = tokio::io::ReadBuf::uninit(&mut stack);
                match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        self.conn.receive(rb.filled());
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            } else {
                // A read that fills the buffer costs a second syscall (tokio learns that the
                // socket is drained only from a short read): with a fixed 16 KiB buffer a
                // 16 KiB echo took 2 reads per message. So the buffer grows while reads fill
                // it, and small-message connections keep a small one.
                let chunk = self.heartbeat.read_chunk();
                // A large frame whose header is in: room for all of it at once (up to
                // MAX_FRAME_RESERVE), rather than regrowing (and copying) step by step.
                let missing = self.conn.frame_remaining().min(MAX_FRAME_RESERVE);
                let buf = self.conn.read_buf();
                let free = buf.capacity() - buf.len();
                if missing > free {
                    // With room for the next message's start after this frame.
                    make_room(buf, missing, chunk);
                } else if free < chunk / 2 {
                    make_room(buf, chunk, 0);
                }
                let room = (buf.capacity() - buf.len()).min(MAX_READ_CHUNK);
                let r = tokio_util::io::poll_read_buf(
                    Pin::new(&mut self.io),
                    cx,
                    &mut bytes::BufMut::limit(self.conn.read_buf(), room),
                );
                if matches!(r, Poll::Ready(Ok(n)) if n == room) && chunk < MAX_READ_CHUNK {
                    self.heartbeat.read_chunk_kib *= 2;
                }
                r
            };
            match polled {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    self.conn.receive_eof();
                }
                Poll::Ready(Ok(_)) => {
                    let hb = &mut self.heartbeat;
                    hb.last_recv = shared_timer::now();
                    if hb.released {
                        // Active again: make sure the timer comes back to release later.
                        hb.released = false;
                        let due = later(hb.last_recv, RELEASE_BUFFERS_AFTER);
                        hb.timer.arm_earlier(due, cx.waker());
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.eof = true;
                    self.conn.receive_eof();
                    self.extras_mut().pending_error = Some(Error::Io(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Maps an event to an item of a `Stream` of messages (`None`: the stream has ended).
///
/// In streaming mode each fragment becomes a `Binary` message (a text fragment may split a
/// code point); use `next_event` to tell fragments apart.
pub(crate) fn event_to_item(ev: Option<Result<Event>>) -> Option<Result<Message>> {
    match ev? {
        Ok(Event::Message(m)) => Some(Ok(m)),
        Ok(Event::Fragment(f)) => Some(Ok(Message::Binary(f.data))),
        Ok(Event::Closed(_)) => None,
        Ok(Event::Error(e)) => Some(Err(Error::Protocol(e))),
        Err(e) => Some(Err(e)),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let ev = ready!(self.get_mut().poll_event(cx));
        Poll::Ready(event_to_item(ev))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_inner(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().conn.send(item).map_err(Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        this.conn
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))?;
        this.poll_flush_inner(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write timer lives in the lazily allocated extras; a stall that ends frees them
    /// again, so a connection that once waited for its peer is back to idle size.
    #[tokio::test]
    async fn extras_made_for_a_write_stall_are_freed_when_it_ends() {
        use tokio::io::AsyncReadExt;
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let conn = Connection::new(Role::Server, &wsx_proto::Config::default(), None);
        let mut ws = WebSocket::from_parts(ours, conn, None, &[], WebSocketOptions::default());
        assert!(ws.extras.is_none());
        let payload = vec![7u8; 64 * 1024];
        let drain = tokio::spawn(async move {
            let mut got = vec![0u8; payload.len() + 16];
            let mut n = 0;
            // Start reading only after the writer has had to wait.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while n < 64 * 1024 + 4 {
                n += theirs.read(&mut got[n..]).await.unwrap();
            }
            theirs
        });
        let send = ws.send(Message::Binary(vec![7u8; 64 * 1024].into()));
        tokio::pin!(send);
        // The first poll cannot finish: the pipe holds 1 KiB.
        let first = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        assert!(
            ws_has_extras(&send),
            "the stall did not start the write timer"
        );
        send.await.unwrap();
        let _theirs = drain.await.unwrap();
        assert!(ws.extras.is_none(), "extras kept after the stall ended");
    }

    fn ws_has_extras<S>(send: &Pin<&mut SendFuture<'_, S>>) -> bool {
        send.ws
            .extras
            .as_ref()
            .is_some_and(|e| e.write_timer.is_some())
    }

    #[test]
    fn packed_options_round_trip() {
        let defaults = WebSocketOptions::default();
        let packed = PackedOptions::new(&defaults);
        assert_eq!(format!("{:?}", packed.unpack()), format!("{defaults:?}"));
        assert!(std::mem::size_of::<PackedOptions>() <= 24);

        let odd = WebSocketOptions {
            close_timeout: Duration::from_micros(1500),
            write_buffer_high_water: 7,
            ping_interval: None,
            pong_timeout: Duration::from_secs(u64::MAX),
            idle_timeout: Some(Duration::ZERO),
            write_timeout: Some(Duration::from_nanos(1)),
        };
        let back = PackedOptions::new(&odd).unpack();
        // Rounded up to whole milliseconds, so a timeout never fires early.
        assert_eq!(back.close_timeout, Duration::from_millis(2));
        assert_eq!(back.write_buffer_high_water, 7);
        let huge = WebSocketOptions {
            write_buffer_high_water: usize::MAX,
            ..defaults
        };
        // Clamped to 4 GiB, not wrapped to a small mark.
        let clamped = PackedOptions::new(&huge).unpack();
        assert_eq!(clamped.write_buffer_high_water, u32::MAX as usize);
        assert_eq!(back.ping_interval, None);
        // Clamped, not wrapped or turned into "none".
        assert_eq!(
            back.pong_timeout,
            Duration::from_millis(u64::from(NO_TIMEOUT - 1))
        );
        assert_eq!(back.idle_timeout, Some(Duration::ZERO));
        assert_eq!(back.write_timeout, Some(Duration::from_millis(1)));
    }

    #[test]
    fn keepalive_due_picks_the_earliest_check() {
        let now = 1_000_000_000;
        let s = |n| Duration::from_secs(n);
        let at = |n| later(now, s(n));
        let timeouts = (Some(s(20)), s(5), Some(s(60)));
        // Next ping 20 s after the last bytes, unless the idle timeout or `other` is sooner.
        assert_eq!(keepalive_due(now, now, None, timeouts, None), at(20));
        assert_eq!(keepalive_due(now, now, None, timeouts, Some(at(1))), at(1));
        // A ping in flight: its pong deadline, not the next ping.
        assert_eq!(keepalive_due(now, now, Some(at(2)), timeouts, None), at(7));
        // Nothing to do: a day away. Overdue: 1 ms from now, never in the past.
        assert_eq!(
            keepalive_due(now, now, None, (None, s(5), None), None),
            at(86400)
        );
        let past = now - 500_000;
        assert_eq!(
            keepalive_due(now, past, None, (Some(Duration::ZERO), s(5), None), None),
            now + 1000
        );
    }

    #[test]
    fn the_heartbeat_stays_small() {
        // Every connection has one, boxed: 48 bytes is one jemalloc size class.
        assert!(std::mem::size_of::<Heartbeat>() <= 48);
    }
}
