//! A server's request that its connections close with 1001 (graceful shutdown, see
//! [`crate::Server::serve_until`]), and what the connections report back for the
//! [`crate::ShutdownReport`].
//!
//! One signal serves all of a server's connections: nothing is kept per connection. The
//! connections' timers form a group of the process-wide timer table
//! ([`crate::shared_timer::wake_group`]), which is how the signal reaches idle ones.

use crate::shared_timer;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Shared by a server and all its connections. Checking it costs one atomic load.
#[derive(Debug)]
pub(crate) struct ShutdownSignal {
    requested: AtomicBool,
    /// The shutdown timeout ran out: connection tasks still running end when next polled.
    aborted: AtomicBool,
    /// The timer group of the server's connections.
    group: u32,
    /// Connections that ended with a clean close handshake after the request.
    clean: AtomicUsize,
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        ShutdownSignal {
            requested: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            group: shared_timer::new_group(),
            clean: AtomicUsize::new(0),
        }
    }
}

impl ShutdownSignal {
    /// Asks every connection to close with 1001, and wakes them.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        shared_timer::wake_group(self.group);
    }

    /// Whether a shutdown was requested.
    #[inline]
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Tells the connection tasks still running to end, and wakes them.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        shared_timer::wake_group(self.group);
    }

    /// Whether the connection tasks must end.
    #[inline]
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// The timer group the connections' timers join.
    pub(crate) fn group(&self) -> u32 {
        self.group
    }

    /// A connection ended (`clean`: with a close handshake); counted once the shutdown
    /// was requested.
    pub(crate) fn closed(&self, clean: bool) {
        if clean && self.is_requested() {
            self.clean.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections that closed cleanly since the request.
    pub(crate) fn closed_cleanly(&self) -> usize {
        self.clean.load(Ordering::Relaxed)
    }
}
