//! The connection's clocks: keepalive ping, pong deadline, idle timeout, close handshake
//! timeout, the transport's wind-down after CLOSED ("linger"), the write stall and the
//! release of idle buffers.
//!
//! Time is always passed in, never read here: the I/O layer tells the connection when bytes
//! arrived ([`super::Connection::mark_received`]), asks when it next has something to do
//! ([`super::Connection::poll_timeout`]) and calls [`super::Connection::handle_timeout`]
//! once that time has come. Tests drive every timer with a made-up clock.
//!
//! Deadlines are not stored but computed from a few instants (when bytes last arrived,
//! when the ping in flight went out, when the output stalled or the close timer started),
//! so a deadline that moves on every read costs a store, not a re-arm. A timer that starts
//! without a time at hand (a close frame queued by `close()`, output left waiting by a full
//! socket) is reported due at once: the next `handle_timeout(now)` then starts it at `now`.
//!
//! Every idle connection carries these fields, so they are kept small: instants other than
//! the last arrival are stored as microseconds ("ticks") since one epoch shared by the
//! process, the first instant any
//! connection was given less a year (so that instants somewhat before it still count
//! right). Ticks are at least 1; 0 means "not set".

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A connection that has received nothing for this long gives its buffers back (released
/// buffers are allocated again, small, when traffic resumes).
pub const RELEASE_BUFFERS_AFTER: Duration = Duration::from_secs(1);

/// [`RELEASE_BUFFERS_AFTER`] in the packed form of the timeouts.
const RELEASE_MS: u32 = RELEASE_BUFFERS_AFTER.as_millis() as u32;

/// The packed form of "no timeout".
const NO_TIMEOUT: u32 = u32::MAX;

/// Timeouts in whole milliseconds, rounded up (so a timeout never fires early) and clamped
/// to about 49 days.
pub(crate) fn pack_ms(d: Duration) -> u32 {
    d.as_nanos()
        .div_ceil(1_000_000)
        .min(u128::from(NO_TIMEOUT - 1)) as u32
}

fn pack_opt_ms(d: Option<Duration>) -> u32 {
    d.map_or(NO_TIMEOUT, pack_ms)
}

/// The epoch of all ticks (see the module documentation): set from the first instant any
/// connection is given.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// `now` in ticks.
#[inline]
fn ticks(now: Instant) -> u64 {
    let epoch = EPOCH.get_or_init(|| {
        now.checked_sub(Duration::from_secs(365 * 86400))
            .unwrap_or(now)
    });
    let d = now.saturating_duration_since(*epoch);
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
        .saturating_add(1)
}

/// The instant of `ticks` (`None` before any instant was given: there are no ticks then).
fn instant(ticks: u64) -> Option<Instant> {
    EPOCH
        .get()?
        .checked_add(Duration::from_micros(ticks.saturating_sub(1)))
}

/// `t` plus `ms` milliseconds, or `None` for [`NO_TIMEOUT`].
fn after(t: u64, ms: u32) -> Option<u64> {
    (ms != NO_TIMEOUT).then(|| t.saturating_add(u64::from(ms) * 1000))
}

/// Where the close sequence is, for the close timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClosePhase {
    /// No close frame sent, not CLOSED.
    None,
    /// Our close frame is out; `since` + close timeout bounds the wait for the peer's.
    Handshake,
    /// CLOSED; `since` + close timeout bounds the transport's wind-down.
    Linger,
    /// The wind-down's time ran out.
    LingerExpired,
}

/// What the connection state looks like to the timers (passed in, so that this module
/// needs nothing else of the connection).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    pub(crate) state: super::State,
    /// Output is waiting to be written.
    pub(crate) output_waiting: bool,
}

/// What [`Timers::handle_timeout`] asks the connection to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// Send a keepalive ping with this payload.
    pub(crate) ping: Option<[u8; 8]>,
    /// The keepalive ping went unanswered: fail with 1011.
    pub(crate) pong_timeout: bool,
    /// Nothing received for the idle timeout: close with 1001.
    pub(crate) idle: bool,
    /// Our close frame went unanswered: end the connection (1006).
    pub(crate) close_timeout: bool,
    /// The output made no progress for the write timeout: end the connection (1006).
    pub(crate) write_timeout: bool,
    /// Release idle buffers.
    pub(crate) release: bool,
}

