//! [`Hub`]: the registry of this node's clients and of who is subscribed to what, and the
//! fan-out of what the broker delivers.
//!
//! # Fan-out
//!
//! A publication is turned into its push (`{"push":{"channel":..,"pub":..}}`) and framed
//! once ([`PreparedMessage`]), whatever the number of subscribers; with permessage-deflate
//! the compressed frame is made once per window size and shared too. Each subscriber's
//! send queue takes the shared frame without waiting; a subscriber whose queue is over its
//! high-water mark is disconnected as slow (3008), so no subscriber holds up the others or
//! grows the server's memory beyond its queue.
//!
//! # Subscribing without gaps or duplicates
//!
//! A new subscription starts *pending*: deliveries for it are kept aside while its
//! subscribe reply is made (history read, recovery decided). Once the reply is queued, the
//! pending deliveries with an offset past the one the reply ends at are sent and the
//! subscription goes live. So a subscriber sees the recovered publications, then every
//! later one, each once and in offset order, however the broker's deliveries and the
//! history read interleave.

use crate::auth::TokenKeys;
use crate::broker::{Broker, BrokerEvents};
use crate::client::{Client, ClientId, Outbox};
use crate::codes::{self, Disconnect};
use crate::config::HubConfig;
use crate::control::Nodes;
use crate::metrics::Metrics;
use crate::protocol::{push, ClientInfo, Presence, Publication};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use wsx::PreparedMessage;

/// The server's version, in `connect` and `refresh` results.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A real-time hub: channels, presence, history and recovery, for clients speaking
/// Centrifugo's client protocol. Make one with [`Hub::new`], serve each WebSocket with
/// [`Hub::serve`], answer the server API with [`crate::api::call`] (or mount both with
/// [`crate::HubHook`]).
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) keys: TokenKeys,
    pub(crate) broker: Arc<dyn Broker>,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    clients: Mutex<HashMap<ClientId, Arc<Client>>>,
    pub(crate) metrics: Metrics,
    pub(crate) started: Instant,
    ping: PreparedMessage,
    shutting_down: AtomicBool,
    /// This node's unique id (names may repeat).
    pub(crate) uid: String,
    /// The hub itself, for tasks it starts.
    pub(crate) me: Weak<Hub>,
    /// The other nodes, and this node's open surveys.
    nodes: Mutex<Nodes>,
}

/// A channel's subscribers on this node.
#[derive(Default)]
struct Channel {
    subs: Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    client: Arc<Client>,
    /// Gets join and leave pushes.
    join_leave: bool,
    /// Deliveries kept while the subscribe reply is made (`None`: live), with their
    /// offsets (`None` for join and leave).
    pending: Option<Vec<(Option<u64>, PreparedMessage)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands the broker's deliveries to the hub without keeping it alive.
struct Deliveries(Weak<Hub>);

impl BrokerEvents for Deliveries {
    fn publication(&self, channel: &str, publication: &Arc<Publication>) {
        if let Some(hub) = self.0.upgrade() {
            hub.fan_out(channel, Some(publication.offset), || {
                push(channel, "pub", &**publication)
            });
        }
    }

    fn join(&self, channel: &str, info: &ClientInfo) {
        if let Some(hub) = self.0.upgrade() {
            hub.fan_out_presence(channel, "join", info);
        }
    }

    fn leave(&self, channel: &str, info: &ClientInfo) {
        if let Some(hub) = self.0.upgrade() {
            hub.fan_out_presence(channel, "leave", info);
        }
    }

    fn control(&self, message: &[u8]) {
        if let Some(hub) = self.0.upgrade() {
            hub.on_control(message);
        }
    }

