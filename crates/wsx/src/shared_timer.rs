//! One timer per connection, all run by one process-wide thread named `wsx-timer`.
//!
//! Every open connection needs a timer for as long as it lives: the core's
//! ([`wsx_proto::Connection::poll_timeout`]) keepalive pings, pong, idle, close and write
//! timeouts, and giving its buffers back when it goes quiet. A tokio `Sleep` for
//! that costs 112 bytes plus a 112-byte box on each connection, a fifth of an idle
//! connection's memory. Here a connection holds a 16-byte [`SharedTimer`] and the process
//! holds one table with 40 bytes per timer: a [`Cell`] (deadline, place in the deadline
//! heap, slot number: 16), the waker (16), its group (4) and the heap entry (4). One thread sleeps until
//! the earliest deadline and wakes the tasks whose deadlines have passed.
//!
//! The hot path takes no lock. Before the thread fires anything it publishes the time it
//! fires through ([`FIRED_THROUGH`]); a timer has fired exactly when its deadline is at or
//! before that time, so a connection learns it from two atomic loads (its cell's deadline,
//! through a reference it keeps, and that time) on every poll. Deadlines are re-armed
//! lazily, when they fire; the table's lock is taken only to arm, to release, or when a
//! connection moves to another task.
//!
//! Storage grows in fixed chunks, so that it never copies itself while growing (a vector
//! that doubles leaves its outgrown copies to the allocator, and those showed up in the
//! resident memory of 1000 idle connections). The cells live in chunks that are never
//! freed, so that a connection can keep a `&'static` to its own: 16 bytes per timer of the
//! process's peak. The wakers' chunks are freed once no timer in them or after them is in
//! use.
//!
//! The clock is [`std::time::Instant`], in microseconds since the first use ([`now`]), not
//! tokio's: keepalive follows real time even when a test pauses tokio's clock.
//!
//! Timers can also belong to a *group* (a server's connections): [`wake_group`] wakes the
//! task of every timer of a group at once, so a server reaches all its idle connections at
//! shutdown without keeping anything per connection itself. A timer holds its task's waker
//! while it is armed; the driver of a connection in a group keeps it armed, at a far
//! deadline ([`PARKED`]) when the core has none, and checks the server's request *after*
//! arming, so a wake-up that found no waker happened before a check that sees it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Microseconds since the timers' clock started (at least 1, so that 0 can mean "never").
#[inline]
pub(crate) fn now() -> u64 {
    micros(Instant::now())
}

/// `at` in [`now`]'s microseconds (instants before the clock started count as its start).
#[inline]
pub(crate) fn micros(at: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    let d = at.saturating_duration_since(base);
    // Not `as_micros`: its u128 division cost about a hundred instructions a call.
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()) + 1)
}

/// `at` plus `after`, in [`now`]'s microseconds, saturating.
#[cfg(test)]
pub(crate) fn later(at: u64, after: Duration) -> u64 {
    at.saturating_add(u64::try_from(after.as_micros()).unwrap_or(u64::MAX))
}

/// The time (in [`now`]'s microseconds) up to which the timer thread has fired deadlines:
/// stored before it takes the wakers of the deadlines at or before it. Only that thread
/// writes it, and it only grows.
static FIRED_THROUGH: AtomicU64 = AtomicU64::new(0);

/// Timers per chunk.
const CHUNK: usize = 1024;
/// Chunks at most: 16 M timers (a connection costs about 1 KiB, so 16 GiB of them).
const MAX_CHUNKS: usize = 16 * 1024;
/// "Not in the heap", as a heap position.
const NOT_QUEUED: u32 = u32::MAX;
/// The deadline of a slot that is not armed: never reached.
const NEVER: u64 = u64::MAX;
/// How far ahead a timer with nothing due is parked, to keep its waker for its group.
pub(crate) const PARKED: Duration = Duration::from_secs(3600);

/// A new group id (never 0; unique unless a process makes four billion of them).
pub(crate) fn new_group() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

/// Wakes the task of every timer of `group` that holds a waker (an armed timer does). The
/// timers stay armed as they were.
pub(crate) fn wake_group(group: u32) {
    let wakers = lock().group_wakers(group);
    for waker in wakers {
        waker.wake();
    }
}

