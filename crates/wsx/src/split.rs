//! Read and write halves of a [`WebSocket`](crate::WebSocket), for using one connection from
//! two tasks.
//!
//! The halves share no protocol state: the reader owns the receiving state machine
//! ([`wsx_proto::connection::Receiver`]), the writer the sending one
//! ([`wsx_proto::connection::Sender`]). What they share is the transport's write side, so
//! that the reader can answer pings and close frames even while the application never
//! touches the writer. That shared write side sits behind a `std` mutex that is only held
//! for non-blocking write attempts (never across an `.await`); reading takes no lock except
//! to hand over a pong or a close reply.
//!
//! The halves keep the close timeout and answer pings. The reader also runs the keepalive
//! pings, the pong timeout and the idle timeout of [`WebSocketOptions`] (so keep polling it:
//! a peer that vanishes is noticed there), and when the connection ends it wakes a writer
//! that waits for the socket, which then fails with [`Error::Closed`]. The writer runs the
//! write timeout: when its output makes no progress for that long it fails with
//! [`Error::Timeout`], and so does the reader, which then ends the connection (1006).

use crate::error::{Error, Result};
use crate::shared_timer::{self, later, SharedTimer};
use crate::websocket::{event_to_item, fired, keepalive_due, poll_discard, WebSocketOptions};
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::task::AtomicWaker;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::{Instant, Sleep};
use wsx_proto::connection::{Receiver, Sender};
use wsx_proto::{CloseCode, CloseEvent, CloseFrame, Event, Message, MessageKind, Role, State};

const READ_CHUNK: usize = 16 * 1024;

/// Which half is writing: the reader writes pongs and close replies, the writer messages.
#[derive(Clone, Copy)]
enum Half {
    Reader = 0,
    Writer = 1,
}

pub(crate) struct WriteSide<S> {
    io: WriteHalf<S>,
    tx: Sender,
    shut: bool,
    /// The tasks of halves whose last write attempt found the socket full. The socket keeps
    /// one write waker (the last task that tried), so the other one is woken from here
    /// whenever a write makes progress.
    blocked: [Option<std::task::Waker>; 2],
    /// Bytes written so far, by either half: the writer's write timeout restarts whenever
    /// this moves.
    written: u64,
}

impl<S: AsyncRead + AsyncWrite> WriteSide<S> {
    /// [`WriteSide::poll_write_out`] on behalf of `half`, keeping both halves' tasks awake:
    /// progress wakes the other half if it is blocked; a full socket records this one.
    fn poll_write_out_for(&mut self, half: Half, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let before = self.tx.buffered_amount();
        let r = self.poll_write_out(cx);
        if r.is_ready() || self.tx.buffered_amount() < before {
            if let Some(other) = self.blocked[1 - half as usize].take() {
                other.wake();
            }
        }
        let slot = &mut self.blocked[half as usize];
        if r.is_pending() {
            match slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        } else {
            *slot = None;
        }
        r
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.output().is_empty() {
            let n = ready!(crate::websocket::write_some(&mut self.io, &self.tx, cx))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tx.advance_output(n);
            self.written += n as u64;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

struct SharedState<S> {
    write: Mutex<WriteSide<S>>,
    /// Mirrors `Sender::close_sent`, so the reader can check it without the lock.
    close_sent: AtomicBool,
    /// The writer's output stalled past the write timeout: the connection is over.
    write_timed_out: AtomicBool,
    /// The reader's task, registered before it waits (only with a write timeout set), so
    /// the writer can wake it for `write_timed_out`.
    reader_waker: AtomicWaker,
}

type Shared<S> = Arc<SharedState<S>>;

/// The guard of the write side; on drop it publishes whether a close frame was sent.
struct Guard<'a, S> {
    guard: MutexGuard<'a, WriteSide<S>>,
    flag: &'a AtomicBool,
}

impl<S> std::ops::Deref for Guard<'_, S> {
    type Target = WriteSide<S>;
    fn deref(&self) -> &WriteSide<S> {
        &self.guard
    }
}

impl<S> std::ops::DerefMut for Guard<'_, S> {
    fn deref_mut(&mut self) -> &mut WriteSide<S> {
        &mut self.guard
    }
}

impl<S> Drop for Guard<'_, S> {
    fn drop(&mut self) {
        if self.guard.tx.close_sent() {
            self.flag.store(true, Ordering::Release);
        }
    }
}

