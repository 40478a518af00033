//! A memory budget shared by many connections: what a whole server may hold for messages
//! being received, output waiting to be written and compression state.
//!
//! Limits per connection do not bound a server: 100 connections each allowed a 64 MiB
//! message may hold 6.4 GiB. A [`MemoryBudget`] is one counter that every connection made
//! from a [`Config`](crate::Config) carrying it charges:
//!
//! - **incoming messages:** a data frame's payload (charged when its header arrives, so a
//!   frame that cannot fit is refused before its bytes are read) and the message assembled
//!   so far, inflated bytes included (charged chunk by chunk as inflating produces them);
//! - **outgoing queues:** output waiting to be written, in steps of [`GRANULE`];
//! - **compression state:** the zlib inflate and deflate state of the connection while it
//!   is allocated (about 40 KiB and 170-370 KiB).
//!
//! A connection's first [`FREE`] bytes are not charged (the common small message costs no
//! shared counter update); every byte is charged once a connection holds more.
//!
//! Growth that would take the total past the limit is refused: the message fails with
//! [`ProtocolError::OverBudget`](crate::ProtocolError::OverBudget) (close code 1009), and
//! its memory is released. Output is never refused (it is already queued when it is
//! charged), but it counts: an I/O layer reads [`MemoryBudget::under_pressure`] to stop
//! reading from the connections that hold the most ([`crate::Connection::should_pause_reading`])
//! and [`MemoryBudget::admits_connections`] to refuse new connections. The `wsx` crate does
//! both, and counts each event in [`BudgetStats`].
//!
//! Charges are one atomic add each; nothing here locks or allocates.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes a connection holds without charging them (see the module doc).
pub const FREE: usize = 16 * 1024;

/// Output is charged in steps of this many bytes (rounded down).
pub const GRANULE: usize = 16 * 1024;

/// A budget shared by connections; cloning it shares it. See the [module doc](self).
#[derive(Clone)]
pub struct MemoryBudget(Arc<Inner>);

struct Inner {
    limit: usize,
    used: AtomicUsize,
    /// Connections with a non-zero charge.
    holders: AtomicUsize,
    refused_messages: AtomicU64,
    refused_connections: AtomicU64,
    paused_reads: AtomicU64,
    overload_closes: AtomicU64,
}

