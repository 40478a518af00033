//! The one connection driver: moves bytes between a transport and the sans-I/O core, sleeps
//! until the core's next deadline, and reports the core's events.
//!
//! A [`WebSocket`](crate::WebSocket) holds a `Driver` inline; its split halves
//! ([`crate::WsReader`], [`crate::WsWriter`]) share one behind a mutex. Either way the same code reads, writes,
//! runs the timers, answers the server's shutdown signal and winds the transport down, so
//! the two shapes cannot drift apart.
//!
//! Every method takes the task's [`Context`] and never blocks. Each wake follows the core's
//! calling order ([`wsx_proto::Connection`]): drain events, write what is queued, run the
//! timers that are due, read (unless the write buffer is full: backpressure), repeat until
//! the transport has nothing more.
//!
//! All output leaves through one place, `poll_write_out`, which writes everything the core
//! has queued (several frames, and payloads queued by reference, in vectored writes).
//!
//! # Write batching
//!
//! Output is written when a message is sent or an event owes the peer a reply, except
//! while it is *held* (see [`Driver::hold_output`]), so that a burst costs one write:
//!
//! - while frames that arrived together are being handed over (the core still has unparsed
//!   input), the replies to them are held and go out together once the last has been
//!   handed over and the driver is about to read again. Held at most [`CORK_WINDOW_US`]
//!   (then written, and a new window starts) and [`CORK_MAX_BYTES`] of output. Only on
//!   the whole socket: the halves of a split socket are used by two tasks, and a writer
//!   must not wait for a reader that is busy elsewhere;
//! - inside [`crate::WebSocket::cork`] and [`crate::WsWriter::cork`], which write what they
//!   queued when they return.
//!
//! Flushing (`flush`, the `Sink`'s `poll_flush`, `close`) always writes everything.

use crate::error::{Error, Result, Timeout};
use crate::shared_timer::{self, SharedTimer};
use crate::shutdown::ShutdownSignal;
use crate::transport::{poll_discard, poll_read_into, write_some, READ_CHUNK};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use wsx_proto::handshake::client::Response;
use wsx_proto::{
    CloseCode, CloseEvent, CloseFrame, Connection, Event, Message, PreparedMessage, Role, State,
};

thread_local! {
    /// The output buffer lent to connections while they are corked on this thread (see
    /// [`Driver::begin_cork`]).
    static WARM_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A warm buffer grown past this is dropped rather than kept for the next cork.
const WARM_BUFFER_MAX: usize = 256 * 1024;

/// Where the transport is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading and writing frames.
    Open,
    /// The core is CLOSED: write the rest of the output...
    Flushing,
    /// ...(client, after a clean close) wait for the server's FIN...
    AwaitingEof,
    /// ...and shut the transport down.
    ShuttingDown,
    /// The transport is closed; the `Closed` event is due.
    Done,
    /// `Closed` event delivered; no more events.
    Finished,
}

/// The opening handshake as it happened on a client connection.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The request head sent.
    pub request: Vec<u8>,
    /// The server's response head.
    pub response: Response,
}

/// What most connections never need, allocated on first use so that an idle connection
/// does not carry it.
pub(crate) struct Extras<S> {
    pub(crate) protocol: Option<String>,
    pub(crate) pending_error: Option<Error>,
    pub(crate) close_event: Option<CloseEvent>,
    pub(crate) handshake: Option<Handshake>,
    pub(crate) request_target: Option<String>,
    /// When reading was paused for the memory budget (meaningful while [`Flags::PAUSED`]
    /// is set).
    paused_since: Option<Instant>,
    /// Set once output has been held for a batch: `Drop` writes what is still held
    /// ([`Driver::write_on_drop`]; `Drop` itself cannot require `S: AsyncWrite`).
    write_on_drop: Option<fn(&mut Driver<S>)>,
}

impl<S> Default for Extras<S> {
    fn default() -> Self {
        Extras {
            protocol: None,
            pending_error: None,
            close_event: None,
            handshake: None,
            request_target: None,
            paused_since: None,
            write_on_drop: None,
        }
    }
}

/// One connection: the transport, the core, and the glue between them.
pub(crate) struct Driver<S> {
    pub(crate) io: S,
    pub(crate) conn: Connection,
    /// Sleeps until the core's next deadline (on the process-wide timer thread).
    timer: SharedTimer,
    /// The server's shutdown request, on connections a [`crate::Server`] serves.
    shutdown: Option<Arc<ShutdownSignal>>,
    pub(crate) extras: Option<Box<Extras<S>>>,
    /// Current read size in KiB (see [`READ_CHUNK`]).
    read_chunk_kib: u16,
    pub(crate) phase: Phase,
    flags: Flags,
    /// When output started being held for a batch, in [`shared_timer::micros`] (truncated;
    /// 0: nothing held).
    held_since: u32,
}

