//! The server's request that a connection close with 1001 (graceful shutdown, see
//! [`crate::Server::serve_until`]), and what the connection reports back for the
//! [`crate::ShutdownReport`].

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

/// Shared by a server and one of its connections. Checking it costs one atomic load.
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
    /// Asks the connection to close with 1001, and wakes it.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether a shutdown was requested.
    #[inline]
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The task to wake when a shutdown is requested.
    #[inline]
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }
}