/// The clocks of one connection (see the module documentation), and the write high-water
/// mark (it fits in their padding).
#[derive(Debug)]
pub(crate) struct Timers {
    /// When bytes last arrived (or the clocks started); `None` until the first instant is
    /// given (no timer runs before it). Kept as the instant itself: it is stored on every
    /// read, and converting it to ticks there would cost more than the store (it also fits
    /// the box's size class: 64 bytes either way).
    last_recv: Option<Instant>,
    /// When the keepalive ping in flight went out (0: none); also its payload.
    ping_sent: u64,
    /// While OPEN: since when waiting output has made no progress (0: not stalled, or not
    /// timed yet). From the close frame on: when the close timer started (the close timeout
    /// then bounds a stalled output too).
    since: u64,
    ping_interval: u32,
    pong_timeout: u32,
    idle_timeout: u32,
    close_timeout: u32,
    write_timeout: u32,
    /// Round-trip time of the last answered keepalive ping in microseconds, plus one
    /// (0: none yet).
    rtt: u32,
    /// `Config::write_buffer_high_water`, saturated to `u32`.
    pub(crate) high_water: u32,
    close: ClosePhase,
    /// Buffers were released since bytes last arrived.
    released: bool,
    /// The write timeout ran out.
    write_timed_out: bool,
}

impl Timers {
    pub(crate) fn new(config: &crate::Config) -> Self {
        Timers {
            last_recv: None,
            ping_sent: 0,
            since: 0,
            ping_interval: pack_opt_ms(config.ping_interval),
            pong_timeout: pack_ms(config.pong_timeout),
            idle_timeout: pack_opt_ms(config.idle_timeout),
            close_timeout: pack_ms(config.close_timeout),
            write_timeout: pack_opt_ms(config.write_timeout),
            rtt: 0,
            high_water: u32::try_from(config.write_buffer_high_water).unwrap_or(u32::MAX),
            close: ClosePhase::None,
            released: false,
            write_timed_out: false,
        }
    }

    /// Bytes arrived at `now`.
    #[inline]
    pub(crate) fn mark_received(&mut self, now: Instant) -> bool {
        self.last_recv = Some(now);
        std::mem::replace(&mut self.released, false)
    }

    /// [`Timers::last_recv`] in ticks (0: not started).
    fn last_recv(&self) -> u64 {
        self.last_recv.map_or(0, ticks)
    }

    /// A pong arrived (in bytes marked received before it): it answers our ping when the
    /// payload matches.
    pub(crate) fn on_pong(&mut self, payload: &[u8]) -> bool {
        if self.ping_sent != 0 && payload == self.ping_sent.to_be_bytes() {
            let us = self.last_recv().saturating_sub(self.ping_sent);
            self.rtt = u32::try_from(us).unwrap_or(u32::MAX - 1) + 1;
            self.ping_sent = 0;
            return true;
        }
        false
    }

    /// Output was written: a stall, if one was being timed, is over.
    #[inline]
    pub(crate) fn on_progress(&mut self) {
        if self.close == ClosePhase::None {
            self.since = 0;
        }
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        match self.rtt {
            0 => None,
            us => Some(Duration::from_micros(u64::from(us) - 1)),
        }
    }

    pub(crate) fn linger_expired(&self) -> bool {
        self.close == ClosePhase::LingerExpired
    }

    pub(crate) fn write_timed_out(&self) -> bool {
        self.write_timed_out
    }

    /// Whether a timer has to be started at the next `handle_timeout`.
    fn needs_start(&self, seen: Seen) -> bool {
        use super::State;
        match (seen.state, self.close) {
            (State::Closing, ClosePhase::None)
            | (State::Closed, ClosePhase::None | ClosePhase::Handshake) => true,
            (State::Open, _) => {
                seen.output_waiting
                    && self.since == 0
                    && self.write_timeout != NO_TIMEOUT
                    && !self.write_timed_out
            }
            _ => false,
        }
    }

