//! [`WebSocket`]: a connection over any async byte stream, driven by the sans-I/O core.

use crate::driver::{event_to_item, Driver, Handshake, TrySendError};
use crate::error::{Error, Result};
use crate::shutdown::ShutdownSignal;
use futures_core::Stream;
use futures_sink::Sink;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use wsx_proto::{
    CloseCode, CloseEvent, CloseFrame, Connection, Event, FrameTrace, Message, MessageKind,
    PreparedMessage, State, TraceConfig,
};

/// A WebSocket connection over the transport `S` (a `TcpStream`, a TLS stream, or anything
/// `AsyncRead + AsyncWrite + Unpin`).
///
/// It is a [`Stream`] of received [`Message`]s and a [`Sink`] of messages to send. Pings are
/// answered and the close handshake is completed without help: when the peer closes, the
/// stream yields `Message::Close` and then ends. Protocol violations yield one
/// [`Error::Protocol`] after the matching close frame was sent and the transport closed.
///
/// Keepalive pings, the pong, idle, close and write timeouts and the write high-water mark
/// are set in [`wsx_proto::Config`] (see [`crate::ClientBuilder::config`] and
/// [`crate::ServerConfig::config`]). They run while the connection is polled: keep reading
/// it (a peer that vanishes is noticed there). Their deadlines are kept by one process-wide
/// timer thread, `wsx-timer`, rather than a tokio timer per connection (a tokio timer costs
/// a fifth of an idle connection's memory); it starts with the first connection.
///
/// [`WebSocket::split`] gives two halves for two tasks, driven by the same code.
///
/// # When messages are written
///
/// A completed [`WebSocket::send`] means the message is accepted for sending: queued, and
/// written as far as the transport takes it, unless writing is *batched*. [`WebSocket::flush`]
/// means written. Writes are batched so that a burst costs one system call instead of one
/// per message (as uWebSockets "corks" a socket while its handler runs):
///
/// - **Replies to a burst.** When one read brings several frames, the messages sent while
///   they are being handed over (an echo, the answers to pipelined requests, the pongs) are
///   held and written together once the last of them has been handed over, when the
///   connection is next polled for input ([`WebSocket::next`](futures_util::StreamExt::next),
///   [`WebSocket::recv`], ...). They are held at most a millisecond and 64 KiB before they
///   are written anyway (checked on the next send or receive). So a handler that answers a
///   message and then does slow work before asking for the next one delays that answer;
///   call [`WebSocket::flush`] after it when it must leave at once.
/// - **Several messages at once.** [`WebSocket::cork`] queues everything sent inside it
///   with [`WebSocket::try_send`] and writes it all when it returns: a fan-out queueing
///   what has piled up for a subscriber, a game tick. A connection with nothing queued
///   encodes inside `cork` into a buffer its thread lends to each corked connection in turn
///   (and takes back once written), so relaying to thousands of connections one after
///   another works in memory the CPU has in cache rather than in one buffer per connection.
///
/// Nothing else waits: a message sent while no other input is pending is written at once,
/// as are flushes, closes, keepalive pings and replies that end a burst.
pub struct WebSocket<S> {
    pub(crate) driver: Driver<S>,
}

/// The future returned by [`WebSocket::send`]. Written out by hand rather than as an
/// `async fn`: a task that awaits it holds less for it, and every connection's task is
/// sized for its largest await.
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
        let d = &mut this.ws.driver;
        if this.msg.is_some() {
            ready!(d.poll_ready(cx))?;
            if let Some(msg) = this.msg.take() {
                d.conn.send(msg)?;
                return d.poll_sent(cx);
            }
        }
        d.poll_flush(cx)
    }
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.driver.fmt(f)
    }
}

impl<S> WebSocket<S> {
    /// Lets a server ask this connection to close with 1001 (graceful shutdown).
    pub(crate) fn with_shutdown(mut self, signal: Arc<ShutdownSignal>) -> Self {
        self.driver.set_shutdown(signal);
        self
    }