impl<S> Drop for Driver<S> {
    fn drop(&mut self) {
        if let Some(write) = self.extras.as_ref().and_then(|e| e.write_on_drop) {
            write(self);
        }
    }
}

/// The driver's yes/no state, in one byte (every idle connection carries it).
#[derive(Clone, Copy, Default)]
struct Flags(u8);

impl Flags {
    /// The transport's read side has ended.
    const EOF: u8 = 1;
    /// Writing failed or timed out: nothing more goes out.
    const WRITE_FAILED: u8 = 1 << 1;
    /// The core's next deadline may have moved earlier than the one armed, though the
    /// connection is OPEN with nothing to write (see [`Driver::poll_timers`]).
    const DEADLINE_MOVED: u8 = 1 << 2;
    /// Inside a `cork` call: output is held until it returns.
    const CORKED: u8 = 1 << 3;
    /// An event of a held batch was just handed over: the next send is its reply.
    const REPLYING: u8 = 1 << 4;
    /// Split halves: replies to input that arrived together are not held.
    const NO_BATCHES: u8 = 1 << 5;
    /// Not reading: the memory budget is under pressure and this connection holds a large
    /// share of it (see [`Driver::pause_reading`]).
    const PAUSED: u8 = 1 << 7;
    /// Inside a `cork` call, the connection encodes into this thread's warm buffer (see
    /// [`Driver::begin_cork`]).
    const LENT: u8 = 1 << 6;

    #[inline]
    fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    #[inline]
    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }

    /// Clears `flag`, returning whether it was set.
    #[inline]
    fn take(&mut self, flag: u8) -> bool {
        let was = self.has(flag);
        self.0 &= !flag;
        was
    }
}

/// The longest that replies to input which arrived together are held back before they are
/// written (and holding starts again), in microseconds.
pub(crate) const CORK_WINDOW_US: u32 = 1000;

/// Output held back for a batch is written once this much is queued.
pub(crate) const CORK_MAX_BYTES: usize = 64 * 1024;

/// How often a connection that stopped reading for the memory budget looks again.
const PAUSE_RECHECK: Duration = Duration::from_millis(20);

/// A connection that stays paused for the memory budget this long is closed with 1013
/// (try again later), and what it holds is freed: the budget cannot stay spent on
/// messages that cannot complete.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(5);

impl<S> std::fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.conn)
            .field("protocol", &self.protocol())
            .field("phase", &self.phase)
            .finish()
    }
}

impl<S> Driver<S> {
    /// Stops holding replies back for batches of input (see the module doc): for the
    /// halves of a split socket.
    pub(crate) fn set_batch_replies(&mut self, on: bool) {
        self.flags.set(Flags::NO_BATCHES, !on);
    }

    /// Makes the connection answer the server's shutdown signal; its timer joins the
    /// server's group, through which the signal wakes it.
    pub(crate) fn set_shutdown(&mut self, signal: Arc<ShutdownSignal>) {
        self.timer.join_group(signal.group());
        self.shutdown = Some(signal);
    }

    pub(crate) fn extras_mut(&mut self) -> &mut Extras<S> {
        self.extras.get_or_insert_with(Default::default)
    }

    pub(crate) fn protocol(&self) -> Option<&str> {
        self.extras.as_ref()?.protocol.as_deref()
    }

    pub(crate) fn handshake(&self) -> Option<&Handshake> {
        self.extras.as_ref()?.handshake.as_ref()
    }

    pub(crate) fn request_target(&self) -> Option<&str> {
        self.extras.as_ref()?.request_target.as_deref()
    }

    /// How the connection ended (code, reason, clean or not), once it has.
    pub(crate) fn close_event(&self) -> Option<&CloseEvent> {
        self.extras
            .as_ref()
            .and_then(|e| e.close_event.as_ref())
            .or(self.conn.close_event())
    }

    fn take_pending_error(&mut self) -> Option<Error> {
        self.extras.as_mut()?.pending_error.take()
    }

    /// A summary of where the connection is, which changes when the state or the phase
    /// does: split halves wake each other when it changes.
    pub(crate) fn milestone(&self) -> (State, Phase, bool) {
        (
            self.conn.state(),
            self.phase,
            self.flags.has(Flags::WRITE_FAILED),
        )
    }