    /// When `handle_timeout` next has something to do, in ticks (`None`: nothing).
    fn next_due(&self, seen: Seen) -> Option<u64> {
        use super::State;
        let last_recv = self.last_recv();
        if last_recv == 0 {
            return None;
        }
        if self.needs_start(seen) {
            // In the past: due at once.
            return Some(1);
        }
        let mut due = None::<u64>;
        let mut at = |t: Option<u64>| {
            if let Some(t) = t {
                due = Some(due.map_or(t, |d| d.min(t)));
            }
        };
        if seen.state != State::Closed {
            if self.ping_sent != 0 {
                at(after(self.ping_sent, self.pong_timeout));
            } else if seen.state == State::Open {
                at(after(last_recv, self.ping_interval));
            }
        }
        match self.close {
            ClosePhase::None => {
                at(after(last_recv, self.idle_timeout));
                if self.since != 0 {
                    at(after(self.since, self.write_timeout));
                }
            }
            ClosePhase::Handshake | ClosePhase::Linger => {
                at(after(self.since, self.close_timeout));
            }
            ClosePhase::LingerExpired => {}
        }
        if !self.released {
            at(after(last_recv, RELEASE_MS));
        }
        due
    }

    /// See [`super::Connection::poll_timeout`].
    pub(crate) fn poll_timeout(&self, seen: Seen) -> Option<Instant> {
        instant(self.next_due(seen)?)
    }

