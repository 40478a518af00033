//! Read and write halves of a [`WebSocket`](crate::WebSocket), for using one connection from
//! two tasks.
//!
//! # Design: one driver, two thin handles
//!
//! The halves share the whole connection's driver (transport, core and timers) behind a
//! `std` mutex, so everything the whole socket does, the halves do, by the same code:
//! keepalive and its round-trip time, the idle, close and write timeouts, the server's
//! shutdown signal (1001), backpressure, read-buffer sizing and idle buffer release. The
//! lock is only held while a half polls the driver, which never blocks (never across an
//! `.await`), so a half waits for the other at most for one non-blocking step.
//!
//! The other shape, a task of its own that owns the connection with channels to the
//! handles (quinn's driver), was not chosen: every message would cross a channel and wake a
//! second task, and the connection would need a task even when the application drives it
//! itself. Here the tasks that use the halves drive the connection.
//!
//! Both halves poll the driver with one waker that wakes both: readiness of the transport
//! (in either direction) and the timer can matter to either half, and a spurious wake-up
//! is cheap where a missed one hangs. A half also wakes the other when the connection
//! changes state under it (a close frame queued by the writer starts the reader's close
//! timer; the end of the connection fails a writer that waits for the socket).
//!
//! Keep polling the reader: it runs the read side of the protocol (answering pings and
//! close frames, noticing a vanished peer). The writer runs the write timeout while it
//! waits; when it runs out, both halves see [`Error::Timeout`]. [`WsReader::reunite`] gives
//! the whole [`WebSocket`](crate::WebSocket) back.

use crate::driver::event_to_item;
use crate::driver::{Driver, TrySendError};
use crate::error::{Error, Result};
use crate::websocket::WebSocket;
use futures_core::Stream;
use futures_sink::Sink;
use futures_util::task::AtomicWaker;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use wsx_proto::{
    CloseCode, CloseEvent, CloseFrame, Event, FrameTrace, Message, MessageKind, PreparedMessage,
    State,
};

/// Which half is polling.
#[derive(Clone, Copy)]
enum Half {
    Reader = 0,
    Writer = 1,
}

/// The tasks of both halves, woken together (see the module documentation).
#[derive(Default)]
struct HalfWakers([AtomicWaker; 2]);

impl Wake for HalfWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0[0].wake();
        self.0[1].wake();
    }
}

struct Shared<S> {
    driver: Mutex<Driver<S>>,
    wakers: Arc<HalfWakers>,
    /// Wakes both halves: the waker the driver is polled with.
    waker: Waker,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Driver<S>> {
        // The driver is left consistent between steps; a panic in another half's task
        // must not take this one down with it.
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the driver for `half`, with the shared waker; wakes the other half when
    /// the connection changed state meanwhile.
    fn drive<R>(
        &self,
        half: Half,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Driver<S>, &mut Context<'_>) -> R,
    ) -> R {
        self.wakers.0[half as usize].register(cx.waker());
        self.act(half, f)
    }

    /// [`Shared::drive`] for a step that does not wait (queueing a message): the task of
    /// `half` is not registered.
    fn act<R>(&self, half: Half, f: impl FnOnce(&mut Driver<S>, &mut Context<'_>) -> R) -> R {
        let mut driver = self.lock();
        let before = driver.milestone();
        let mut shared_cx = Context::from_waker(&self.waker);
        let r = f(&mut driver, &mut shared_cx);
        if driver.milestone() != before {
            self.wakers.0[1 - half as usize].wake();
        }
        r
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Splits into a reading half (a `Stream`) and a writing half (a `Sink`) for use from
    /// two tasks; [`crate::WsReader::reunite`] puts them back together.
    ///
    /// The halves share this connection's driver behind a mutex held only for
    /// non-blocking steps, so they behave exactly as the whole socket does: keepalive and
    /// [`rtt`](crate::WsReader::rtt), the idle, close and write timeouts, the server's
    /// shutdown (1001), backpressure and buffer release. Keep polling the reader (it
    /// answers pings and close frames and notices a vanished peer); a writer waiting for
    /// the socket runs the write timeout, and when the connection ends it fails with
    /// [`Error::Closed`] (or [`Error::Timeout`]) instead of waiting forever.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        split(self.driver)
    }
}

fn split<S>(mut driver: Driver<S>) -> (WsReader<S>, WsWriter<S>) {
    // The writer's task is not the one handing over the input: it would wait for a reader
    // that may be busy elsewhere.
    driver.set_batch_replies(false);
    let wakers = Arc::new(HalfWakers::default());
    let shared = Arc::new(Shared {
        driver: Mutex::new(driver),
        waker: Waker::from(wakers.clone()),
        wakers,
    });
    (
        WsReader {
            shared: shared.clone(),
        },
        WsWriter { shared },
    )
}

/// The receiving half: a [`Stream`] of messages. It also answers pings and close frames and
/// runs the connection's timers.
pub struct WsReader<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half: a [`Sink`] of messages.
pub struct WsWriter<S> {
    shared: Arc<Shared<S>>,
}

impl<S> std::fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WsReader")
            .field(&*self.shared.lock())
            .finish()
    }
}

impl<S> std::fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WsWriter")
            .field(&*self.shared.lock())
            .finish()
    }
}

