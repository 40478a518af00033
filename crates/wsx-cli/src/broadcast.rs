//! `wsx serve --broadcast`: every text and binary message a client sends goes to every
//! other connected client.
//!
//! One shared ring carries each message once, whatever the number of clients, framed once
//! ([`PreparedMessage`]). Publishing takes the ring's lock to append and wakes the clients'
//! tasks (a [`tokio::sync::watch`] signal). A woken task takes the lock for reading and
//! queues, inside [`WebSocket::cork`], everything it has not relayed yet straight from the
//! ring (no copy of the message handle per client: the frame bytes are copied into the
//! client's output buffer when small, shared when large; with permessage-deflate and
//! `server_no_context_takeover`, compressed once per window size), then lets go of the lock
//! and writes it all at once: a burst costs its client one write, not one per message.
//!
//! Nothing waits on a slow client. A client is closed with [`TOO_SLOW`] (1008) when its
//! outgoing queue overflows, which is either
//!
//! - its WebSocket write buffer above the high-water mark (`--write-buffer`, 1 MiB by
//!   default, on top of what the kernel's socket buffers hold), or
//! - its task more than `--broadcast-backlog` messages behind the ring.
//!
//! So memory is bounded by the ring (backlog × message size, shared) plus one write buffer
//! per client.

use futures_util::StreamExt;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use tokio::sync::watch;
use wsx::{CloseCode, CloseFrame, MaybeTlsStream, PreparedMessage, TrySendError, WebSocket};

/// The close code for a client that does not keep up: 1008 (policy violation).
pub const TOO_SLOW: CloseCode = CloseCode::POLICY_VIOLATION;

/// Default of `--broadcast-backlog`: messages a client may be behind the ring.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// The shared state of a broadcast server.
pub struct Hub {
    ring: RwLock<Ring>,
    /// Signals that the ring has grown.
    published: watch::Sender<()>,
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
            published: watch::Sender::new(()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Appends a message from client `from` and wakes the others.
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
            dropped
        };
        // Freed outside the lock.
        drop(dropped);
        self.published.send_replace(());
    }

    /// Runs one client: relays what it sends to the others, and what they send to it.
    pub async fn serve(&self, mut ws: WebSocket<MaybeTlsStream>, peer: SocketAddr) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut woken = self.published.subscribe();
        let mut next = self
            .ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .end();
        let too_slow = loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(msg)) => {
                        if let Some(prepared) = PreparedMessage::from_message(&msg) {
                            self.publish(id, prepared);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::info!(%peer, "connection failed: {e}");
                        break None;
                    }
                    None => break None,
                },
                // Never fails: the hub (with the sender) outlives every client.
                _ = woken.changed() => {
                    if let Err(reason) = self.relay(&mut ws, id, &mut next, peer) {
                        break Some(reason);
                    }
                }
            }
        };
        if let Some(reason) = too_slow {
            tracing::info!(%peer, code = TOO_SLOW.0, "closing a slow client: {reason}");
            let _ = ws.close(Some(CloseFrame::new(TOO_SLOW, reason))).await;
        }
        if let Some(ev) = ws.close_event() {
            tracing::info!(%peer, code = ev.code.0, reason = %ev.reason, clean = ev.was_clean, "closed");
        }
    }

    /// Queues for client `id` every message from `next` on (its own skipped) and writes
    /// them at once; `Err` with the reason when the client does not keep up.
    fn relay(
        &self,
        ws: &mut WebSocket<MaybeTlsStream>,
        id: u64,
        next: &mut u64,
        peer: SocketAddr,
    ) -> Result<(), String> {
        ws.cork(|ws| {
            // Released before `cork` returns and writes.
            let ring = self.ring.read().unwrap_or_else(PoisonError::into_inner);
            if *next < ring.first {
                return Err(format!("too slow: {} messages behind", ring.first - *next));
            }
            let start = usize::try_from(*next - ring.first).unwrap_or(usize::MAX);
            *next = ring.end();
            for (from, msg) in ring.entries.range(start.min(ring.entries.len())..) {
                if *from == id {
                    continue;
                }
                match ws.try_send_prepared(msg) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        return Err(format!("too slow: {} bytes unsent", ws.buffered_amount()));
                    }
                    // Closing: ws.next() ends the loop once the close is done.
                    Err(TrySendError::Closed(_)) => return Ok(()),
                    Err(e) => tracing::warn!(%peer, "cannot relay a message: {e}"),
                }
            }
            Ok(())
        })
    }
}