fn lock<S>(shared: &Shared<S>) -> Guard<'_, S> {
    // A panic while holding the lock cannot leave the write side inconsistent in a way that
    // matters more than losing the connection; keep going with the inner value.
    Guard {
        guard: shared.write.lock().unwrap_or_else(|e| e.into_inner()),
        flag: &shared.close_sent,
    }
}

/// The receiving half: a [`Stream`] of messages. Answers pings and close frames through the
/// shared write side.
pub struct WsReader<S> {
    io: ReadHalf<S>,
    rx: Receiver,
    writer: Shared<S>,
    options: WebSocketOptions,
    timer: Option<Pin<Box<Sleep>>>,
    pending_error: Option<Error>,
    closing: bool,
    finished: bool,
    eof: bool,
    /// A reply of ours waits for the socket to take it.
    write_blocked: bool,
    /// Keepalive pings and the idle timeout; `None` when both are off.
    keepalive: Option<Box<Keepalive>>,
}

/// The reader's keepalive state: one timer, re-armed lazily when it fires. Times are
/// [`shared_timer::now`] microseconds.
struct Keepalive {
    timer: SharedTimer,
    last_recv: u64,
    /// When the ping in flight was sent (0: none); also its payload (8 bytes big endian).
    ping_sent: u64,
}

impl Keepalive {
    /// When the ping in flight was sent, if one is.
    fn ping(&self) -> Option<u64> {
        (self.ping_sent != 0).then_some(self.ping_sent)
    }
}

/// The sending half: a [`Sink`] of messages.
pub struct WsWriter<S> {
    writer: Shared<S>,
    options: WebSocketOptions,
    /// Running while queued output makes no progress (see `write_timeout`).
    write_timer: Option<Pin<Box<Sleep>>>,
    /// `WriteSide::written` when the timer last (re)started.
    written_at_timer: u64,
}

pub(crate) fn split<S>(
    io: S,
    rx: Receiver,
    tx: Sender,
    options: WebSocketOptions,
) -> (WsReader<S>, WsWriter<S>)
where
    S: AsyncRead + AsyncWrite,
{
    let (r, w) = tokio::io::split(io);
    let close_sent = AtomicBool::new(tx.close_sent());
    let writer = Arc::new(SharedState {
        write: Mutex::new(WriteSide {
            io: w,
            tx,
            shut: false,
            blocked: [None, None],
            written: 0,
        }),
        close_sent,
        write_timed_out: AtomicBool::new(false),
        reader_waker: AtomicWaker::new(),
    });
    (
        WsReader {
            io: r,
            rx,
            writer: writer.clone(),
            options,
            timer: None,
            pending_error: None,
            closing: false,
            finished: false,
            eof: false,
            write_blocked: false,
            keepalive: keepalive_on(&options).then(|| {
                Box::new(Keepalive {
                    timer: SharedTimer::new(),
                    last_recv: shared_timer::now(),
                    ping_sent: 0,
                })
            }),
        },
        WsWriter {
            writer,
            options,
            write_timer: None,
            written_at_timer: 0,
        },
    )
}

/// Whether the reader has keepalive work: pings or an idle timeout.
fn keepalive_on(options: &WebSocketOptions) -> bool {
    options.ping_interval.is_some() || options.idle_timeout.is_some()
}

