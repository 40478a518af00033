//! `wsx serve --broadcast`: every text and binary message a client sends goes to every
//! other connected client.
//!
//! # How a message travels
//!
//! One shared ring carries each message once, whatever the number of clients, framed once
//! ([`PreparedMessage`]). Each worker thread that has clients runs one *relay* task, which
//! holds the writing halves of that thread's clients. Publishing appends to the ring and
//! wakes the relay tasks (one wake per thread, not per client). A relay task takes what is
//! new from the ring and then, client after client, queues all of it inside
//! [`WsWriter::cork`] and writes it at once: a burst costs a client one write, not one per
//! message, and relaying costs a client no task switch of its own (uWebSockets' topics
//! work the same way). The frame bytes are copied into the connection's output buffer
//! when small (the thread's warm buffer, see [`WsWriter::cork`]), shared when large; with
//! permessage-deflate and `server_no_context_takeover`, compressed once per window size.
//!
//! A client's own task only reads: it publishes what the client sends, answers pings and
//! runs the close handshake and keepalive, and writes what a relay pass could not (the
//! halves share one driver, see [`wsx::WsReader`]).
//!
//! # Slow clients
//!
//! Nothing waits on a slow client. A client is closed with [`TOO_SLOW`] (1008) when its
//! outgoing queue overflows, which is either
//!
//! - its WebSocket write buffer above the high-water mark (`--write-buffer`, 1 MiB by
//!   default, on top of what the kernel's socket buffers hold), or
//! - its thread's relay more than `--broadcast-backlog` messages behind the ring (the
//!   thread cannot keep up with the publishers).
//!
//! So memory is bounded by the ring (backlog × message size, shared) plus one write buffer
//! per client. A relay pass gives other tasks of its thread a turn every
//! [`CLIENTS_PER_TURN`] clients.

use futures_util::task::AtomicWaker;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use wsx::{
    CloseCode, CloseFrame, MaybeTlsStream, PreparedMessage, TrySendError, WsReader, WsWriter,
};

/// The close code for a client that does not keep up: 1008 (policy violation).
pub const TOO_SLOW: CloseCode = CloseCode::POLICY_VIOLATION;

/// Default of `--broadcast-backlog`: messages a client may be behind the ring.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Clients a relay pass serves before it lets the other tasks of its thread run.
pub const CLIENTS_PER_TURN: usize = 1024;

type Writer = WsWriter<MaybeTlsStream>;

/// The shared state of a broadcast server.
pub struct Hub {
    ring: RwLock<Ring>,
    /// The ring's end (the sequence number the next message gets), readable without the
    /// lock; written under it.
    end: AtomicU64,
    /// One per worker thread with clients.
    relays: Mutex<Vec<Arc<Relay>>>,
    next_id: AtomicU64,
}

/// The last messages published, with their senders' ids.
struct Ring {
    entries: VecDeque<(u64, PreparedMessage)>,
    /// The sequence number of `entries[0]`.
    first: u64,
    capacity: usize,
}

impl Ring {
    /// The sequence number the next message will get.
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

/// A worker thread's relay: the writing halves of its clients, and its task's waker.
struct Relay {
    thread: ThreadId,
    clients: Mutex<Vec<Client>>,
    /// The relay task, woken when the ring grows.
    waker: AtomicWaker,
}

impl Relay {
    fn clients(&self) -> MutexGuard<'_, Vec<Client>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes client `id`'s writer out of the relay, if it is still there.
    fn remove(&self, id: u64) -> Option<Writer> {
        let mut clients = self.clients();
        let i = clients.iter().position(|c| c.id == id)?;
        Some(clients.swap_remove(i).writer)
    }
}

/// A client as its thread's relay sees it.
struct Client {
    id: u64,
    /// The sequence number of the next message to relay to it.
    next: u64,
    writer: Writer,
    /// Where the relay hands the writer back when it drops the client.
    dropped: Arc<Dropped>,
}

/// A client dropped by its relay for not keeping up: its writer, and why.
#[derive(Default)]
struct Dropped {
    slot: Mutex<Option<(Writer, String)>>,
    /// The client's own task.
    waker: AtomicWaker,
}

impl Dropped {
    fn slot(&self) -> MutexGuard<'_, Option<(Writer, String)>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The relay's side: hands the writer back and wakes the client's task.
    fn hand_back(&self, writer: Writer, reason: String) {
        *self.slot() = Some((writer, reason));
        self.waker.wake();
    }