    /// Starts what needs starting and reports what ran out at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, seen: Seen) -> Due {
        use super::State;
        let t = ticks(now);
        if self.last_recv.is_none() {
            // The clocks start.
            self.last_recv = Some(now);
        }
        let last_recv = self.last_recv();
        let expired = |since: u64, ms: u32| since != 0 && after(since, ms).is_some_and(|d| t >= d);
        let mut due = Due::default();
        match (seen.state, self.close) {
            (State::Closing, ClosePhase::None) => {
                self.close = ClosePhase::Handshake;
                self.since = t;
            }
            (State::Closed, ClosePhase::None | ClosePhase::Handshake) => {
                self.close = ClosePhase::Linger;
                self.since = t;
                self.ping_sent = 0;
            }
            (State::Closing, ClosePhase::Handshake) if expired(self.since, self.close_timeout) => {
                due.close_timeout = true;
            }
            (State::Closed, ClosePhase::Linger) if expired(self.since, self.close_timeout) => {
                self.close = ClosePhase::LingerExpired;
            }
            _ => {}
        }
        if seen.state != State::Closed
            && self.ping_sent != 0
            && expired(self.ping_sent, self.pong_timeout)
        {
            due.pong_timeout = true;
        }
        if seen.state == State::Open && self.close == ClosePhase::None {
            if expired(last_recv, self.idle_timeout) {
                due.idle = true;
            } else if self.ping_sent == 0 && expired(last_recv, self.ping_interval) {
                self.ping_sent = t;
                due.ping = Some(t.to_be_bytes());
            }
            if seen.output_waiting && self.write_timeout != NO_TIMEOUT && !self.write_timed_out {
                if self.since == 0 {
                    self.since = t;
                } else if expired(self.since, self.write_timeout) {
                    self.write_timed_out = true;
                    due.write_timeout = true;
                }
            }
        }
        if !self.released && expired(last_recv, RELEASE_MS) {
            self.released = true;
            due.release = true;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    //! Every timer, driven by a made-up clock through the public calling order: no
    //! sockets, no sleeps.
    use super::*;
    use crate::{CloseCode, CloseFrame, Config, Connection, Event, Message, Role, State};

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn config() -> Config {
        Config {
            deflate: None,
            ping_interval: Some(S(20)),
            pong_timeout: S(5),
            idle_timeout: None,
            close_timeout: S(3),
            write_timeout: Some(S(30)),
            ..Config::default()
        }
    }

    /// A server connection whose clocks started at `t0`.
    fn server(config: &Config, t0: Instant) -> Connection {
        let mut c = Connection::new(Role::Server, config, None);
        assert_eq!(
            c.poll_timeout(),
            None,
            "no timer before the first time given"
        );
        c.handle_timeout(t0);
        c
    }

    /// What an I/O layer does when it wakes at `now`: runs every timer that is due (again
    /// while one starts another), then drains the events.
    fn wake(c: &mut Connection, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..10 {
            events.extend(std::iter::from_fn(|| c.poll_event()));
            match c.poll_timeout() {
                Some(due) if due <= now => c.handle_timeout(now),
                _ => return events,
            }
        }
        panic!("timers still due after 10 rounds at one instant");
    }

    /// When the connection next has something to do, after `t0`, to the millisecond (the
    /// connection keeps time in microseconds from an epoch of its own choosing).
    fn due(c: &Connection, t0: Instant) -> Option<Duration> {
        let d = c.poll_timeout()?.saturating_duration_since(t0);
        Some(MS(((d.as_micros() + 500) / 1000) as u64))
    }

    /// The frames in a server's output: (opcode, payload).
    fn frames(c: &mut Connection) -> Vec<(u8, Vec<u8>)> {
        let out = c.take_output();
        let mut rest = &out[..];
        let mut found = Vec::new();
        while rest.len() >= 2 {
            let op = rest[0] & 0x0f;
            let len = usize::from(rest[1] & 0x7f);
            assert!(len < 126, "test frames are short");
            found.push((op, rest[2..2 + len].to_vec()));
            rest = &rest[2 + len..];
        }
        found
    }

    /// A frame as a client sends it (masked with a zero key, so the payload reads as is).
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    /// The events end the connection with 1006, not clean.
    fn assert_abnormal(events: &[Event], why: &str) {
        let end = closed(events).expect(why);
        assert_eq!(end.code, CloseCode::ABNORMAL, "{why}");
        assert!(!end.was_clean, "{why}");
    }

    fn closed(events: &[Event]) -> Option<&crate::CloseEvent> {
        events.iter().find_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
    }

    #[test]
    fn a_keepalive_ping_goes_out_after_the_interval_without_input() {
        let t0 = Instant::now();
        let mut c = server(&config(), t0);
        assert_eq!(due(&c, t0), Some(RELEASE_BUFFERS_AFTER));
        wake(&mut c, t0 + S(19));
        assert!(frames(&mut c).is_empty(), "pinged before the interval");
        // Input at 10 s moves the ping to 30 s.
        c.receive(&client_frame(0x1, b"hi"));
        c.mark_received(t0 + S(10));
        wake(&mut c, t0 + S(10));
        assert_eq!(due(&c, t0), Some(S(11)), "release, a second after input");
        wake(&mut c, t0 + S(29));
        assert!(frames(&mut c).is_empty());
        assert_eq!(due(&c, t0), Some(S(30)));
        wake(&mut c, t0 + S(30));
        let sent = frames(&mut c);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 0x9, "a ping");
        // The pong deadline is next, not another ping.
        assert_eq!(due(&c, t0), Some(S(35)));
        // Its pong, 40 ms later, answers it and measures the round trip.
        c.receive(&client_frame(0xA, &sent[0].1));
        c.mark_received(t0 + S(30) + MS(40));
        let ev = wake(&mut c, t0 + S(30) + MS(40));
        assert!(
            ev.is_empty(),
            "the keepalive's pong is the connection's own: {ev:?}"
        );
        assert_eq!(c.rtt(), Some(MS(40)));
        assert_eq!(c.state(), State::Open);
        // A pong with another payload answers nothing.
        wake(&mut c, t0 + S(51));
        let again = frames(&mut c);
        assert_eq!(again[0].0, 0x9);
        c.receive(&client_frame(0xA, b"unsolicited"));
        c.mark_received(t0 + S(52));
        let ev = wake(&mut c, t0 + S(52));
        assert!(
            matches!(&ev[..], [Event::Message(Message::Pong(p))] if &p[..] == b"unsolicited"),
            "other pongs are the application's: {ev:?}"
        );
        assert_eq!(due(&c, t0), Some(S(53)), "release first");
        wake(&mut c, t0 + S(53));
        assert_eq!(due(&c, t0), Some(S(56)), "the ping's pong deadline");
    }