/// A timer's lock-free part. `due` and `heap_pos` are written only under the owning
/// table's lock; `due` is also read without it.
#[derive(Debug)]
struct Cell {
    /// The deadline, in [`now`]'s microseconds ([`NEVER`] while not armed).
    due: AtomicU64,
    /// The position in [`Table::heap`], or [`NOT_QUEUED`].
    heap_pos: AtomicU32,
    /// Which slot this is (fixed when the chunk is made).
    slot: u32,
}

/// Chunks of cells, [`CHUNK`] slots a chunk. A chunk, once made, stays for the life of the
/// process, so references to its cells are `'static`.
type Directory = [OnceLock<Box<[Cell; CHUNK]>>];

/// The cells of the process-wide table.
static CELLS: [OnceLock<Box<[Cell; CHUNK]>>; MAX_CHUNKS] = [const { OnceLock::new() }; MAX_CHUNKS];

/// The cell of `slot` in `cells`, making its chunk if needed.
fn cell_of(cells: &'static Directory, slot: u32) -> &'static Cell {
    let slot = slot as usize;
    let chunk = cells[slot / CHUNK].get_or_init(|| {
        let first = slot / CHUNK * CHUNK;
        Box::new(std::array::from_fn(|i| Cell {
            due: AtomicU64::new(NEVER),
            heap_pos: AtomicU32::new(NOT_QUEUED),
            slot: (first + i) as u32,
        }))
    });
    &chunk[slot % CHUNK]
}

/// One connection's timer: a slot in the process-wide table, claimed when first armed.
///
/// Use: [`SharedTimer::expired`] on every poll; when it says so, do what was due and
/// [`SharedTimer::arm`] the next deadline.
#[derive(Debug)]
pub(crate) struct SharedTimer {
    /// Identity of the waker the slot holds (see [`task_id`]); 0: not armed.
    task: u64,
    /// The claimed slot's cell, from the first `arm` on.
    cell: Option<&'static Cell>,
}

impl SharedTimer {
    /// A timer that is not armed yet: [`SharedTimer::expired`] says true until it is.
    pub(crate) const fn new() -> Self {
        SharedTimer {
            task: 0,
            cell: None,
        }
    }

    /// True when the deadline has passed (or the timer is not armed); it then stays
    /// unarmed until [`SharedTimer::arm`]. Otherwise the task of `waker` is the one the
    /// deadline will wake. Two atomic loads and no lock, unless the connection moved to
    /// another task since the last call.
    #[inline]
    pub(crate) fn expired(&mut self, waker: &Waker) -> bool {
        let Some(cell) = self.cell else {
            return true;
        };
        if self.task == 0
            || cell.due.load(Ordering::Acquire) <= FIRED_THROUGH.load(Ordering::Acquire)
        {
            self.task = 0;
            return true;
        }
        if task_id(waker) == self.task {
            return false;
        }
        self.moved(cell, waker)
    }

    /// The connection moved to another task: the slot's waker becomes `waker`, unless the
    /// timer fired meanwhile (then true, as from [`SharedTimer::expired`]).
    #[cold]
    fn moved(&mut self, cell: &'static Cell, waker: &Waker) -> bool {
        let mut table = lock();
        let (armed, old) = table.rewake(cell.slot, waker);
        drop(table);
        drop(old);
        self.task = if armed { task_id(waker) } else { 0 };
        !armed
    }

    /// Arms the timer to wake the task of `waker` at `due` (in [`now`]'s microseconds),
    /// replacing the deadline it had.
    pub(crate) fn arm(&mut self, due: u64, waker: &Waker) {
        let thread = timer_thread();
        let mut table = lock();
        let slot = self.slot(&mut table);
        let (notify, old) = table.arm(slot, due, waker);
        if !table.thread {
            table.thread = start_thread(thread);
        }
        drop(table);
        self.task = task_id(waker);
        if notify {
            thread.wake.notify_one();
        }
        drop(old);
    }

    /// The claimed slot, claiming one first if needed (under the table's lock).
    fn slot(&mut self, table: &mut Table) -> u32 {
        match self.cell {
            Some(cell) => cell.slot,
            None => {
                let slot = table.claim();
                self.cell = Some(table.cell(slot));
                slot
            }
        }
    }

    /// Puts the timer in `group` (see [`wake_group`]), claiming its slot now.
    pub(crate) fn join_group(&mut self, group: u32) {
        let mut table = lock();
        let slot = self.slot(&mut table);
        *table.group(slot) = group;
    }

    /// The deadline the timer is armed for, while it is armed and has not fired.
    #[inline]
    pub(crate) fn armed_due(&self) -> Option<u64> {
        let cell = self.cell?;
        (self.task != 0).then(|| cell.due.load(Ordering::Acquire))
    }

    /// Moves an armed deadline earlier to `due`; does nothing when it is due sooner
    /// already, or when the timer is not armed (it fired, and is re-armed at the next poll).
    pub(crate) fn arm_earlier(&mut self, due: u64, waker: &Waker) {
        let Some(cell) = self.cell else {
            return;
        };
        if self.task == 0 || cell.due.load(Ordering::Acquire) <= due {
            return;
        }
        let mut table = lock();
        if !table.is_queued(cell.slot) {
            // Fired since: the next poll sees it and re-arms.
            return;
        }
        let (notify, old) = table.arm(cell.slot, due, waker);
        drop(table);
        self.task = task_id(waker);
        if notify {
            timer_thread().wake.notify_one();
        }
        drop(old);
    }
}

impl Drop for SharedTimer {
    fn drop(&mut self) {
        if let Some(cell) = self.cell {
            let old = lock().release(cell.slot);
            drop(old);
        }
    }
}

/// Which task a waker wakes, as one number (never 0): its data pointer and vtable, as
/// [`Waker::will_wake`] compares them. While a slot holds a waker, that waker keeps its
/// task alive, so no other task can show up with the same identity.
#[inline]
fn task_id(waker: &Waker) -> u64 {
    let data = waker.data() as usize as u64;
    let vtable = std::ptr::from_ref(waker.vtable()) as usize as u64;
    (data ^ vtable.rotate_left(32)) | 1
}

struct TimerThread {
    table: Mutex<Table>,
    /// Wakes the timer thread when a deadline earlier than its own comes in.
    wake: Condvar,
}

fn timer_thread() -> &'static TimerThread {
    static THREAD: OnceLock<TimerThread> = OnceLock::new();
    THREAD.get_or_init(|| TimerThread {
        table: Mutex::new(Table::new(&CELLS)),
        wake: Condvar::new(),
    })
}

