//! A [`crate::Server`]'s open connections: the caps that admit them, the counts the
//! [`crate::ShutdownReport`] is made of, and the task that serves each one.
//!
//! Nothing here is allocated per connection. A connection is a count in [`Registry`] (and
//! in its address's count), its task holds one reference to the server's [`Served`], and
//! the shutdown reaches it through its timer's group (see [`crate::shutdown`]). An idle
//! connection costs its task, its socket and its timers' box, under 1 KiB in all
//! (BENCHMARKS.md, "Memory per idle connection").

use crate::error::{Error, Result};
use crate::shutdown::ShutdownSignal;
use crate::stream::MaybeTlsStream;
use crate::websocket::WebSocket;
use crate::workers::LoadGuard;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::sync::Notify;
use wsx_proto::handshake::server::Rejection;

/// What a server shares with its connection tasks.
#[derive(Default)]
pub(crate) struct Served {
    registry: Mutex<Registry>,
    /// The shutdown request, shared with each connection's driver.
    pub(crate) signal: Arc<ShutdownSignal>,
    /// Notified when the last connection task ends.
    ended: Notify,
}

/// The counts, under one lock: taken when a connection is admitted, when its handshake
/// completes and when its task ends.
#[derive(Default)]
struct Registry {
    /// Connection tasks running (handshaking or handled).
    live: usize,
    /// Of those, the ones whose handshake completed.
    upgraded: usize,
    /// Upgraded connections when the shutdown was requested, plus those upgraded after.
    open_at_shutdown: usize,
    by_ip: HashMap<IpAddr, usize>,
    handshakes: HandshakeRates,
}

/// The caps [`Served::admit`] applies.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Caps {
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) max_handshakes_per_ip: Option<u32>,
}

impl Served {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `peer`, or says why it is refused.
    pub(crate) fn admit(
        self: &Arc<Self>,
        caps: Caps,
        peer: SocketAddr,
    ) -> std::result::Result<Registration, Rejection> {
        let ip = peer.ip();
        let mut r = self.registry();
        if let Some(per_second) = caps.max_handshakes_per_ip {
            if !r.handshakes.admit(ip, per_second, Instant::now()) {
                return Err(
                    Rejection::new(429, "too many new connections from your address\n")
                        .with_header("Retry-After", "1"),
                );
            }
        }
        if caps.max_connections.is_some_and(|max| r.live >= max) {
            return Err(Rejection::new(
                503,
                "server is at its connection limit, try again later\n",
            )
            .with_header("Retry-After", "5"));
        }
        let from_ip = r.by_ip.get(&ip).copied().unwrap_or(0);
        if caps
            .max_connections_per_ip
            .is_some_and(|max| from_ip >= max)
        {
            return Err(
                Rejection::new(429, "too many connections from your address\n")
                    .with_header("Retry-After", "5"),
            );
        }
        r.live += 1;
        *r.by_ip.entry(ip).or_insert(0) += 1;
        Ok(Registration {
            served: self.clone(),
            peer,
            upgraded: false,
        })
    }

    /// Asks every connection to close with 1001; the upgraded connections then open are
    /// the ones reported on (with those whose handshake completes later).
    pub(crate) fn request_shutdown(&self) {
        let mut r = self.registry();
        r.open_at_shutdown = r.upgraded;
        // Under the lock, so that a handshake completing now is counted exactly once.
        self.signal.request();
    }

    /// Waits until no connection task is left, or `deadline`; how many are left.
    pub(crate) async fn wait_ended(&self, deadline: tokio::time::Instant) -> usize {
        loop {
            let ended = self.ended.notified();
            let live = self.registry().live;
            if live == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.registry().live;
            }
        }
    }

    /// Upgraded connections open at the request or since.
    pub(crate) fn open_at_shutdown(&self) -> usize {
        self.registry().open_at_shutdown
    }
}

/// A connection's place in the counts, given back when its task ends (or is dropped).
pub(crate) struct Registration {
    served: Arc<Served>,
    peer: SocketAddr,
    upgraded: bool,
}

impl Registration {
    /// What the connection is counted in.
    pub(crate) fn served(&self) -> &Served {
        &self.served
    }