/// What both halves can tell about the connection.
macro_rules! common_accessors {
    () => {
        /// The connection state.
        pub fn state(&self) -> State {
            self.shared.lock().conn.state()
        }

        /// How the connection ended, once it has.
        pub fn close_event(&self) -> Option<CloseEvent> {
            self.shared.lock().close_event().cloned()
        }

        /// Round-trip time of the last answered keepalive ping.
        pub fn rtt(&self) -> Option<Duration> {
            self.shared.lock().conn.rtt()
        }

        /// Bytes queued for sending but not yet written.
        pub fn buffered_amount(&self) -> usize {
            self.shared.lock().conn.buffered_amount()
        }

        /// The subprotocol agreed in the handshake.
        pub fn protocol(&self) -> Option<String> {
            self.shared.lock().protocol().map(str::to_owned)
        }

        /// The oldest frame trace record not yet taken, either direction, when the trace
        /// was turned on before splitting
        /// ([`WebSocket::set_frame_trace`](crate::WebSocket::set_frame_trace)).
        pub fn pop_frame_trace(&self) -> Option<FrameTrace> {
            self.shared.lock().conn.pop_frame_trace()
        }

        /// Frame trace records dropped because nobody took them in time.
        pub fn frame_traces_dropped(&self) -> u64 {
            self.shared.lock().conn.frame_traces_dropped()
        }
    };
}

impl<S> WsReader<S> {
    common_accessors!();

    /// Puts the halves back together; hands them back when they are not of one
    /// connection.
    pub fn reunite(
        self,
        writer: WsWriter<S>,
    ) -> std::result::Result<WebSocket<S>, (WsReader<S>, WsWriter<S>)> {
        if !Arc::ptr_eq(&self.shared, &writer.shared) {
            return Err((self, writer));
        }
        drop(writer);
        let shared = Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| unreachable!("both halves were given back"));
        let mut driver = shared
            .driver
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        driver.set_batch_replies(true);
        Ok(WebSocket { driver })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next event (messages, fragments in streaming mode, and the final `Closed`).
    pub async fn next_event(&mut self) -> Option<Result<Event>> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Drives the connection and returns the next event.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
        self.shared.drive(Half::Reader, cx, Driver::poll_event)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsReader<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let ev = ready!(self.get_mut().poll_event(cx));
        Poll::Ready(event_to_item(ev))
    }
}

impl<S> WsWriter<S> {
    common_accessors!();
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.drive(Half::Writer, cx, Driver::poll_ready)
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.drive(Half::Writer, cx, Driver::poll_flush)
    }

    /// Queues with `queue` once the connection takes a message, then flushes.
    async fn queue_and_flush(
        &mut self,
        queue: impl FnOnce(&mut wsx_proto::Connection) -> std::result::Result<(), wsx_proto::SendError>,
    ) -> Result<()> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.shared.act(Half::Writer, |d, _| queue(&mut d.conn))?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends a message and flushes it (waiting first while the write buffer is full).
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        self.queue_and_flush(|c| c.send(msg)).await
    }

    /// Sends a message without compressing it, and flushes it.
    pub async fn send_uncompressed(&mut self, msg: Message) -> Result<()> {
        self.queue_and_flush(|c| c.send_uncompressed(msg)).await
    }

    /// Sends one fragment of a message and flushes it.
    pub async fn send_fragment(&mut self, kind: MessageKind, data: &[u8], fin: bool) -> Result<()> {
        self.queue_and_flush(|c| c.send_fragment(kind, data, fin))
            .await
    }

    /// Queues a message without waiting (see [`WebSocket::try_send`]).
    pub fn try_send(&mut self, msg: Message) -> std::result::Result<(), TrySendError> {
        self.shared.act(Half::Writer, |d, cx| d.try_send(msg, cx))
    }

    /// Sends a message framed once for many connections (see [`PreparedMessage`]).
    pub async fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<()> {
        self.queue_and_flush(|c| c.send_prepared(msg)).await
    }

    /// Queues a message framed once for many connections without waiting (see
    /// [`WebSocket::try_send_prepared`]).
    pub fn try_send_prepared(
        &mut self,
        msg: &PreparedMessage,
    ) -> std::result::Result<(), TrySendError> {
        self.shared
            .act(Half::Writer, |d, cx| d.try_send_prepared(msg, cx))
    }

    /// Runs `f` with writing held back: the messages it queues with
    /// [`WsWriter::try_send`] are written together when it returns (see
    /// [`WebSocket::cork`]).
    pub fn cork<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.shared.act(Half::Writer, |d, _| d.begin_cork());
        // Reset even if `f` panics, so a caught panic does not leave writing held.
        struct Uncork<'a, S: AsyncRead + AsyncWrite + Unpin>(&'a mut WsWriter<S>);
        impl<S: AsyncRead + AsyncWrite + Unpin> Drop for Uncork<'_, S> {
            fn drop(&mut self) {
                self.0.shared.act(Half::Writer, |d, cx| d.end_cork(cx));
            }
        }
        let guard = Uncork(self);
        f(guard.0)
    }

    /// Queues a close frame without waiting (as [`WsWriter::try_send`] queues a message):
    /// it is written as the socket takes it, whoever polls next; the reader half sees the
    /// peer's answer and ends (or the close timeout runs out). For closing a connection
    /// from a task that does not own the writer's turn, say one that fans messages out.
    pub fn start_close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        self.shared.act(Half::Writer, |d, cx| {
            d.conn.close(frame)?;
            let _ = d.poll_sent(cx);
            Ok(())
        })
    }

    /// Sends a close frame and flushes it; the reader half sees the peer's answer and ends.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        self.shared.act(Half::Writer, |d, _| d.conn.close(frame))?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_ready_inner(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut()
            .shared
            .act(Half::Writer, |d, _| d.conn.send(item))
            .map_err(Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        this.shared.drive(Half::Writer, cx, |d, _| {
            d.conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        })?;
        this.poll_flush_inner(cx)
    }
}
