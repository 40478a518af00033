//! `wsx serve`: freed memory goes back to the system at once while the memory budget is
//! tight.
//!
//! jemalloc keeps freed pages for `dirty_decay_ms` (200 ms, see `main.rs`) before it gives
//! them back. Under a memory budget that delay is memory the budget no longer counts but
//! the process still holds: when connections closed for the budget free their messages,
//! the connections that were waiting read again and fill the budget within about 100 ms,
//! before the freed pages are returned. Measured with `tests/faults/attack.py --only
//! slow-fragments` (200 clients each sending a 60 MiB message in 64 KiB fragments, budget
//! 256 MiB): RSS peaked 100 MiB above the bytes the budget counted, at 360 MiB; with the
//! purge below, at about 280 MiB.
//!
//! So while the budget is more than half spent, and right after it dropped by 16 MiB or
//! more, every arena is purged every 20 ms (Envoy's `shrink_heap` overload action does the
//! same with tcmalloc). Otherwise nothing runs but a load of the budget's counter every
//! 20 ms.

use std::time::Duration;
use wsx::MemoryBudget;

/// How often the budget is looked at.
const PERIOD: Duration = Duration::from_millis(20);

/// A drop of the budget's use by this much since the last look is purged at once.
const DROP: usize = 16 << 20;

/// Starts the watcher on the current runtime (with jemalloc; nothing otherwise).
pub fn watch(budget: MemoryBudget) {
    if !cfg!(all(unix, feature = "jemalloc")) {
        return;
    }
    tokio::spawn(async move {
        let mut last = budget.used();
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let used = budget.used();
            if used >= budget.limit() / 2 || used + DROP <= last {
                purge();
            }
            last = used;
        }
    });
}

/// Gives every arena's unused dirty pages back to the system; false if jemalloc refused.
#[cfg(all(unix, feature = "jemalloc"))]
#[allow(unsafe_code)]
pub fn purge() -> bool {
    // "arena.<i>.purge" with i = MALLCTL_ARENAS_ALL (4096): every arena.
    const NAME: &[u8] = b"arena.4096.purge\0";
    // SAFETY: `NAME` is a NUL-terminated static string naming a void control, which takes
    // neither an old nor a new value: all four pointers/lengths are null or zero, as jemalloc
    // requires for it (it returns EPERM otherwise, never writing anywhere).
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            NAME.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    rc == 0
}

/// Without jemalloc there is nothing to purge.
#[cfg(not(all(unix, feature = "jemalloc")))]
pub fn purge() -> bool {
    false
}

#[cfg(all(test, unix, feature = "jemalloc"))]
mod tests {
    #[test]
    fn purging_every_arena_is_accepted() {
        // Something freed to purge: 64 MiB touched, then dropped.
        let v = vec![1u8; 64 << 20];
        drop(std::hint::black_box(v));
        assert!(super::purge());
    }
}