    /// The error a send or flush gets once nothing more can go out.
    fn closed_error(&self) -> Error {
        if self.conn.write_timed_out() {
            Error::Timeout(Timeout::Write)
        } else {
            Error::Closed
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    pub(crate) fn new(
        io: S,
        mut conn: Connection,
        protocol: Option<String>,
        leftover: &[u8],
    ) -> Self {
        let now = Instant::now();
        // The clocks start now.
        conn.handle_timeout(now);
        if !leftover.is_empty() {
            conn.receive(leftover);
            let _ = conn.mark_received(now);
        }
        Driver {
            io,
            conn,
            timer: SharedTimer::new(),
            shutdown: None,
            extras: protocol.map(|p| {
                Box::new(Extras {
                    protocol: Some(p),
                    ..Default::default()
                })
            }),
            read_chunk_kib: (READ_CHUNK / 1024) as u16,
            phase: Phase::Open,
            flags: Flags::default(),
            held_since: 0,
        }
    }

    /// Whether output queued now waits for more instead of being written (see "Write
    /// batching" in the module doc). `handover`: asked as an event is handed over, else
    /// after a message was queued.
    ///
    /// A burst is held while its input is being handed over: from the first reply queued
    /// while more input is buffered, through the handover of its last event, to the reply
    /// to that one (then the input is drained and everything is written). The clock bounds
    /// it, read at most once per message: on each handover, and on a send that is not the
    /// reply to the event just handed over (a handler that went on sending without reading).
    #[inline(never)]
    pub(crate) fn hold_output(&mut self, handover: bool) -> bool {
        if self.flags.has(Flags::CORKED) {
            return true;
        }
        if self.flags.has(Flags::NO_BATCHES) || self.conn.buffered_amount() >= CORK_MAX_BYTES {
            return false;
        }
        if handover {
            if self.held_since == 0 && !self.conn.has_buffered_input() {
                // A single message, not part of a burst.
                return false;
            }
            self.flags.set(Flags::REPLYING, true);
        } else {
            if !self.conn.has_buffered_input() {
                // The burst has been handed over.
                return false;
            }
            if self.flags.take(Flags::REPLYING) && self.held_since != 0 {
                // The reply to the event just handed over, whose handover read the clock.
                return true;
            }
        }
        // Truncated: only differences of less than CORK_WINDOW_US matter.
        let now = (shared_timer::micros(Instant::now()) as u32).max(1);
        if self.held_since == 0 {
            self.held_since = now;
            if self
                .extras
                .as_ref()
                .is_none_or(|e| e.write_on_drop.is_none())
            {
                self.extras_mut().write_on_drop = Some(Self::write_on_drop);
            }
            return true;
        }
        if now.wrapping_sub(self.held_since) < CORK_WINDOW_US {
            return true;
        }
        self.held_since = 0;
        self.flags.set(Flags::REPLYING, false);
        false
    }

    /// Writes what is queued as far as the transport takes it without waiting: replies
    /// held for a burst would be lost otherwise when the connection is dropped right after
    /// they were sent.
    fn write_on_drop(&mut self) {
        if self.phase == Phase::Open
            && !self.flags.has(Flags::WRITE_FAILED)
            && self.conn.buffered_amount() > 0
        {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let _ = self.poll_write_out(&mut cx);
        }
    }

    /// Runs the core's timers that are due and arms the shared timer for the next
    /// deadline, for the task of `cx`. True when it ran any (their results are events and
    /// output to look at).
    ///
    /// The timer is re-armed only when it fired or the core's deadline moved earlier; a
    /// deadline that moved later (keepalive and the idle timeout, on every read) lets the
    /// timer fire early once, and it is re-armed then.
    ///
    /// On an OPEN connection with nothing waiting to be written, the core's deadline only
    /// ever moves later, except when input arrives after its buffers were released (the
    /// release clock starts again) or a pong answers the keepalive ping (the next ping may
    /// be due before the pong deadline): `deadline_moved` says so. Then, while the armed timer has
    /// not fired, there is nothing to compute: this is the path every message takes.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.flags.has(Flags::DEADLINE_MOVED)
            && self.conn.state() == State::Open
            && self.conn.buffered_amount() == 0
            && !self.timer.expired(cx.waker())
        {
            return false;
        }
        self.flags.set(Flags::DEADLINE_MOVED, false);
        let mut ran = false;
        // Each round starts a timer or handles one that ran out; a few at most.
        for _ in 0..8 {
            let Some(due) = self.conn.poll_timeout() else {
                return ran;
            };
            let due_us = shared_timer::micros(due);
            let fired = self.timer.expired(cx.waker());
            if !fired && self.timer.armed_due().is_some_and(|armed| armed <= due_us) {
                return ran;
            }
            let now = Instant::now();
            if due <= now {
                self.conn.handle_timeout(now);
                ran = true;
                continue;
            }
            if fired {
                self.timer.arm(due_us, cx.waker());
            } else {
                self.timer.arm_earlier(due_us, cx.waker());
            }
            return ran;
        }
        ran
    }

    /// Stops reading for the memory budget (counted in its stats) and looks again in
    /// [`PAUSE_RECHECK`]: true. After [`MAX_PAUSE`] the connection is failed with 1013
    /// instead: false (its close frame is queued).
    #[cold]
    #[inline(never)]
    fn pause_reading(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        if !self.flags.has(Flags::PAUSED) {
            self.flags.set(Flags::PAUSED, true);
            self.extras_mut().paused_since = Some(now);
            if let Some(b) = self.conn.memory_budget() {
                b.count_paused_read();
            }
            tracing::debug!(
                held = self.conn.memory_usage(),
                "memory budget under pressure: reading paused"
            );
        } else if self
            .extras
            .as_ref()
            .and_then(|e| e.paused_since)
            .is_some_and(|since| now.duration_since(since) >= MAX_PAUSE)
        {
            self.flags.set(Flags::PAUSED, false);
            if let Some(b) = self.conn.memory_budget() {
                b.count_overload_close();
            }
            tracing::info!(
                "memory budget spent for {MAX_PAUSE:?}: closing a paused connection with 1013"
            );
            self.conn.abort(
                CloseCode::TRY_AGAIN_LATER,
                "server overloaded, try again later",
            );
            return false;
        }
        // The peer's silence is ours: no keepalive ping or idle timeout while paused.
        if self.conn.mark_received(now) {
            self.flags.set(Flags::DEADLINE_MOVED, true);
        }
        let due = shared_timer::micros(now + PAUSE_RECHECK);
        match self.timer.armed_due() {
            Some(armed) if armed <= due => {}
            Some(_) => self.timer.arm_earlier(due, cx.waker()),
            None => self.timer.arm(due, cx.waker()),
        }
        true
    }

    /// Runs the timers; true once the close timeout for the transport's wind-down ran out.
    fn linger_over(&mut self, cx: &mut Context<'_>) -> bool {
        self.poll_timers(cx);
        self.conn.linger_expired()
    }

    /// Writes queued output; `Ready(Ok)` once all of it is written.
    #[inline]
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.flags.has(Flags::WRITE_FAILED) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        while !self.conn.output().is_empty() {
            let n = ready!(write_some(&mut self.io, &self.conn, cx))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.advance_output(n);
        }
        if self.held_since != 0 {
            self.held_since = 0;
            self.flags.set(Flags::REPLYING, false);
        }
        Poll::Ready(Ok(()))
    }