impl<S: AsyncRead + AsyncWrite> WsReader<S> {
    /// How the connection ended, once it has.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        self.rx.close_event()
    }

    /// The oldest trace record of a received frame not yet taken, when the frame trace was
    /// turned on before splitting ([`WebSocket::set_frame_trace`](crate::WebSocket::set_frame_trace)).
    /// Records of both halves share one sequence (`FrameTrace::seq`) for merging.
    pub fn pop_frame_trace(&mut self) -> Option<wsx_proto::FrameTrace> {
        self.rx.pop_frame_trace()
    }

    /// Trace records of received frames dropped because nobody took them in time.
    pub fn frame_traces_dropped(&self) -> u64 {
        self.rx.frame_traces_dropped()
    }

    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    fn timer_fired(&mut self, cx: &mut Context<'_>) -> bool {
        fired(&mut self.timer, self.options.close_timeout, cx)
    }

    /// Hands replies to the write side and tries to write them (again, while they wait for
    /// the socket: this task may be the one the socket wakes, for the writer's bytes too).
    fn push_replies(&mut self, cx: &mut Context<'_>) {
        if !self.rx.has_reply() && !self.write_blocked {
            return;
        }
        let mut w = lock(&self.writer);
        while let Some(r) = self.rx.take_reply() {
            w.tx.reply(r);
        }
        self.write_blocked = matches!(w.poll_write_out_for(Half::Reader, cx), Poll::Pending);
    }

    /// Keepalive pings, the pong timeout and the idle timeout, as on the unsplit
    /// `WebSocket`: a ping goes out after `ping_interval` without received bytes, an
    /// unanswered one fails the connection with 1011 after `pong_timeout`, and
    /// `idle_timeout` without received bytes closes it with 1001. True when it failed the
    /// connection (its `Closed` event is due).
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(ka) = self.keepalive.as_deref_mut() else {
            return false;
        };
        let opts = &self.options;
        if !ka.timer.expired(cx.waker()) {
            return false;
        }
        let now = shared_timer::now();
        if self.rx.is_closed() {
            return false;
        }
        if let Some(sent) = ka.ping() {
            if now >= later(sent, opts.pong_timeout) {
                self.rx
                    .abort(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                return true;
            }
        }
        let close_sent = self.writer.close_sent.load(Ordering::Acquire);
        if let Some(idle) = opts.idle_timeout {
            if now >= later(ka.last_recv, idle) && !close_sent {
                let mut w = lock(&self.writer);
                let _ =
                    w.tx.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout")));
                self.write_blocked = w.poll_write_out_for(Half::Reader, cx).is_pending();
                // Re-armed at the next poll, which finds the close sent.
                return false;
            }
        }
        if let (None, Some(every)) = (ka.ping(), opts.ping_interval) {
            if now >= later(ka.last_recv, every) && !close_sent {
                let payload = wsx_proto::Bytes::copy_from_slice(&now.to_be_bytes());
                let mut w = lock(&self.writer);
                if w.tx.send(Message::Ping(payload)).is_ok() {
                    ka.ping_sent = now;
                }
                self.write_blocked = w.poll_write_out_for(Half::Reader, cx).is_pending();
            }
        }
        let due = keepalive_due(
            now,
            ka.last_recv,
            ka.ping(),
            (opts.ping_interval, opts.pong_timeout, opts.idle_timeout),
            None,
        );
        ka.timer.arm(due, cx.waker());
        false
    }

    /// Notes a pong: answers our keepalive ping when the payload matches.
    fn on_pong(&mut self, payload: &[u8]) {
        if let Some(ka) = self.keepalive.as_deref_mut() {
            if ka.ping().is_some_and(|sent| payload == sent.to_be_bytes()) {
                ka.ping_sent = 0;
            }
        }
    }

    /// The transport part of closing: flush, (client) wait for the server's FIN, shut down.
    fn poll_close_transport(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut w = lock(&self.writer);
            if !w.shut
                && w.poll_write_out_for(Half::Reader, cx).is_pending()
                && !fired(&mut self.timer, self.options.close_timeout, cx)
            {
                return Poll::Pending;
            }
        }
        let clean = self.rx.close_event().is_some_and(|e| e.was_clean);
        if self.rx.role() == Role::Client && clean && !self.eof {
            loop {
                match poll_discard(&mut self.io, cx) {
                    Poll::Ready(Ok(n)) if n > 0 => {}
                    Poll::Ready(_) => break,
                    Poll::Pending if self.timer_fired(cx) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.eof = true;
        }
        let mut w = lock(&self.writer);
        if !w.shut {
            if Pin::new(&mut w.io).poll_shutdown(cx).is_pending()
                && !fired(&mut self.timer, self.options.close_timeout, cx)
            {
                return Poll::Pending;
            }
            w.shut = true;
            // A writer waiting for the socket would wait forever (the peer may be gone).
            if let Some(writer) = w.blocked[Half::Writer as usize].take() {
                writer.wake();
            }
        }
        Poll::Ready(())
    }

    /// Drives the receiving side and returns the next event.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            if self.closing {
                ready!(self.poll_close_transport(cx));
                if let Some(e) = self.pending_error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                self.finished = true;
                return Poll::Ready(self.rx.close_event().cloned().map(|e| Ok(Event::Closed(e))));
            }
            let ev = self.rx.poll_event();
            self.push_replies(cx);
            if let Some(ev) = ev {
                match ev {
                    Event::Closed(_) => {
                        self.closing = true;
                        self.timer = None;
                    }
                    Event::Error(e) => self.pending_error = Some(Error::Protocol(e)),
                    Event::Message(Message::Pong(p)) => {
                        self.on_pong(&p);
                        return Poll::Ready(Some(Ok(Event::Message(Message::Pong(p)))));
                    }
                    other => return Poll::Ready(Some(Ok(other))),
                }
                continue;
            }
            if self.poll_keepalive(cx) {
                continue;
            }
            if self.writer.write_timed_out.load(Ordering::Acquire) {
                self.eof = true;
                self.rx.receive_eof();
                self.pending_error = Some(Error::Timeout("write"));
                continue;
            }
            if self.writer.close_sent.load(Ordering::Acquire) && self.timer_fired(cx) {
                // The peer did not answer our close frame in time.
                self.rx.receive_eof();
                continue;
            }
            let buf = self.rx.read_buf();
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, self.rx.read_buf()) {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    self.rx.receive_eof();
                }
                Poll::Ready(Ok(_)) => {
                    if let Some(ka) = self.keepalive.as_deref_mut() {
                        ka.last_recv = shared_timer::now();
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.eof = true;
                    self.rx.receive_eof();
                    self.pending_error = Some(Error::Io(e));
                }
                Poll::Pending => {
                    // About to wait: registered for the writer's timeout first, then checked, so
                    // a timeout set in between still wakes us (only waits register, not reads).
                    if self.options.write_timeout.is_some() {
                        self.writer.reader_waker.register(cx.waker());
                        if self.writer.write_timed_out.load(Ordering::Acquire) {
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Stream for WsReader<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let ev = ready!(self.get_mut().poll_event(cx));
        Poll::Ready(event_to_item(ev))
    }
}

impl<S: AsyncRead + AsyncWrite> WsWriter<S> {
    /// The oldest trace record of a sent frame not yet taken (see
    /// [`WsReader::pop_frame_trace`]).
    pub fn pop_frame_trace(&self) -> Option<wsx_proto::FrameTrace> {
        lock(&self.writer).tx.pop_frame_trace()
    }

    /// Trace records of sent frames dropped because nobody took them in time.
    pub fn frame_traces_dropped(&self) -> u64 {
        lock(&self.writer).tx.frame_traces_dropped()
    }

    /// Sends a message and flushes it.
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        lock(&self.writer).tx.send(msg)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends one fragment of a message and flushes it.
    pub async fn send_fragment(&mut self, kind: MessageKind, data: &[u8], fin: bool) -> Result<()> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        lock(&self.writer).tx.send_fragment(kind, data, fin)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends a close frame and flushes it; the reader half sees the peer's answer and ends.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        lock(&self.writer).tx.close(frame)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Bytes queued but not yet written.
    pub fn buffered_amount(&self) -> usize {
        lock(&self.writer).tx.buffered_amount()
    }

    /// CLOSING once a close frame was sent, OPEN before (the reader knows when it is CLOSED).
    pub fn state(&self) -> State {
        if lock(&self.writer).tx.close_sent() {
            State::Closing
        } else {
            State::Open
        }
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let w = lock(&self.writer);
        if w.shut {
            return Poll::Ready(Err(Error::Closed));
        }
        if w.tx.buffered_amount() > self.options.write_buffer_high_water {
            drop(w);
            return self.poll_out(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_out(cx)
    }

    /// Writes what is queued, bounded by the write timeout: the clock restarts whenever
    /// bytes go out, and when it runs out the connection is over for both halves.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.writer.write_timed_out.load(Ordering::Acquire) {
            return Poll::Ready(Err(Error::Timeout("write")));
        }
        let mut w = lock(&self.writer);
        if w.shut && !w.tx.output().is_empty() {
            // The reader closed the transport: what is still queued will not go out.
            return Poll::Ready(Err(Error::Closed));
        }
        match w.poll_write_out_for(Half::Writer, cx) {
            Poll::Ready(r) => {
                self.write_timer = None;
                Poll::Ready(r.map_err(Error::from))
            }
            Poll::Pending => {
                let Some(after) = self.options.write_timeout else {
                    return Poll::Pending;
                };
                if w.written != self.written_at_timer {
                    // Progress (ours or the reader's replies): the stall clock starts again.
                    self.written_at_timer = w.written;
                    if let Some(t) = self.write_timer.as_mut() {
                        t.as_mut().reset(Instant::now() + after);
                    }
                }
                if !fired(&mut self.write_timer, after, cx) {
                    return Poll::Pending;
                }
                self.write_timer = None;
                // Nothing more goes out; the reader ends the connection.
                w.shut = true;
                drop(w);
                self.writer.write_timed_out.store(true, Ordering::Release);
                self.writer.reader_waker.wake();
                Poll::Ready(Err(Error::Timeout("write")))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_inner(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        lock(&self.writer).tx.send(item).map_err(Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        lock(&this.writer)
            .tx
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))?;
        this.poll_flush_inner(cx)
    }
}