    /// Records the target of the upgrade request (server side).
    pub(crate) fn with_request_target(mut self, target: String) -> Self {
        self.driver.extras_mut().request_target = Some(target);
        self
    }

    /// Records the opening handshake (client side), see [`WebSocket::handshake`].
    pub(crate) fn with_handshake(mut self, handshake: Handshake) -> Self {
        self.driver.extras_mut().handshake = Some(handshake);
        self
    }

    /// The request target (path and query, as sent) of the upgrade request, on connections
    /// accepted with [`crate::accept_with`] or [`crate::Server`] when
    /// [`crate::ServerConfig::keep_request_target`] is set.
    pub fn request_target(&self) -> Option<&str> {
        self.driver.request_target()
    }

    /// Round-trip time of the last answered keepalive ping.
    pub fn rtt(&self) -> Option<Duration> {
        self.driver.conn.rtt()
    }

    /// The request sent and the response received (client connections only).
    pub fn handshake(&self) -> Option<&Handshake> {
        self.driver.handshake()
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.driver.protocol()
    }

    /// The connection state.
    pub fn state(&self) -> State {
        self.driver.conn.state()
    }

    /// Whether permessage-deflate is active.
    pub fn is_compressed(&self) -> bool {
        self.driver.conn.is_compressed()
    }