    /// Starts a `cork` call: output is held until [`Driver::end_cork`]. When none is
    /// waiting, the connection is lent this thread's warm output buffer: a server relaying
    /// a publication to thousands of connections then encodes each one's frames into the
    /// same few cache lines, not into a per-connection buffer long out of the CPU's cache.
    pub(crate) fn begin_cork(&mut self) {
        self.flags.set(Flags::CORKED, true);
        if self.conn.buffered_amount() == 0 {
            let mut warm = WARM_BUFFER.take();
            // The connection's own (empty) buffer waits in the thread's slot meanwhile.
            let lent = self.conn.exchange_output_buffer(&mut warm);
            WARM_BUFFER.set(warm);
            self.flags.set(Flags::LENT, lent);
        }
    }

    /// Ends a `cork` call: writes what it queued (what the transport does not take now is
    /// written on the next send, flush or receive), and takes back a lent buffer once
    /// everything in it is written (otherwise the connection keeps it, and the thread
    /// its buffer).
    pub(crate) fn end_cork(&mut self, cx: &mut Context<'_>) {
        self.flags.set(Flags::CORKED, false);
        let _ = self.poll_sent(cx);
        if self.flags.take(Flags::LENT) {
            let mut own = WARM_BUFFER.take();
            if self.conn.exchange_output_buffer(&mut own) && own.capacity() > WARM_BUFFER_MAX {
                // Grown for a large burst: not kept for the next.
                own = Vec::new();
            }
            WARM_BUFFER.set(own);
        }
    }