    fn lost(&self, channel: &str) {
        let Some(hub) = self.0.upgrade() else { return };
        let Some(ch) = lock(&hub.channels).get(channel).cloned() else {
            return;
        };
        for sub in lock(&ch.subs).iter() {
            sub.client.disconnect(codes::INSUFFICIENT_STATE);
        }
    }
}

impl Hub {
    /// A hub with `config`, verifying tokens with `keys`, publishing through `broker`.
    /// Call it inside a tokio runtime: it starts the task that pings clients, enforces
    /// token expiry and sweeps expired history, which ends when the hub is dropped.
    pub fn new(config: HubConfig, keys: TokenKeys, broker: Arc<dyn Broker>) -> Arc<Hub> {
        let metrics = Metrics::new(&*broker);
        let hub = Arc::new_cyclic(|me| Hub {
            config,
            keys,
            broker,
            channels: Mutex::default(),
            clients: Mutex::default(),
            metrics,
            started: Instant::now(),
            ping: PreparedMessage::text("{}"),
            shutting_down: AtomicBool::new(false),
            uid: crate::client::ClientId::random().to_string(),
            me: me.clone(),
            nodes: Mutex::default(),
        });
        hub.broker.start(Arc::new(Deliveries(Arc::downgrade(&hub))));
        tokio::spawn(tick(Arc::downgrade(&hub)));
        hub
    }

    pub(crate) fn nodes(&self) -> MutexGuard<'_, Nodes> {
        lock(&self.nodes)
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The Prometheus text of the hub's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode(self)
    }

    /// Serves one client on `ws` until it goes: reads its commands and answers them, while
    /// the hub writes its subscriptions' publications to it. Call it on the connection's
    /// task. (Not an `async fn`: its future would keep the moved `ws` beside its halves
    /// for the connection's whole life.)
    pub fn serve<S>(
        self: Arc<Self>,
        ws: wsx::WebSocket<S>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (reader, writer) = ws.split();
        let client = Arc::new(Client::new(
            ClientId::random(),
            peer,
            Box::new(writer) as Box<dyn Outbox>,
        ));
        if self.shutting_down.load(Ordering::Relaxed) {
            client.close(codes::SHUTDOWN);
        }
        lock(&self.clients).insert(client.id, client.clone());
        self.metrics.connections.inc();
        crate::session::start(self, client).run(reader)
    }

    /// Forgets a client whose session ended.
    pub(crate) fn unregister(&self, client: &Client) {
        lock(&self.clients).remove(&client.id);
        self.metrics.connections.dec();
    }

