//! A connection as the hub sees it: its send queue (shared by its session's replies and the
//! fan-out of every channel it is in), who it is, its timers, and what the server asks of
//! it from outside its task (disconnect, server-side subscribe and unsubscribe).

use crate::codes::{self, Disconnect};
use crate::protocol::Json;
use futures_util::task::AtomicWaker;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Messages a client may have waiting for its thread's flusher; more means the flusher
/// cannot run (its thread is starved), and the client is disconnected as slow.
const MAX_DEFERRED: usize = 4096;

/// The capacity of a client's flushed queue that is kept for the next burst.
const KEPT_QUEUE: usize = 16;
use std::time::Instant;
use wsx::{CloseCode, CloseFrame, Message, PreparedMessage, TrySendError};

/// Where a client's messages go: the writing half of its WebSocket. Every send queues
/// without waiting; a client whose queue is over its high-water mark is slow.
pub trait Outbox: Send + 'static {
    /// Queues a message framed once for many connections.
    fn try_send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), TrySendError>;
    /// Queues a message.
    fn try_send(&mut self, msg: Message) -> Result<(), TrySendError>;
    /// Queues a close frame.
    fn start_close(&mut self, frame: CloseFrame);
    /// Queues messages framed once for many, written together; stops at the first that
    /// cannot be queued.
    fn try_send_all(&mut self, msgs: &[PreparedMessage]) -> Result<(), TrySendError> {
        msgs.iter().try_for_each(|m| self.try_send_prepared(m))
    }
}

impl<S> Outbox for wsx::WsWriter<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn try_send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), TrySendError> {
        wsx::WsWriter::try_send_prepared(self, msg)
    }

    fn try_send(&mut self, msg: Message) -> Result<(), TrySendError> {
        wsx::WsWriter::try_send(self, msg)
    }

    fn start_close(&mut self, frame: CloseFrame) {
        let _ = wsx::WsWriter::start_close(self, Some(frame));
    }

    fn try_send_all(&mut self, msgs: &[PreparedMessage]) -> Result<(), TrySendError> {
        self.cork(|w| msgs.iter().try_for_each(|m| w.try_send_prepared(m)))
    }
}

/// Something the server asks of a client's session from outside its task.
#[derive(Debug)]
pub(crate) enum ServerCommand {
    /// Subscribe it to a channel (server API `subscribe`).
    Subscribe(String),
    /// Unsubscribe it from a channel (server API `unsubscribe`).
    Unsubscribe(String),
}

/// A connection's id: 128 random bits, shown in the UUID v4 form. Kept as a number, so
/// that an idle connection holds no string for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClientId(u128);

impl ClientId {
    /// A new random id (version 4, variant 1 bits set as in a UUID).
    pub fn random() -> Self {
        let n: u128 = rand::random();
        ClientId((n & !(0xf << 76) & !(0b11 << 62)) | (0x4 << 76) | (0b10 << 62))
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            n >> 96,
            (n >> 80) & 0xffff,
            (n >> 64) & 0xffff,
            (n >> 48) & 0xffff,
            n & 0xffff_ffff_ffff
        )
    }
}

/// A connected client (see the module documentation).
pub(crate) struct Client {
    /// The connection's id.
    pub id: ClientId,
    /// The peer's address, for logs.
    pub peer: std::net::SocketAddr,
    out: Mutex<Box<dyn Outbox>>,
    /// Messages waiting for the thread's flusher (see [`crate::flush`]).
    deferred: Mutex<Vec<PreparedMessage>>,
    state: Mutex<ClientState>,
    /// The session's task, woken for a disconnect or a server command.
    waker: AtomicWaker,
}

/// A client's mutable state, outside its session task's own.
pub(crate) struct ClientState {
    /// The user; empty until `connect` (and for anonymous connections).
    pub user: String,
    /// The token's `info`.
    pub info: Option<Json>,
    /// Whether `connect` succeeded.
    pub connected: bool,
    /// When the connection was opened.
    pub opened: Instant,
    /// The token's `exp` (Unix seconds).
    pub expires_at: Option<u64>,
    /// When the unanswered ping was sent.
    pub ping_sent: Option<Instant>,
    /// When the next ping is due.
    pub next_ping: Instant,
    /// Why it is to be disconnected (the first reason wins).
    pub disconnect: Option<Disconnect>,
    /// Server commands for the session.
    pub commands: Vec<ServerCommand>,
}

