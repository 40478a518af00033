//! `wsx serve --broadcast`: every text and binary message a client sends goes to every
//! other connected client.
//!
//! One shared ring ([`tokio::sync::broadcast`]) carries each message once, whatever the
//! number of clients: a send takes one lock, and every connection task copies the message
//! (a reference-counted clone) into its own WebSocket with `try_send`. Nothing waits on a
//! slow client. A client is closed with [`TOO_SLOW`] (1008) when its outgoing queue
//! overflows, which is either
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
use tokio::sync::broadcast::{self, error::RecvError};
use wsx::{CloseCode, CloseFrame, MaybeTlsStream, Message, TrySendError, WebSocket};

/// The close code for a client that does not keep up: 1008 (policy violation).
pub const TOO_SLOW: CloseCode = CloseCode::POLICY_VIOLATION;

/// Default of `--broadcast-backlog`: messages a client may be behind the ring.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// The shared state of a broadcast server.
pub struct Hub {
    tx: broadcast::Sender<(u64, Message)>,
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
                    Some(Ok(msg)) if msg.is_data() => {
                        // Err only when nobody listens, which cannot be (we do).
                        let _ = self.tx.send((id, msg));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::info!(%peer, "connection failed: {e}");
                        break None;
                    }
                    None => break None,
                },
                out = rx.recv() => match out {
                    Ok((from, _)) if from == id => {}
                    Ok((_, msg)) => match ws.try_send(msg) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            break Some(format!(
                                "too slow: {} bytes unsent",
                                ws.buffered_amount()
                            ));
                        }
                        // Closing: ws.next() ends the loop once the close is done.
                        Err(TrySendError::Closed(_)) => {}
                        Err(e) => {
                            tracing::warn!(%peer, "cannot relay a message: {e}");
                        }
                    },
                    Err(RecvError::Lagged(n)) => {
                        break Some(format!("too slow: {n} messages behind"));
                    }
                    Err(RecvError::Closed) => break None,
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