    /// Tells every client to reconnect later (3001, shutdown), and waits up to `timeout`
    /// for their sessions to end (their close handshakes done); call it when the server
    /// begins to shut down, before the server closes what is left with 1001. Clients
    /// that connect meanwhile are closed with 3001 at once.
    pub async fn shutdown(&self, timeout: Duration) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for c in self.clients_snapshot() {
            c.disconnect(codes::SHUTDOWN);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while !lock(&self.clients).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn clients_snapshot(&self) -> Vec<Arc<Client>> {
        lock(&self.clients).values().cloned().collect()
    }

    /// The clients of `user` (all of them, or the one with id `client`).
    pub(crate) fn user_clients(&self, user: &str, client: Option<&str>) -> Vec<Arc<Client>> {
        self.clients_snapshot()
            .into_iter()
            .filter(|c| client.is_none_or(|id| c.id.to_string() == id))
            .filter(|c| {
                let s = c.state();
                s.connected && s.user == user
            })
            .collect()
    }

    /// Adds a pending subscriber.
    pub(crate) fn add_subscriber(&self, channel: &str, client: &Arc<Client>, join_leave: bool) {
        let mut channels = lock(&self.channels);
        let ch = channels.entry(channel.to_owned()).or_default().clone();
        // The channel map's lock is held until the subscriber is in, so that a concurrent
        // removal of the last subscriber cannot drop the channel in between.
        lock(&ch.subs).push(Subscriber {
            client: client.clone(),
            join_leave,
            pending: Some(Vec::new()),
        });
        drop(channels);
        self.metrics.subscriptions.inc();
    }

    /// Removes a subscriber.
    pub(crate) fn remove_subscriber(&self, channel: &str, client: &Client) {
        let mut channels = lock(&self.channels);
        let Some(ch) = channels.get(channel).cloned() else {
            return;
        };
        let mut subs = lock(&ch.subs);
        let before = subs.len();
        subs.retain(|s| !std::ptr::eq(&*s.client, client));
        if subs.len() < before {
            self.metrics.subscriptions.dec();
        }
        let last = subs.is_empty();
        drop(subs);
        if last {
            channels.remove(channel);
        }
    }

    /// Sends a pending subscriber what was delivered meanwhile after offset `after` (all
    /// of it when `None`), and makes it live.
    pub(crate) fn activate(&self, channel: &str, client: &Client, after: Option<u64>) {
        let Some(ch) = lock(&self.channels).get(channel).cloned() else {
            return;
        };
        let mut subs = lock(&ch.subs);
        let Some(sub) = subs.iter_mut().find(|s| std::ptr::eq(&*s.client, client)) else {
            return;
        };
        for (offset, frame) in sub.pending.take().unwrap_or_default() {
            let fresh = match (offset, after) {
                (Some(o), Some(a)) => o > a,
                _ => true,
            };
            if fresh {
                sub.client.deliver(&frame);
            }
        }
    }

    /// Channels with subscribers on this node, with their numbers of subscribers.
    pub(crate) fn channel_counts(&self) -> Vec<(String, usize)> {
        lock(&self.channels)
            .iter()
            .map(|(name, ch)| (name.clone(), lock(&ch.subs).len()))
            .collect()
    }

    /// Delivers one frame (made by `make`, only when someone is subscribed) to every
    /// subscriber of `channel` on this node.
    fn fan_out(&self, channel: &str, offset: Option<u64>, make: impl FnOnce() -> Vec<u8>) {
        let Some(ch) = lock(&self.channels).get(channel).cloned() else {
            return;
        };
        let frame = PreparedMessage::text(String::from_utf8(make()).unwrap_or_default());
        let mut delivered = 0u64;
        let mut subs = lock(&ch.subs);
        for sub in subs.iter_mut() {
            match &mut sub.pending {
                Some(pending) if pending.len() >= self.config.max_pending => {
                    sub.client.disconnect(codes::INSUFFICIENT_STATE);
                }
                Some(pending) => pending.push((offset, frame.clone())),
                None => {
                    sub.client.deliver(&frame);
                    delivered += 1;
                }
            }
        }
        drop(subs);
        self.metrics.publications.inc();
        self.metrics.deliveries.inc_by(delivered);
    }

    fn fan_out_presence(&self, channel: &str, kind: &str, info: &ClientInfo) {
        let Some(ch) = lock(&self.channels).get(channel).cloned() else {
            return;
        };
        let frame = PreparedMessage::text(
            String::from_utf8(push(channel, kind, &Presence { info })).unwrap_or_default(),
        );
        for sub in lock(&ch.subs).iter_mut().filter(|s| s.join_leave) {
            match &mut sub.pending {
                Some(pending) => pending.push((None, frame.clone())),
                None => sub.client.deliver(&frame),
            }
        }
    }

    /// Once a second: pings, pong deadlines, token expiry, stale connections.
    fn tick_clients(&self, now: Instant) {
        let unix = unix_now();
        let grace = self.config.expired_grace.as_secs();
        for c in self.clients_snapshot() {
            let verdict = {
                let s = c.state();
                if s.disconnect.is_some() {
                    None
                } else if !s.connected && now.duration_since(s.opened) > self.config.stale_timeout {
                    Some(codes::STALE)
                } else if s.expires_at.is_some_and(|exp| unix > exp + grace) {
                    Some(codes::EXPIRED)
                } else {
                    None
                }
            };
            let verdict = verdict.or_else(|| {
                c.tick_ping(
                    now,
                    &self.ping,
                    self.config.ping_interval,
                    self.config.pong_timeout,
                )
                .err()
            });
            if let Some(d) = verdict {
                c.disconnect(d);
            }
        }
    }

    pub(crate) fn count_disconnect(&self, d: &Disconnect) {
        if d.code == codes::SLOW.code {
            self.metrics.slow_disconnects.inc();
        }
    }
}

/// The hub's clock: once a second, clients; every ten, the broker's sweep.
async fn tick(hub: Weak<Hub>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        interval.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.tick_clients(Instant::now());
        n += 1;
        if n.is_multiple_of(10) {
            hub.broker.sweep();
        }
        if n.is_multiple_of(crate::control::ANNOUNCE_EVERY.as_secs()) {
            tokio::spawn(async move { hub.announce().await });
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