/// Counts of what a [`MemoryBudget`] refused or delayed, and how much it holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// The budget's limit in bytes.
    pub limit: usize,
    /// Bytes charged now.
    pub used: usize,
    /// Connections charged anything now.
    pub holders: usize,
    /// Messages refused with 1009 because they would have passed the limit.
    pub refused_messages: u64,
    /// Connections refused (HTTP 503) because the budget was nearly spent.
    pub refused_connections: u64,
    /// Times a connection stopped reading because the budget was under pressure.
    pub paused_reads: u64,
    /// Connections closed with 1013 after staying paused too long.
    pub overload_closes: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryBudget(Arc::new(Inner {
            limit,
            used: AtomicUsize::new(0),
            holders: AtomicUsize::new(0),
            refused_messages: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            paused_reads: AtomicU64::new(0),
            overload_closes: AtomicU64::new(0),
        }))
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Whether three quarters of the budget are spent: connections that hold at least
    /// their share stop reading until it is not.
    pub fn under_pressure(&self) -> bool {
        self.used() >= self.0.limit / 4 * 3
    }

    /// Whether new connections are welcome: less than 90% of the budget is spent.
    pub fn admits_connections(&self) -> bool {
        self.used() < self.0.limit / 10 * 9
    }

    /// The average charge of the connections charged anything: a connection holding at
    /// least this much is one of those that hold the most.
    pub fn fair_share(&self) -> usize {
        self.used() / self.0.holders.load(Ordering::Relaxed).max(1)
    }

    /// Counters and the current figures.
    pub fn stats(&self) -> BudgetStats {
        let i = &*self.0;
        BudgetStats {
            limit: i.limit,
            used: i.used.load(Ordering::Relaxed),
            holders: i.holders.load(Ordering::Relaxed),
            refused_messages: i.refused_messages.load(Ordering::Relaxed),
            refused_connections: i.refused_connections.load(Ordering::Relaxed),
            paused_reads: i.paused_reads.load(Ordering::Relaxed),
            overload_closes: i.overload_closes.load(Ordering::Relaxed),
        }
    }

    /// Counts a connection refused because the budget was nearly spent.
    pub fn count_refused_connection(&self) {
        self.0.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection that stopped reading under pressure.
    pub fn count_paused_read(&self) {
        self.0.paused_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed with 1013 after staying paused too long.
    pub fn count_overload_close(&self) {
        self.0.overload_closes.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` bytes if the total stays within the limit.
    fn try_charge(&self, n: usize) -> bool {
        let used = &self.0.used;
        let mut cur = used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&t| t <= self.0.limit) else {
                return false;
            };
            match used.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.0.limit)
            .field("used", &self.used())
            .finish()
    }
}

/// What one side of one connection has charged to a budget (nothing without one).
#[derive(Default)]
pub(crate) struct Account {
    budget: Option<MemoryBudget>,
    held: usize,
}

/// The charge for holding `bytes`: nothing up to [`FREE`], all of it past.
#[inline]
pub(crate) fn chargeable(bytes: usize) -> usize {
    if bytes <= FREE {
        0
    } else {
        bytes
    }
}

/// `bytes` rounded up to whole [`GRANULE`]s: a buffer's charge changes only when it
/// crosses a granule, not with every message that passes through it.
#[inline]
pub(crate) fn granules(bytes: usize) -> usize {
    bytes.div_ceil(GRANULE).saturating_mul(GRANULE)
}

impl Account {
    pub(crate) fn new(budget: Option<MemoryBudget>) -> Self {
        Account { budget, held: 0 }
    }

    /// The budget charged, if any.
    pub(crate) fn budget(&self) -> Option<&MemoryBudget> {
        self.budget.as_ref()
    }

    /// Bytes charged now.
    #[inline]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Makes the charge at least `target` bytes; false (charge unchanged, the refusal
    /// counted) when that would pass the budget's limit. Never lowers it: see [`Account::set`].
    #[inline]
    pub(crate) fn grow_to(&mut self, target: usize) -> bool {
        if target <= self.held {
            return true;
        }
        let Some(b) = &self.budget else {
            return true;
        };
        if !b.try_charge(target - self.held) {
            b.0.refused_messages.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.held == 0 {
            b.0.holders.fetch_add(1, Ordering::Relaxed);
        }
        self.held = target;
        true
    }

    /// Makes the charge exactly `target` bytes, whatever the limit (for memory that is
    /// already held, such as queued output).
    #[inline]
    pub(crate) fn set(&mut self, target: usize) {
        if target == self.held {
            return;
        }
        let Some(b) = &self.budget else {
            return;
        };
        if target > self.held {
            b.0.used.fetch_add(target - self.held, Ordering::Relaxed);
        } else {
            b.0.used.fetch_sub(self.held - target, Ordering::Relaxed);
        }
        match (self.held, target) {
            (0, _) => {
                b.0.holders.fetch_add(1, Ordering::Relaxed);
            }
            (_, 0) => {
                b.0.holders.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.held = target;
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stay_within_the_limit_and_are_released_on_drop() {
        let budget = MemoryBudget::new(100_000);
        let mut a = Account::new(Some(budget.clone()));
        let mut b = Account::new(Some(budget.clone()));
        assert!(a.grow_to(60_000));
        assert!(!b.grow_to(50_000));
        assert_eq!(budget.stats().refused_messages, 1);
        assert!(b.grow_to(40_000));
        assert_eq!(budget.used(), 100_000);
        assert_eq!(budget.stats().holders, 2);
        assert_eq!(budget.fair_share(), 50_000);
        assert!(budget.under_pressure() && !budget.admits_connections());
        a.set(10_000);
        assert_eq!(budget.used(), 50_000);
        drop(b);
        assert_eq!((budget.used(), budget.stats().holders), (10_000, 1));
        a.set(0);
        assert_eq!((budget.used(), budget.stats().holders), (0, 0));
        assert!(!budget.under_pressure() && budget.admits_connections());
    }

    #[test]
    fn output_is_charged_past_the_limit() {
        let budget = MemoryBudget::new(10);
        let mut a = Account::new(Some(budget.clone()));
        a.set(1000);
        assert_eq!(budget.used(), 1000);
        assert!(!a.grow_to(1001));
        assert!(a.grow_to(500), "a charge already held is never refused");
    }

    #[test]
    fn small_holdings_are_free() {
        assert_eq!(chargeable(FREE), 0);
        assert_eq!(chargeable(FREE + 1), FREE + 1);
        let mut none = Account::new(None);
        assert!(none.grow_to(usize::MAX));
        assert_eq!(none.held(), 0);
    }

    #[test]
    fn concurrent_charges_never_pass_the_limit() {
        let budget = MemoryBudget::new(1 << 20);
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let budget = budget.clone();
                    s.spawn(move || {
                        let mut accounts: Vec<Account> = vec![];
                        for _ in 0..1000 {
                            let mut a = Account::new(Some(budget.clone()));
                            if a.grow_to(4096) {
                                accounts.push(a);
                            }
                        }
                        let n = accounts.iter().map(Account::held).sum::<usize>();
                        std::mem::forget(accounts);
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 1 << 20);
        assert_eq!(budget.used(), 1 << 20);
    }
}