    /// The client's side: the writer and the reason, once handed back.
    fn take(&self) -> Option<(Writer, String)> {
        self.slot().take()
    }
}

impl Hub {
    /// A hub whose ring holds `backlog` messages (at least 1).
    pub fn new(backlog: usize) -> Self {
        let capacity = backlog.max(1);
        Hub {
            ring: RwLock::new(Ring {
                entries: VecDeque::with_capacity(capacity.min(1024)),
                first: 0,
                capacity,
            }),
            end: AtomicU64::new(0),
            relays: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// Appends a message from client `from` and wakes the relays.
    fn publish(&self, from: u64, msg: PreparedMessage) {
        let dropped = {
            let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
            let dropped = if ring.entries.len() == ring.capacity {
                ring.first += 1;
                ring.entries.pop_front()
            } else {
                None
            };
            ring.entries.push_back((from, msg));
            self.end.store(ring.end(), Ordering::Release);
            dropped
        };
        // Freed outside the lock.
        drop(dropped);
        for relay in self
            .relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            relay.waker.wake();
        }
    }

    /// This thread's relay, started on first use.
    fn thread_relay(self: &Arc<Self>) -> Arc<Relay> {
        let thread = std::thread::current().id();
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = relays.iter().find(|r| r.thread == thread) {
            return r.clone();
        }
        let relay = Arc::new(Relay {
            thread,
            clients: Mutex::default(),
            waker: AtomicWaker::new(),
        });
        relays.push(relay.clone());
        // On this thread's runtime (the server's workers are current-thread runtimes).
        // Unconstrained: tokio's budget of 128 I/O operations per poll would otherwise fail
        // the writes of a pass after the 128th (and hand them to the clients' own tasks);
        // the pass gives the thread's other tasks their turn itself.
        tokio::spawn(tokio::task::unconstrained(
            self.clone().run_relay(relay.clone()),
        ));
        relay
    }

    /// Runs one client: publishes what it sends; its thread's relay writes what the others
    /// publish to it. Call it on the thread that is to serve the client (the connection's
    /// task). Not an `async fn`: the future would keep the moved `ws` beside its halves for
    /// the connection's whole life.
    pub fn serve(
        self: Arc<Self>,
        ws: wsx::WebSocket<MaybeTlsStream>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reader, writer) = ws.split();
        let relay = self.thread_relay();
        let dropped = Arc::new(Dropped::default());
        relay.clients().push(Client {
            id,
            next: self.end.load(Ordering::Acquire),
            writer,
            dropped: dropped.clone(),
        });
        self.run_client(reader, relay, id, dropped, peer)
    }

    async fn run_client(
        self: Arc<Self>,
        mut reader: WsReader<MaybeTlsStream>,
        relay: Arc<Relay>,
        id: u64,
        dropped: Arc<Dropped>,
        peer: SocketAddr,
    ) {
        let too_slow = poll_fn(|cx| self.poll_client(cx, &mut reader, id, &dropped, peer)).await;
        let writer = match too_slow {
            Some((writer, reason)) => {
                tracing::info!(%peer, code = TOO_SLOW.0, "closing a slow client: {reason}");
                // Boxed: the close's state (a whole WebSocket) is not kept in every idle
                // client's future for the rare client that is too slow.
                return Box::pin(close_too_slow(reader, writer, reason, peer)).await;
            }
            // Ended: the relay may have dropped it meanwhile.
            None => relay.remove(id).or_else(|| dropped.take().map(|(w, _)| w)),
        };
        log_close(reader.close_event().as_ref(), peer);
        drop(writer);
    }