    #[test]
    fn an_unanswered_ping_fails_the_connection_with_1011() {
        let t0 = Instant::now();
        let mut c = server(&config(), t0);
        wake(&mut c, t0 + S(20));
        assert_eq!(frames(&mut c)[0].0, 0x9);
        let ev = wake(&mut c, t0 + S(25) - MS(1));
        assert!(ev.is_empty() && c.state() == State::Open);
        let ev = wake(&mut c, t0 + S(25));
        let end = closed(&ev).expect("closed at the pong deadline");
        assert_eq!(end.code, CloseCode::INTERNAL_ERROR);
        assert!(!end.was_clean);
        let sent = frames(&mut c);
        assert_eq!(sent[0].0, 0x8);
        assert_eq!(&sent[0].1[..2], &1011u16.to_be_bytes());
    }

    #[test]
    fn no_pings_when_turned_off() {
        let t0 = Instant::now();
        let mut c = server(
            &Config {
                ping_interval: None,
                ..config()
            },
            t0,
        );
        wake(&mut c, t0 + S(1));
        assert_eq!(
            c.poll_timeout(),
            None,
            "nothing scheduled once buffers are released"
        );
        wake(&mut c, t0 + S(3600));
        assert!(frames(&mut c).is_empty());
    }

    #[test]
    fn the_idle_timeout_closes_with_1001_and_the_close_timeout_bounds_the_answer() {
        let t0 = Instant::now();
        let cfg = Config {
            idle_timeout: Some(S(8)),
            ..config()
        };
        let mut c = server(&cfg, t0);
        c.receive(&client_frame(0x2, b"x"));
        c.mark_received(t0 + S(2));
        wake(&mut c, t0 + S(2));
        wake(&mut c, t0 + S(10) - MS(1));
        assert_eq!(c.state(), State::Open);
        wake(&mut c, t0 + S(10));
        assert_eq!(c.state(), State::Closing);
        let sent = frames(&mut c);
        assert_eq!(sent[0].0, 0x8);
        assert_eq!(&sent[0].1[..2], &1001u16.to_be_bytes());
        assert_eq!(&sent[0].1[2..], b"idle timeout");
        // The peer never answers: 1006 after the close timeout (3 s).
        assert_eq!(due(&c, t0), Some(S(13)));
        let ev = wake(&mut c, t0 + S(13));
        assert_abnormal(&ev, "closed at the close timeout");
    }

