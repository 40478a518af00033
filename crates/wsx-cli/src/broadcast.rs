//! `wsx serve --broadcast`: every text and binary message a client sends goes to every
//! other connected client.
//!
//! One shared ring ([`tokio::sync::broadcast`]) carries each message once, whatever the
//! number of clients, framed once ([`PreparedMessage`]): a send takes one lock, and every
//! connection task queues the same frame (copied when small, shared when large; with
//! permessage-deflate and `server_no_context_takeover`, compressed once per window size).
//! A task woken by the ring queues everything waiting for its client inside
//! [`WebSocket::cork`], so a burst costs its client one write, not one per message.
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
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use wsx::{CloseCode, CloseFrame, MaybeTlsStream, PreparedMessage, TrySendError, WebSocket};

/// The close code for a client that does not keep up: 1008 (policy violation).
pub const TOO_SLOW: CloseCode = CloseCode::POLICY_VIOLATION;

/// Default of `--broadcast-backlog`: messages a client may be behind the ring.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// The shared state of a broadcast server.
pub struct Hub {
    tx: broadcast::Sender<(u64, PreparedMessage)>,
    next_id: AtomicU64,
}

impl Hub {
    /// A hub whose ring holds `backlog` messages (at least 1).
    pub fn new(backlog: usize) -> Self {
        let (tx, _) = broadcast::channel(backlog.max(1));
        Hub {
            tx,
            next_id: AtomicU64::new(0),
        }
    }

    /// Runs one client: relays what it sends to the others, and what they send to it.
    pub async fn serve(&self, mut ws: WebSocket<MaybeTlsStream>, peer: SocketAddr) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut rx = self.tx.subscribe();
        let too_slow = loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(msg)) => {
                        if let Some(prepared) = PreparedMessage::from_message(&msg) {
                            // Err only when nobody listens, which cannot be (we do).
                            let _ = self.tx.send((id, prepared));
                        }
                    }
                    Some(Err(e)) => {
                        tracing::info!(%peer, "connection failed: {e}");
                        break None;
                    }
                    None => break None,
                },
                out = rx.recv() => match relay(&mut ws, &mut rx, id, out, peer) {
                    Relay::Done => {}
                    Relay::TooSlow(reason) => break Some(reason),
                    Relay::End => break None,
                },
            }
        };
        // Stop holding the ring back before the (possibly slow) close handshake.
        drop(rx);
        if let Some(reason) = too_slow {
            tracing::info!(%peer, code = TOO_SLOW.0, "closing a slow client: {reason}");
            let _ = ws.close(Some(CloseFrame::new(TOO_SLOW, reason))).await;
        }
        if let Some(ev) = ws.close_event() {
            tracing::info!(%peer, code = ev.code.0, reason = %ev.reason, clean = ev.was_clean, "closed");
        }
    }
}

/// What became of a relay to one client.
enum Relay {
    /// Everything waiting was queued.
    Done,
    /// The client does not keep up: close it.
    TooSlow(String),
    /// The ring is gone.
    End,
}

/// Queues `first` and everything else already waiting in the ring for this client (`id`;
/// its own messages skipped), to go out in one write.
fn relay(
    ws: &mut WebSocket<MaybeTlsStream>,
    rx: &mut broadcast::Receiver<(u64, PreparedMessage)>,
    id: u64,
    first: Result<(u64, PreparedMessage), RecvError>,
    peer: SocketAddr,
) -> Relay {
    let mut next = first.map_err(|e| match e {
        RecvError::Lagged(n) => TryRecvError::Lagged(n),
        RecvError::Closed => TryRecvError::Closed,
    });
    ws.cork(|ws| loop {
        match next {
            Ok((from, _)) if from == id => {}
            Ok((_, msg)) => match ws.try_send_prepared(&msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    return Relay::TooSlow(format!(
                        "too slow: {} bytes unsent",
                        ws.buffered_amount()
                    ));
                }
                // Closing: ws.next() ends the loop once the close is done.
                Err(TrySendError::Closed(_)) => return Relay::Done,
                Err(e) => tracing::warn!(%peer, "cannot relay a message: {e}"),
            },
            Err(TryRecvError::Lagged(n)) => {
                return Relay::TooSlow(format!("too slow: {n} messages behind"));
            }
            Err(TryRecvError::Empty) => return Relay::Done,
            Err(TryRecvError::Closed) => return Relay::End,
        }
        next = rx.try_recv();
    })
}