    /// How the connection ended (code, reason, clean or not), once it has.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        self.driver.close_event()
    }

    /// Bytes queued for sending but not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.driver.conn.buffered_amount()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.driver.io
    }

    /// The protocol state machine (for inspection).
    pub fn connection(&self) -> &Connection {
        &self.driver.conn
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
    /// branch per frame. Split halves drain it with `pop_frame_trace`.
    pub fn set_frame_trace(&mut self, config: Option<TraceConfig>) {
        self.driver.conn.set_frame_trace(config);
    }

    /// Drains the frame trace records, oldest first, both directions interleaved in the
    /// order the frames were parsed or queued. Empty while the trace is off.
    pub fn take_frame_traces(&mut self) -> impl Iterator<Item = FrameTrace> + '_ {
        self.driver.conn.take_frame_traces()
    }

    /// How many frame trace records were dropped because they were not drained in time.
    pub fn frame_traces_dropped(&self) -> u64 {
        self.driver.conn.frame_traces_dropped()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport whose opening handshake is complete. `leftover` holds bytes read
    /// after the handshake head (the first frames). The connection's settings are those
    /// `conn` was made with.
    pub fn from_parts(io: S, conn: Connection, protocol: Option<String>, leftover: &[u8]) -> Self {
        WebSocket {
            driver: Driver::new(io, conn, protocol, leftover),
        }
    }

    /// Queues a message without waiting: refused with [`TrySendError::Full`] while more than
    /// the high-water mark ([`wsx_proto::Config::write_buffer_high_water`]) is buffered.
    /// What can be written at once is written (unless writing is batched: see
    /// [`WebSocket::cork`]); the rest goes out on the next `flush`, `send` or read.
    pub fn try_send(&mut self, msg: Message) -> std::result::Result<(), TrySendError> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.driver.try_send(msg, &mut cx)
    }

    /// Sends a message: waits while more than
    /// [`wsx_proto::Config::write_buffer_high_water`] bytes are queued, queues the message,
    /// then writes until the output is empty, unless the message is one of the replies to a
    /// burst of input, which are written together (see "When messages are written" on
    /// [`WebSocket`]).
    pub fn send(&mut self, msg: Message) -> SendFuture<'_, S> {
        SendFuture {
            ws: self,
            msg: Some(msg),
        }
    }

    /// Sends a message framed once for many connections (see [`PreparedMessage`]; written
    /// as [`WebSocket::send`] writes).
    pub async fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<()> {
        poll_fn(|cx| self.driver.poll_ready(cx)).await?;
        self.driver.conn.send_prepared(msg)?;
        self.finish_send().await
    }

    /// Queues a message framed once for many connections without waiting (see
    /// [`WebSocket::try_send`] and [`PreparedMessage`]): the way to fan a message out.
    pub fn try_send_prepared(
        &mut self,
        msg: &PreparedMessage,
    ) -> std::result::Result<(), TrySendError> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.driver.try_send_prepared(msg, &mut cx)
    }

    /// Sends a message without compressing it (written as [`WebSocket::send`] writes).
    pub async fn send_uncompressed(&mut self, msg: Message) -> Result<()> {
        poll_fn(|cx| self.driver.poll_ready(cx)).await?;
        self.driver.conn.send_uncompressed(msg)?;
        self.finish_send().await
    }

    /// Sends one fragment of a message (see [`Connection::send_fragment`]; written as
    /// [`WebSocket::send`] writes).
    pub async fn send_fragment(&mut self, kind: MessageKind, data: &[u8], fin: bool) -> Result<()> {
        poll_fn(|cx| self.driver.poll_ready(cx)).await?;
        self.driver.conn.send_fragment(kind, data, fin)?;
        self.finish_send().await
    }

    async fn finish_send(&mut self) -> Result<()> {
        let mut queued = true;
        poll_fn(|cx| {
            if std::mem::take(&mut queued) {
                self.driver.poll_sent(cx)
            } else {
                self.driver.poll_flush(cx)
            }
        })
        .await
    }

    /// Writes everything queued (including replies held for a burst) and flushes the
    /// transport.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.driver.poll_flush(cx)).await
    }

    /// Runs `f` with writing held back: the messages it queues with
    /// [`WebSocket::try_send`] are written together, with as few system calls as the
    /// transport allows, when it returns (what the transport does not take then is written
    /// on the next send, flush or receive). For example, a fan-out that queues everything
    /// pending for a subscriber:
    ///
    /// ```no_run
    /// # async fn f(mut ws: wsx::WebSocket<tokio::net::TcpStream>, mut rx: tokio::sync::mpsc::Receiver<wsx::Message>) {
    /// while let Some(first) = rx.recv().await {
    ///     let full = ws.cork(|ws| {
    ///         ws.try_send(first).is_err()
    ///             || std::iter::from_fn(|| rx.try_recv().ok()).any(|m| ws.try_send(m).is_err())
    ///     });
    ///     if full {
    ///         break; // the subscriber does not keep up
    ///     }
    /// }
    /// # }
    /// ```
    pub fn cork<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.driver.begin_cork();
        // Reset even if `f` panics, so a caught panic does not leave writing held.
        struct Uncork<'a, S: AsyncRead + AsyncWrite + Unpin>(&'a mut WebSocket<S>);
        impl<S: AsyncRead + AsyncWrite + Unpin> Drop for Uncork<'_, S> {
            fn drop(&mut self) {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                self.0.driver.end_cork(&mut cx);
            }
        }
        let guard = Uncork(self);
        f(guard.0)
    }

    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next event (messages, fragments in streaming mode, and the final `Closed`).
    pub async fn next_event(&mut self) -> Option<Result<Event>> {
        poll_fn(|cx| self.driver.poll_event(cx)).await
    }

    /// Drives the connection and returns the next event (see [`WebSocket::next_event`]).
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event>>> {
        self.driver.poll_event(cx)
    }

    /// Closes the connection: sends a close frame (`None`: without status code), waits for
    /// the peer's (up to the close timeout; messages that arrive meanwhile are discarded)
    /// and closes the transport. Returns how the connection ended.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<CloseEvent> {
        self.driver.conn.close(frame)?;
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
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let ev = ready!(self.get_mut().driver.poll_event(cx));
        Poll::Ready(event_to_item(ev))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().driver.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().driver.conn.send(item).map_err(Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().driver.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let d = &mut self.get_mut().driver;
        d.conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))?;
        d.poll_flush(cx)
    }
}