    #[test]
    fn the_close_timeout_runs_from_our_close_frame_and_then_bounds_the_wind_down() {
        let t0 = Instant::now();
        let mut c = server(&config(), t0);
        wake(&mut c, t0 + S(4));
        // Queued at 6 s, with no time at hand: the timer reports itself due at once...
        c.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")))
            .unwrap();
        assert!(c.poll_timeout().unwrap() <= t0 + S(6));
        // ...and counts from the time the next handle_timeout gives.
        wake(&mut c, t0 + S(6));
        assert_eq!(due(&c, t0), Some(S(9)));
        let ev = wake(&mut c, t0 + S(9) - MS(1));
        assert!(ev.is_empty() && c.state() == State::Closing);
        // The peer answers in time: a clean close.
        c.receive(&client_frame(0x8, &1000u16.to_be_bytes()));
        c.mark_received(t0 + S(8));
        let ev = wake(&mut c, t0 + S(8));
        assert!(closed(&ev).unwrap().was_clean);
        // CLOSED: the transport gets the close timeout to wind down, from now.
        assert!(!c.linger_expired());
        assert_eq!(due(&c, t0), Some(S(9)), "release first");
        wake(&mut c, t0 + S(9));
        assert_eq!(due(&c, t0), Some(S(11)));
        wake(&mut c, t0 + S(11) - MS(1));
        assert!(!c.linger_expired());
        wake(&mut c, t0 + S(11));
        assert!(c.linger_expired());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn the_write_timeout_counts_from_the_last_progress() {
        let t0 = Instant::now();
        let cfg = Config {
            ping_interval: None,
            ..config()
        };
        let mut c = server(&cfg, t0);
        c.send(Message::binary(vec![1u8; 1000])).unwrap();
        // Output waits when the I/O layer goes to sleep: the stall clock starts then.
        wake(&mut c, t0 + S(1));
        assert_eq!(due(&c, t0), Some(S(31)));
        // Some of it is written at 20 s: the clock starts again at the next sleep.
        c.advance_output(100);
        wake(&mut c, t0 + S(20));
        assert_eq!(due(&c, t0), Some(S(50)));
        let ev = wake(&mut c, t0 + S(50) - MS(1));
        assert!(ev.is_empty() && !c.write_timed_out());
        let ev = wake(&mut c, t0 + S(50));
        assert!(c.write_timed_out());
        assert_abnormal(&ev, "ended by the write timeout");
    }

    #[test]
    fn written_output_runs_no_write_timer() {
        let t0 = Instant::now();
        let cfg = Config {
            ping_interval: None,
            ..config()
        };
        let mut c = server(&cfg, t0);
        c.send(Message::text("hello")).unwrap();
        let n = c.output().len();
        c.advance_output(n);
        wake(&mut c, t0 + S(1));
        assert_eq!(c.poll_timeout(), None);
        wake(&mut c, t0 + S(100));
        assert!(!c.write_timed_out() && c.state() == State::Open);
    }

    #[test]
    fn idle_buffers_are_released_a_second_after_the_last_input() {
        let t0 = Instant::now();
        let mut c = server(&config(), t0);
        // Half a frame: the buffer must be kept while the rest is missing.
        let frame = client_frame(0x2, &[7u8; 100]);
        c.receive(&frame[..50]);
        c.mark_received(t0);
        wake(&mut c, t0 + S(1));
        assert!(
            c.read_buf().capacity() > 0,
            "a partial frame's buffer was released"
        );
        c.receive(&frame[50..]);
        c.mark_received(t0 + S(2));
        let ev = wake(&mut c, t0 + S(2));
        assert_eq!(ev.len(), 1);
        // Room for the next read, as an I/O layer makes it.
        c.read_buf().reserve(4096);
        wake(&mut c, t0 + S(3) - MS(1));
        assert!(c.read_buf().capacity() > 0);
        wake(&mut c, t0 + S(3));
        assert_eq!(
            c.read_buf().capacity(),
            0,
            "not released after a second of quiet"
        );
    }

    #[test]
    fn handle_timeout_early_or_twice_changes_nothing() {
        let t0 = Instant::now();
        let mut c = server(&config(), t0);
        for s in [0, 1, 5, 5, 19] {
            c.handle_timeout(t0 + S(s));
        }
        assert!(frames(&mut c).is_empty());
        assert_eq!(c.state(), State::Open);
        // A clock that goes backwards is read as no time passing.
        c.handle_timeout(t0);
        assert_eq!(due(&c, t0), Some(S(20)));
    }

    #[test]
    fn packing_rounds_up_and_clamps() {
        assert_eq!(pack_ms(Duration::from_micros(1500)), 2);
        assert_eq!(pack_ms(Duration::ZERO), 0);
        assert_eq!(pack_ms(Duration::from_secs(u64::MAX)), NO_TIMEOUT - 1);
        assert_eq!(pack_opt_ms(None), NO_TIMEOUT);
    }

    #[test]
    fn the_timers_stay_small() {
        // Every connection carries them.
        assert!(
            std::mem::size_of::<Timers>() <= 80,
            "{}",
            std::mem::size_of::<Timers>()
        );
    }
}