    /// After a message was queued: writes it, unless output is held (see
    /// [`Driver::hold_output`]).
    #[inline]
    pub(crate) fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        // Most sends have no more input waiting and no cork: written at once.
        if (self.flags.has(Flags::CORKED) || self.conn.has_buffered_input())
            && self.hold_output(false)
        {
            return Poll::Ready(Ok(()));
        }
        self.poll_flush(cx)
    }

    /// Writes everything queued and flushes the transport. While the transport does not
    /// take it, the timers run (the write timeout among them).
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let shut = matches!(
            self.phase,
            Phase::ShuttingDown | Phase::Done | Phase::Finished
        );
        if self.flags.has(Flags::WRITE_FAILED) || (shut && !self.conn.output().is_empty()) {
            // What is still queued will not go out.
            return Poll::Ready(Err(self.closed_error()));
        }
        match self.poll_write_out(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                self.write_failed(&e);
                return Poll::Ready(Err(Error::Io(e)));
            }
            Poll::Pending => {
                self.poll_timers(cx);
                if self.conn.write_timed_out() {
                    self.flags.set(Flags::WRITE_FAILED, true);
                    return Poll::Ready(Err(Error::Timeout(Timeout::Write)));
                }
                return Poll::Pending;
            }
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    /// Ready to take a message: open, and no more than the high-water mark queued.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.phase != Phase::Open || self.flags.has(Flags::WRITE_FAILED) {
            return Poll::Ready(Err(self.closed_error()));
        }
        while self.conn.write_buffer_full() {
            ready!(self.poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// A write failed: nothing more goes out, and the connection ends (1006).
    fn write_failed(&mut self, e: &io::Error) {
        tracing::debug!("write failed: {e}");
        self.flags.set(Flags::WRITE_FAILED, true);
        self.conn.receive_eof();
        self.flags.set(Flags::EOF, true);
    }

    /// Writes whatever is queued, without waiting.
    #[inline]
    fn flush_queued(&mut self, cx: &mut Context<'_>) {
        if !self.conn.output().is_empty() && !self.flags.has(Flags::WRITE_FAILED) {
            let _ = self.poll_flush(cx);
        }
    }

    /// Queues a message without waiting (see [`crate::WebSocket::try_send`]).
    pub(crate) fn try_send(
        &mut self,
        msg: Message,
        cx: &mut Context<'_>,
    ) -> std::result::Result<(), TrySendError> {
        // Checked before the message goes to the core, so it can be handed back.
        if let Some(refuse) = self.try_send_refusal() {
            return Err(refuse(msg));
        }
        self.conn.send(msg).map_err(TrySendError::Invalid)?;
        let _ = self.poll_sent(cx);
        Ok(())
    }

    /// Queues a prepared message without waiting (see [`crate::WebSocket::try_send_prepared`]).
    pub(crate) fn try_send_prepared(
        &mut self,
        msg: &PreparedMessage,
        cx: &mut Context<'_>,
    ) -> std::result::Result<(), TrySendError> {
        if let Some(refuse) = self.try_send_refusal() {
            return Err(refuse(msg.to_message()));
        }
        self.conn
            .send_prepared(msg)
            .map_err(TrySendError::Invalid)?;
        let _ = self.poll_sent(cx);
        Ok(())
    }

    /// Why a message cannot be queued without waiting, if it cannot.
    fn try_send_refusal(&self) -> Option<fn(Message) -> TrySendError> {
        if self.phase != Phase::Open
            || self.flags.has(Flags::WRITE_FAILED)
            || self.conn.state() != State::Open
        {
            Some(TrySendError::Closed)
        } else if self.conn.write_buffer_full() {
            Some(TrySendError::Full)
        } else {
            None
        }
    }

    /// Drives the connection and returns the next event: messages, fragments (streaming
    /// mode), then `Closed` once the transport is closed, then `None`.
    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
        loop {
            match self.phase {
                Phase::Open => {}
                Phase::Flushing => {
                    // The peer may be gone; a write error just ends the flush.
                    if !self.flags.has(Flags::WRITE_FAILED)
                        && self.poll_flush(cx).is_pending()
                        && !self.linger_over(cx)
                    {
                        return Poll::Pending;
                    }
                    let clean = self.conn.close_event().is_some_and(|e| e.was_clean);
                    self.phase =
                        if self.conn.role() == Role::Client && clean && !self.flags.has(Flags::EOF)
                        {
                            // RFC 6455 §7.1.1: the server closes TCP first.
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
                            Poll::Pending if self.linger_over(cx) => break,
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    self.flags.set(Flags::EOF, true);
                    self.phase = Phase::ShuttingDown;
                    continue;
                }
                Phase::ShuttingDown => {
                    if Pin::new(&mut self.io).poll_shutdown(cx).is_pending()
                        && !self.linger_over(cx)
                    {
                        return Poll::Pending;
                    }
                    self.phase = Phase::Done;
                    continue;
                }
                Phase::Done => {
                    if let Some(e) = self.take_pending_error() {
                        return Poll::Ready(Some(Err(e)));
                    }
                    self.phase = Phase::Finished;
                    self.conn.shrink_buffers();
                    let end = self.close_event().cloned();
                    if let (Some(signal), Some(ev)) = (&self.shutdown, &end) {
                        signal.closed(ev.was_clean);
                    }
                    return Poll::Ready(end.map(|e| Ok(Event::Closed(e))));
                }
                Phase::Finished => return Poll::Ready(None),
            }
            // Phase::Open.
            if let Some(signal) = &self.shutdown {
                if signal.is_requested() && self.conn.state() == State::Open {
                    let _ = self.conn.close(Some(CloseFrame::new(
                        CloseCode::GOING_AWAY,
                        "server shutting down",
                    )));
                }
            }
            let ev = self.conn.poll_event();
            // Pongs and close replies go out as soon as the transport takes them, and
            // replies to a batch once it has been handed over.
            let held = !self.conn.output().is_empty()
                && matches!(ev, Some(Event::Message(_) | Event::Fragment(_)))
                && self.hold_output(true);
            if !held {
                self.flush_queued(cx);
            }
            if let Some(ev) = ev {
                match ev {
                    Event::Closed(ce) => {
                        if self.conn.write_timed_out() {
                            self.flags.set(Flags::WRITE_FAILED, true);
                            self.extras_mut().pending_error = Some(Error::Timeout(Timeout::Write));
                        }
                        self.extras_mut().close_event = Some(ce);
                        self.phase = Phase::Flushing;
                    }
                    Event::Error(e) => self.extras_mut().pending_error = Some(Error::Protocol(e)),
                    Event::Message(Message::Pong(p)) => {
                        // It may have answered the keepalive ping: the next ping can be due
                        // before the pong deadline that is armed.
                        self.flags.set(Flags::DEADLINE_MOVED, true);
                        return Poll::Ready(Some(Ok(Event::Message(Message::Pong(p)))));
                    }
                    other => return Poll::Ready(Some(Ok(other))),
                }
                continue;
            }
            if self.poll_timers(cx) {
                // A ping or a close frame to write, or the connection ended.
                continue;
            }
            if let Some(signal) = &self.shutdown {
                // The signal wakes the connection through its timer: keep it armed. The
                // request is checked after arming: a wake-up that found the timer without
                // a waker came before this check, which then sees it.
                if self.timer.armed_due().is_none() {
                    let parked = shared_timer::micros(Instant::now() + shared_timer::PARKED);
                    self.timer.arm(parked, cx.waker());
                }
                if signal.is_requested() && self.conn.state() == State::Open {
                    continue;
                }
            }
            // Backpressure: while the peer does not take our output, stop reading its input
            // (the pending write wakes this task when the transport takes more).
            if self.conn.write_buffer_full() {
                return Poll::Pending;
            }
            // The memory budget: the connections holding the most stop reading while it
            // is under pressure.
            if self.conn.should_pause_reading() {
                if self.pause_reading(cx) {
                    return Poll::Pending;
                }
                continue;
            }
            // (`paused_since` is set afresh when the next pause starts.)
            self.flags.set(Flags::PAUSED, false);
            let mut chunk = usize::from(self.read_chunk_kib) * 1024;
            let polled = poll_read_into(&mut self.io, &mut self.conn, &mut chunk, cx);
            self.read_chunk_kib = (chunk / 1024) as u16;
            match polled {
                Poll::Ready(Ok(0)) => {
                    self.flags.set(Flags::EOF, true);
                    self.conn.receive_eof();
                }
                Poll::Ready(Ok(_)) => {
                    if self.conn.mark_received(Instant::now()) {
                        self.flags.set(Flags::DEADLINE_MOVED, true);
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.flags.set(Flags::EOF, true);
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
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Why [`crate::WebSocket::try_send`] did not queue a message; the message is handed back.
#[derive(Debug)]
#[non_exhaustive]
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