    /// Reads a client's messages until the connection ends (`None`) or its relay drops
    /// it (its writer and the reason).
    fn poll_client(
        &self,
        cx: &mut Context<'_>,
        reader: &mut WsReader<MaybeTlsStream>,
        id: u64,
        dropped: &Dropped,
        peer: SocketAddr,
    ) -> Poll<Option<(Writer, String)>> {
        dropped.waker.register(cx.waker());
        if let Some(d) = dropped.take() {
            return Poll::Ready(Some(d));
        }
        loop {
            match reader.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    if let Some(prepared) = PreparedMessage::from_message(&msg) {
                        self.publish(id, prepared);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::info!(%peer, "connection failed: {e}");
                    return Poll::Ready(None);
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// A thread's relay task: after each publication, writes everything new to every
    /// client of the thread.
    async fn run_relay(self: Arc<Self>, relay: Arc<Relay>) {
        let mut batch: Vec<(u64, PreparedMessage)> = Vec::new();
        loop {
            let end = self.end.load(Ordering::Acquire);
            // The oldest position of a client (clients that came or moved during the last
            // pass may be behind the others).
            let oldest = relay.clients().iter().map(|c| c.next).min();
            let Some(oldest) = oldest.filter(|&o| o < end) else {
                poll_fn(|cx| {
                    relay.waker.register(cx.waker());
                    if self.end.load(Ordering::Acquire) == end {
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
                .await;
                continue;
            };
            // What is new since then, copied out: publishers never wait for a pass.
            let (first, end) = {
                let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
                let start =
                    usize::try_from(oldest.saturating_sub(ring.first)).unwrap_or(usize::MAX);
                batch.clear();
                batch.extend(ring.entries.range(start.min(ring.entries.len())..).cloned());
                (ring.end() - batch.len() as u64, ring.end())
            };
            let mut i = 0;
            loop {
                let done = {
                    let mut clients = relay.clients();
                    let stop = (i + CLIENTS_PER_TURN).min(clients.len());
                    while i < stop.min(clients.len()) {
                        match relay_to(&mut clients[i], &batch, first, end) {
                            Ok(()) => i += 1,
                            Err(reason) => {
                                let c = clients.swap_remove(i);
                                c.dropped.hand_back(c.writer, reason);
                            }
                        }
                    }
                    i >= clients.len()
                };
                if done {
                    break;
                }
                tokio::task::yield_now().await;
            }
            // The messages are released now, not kept until the next publication.
            batch.clear();
        }
    }
}

/// Queues for a client everything in `batch` (messages `first..end`) it has not had, its
/// own messages skipped, and writes it at once; `Err` with the reason when it does not
/// keep up.
fn relay_to(
    client: &mut Client,
    batch: &[(u64, PreparedMessage)],
    first: u64,
    end: u64,
) -> Result<(), String> {
    if client.next >= end {
        return Ok(());
    }
    if client.next < first {
        return Err(format!("too slow: {} messages behind", first - client.next));
    }
    let start = (client.next - first) as usize;
    client.next = end;
    let id = client.id;
    client.writer.cork(|w| {
        for (from, msg) in &batch[start..] {
            if *from == id {
                continue;
            }
            match w.try_send_prepared(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    return Err(format!("too slow: {} bytes unsent", w.buffered_amount()));
                }
                // Closing: the client's task ends once the close is done.
                Err(TrySendError::Closed(_)) => return Ok(()),
                Err(e) => tracing::warn!("cannot relay a message: {e}"),
            }
        }
        Ok(())
    })
}

/// Closes a client that did not keep up with 1008.
async fn close_too_slow(
    reader: WsReader<MaybeTlsStream>,
    writer: Writer,
    reason: String,
    peer: SocketAddr,
) {
    match reader.reunite(writer) {
        Ok(mut ws) => {
            let _ = ws.close(Some(CloseFrame::new(TOO_SLOW, reason))).await;
            log_close(ws.close_event(), peer);
        }
        Err(_) => unreachable!("the halves of one connection"),
    }
}

fn log_close(ev: Option<&wsx::CloseEvent>, peer: SocketAddr) {
    if let Some(ev) = ev {
        tracing::info!(%peer, code = ev.code.0, reason = %ev.reason, clean = ev.was_clean, "closed");
    }
}