    /// Counts the connection as upgraded (open, for the shutdown report).
    pub(crate) fn upgraded(&mut self) {
        self.upgraded = true;
        let mut r = self.served.registry();
        r.upgraded += 1;
        if self.served.signal.is_requested() {
            r.open_at_shutdown += 1;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let ip = self.peer.ip();
        let mut r = self.served.registry();
        r.live -= 1;
        if self.upgraded {
            r.upgraded -= 1;
        }
        if let Some(n) = r.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                r.by_ip.remove(&ip);
            }
        }
        let last = r.live == 0;
        drop(r);
        if last {
            self.served.ended.notify_one();
        }
    }
}

/// New connections per address: a token bucket each
/// ([`crate::ServerConfig::max_handshakes_per_ip`]).
#[derive(Default)]
struct HandshakeRates {
    /// Tokens left and when they were counted.
    buckets: HashMap<IpAddr, (f64, Instant)>,
    /// The table's size after it was last pruned.
    pruned_at: usize,
}

impl HandshakeRates {
    /// Takes a token for a new connection from `ip`: false when it has none left.
    fn admit(&mut self, ip: IpAddr, per_second: u32, now: Instant) -> bool {
        let rate = f64::from(per_second.max(1));
        if self.buckets.len() >= 2 * self.pruned_at.max(512) {
            // Buckets that have filled up again say nothing: forget them.
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < rate
            });
            self.pruned_at = self.buckets.len();
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((rate, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

pin_project_lite::pin_project! {
    /// A served connection's task: the (boxed) handshake, then the handler's future.
    ///
    /// Written out rather than as an `async fn`: rustc keeps an `async fn`'s arguments
    /// beside the locals they are moved into, and this task holds the handler's future
    /// for the connection's whole life, so every byte here is paid by every connection.
    /// Ends at once, dropping the handler, when the server aborts after its shutdown
    /// timeout.
    pub(crate) struct ConnectionTask<HS, F, Fut> {
        #[pin]
        stage: Stage<HS, F, Fut>,
        registration: Registration,
        load: Option<LoadGuard>,
    }
}

pin_project_lite::pin_project! {
    #[project = StageProj]
    enum Stage<HS, F, Fut> {
        Handshake { handshake: Pin<Box<HS>>, handler: Arc<F> },
        Handler { #[pin] handler: Fut },
        Done,
    }
}

impl<HS, F, Fut> ConnectionTask<HS, F, Fut> {
    /// The task of an admitted connection, to be spawned. `handshake` yields `None` when
    /// there is nothing to serve (the socket could not be registered, or the shutdown came
    /// first).
    pub(crate) fn new(
        handshake: Pin<Box<HS>>,
        handler: Arc<F>,
        registration: Registration,
        load: Option<LoadGuard>,
    ) -> Self
    where
        F: Fn(WebSocket<MaybeTlsStream>, SocketAddr) -> Fut,
    {
        ConnectionTask {
            stage: Stage::Handshake { handshake, handler },
            registration,
            load,
        }
    }
}

impl<HS, F, Fut> Future for ConnectionTask<HS, F, Fut>
where
    F: Fn(WebSocket<MaybeTlsStream>, SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
    HS: Future<Output = Option<Result<WebSocket<MaybeTlsStream>>>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let registration = this.registration;
        if registration.served.signal.is_aborted() {
            this.stage.set(Stage::Done);
            return Poll::Ready(());
        }
        let peer = registration.peer;
        match this.stage.as_mut().project() {
            StageProj::Handshake { handshake, handler } => {
                let ws = match ready!(handshake.as_mut().poll(cx)) {
                    Some(Ok(ws)) => ws,
                    other => {
                        match other {
                            Some(Err(Error::HttpAnswered(status))) => {
                                tracing::debug!(%peer, status, "plain HTTP request answered")
                            }
                            Some(Err(e)) => tracing::debug!(%peer, "handshake failed: {e}"),
                            _ => {}
                        }
                        this.stage.set(Stage::Done);
                        return Poll::Ready(());
                    }
                };
                registration.upgraded();
                tracing::info!(%peer, protocol = ws.protocol(), compressed = ws.is_compressed(), "connection open");
                let handler = handler(ws.with_shutdown(registration.served.signal.clone()), peer);
                this.stage.set(Stage::Handler { handler });
            }
            StageProj::Handler { .. } => {}
            StageProj::Done => return Poll::Ready(()),
        }
        let StageProj::Handler { handler } = this.stage.as_mut().project() else {
            return Poll::Ready(());
        };
        ready!(handler.poll(cx));
        this.stage.set(Stage::Done);
        tracing::info!(%peer, "connection done");
        drop(this.load.take());
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn handshakes_per_ip_come_in_bursts_of_the_rate_and_refill_at_it() {
        let mut rates = HandshakeRates::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..5).all(|_| rates.admit(a, 5, t0)));
        assert!(!rates.admit(a, 5, t0), "the sixth in the same instant");
        assert!(rates.admit(b, 5, t0), "another address has its own bucket");
        assert!(!rates.admit(a, 5, t0 + Duration::from_millis(100)));
        assert!(
            rates.admit(a, 5, t0 + Duration::from_millis(200)),
            "one token per 200 ms"
        );
        assert!(!rates.admit(a, 5, t0 + Duration::from_millis(210)));
        // Never more than a burst saved up.
        let later = t0 + Duration::from_secs(60);
        assert!((0..5).all(|_| rates.admit(a, 5, later)));
        assert!(!rates.admit(a, 5, later));
    }

    #[test]
    fn addresses_whose_bucket_refilled_are_forgotten() {
        let mut rates = HandshakeRates::default();
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // 10,000 new addresses a second, each connecting once at 2 per second.
            let now = t0 + Duration::from_micros(100 * u64::from(i));
            assert!(rates.admit(ip, 2, now));
        }
        // Only the last second or so of addresses is remembered, not all 100,000.
        assert!(rates.buckets.len() < 30_000, "{}", rates.buckets.len());
    }

    #[test]
    fn caps_count_connections_and_give_them_back_when_tasks_end() {
        let served = Arc::new(Served::default());
        let caps = Caps {
            max_connections: Some(3),
            max_connections_per_ip: Some(2),
            max_handshakes_per_ip: None,
        };
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1000".parse().unwrap();
        let first = served.admit(caps, a).unwrap();
        let _second = served.admit(caps, a).unwrap();
        assert_eq!(served.admit(caps, a).err().map(|r| r.status), Some(429));
        let _third = served.admit(caps, b).unwrap();
        assert_eq!(served.admit(caps, b).err().map(|r| r.status), Some(503));
        drop(first);
        assert!(served.admit(caps, a).is_ok(), "a place given back");
        assert!(served.registry().by_ip.len() <= 2);
    }

    #[test]
    fn the_report_counts_upgraded_connections_open_at_the_request_and_after() {
        let served = Arc::new(Served::default());
        let peer: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let mut open = served.admit(Caps::default(), peer).unwrap();
        open.upgraded();
        let mut closed = served.admit(Caps::default(), peer).unwrap();
        closed.upgraded();
        drop(closed);
        let _handshaking = served.admit(Caps::default(), peer).unwrap();
        served.request_shutdown();
        let mut late = served.admit(Caps::default(), peer).unwrap();
        late.upgraded();
        assert_eq!(served.open_at_shutdown(), 2);
        served.signal.closed(true);
        assert_eq!(served.signal.closed_cleanly(), 1);
    }

    /// The size of the future `handler` returns.
    fn future_size<F, Fut>(_: &F) -> usize
    where
        F: Fn(WebSocket<MaybeTlsStream>, SocketAddr) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn the_task_adds_little_to_the_handler() {
        // A handler with a large future: the task must hold it once (not beside a moved-from
        // copy of it or of the `WebSocket`), plus its own few fields.
        let handler = |ws: WebSocket<MaybeTlsStream>, peer: SocketAddr| async move {
            let pad = [0u8; 1500];
            tokio::task::yield_now().await;
            std::hint::black_box((&pad, &ws, peer));
        };
        let handler_size = future_size(&handler);
        let handshake = Box::pin(async { None::<Result<WebSocket<MaybeTlsStream>>> });
        let served = Arc::new(Served::default());
        let registration = served
            .admit(Caps::default(), "127.0.0.1:1".parse().unwrap())
            .unwrap();
        let task = ConnectionTask::new(handshake, Arc::new(handler), registration, None);
        let task_size = std::mem::size_of_val(&task);
        assert!(
            task_size <= handler_size + 64,
            "task {task_size} B for a handler future of {handler_size} B"
        );
    }
}