/// The table's lock. Nothing panics while holding it, and wakers are only dropped or woken
/// after it is released (a waker's code could reach a timer of its own).
fn lock() -> MutexGuard<'static, Table> {
    timer_thread()
        .table
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Starts the timer thread; false (logged, tried again at the next `arm`) if it cannot.
fn start_thread(thread: &'static TimerThread) -> bool {
    let started = std::thread::Builder::new()
        .name("wsx-timer".into())
        .stack_size(256 * 1024)
        .spawn(move || run(thread));
    if let Err(e) = &started {
        tracing::error!("cannot start the keepalive timer thread: {e}");
    }
    started.is_ok()
}

/// The timer thread: fires what is due, then sleeps until the next deadline, rounded up to
/// a whole millisecond so that deadlines close together are fired in one go.
fn run(thread: &'static TimerThread) {
    let mut due = Vec::new();
    let mut table = lock();
    loop {
        let now = now();
        FIRED_THROUGH.store(now, Ordering::Release);
        table.expire(now, &mut due);
        if !due.is_empty() {
            // Awake: new deadlines need no notification until it sleeps again.
            table.thread_wakes_at = 0;
            drop(table);
            for waker in due.drain(..) {
                // A waker of some other executor that panics must not end the thread, and
                // with it every connection's keepalive.
                let woken = std::panic::catch_unwind(AssertUnwindSafe(|| waker.wake()));
                if woken.is_err() {
                    tracing::error!("a task's waker panicked in the keepalive timer thread");
                }
            }
            if due.capacity() > 4096 {
                due.shrink_to(4096);
            }
            table = lock();
            continue;
        }
        match table.next_due() {
            Some(next) => {
                let wake_at = next.div_ceil(1000).saturating_mul(1000);
                table.thread_wakes_at = wake_at;
                let wait = Duration::from_micros(wake_at.saturating_sub(now));
                table = thread
                    .wake
                    .wait_timeout(table, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            None => {
                table.thread_wakes_at = NEVER;
                table = thread
                    .wake
                    .wait(table)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

/// The wakers and groups of a chunk of slots.
struct Wakers {
    wakers: [Option<Waker>; CHUNK],
    /// Each slot's group (0: none).
    groups: [u32; CHUNK],
}

/// Every timer of a process. Plain data, so the tests drive tables of their own without
/// the thread.
struct Table {
    /// The slots' cells.
    cells: &'static Directory,
    /// The slots' wakers, [`CHUNK`] slots a chunk; the chunks after the last claimed slot
    /// are freed.
    chunks: Vec<Box<Wakers>>,
    /// Which slots are claimed, one bit each.
    claimed: Vec<u64>,
    /// The first word of `claimed` that may have a free slot.
    search_from: usize,
    /// The armed slots, as a binary min-heap on their deadlines.
    heap: Vec<u32>,
    /// When the timer thread will look at the heap again: 0 while it is awake,
    /// [`NEVER`] when it waits for a first deadline.
    thread_wakes_at: u64,
    /// The timer thread is running.
    thread: bool,
}

impl Table {
    fn new(cells: &'static Directory) -> Table {
        Table {
            cells,
            chunks: Vec::new(),
            claimed: Vec::new(),
            search_from: 0,
            heap: Vec::new(),
            thread_wakes_at: 0,
            thread: false,
        }
    }

    fn cell(&self, slot: u32) -> &'static Cell {
        cell_of(self.cells, slot)
    }

    fn due(&self, slot: u32) -> u64 {
        self.cell(slot).due.load(Ordering::Relaxed)
    }

    fn pos(&self, slot: u32) -> u32 {
        self.cell(slot).heap_pos.load(Ordering::Relaxed)
    }

    fn set_pos(&self, slot: u32, pos: u32) {
        self.cell(slot).heap_pos.store(pos, Ordering::Relaxed);
    }

    fn waker(&mut self, slot: u32) -> &mut Option<Waker> {
        // A claimed slot's chunk exists: `claim` makes it, `release` frees only chunks
        // with no claimed slot in or after them.
        &mut self.chunks[slot as usize / CHUNK].wakers[slot as usize % CHUNK]
    }

    fn group(&mut self, slot: u32) -> &mut u32 {
        &mut self.chunks[slot as usize / CHUNK].groups[slot as usize % CHUNK]
    }

    /// Clones of the wakers held by the slots of `group`.
    fn group_wakers(&mut self, group: u32) -> Vec<Waker> {
        let mut out = Vec::new();
        for chunk in &self.chunks {
            for (waker, g) in chunk.wakers.iter().zip(&chunk.groups) {
                if *g == group {
                    out.extend(waker.clone());
                }
            }
        }
        out
    }

    fn claim(&mut self) -> u32 {
        let mut word = self.search_from;
        while self.claimed.get(word).is_some_and(|w| *w == u64::MAX) {
            word += 1;
        }
        if word == self.claimed.len() {
            self.claimed.push(0);
        }
        let bit = (!self.claimed[word]).trailing_zeros() as usize;
        self.claimed[word] |= 1 << bit;
        self.search_from = word;
        let index = word * 64 + bit;
        let chunk = index / CHUNK;
        // More than 16 M timers would need more than 16 GiB for their connections.
        assert!(
            chunk < self.cells.len(),
            "more than {} timers",
            self.cells.len() * CHUNK
        );
        while self.chunks.len() <= chunk {
            self.chunks.push(Box::new(Wakers {
                wakers: [const { None }; CHUNK],
                groups: [0; CHUNK],
            }));
        }
        let slot = index as u32;
        self.cell(slot).due.store(NEVER, Ordering::Release);
        slot
    }

    /// Frees a slot; hands back its waker, for dropping after the lock.
    fn release(&mut self, slot: u32) -> Option<Waker> {
        self.unqueue(slot);
        self.cell(slot).due.store(NEVER, Ordering::Release);
        let old = self.waker(slot).take();
        *self.group(slot) = 0;
        let index = slot as usize;
        let word = index / 64;
        self.claimed[word] &= !(1 << (index % 64));
        self.search_from = self.search_from.min(word);
        // Give back the chunks after the last claimed slot, so that a peak does not stay.
        while self.claimed.last() == Some(&0) {
            self.claimed.pop();
        }
        self.chunks
            .truncate((self.claimed.len() * 64).div_ceil(CHUNK));
        old
    }

    /// Arms `slot` for `due`; true when the timer thread must be told (it sleeps past
    /// `due`). Hands back a replaced waker, for dropping after the lock.
    fn arm(&mut self, slot: u32, due: u64, waker: &Waker) -> (bool, Option<Waker>) {
        let held = self.waker(slot);
        let old = match held {
            Some(w) if w.will_wake(waker) => None,
            _ => held.replace(waker.clone()),
        };
        let before = self.due(slot);
        self.cell(slot).due.store(due, Ordering::Release);
        let pos = self.pos(slot);
        if pos == NOT_QUEUED {
            let at = self.heap.len();
            self.heap.push(slot);
            self.set_pos(slot, at as u32);
            self.sift_up(at);
        } else if due < before {
            self.sift_up(pos as usize);
        } else {
            self.sift_down(pos as usize);
        }
        let notify = due < self.thread_wakes_at;
        if notify {
            self.thread_wakes_at = due;
        }
        (notify, old)
    }

    /// Whether `slot` is still armed; if so, `waker` is the one woken from now on (the
    /// replaced waker is handed back).
    fn rewake(&mut self, slot: u32, waker: &Waker) -> (bool, Option<Waker>) {
        if !self.is_queued(slot) {
            return (false, None);
        }
        let held = self.waker(slot);
        match held {
            Some(w) if w.will_wake(waker) => (true, None),
            _ => (true, held.replace(waker.clone())),
        }
    }

    fn is_queued(&self, slot: u32) -> bool {
        self.pos(slot) != NOT_QUEUED
    }

    /// Takes the wakers of the timers due at `now` into `out`.
    fn expire(&mut self, now: u64, out: &mut Vec<Waker>) {
        while let Some(&slot) = self.heap.first() {
            if self.due(slot) > now {
                break;
            }
            self.unqueue(slot);
            if let Some(w) = self.waker(slot).take() {
                out.push(w);
            }
        }
        if self.heap.capacity() > 4096 && self.heap.len() < self.heap.capacity() / 4 {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }

    /// The earliest deadline, if any timer is armed.
    fn next_due(&self) -> Option<u64> {
        self.heap.first().map(|slot| self.due(*slot))
    }

    /// Takes `slot` out of the heap, if it is in it.
    fn unqueue(&mut self, slot: u32) {
        let pos = self.pos(slot);
        if pos == NOT_QUEUED {
            return;
        }
        self.set_pos(slot, NOT_QUEUED);
        let pos = pos as usize;
        let last = self.heap.pop().expect("a queued slot is in the heap");
        if pos < self.heap.len() {
            self.heap[pos] = last;
            self.set_pos(last, pos as u32);
            self.sift_up(pos);
            let pos = self.pos(last) as usize;
            self.sift_down(pos);
        }
    }

    fn due_at(&self, pos: usize) -> u64 {
        self.due(self.heap[pos])
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.set_pos(self.heap[a], a as u32);
        self.set_pos(self.heap[b], b as u32);
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.due_at(parent) <= self.due_at(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let (l, r) = (2 * pos + 1, 2 * pos + 2);
            let mut least = pos;
            if l < self.heap.len() && self.due_at(l) < self.due_at(least) {
                least = l;
            }
            if r < self.heap.len() && self.due_at(r) < self.due_at(least) {
                least = r;
            }
            if least == pos {
                break;
            }
            self.swap(pos, least);
            pos = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn expire(t: &mut Table, now: u64) -> usize {
        let mut out = Vec::new();
        t.expire(now, &mut out);
        out.len()
    }

    /// The heap invariant, and every queued slot's position pointing at itself.
    fn check_heap(t: &Table) {
        for i in 1..t.heap.len() {
            assert!(t.due_at((i - 1) / 2) <= t.due_at(i), "heap order at {i}");
        }
        for i in 0..t.heap.len() {
            let slot = t.heap[i];
            assert_eq!(t.pos(slot) as usize, i);
        }
    }

    /// A table of its own (not the process-wide one), for up to 64 K timers.
    fn table() -> Table {
        let cells: Vec<_> = (0..64).map(|_| OnceLock::new()).collect();
        Table::new(Box::leak(cells.into_boxed_slice()))
    }

    #[test]
    fn fires_each_deadline_once_and_only_when_due() {
        let mut t = table();
        let (_, w) = counter();
        let (a, b) = (t.claim(), t.claim());
        t.arm(a, 100, &w);
        t.arm(b, 50, &w);
        assert_eq!(expire(&mut t, 49), 0);
        assert_eq!(expire(&mut t, 50), 1);
        assert!(t.is_queued(a) && !t.is_queued(b));
        assert_eq!(expire(&mut t, 1000), 1);
        assert_eq!(expire(&mut t, 2000), 0);
        assert!(t.heap.is_empty());
        t.release(a);
        t.release(b);
    }

    #[test]
    fn a_rearmed_timer_fires_at_its_new_deadline_only() {
        let mut t = table();
        let (_, w) = counter();
        let a = t.claim();
        t.arm(a, 100, &w);
        // Later: must not fire at the old deadline.
        t.arm(a, 300, &w);
        assert_eq!(expire(&mut t, 200), 0);
        // Earlier: fires at the new deadline, and not again.
        t.arm(a, 250, &w);
        assert_eq!(expire(&mut t, 260), 1);
        t.arm(a, 1000, &w);
        assert_eq!(expire(&mut t, 400), 0);
        assert_eq!(expire(&mut t, 1000), 1);
        assert_eq!(t.heap.len(), 0);
        t.release(a);
    }

    #[test]
    fn released_slots_are_reused_and_never_fire() {
        let mut t = table();
        let (_, w) = counter();
        let a = t.claim();
        t.arm(a, 100, &w);
        assert!(t.release(a).is_some());
        assert_eq!(expire(&mut t, 100), 0);
        assert_eq!(t.claim(), a);
        assert!(t.heap.is_empty());
        t.release(a);
    }

    #[test]
    fn many_timers_fire_in_deadline_order() {
        let mut t = table();
        let (_, w) = counter();
        let slots: Vec<u32> = (0..3000).map(|_| t.claim()).collect();
        // Deadlines in a scrambled order, some re-armed later or earlier, some released.
        let due = |i: u64| 1_000 + (i * 7919) % 3000 * 10;
        for (i, s) in slots.iter().enumerate() {
            t.arm(*s, due(i as u64), &w);
        }
        for (i, s) in slots.iter().enumerate().step_by(3) {
            t.arm(*s, due(i as u64) + 5, &w);
        }
        for (i, s) in slots.iter().enumerate().skip(1).step_by(3) {
            t.arm(*s, due(i as u64) / 2, &w);
        }
        for s in slots.iter().skip(2).step_by(30) {
            t.release(*s);
        }
        check_heap(&t);
        let mut fired = 0;
        let mut last = 0;
        while let Some(next) = t.next_due() {
            assert!(next >= last, "deadlines out of order");
            last = next;
            fired += expire(&mut t, next);
            check_heap(&t);
        }
        assert_eq!(fired, 3000 - 100);
        for (i, s) in slots.iter().enumerate() {
            if i % 30 != 2 {
                t.release(*s);
            }
        }
        assert!(t.claimed.is_empty() && t.chunks.is_empty());
    }

    #[test]
    fn chunks_after_the_last_claimed_slot_are_freed() {
        let mut t = table();
        let (_, w) = counter();
        let slots: Vec<u32> = (0..5000).map(|_| t.claim()).collect();
        for (i, s) in slots.iter().enumerate() {
            t.arm(*s, 1_000_000 + i as u64, &w);
        }
        assert_eq!(t.chunks.len(), 5);
        let keep = slots[5];
        for s in &slots {
            if *s != keep {
                t.release(*s);
            }
        }
        assert_eq!(t.chunks.len(), 1);
        assert_eq!(t.heap.len(), 1);
        expire(&mut t, u64::MAX);
        assert!(t.heap.capacity() <= 4096, "{}", t.heap.capacity());
        // Freed slots in the middle are found again.
        let again: Vec<u32> = (0..5).map(|_| t.claim()).collect();
        assert_eq!(again, vec![0, 1, 2, 3, 4]);
        for s in again.into_iter().chain([keep]) {
            t.release(s);
        }
    }

    #[test]
    fn a_move_to_another_task_changes_the_waker() {
        let mut t = table();
        let (first, w1) = counter();
        let (second, w2) = counter();
        let a = t.claim();
        t.arm(a, 10, &w1);
        let (armed, old) = t.rewake(a, &w2);
        assert!(armed);
        drop(old);
        let mut out = Vec::new();
        t.expire(10, &mut out);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert!(!t.rewake(a, &w1).0, "fired: not armed any more");
        t.release(a);
    }

    struct Panics;
    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("a waker that panics");
        }
    }

    #[test]
    fn a_panicking_waker_does_not_stop_the_thread() {
        let bad = Waker::from(Arc::new(Panics));
        let mut first = SharedTimer::new();
        first.arm(later(now(), Duration::from_millis(5)), &bad);
        let (count, w) = counter();
        let mut second = SharedTimer::new();
        second.arm(later(now(), Duration::from_millis(40)), &w);
        let start = Instant::now();
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the thread stopped"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn the_thread_wakes_the_task_when_due() {
        // The process-wide table, with its thread: slots from `SharedTimer`.
        let (count, w) = counter();
        let mut timer = SharedTimer::new();
        assert!(timer.expired(&w), "a new timer has nothing armed");
        timer.arm(later(now(), Duration::from_millis(30)), &w);
        assert!(!timer.expired(&w));
        let start = Instant::now();
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "never fired");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(start.elapsed() >= Duration::from_millis(25));
        assert!(timer.expired(&w));
        // An earlier deadline than the one the thread sleeps for wakes it.
        timer.arm(later(now(), Duration::from_secs(3600)), &w);
        assert!(!timer.expired(&w));
        timer.arm_earlier(later(now(), Duration::from_millis(10)), &w);
        let start = Instant::now();
        while count.0.load(Ordering::SeqCst) == 1 {
            assert!(start.elapsed() < Duration::from_secs(5), "never fired");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(timer.expired(&w));
        // A move to another task: the new task is the one woken.
        let (moved, w2) = counter();
        timer.arm(later(now(), Duration::from_millis(20)), &w);
        assert!(!timer.expired(&w2));
        let start = Instant::now();
        while moved.0.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "never fired");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "the old task is not woken"
        );
        assert!(timer.expired(&w2));
    }

    #[test]
    fn a_group_wakes_the_armed_timers_of_that_group_only() {
        let group = new_group();
        let other = new_group();
        let far = || later(now(), Duration::from_secs(3600));
        let (a_count, a) = counter();
        let (c_count, c) = counter();
        let mut in_group = SharedTimer::new();
        in_group.join_group(group);
        in_group.arm(far(), &a);
        let mut unarmed = SharedTimer::new();
        unarmed.join_group(group);
        let mut outsider = SharedTimer::new();
        outsider.join_group(other);
        outsider.arm(far(), &c);
        wake_group(group);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(c_count.0.load(Ordering::SeqCst), 0, "another group");
        // Still armed with its waker: a second wake-up reaches it too.
        assert!(!in_group.expired(&a));
        wake_group(group);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 2);
        assert!(unarmed.expired(&a), "joined but never armed");
    }

    #[test]
    fn a_released_slot_leaves_its_group() {
        let mut t = table();
        let (_, w) = counter();
        let s = t.claim();
        let keep = t.claim();
        *t.group(s) = 7;
        *t.group(keep) = 7;
        t.arm(s, 1_000, &w);
        t.arm(keep, 1_000, &w);
        assert_eq!(t.group_wakers(7).len(), 2);
        t.release(s);
        assert_eq!(*t.group(s), 0);
        assert_eq!(t.group_wakers(7).len(), 1);
        assert_eq!(t.group_wakers(8).len(), 0);
    }
}