impl Client {
    pub fn new(id: ClientId, peer: std::net::SocketAddr, out: Box<dyn Outbox>) -> Self {
        let now = Instant::now();
        Client {
            id,
            peer,
            out: Mutex::new(out),
            deferred: Mutex::default(),
            state: Mutex::new(ClientState {
                user: String::new(),
                info: None,
                connected: false,
                opened: now,
                expires_at: None,
                ping_sent: None,
                next_ping: now,
                disconnect: None,
                commands: Vec::new(),
            }),
            waker: AtomicWaker::new(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deferred(&self) -> MutexGuard<'_, Vec<PreparedMessage>> {
        self.deferred.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn out(&self) -> MutexGuard<'_, Box<dyn Outbox>> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame made once for many, written by the thread's flusher with whatever
    /// else is queued by then (see [`crate::flush`]). A client that does not keep up is
    /// disconnected (3008).
    pub fn deliver(self: &Arc<Self>, frame: &PreparedMessage) {
        let mut deferred = self.deferred();
        if deferred.len() >= MAX_DEFERRED {
            drop(deferred);
            self.disconnect(codes::SLOW);
            return;
        }
        deferred.push(frame.clone());
        if deferred.len() == 1 {
            drop(deferred);
            crate::flush::schedule(self.clone());
        }
    }

    /// Writes what [`Client::deliver`] queued.
    pub fn flush(&self) {
        let mut queued = std::mem::take(&mut *self.deferred());
        if queued.is_empty() {
            return;
        }
        let r = self.out().try_send_all(&queued);
        self.sent(r);
        // After a burst the queue's memory is kept for the next one (no allocation per
        // flush), unless the burst made it large; after a lone message (a ping to an idle
        // client) it is not.
        let burst = queued.len() > 1;
        queued.clear();
        if burst && queued.capacity() <= KEPT_QUEUE {
            let mut deferred = self.deferred();
            if deferred.capacity() == 0 {
                *deferred = queued;
            }
        }
    }

    /// Queues a text message (replies, pushes made for this client): at once, or behind
    /// what is waiting for the flusher, so that the client gets everything in order.
    pub fn send_text(self: &Arc<Self>, text: Vec<u8>) -> bool {
        // Our own JSON: always UTF-8.
        let Ok(text) = String::from_utf8(text) else {
            return false;
        };
        if !self
            .deferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
        {
            self.deliver(&PreparedMessage::text(text));
            return true;
        }
        let r = self.out().try_send(Message::text(text));
        self.sent(r)
    }

    fn sent(&self, r: Result<(), TrySendError>) -> bool {
        match r {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.disconnect(codes::SLOW);
                false
            }
            Err(TrySendError::Closed(_)) => false,
            Err(e) => {
                tracing::warn!(client = %self.id, "cannot send: {e}");
                false
            }
        }
    }

    /// Asks the session to close the connection with `d` (the first reason given wins).
    pub fn disconnect(&self, d: Disconnect) {
        let mut state = self.state();
        if state.disconnect.is_none() {
            state.disconnect = Some(d);
            drop(state);
            self.waker.wake();
        }
    }

    /// Hands the session a server command.
    pub fn command(&self, c: ServerCommand) {
        self.state().commands.push(c);
        self.waker.wake();
    }

    /// Registers the session's task for [`Client::disconnect`] and [`Client::command`].
    pub fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Closes the WebSocket with `d`'s code and reason.
    pub fn close(&self, d: Disconnect) {
        self.out()
            .start_close(CloseFrame::new(CloseCode(d.code), d.reason.into_owned()));
    }

    /// Sends a ping (`{}`) when one is due, and tells whether the last went unanswered
    /// past `pong_timeout`.
    pub fn tick_ping(
        self: &Arc<Self>,
        now: Instant,
        ping: &PreparedMessage,
        interval: std::time::Duration,
        pong_timeout: std::time::Duration,
    ) -> Result<(), Disconnect> {
        let mut state = self.state();
        if !state.connected {
            return Ok(());
        }
        if let Some(sent) = state.ping_sent {
            if now.duration_since(sent) > pong_timeout {
                return Err(codes::NO_PONG);
            }
            return Ok(());
        }
        if now >= state.next_ping {
            state.ping_sent = Some(now);
            state.next_ping = now + interval;
            drop(state);
            self.deliver(ping);
        }
        Ok(())
    }

    /// The client answered a ping.
    pub fn pong(&self) {
        self.state().ping_sent = None;
    }
}

#[cfg(test)]
mod tests {
    use super::ClientId;

    #[test]
    fn client_ids_look_like_uuids() {
        for _ in 0..100 {
            let id = ClientId::random().to_string();
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
        assert_ne!(ClientId::random(), ClientId::random());
    }
}
