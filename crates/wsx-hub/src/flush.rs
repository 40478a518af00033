//! Deferred writes: what the hub delivers to a client is queued on the client, and a
//! flusher task (one per thread that delivers) writes each client's queue in one go,
//! corked. A burst of publications then costs a subscriber one write, not one per
//! publication, and a fan-out pass costs the publishing task no system calls at all
//! (uWebSockets corks the same way; `wsx serve --broadcast` relays per thread).
//!
//! The flusher runs when the task that delivered yields, so a publisher that handles
//! several publications in a row (a burst read in one go) has them all written together.
//! It gives the thread's other tasks a turn every [`CLIENTS_PER_TURN`] clients.

use crate::client::Client;
use futures_util::task::AtomicWaker;
use std::cell::RefCell;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

/// Clients a flusher pass writes before the thread's other tasks get a turn.
pub(crate) const CLIENTS_PER_TURN: usize = 1024;

/// A thread's flusher: the clients with queued output, and its task.
struct Flusher {
    dirty: Mutex<Vec<Arc<Client>>>,
    waker: AtomicWaker,
    /// The task still runs (false once its runtime dropped it).
    alive: AtomicBool,
}

thread_local! {
    static FLUSHER: RefCell<Option<Arc<Flusher>>> = const { RefCell::new(None) };
}

/// Has `client`'s queue written soon (it just went from empty to not).
pub(crate) fn schedule(client: Arc<Client>) {
    if tokio::runtime::Handle::try_current().is_err() {
        // Outside a runtime (no task to run later): now.
        client.flush();
        return;
    }
    let flusher = FLUSHER.with(|cell| {
        let mut cell = cell.borrow_mut();
        match &*cell {
            Some(f) if f.alive.load(Ordering::Acquire) => f.clone(),
            _ => {
                let f = Arc::new(Flusher {
                    dirty: Mutex::default(),
                    waker: AtomicWaker::new(),
                    alive: AtomicBool::new(true),
                });
                // Unconstrained: tokio's budget of 128 I/O operations per poll would
                // otherwise fail the writes of a pass after the 128th.
                tokio::spawn(tokio::task::unconstrained(run(f.clone())));
                *cell = Some(f.clone());
                f
            }
        }
    });
    flusher
        .dirty
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(client);
    flusher.waker.wake();
}

/// Marks the flusher dead when its task is dropped (its runtime shut down), so that the
/// thread's next delivery starts another.
struct Alive(Arc<Flusher>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
        // What was left queued is written now rather than never.
        let left =
            std::mem::take(&mut *self.0.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        for c in left {
            c.flush();
        }
    }
}

async fn run(f: Arc<Flusher>) {
    let f = Alive(f);
    let mut batch = Vec::new();
    loop {
        poll_fn(|cx| {
            f.0.waker.register(cx.waker());
            if f.0
                .dirty
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
            {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        std::mem::swap(
            &mut batch,
            &mut *f.0.dirty.lock().unwrap_or_else(PoisonError::into_inner),
        );
        for (i, c) in batch.drain(..).enumerate() {
            if i > 0 && i % CLIENTS_PER_TURN == 0 {
                tokio::task::yield_now().await;
            }
            c.flush();
        }
    }
}
