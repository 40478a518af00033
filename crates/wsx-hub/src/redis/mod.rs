//! [`RedisBroker`]: a [`Broker`] on Redis, so that several hub nodes act as one.
//!
//! - **Publications** are numbered, kept and published by one Lua script (see
//!   [`scripts`]): a publication is in the channel's history (a Redis Stream) before the
//!   publisher's acknowledgement and before any node receives it, and each channel's
//!   publications reach every node in offset order over Redis pub/sub.
//! - **Each node** keeps one pub/sub connection (the link), subscribed to the channels
//!   that have subscribers on it. It checks the offset of every publication it receives: a
//!   gap (a publication lost while the link was down) is filled from the channel's history
//!   before later ones are delivered, so this node's subscribers see every publication,
//!   once and in order. When history no longer holds what was missed, the channel's
//!   subscribers are told to reconnect and recover ([`BrokerEvents::lost`]).
//! - **Presence** lives in Redis with an expiry that each node refreshes for its own
//!   clients, so the clients of a node that died leave presence within
//!   [`RedisBroker::presence_ttl`].
//! - **Redis trouble** (restarts, dropped connections, a slow or unreachable server): the
//!   link reconnects with backoff, resubscribes, and catches up from history; commands fail
//!   with [`BrokerError::Unavailable`] after [`RedisBroker::timeout`] (clients get error
//!   100) and the command connection reconnects. Clients stay connected.

mod link;
mod scripts;

use crate::broker::{
    Broker, BrokerError, BrokerEvents, BrokerFuture, HistoryPage, HistoryQuery, PublishOptions,
};
use crate::protocol::{ClientInfo, Publication, StreamPosition};
use link::Link;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use scripts::Keys;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// A broker on one Redis server (see the module documentation). Every node of a hub
/// uses the same Redis and the same [`prefix`](RedisBroker::prefix).
///
/// ```no_run
/// # async fn f() -> Result<(), wsx_hub::BrokerError> {
/// let broker = wsx_hub::RedisBroker::connect("redis://127.0.0.1:6379").await?;
/// # Ok(()) }
/// ```
pub struct RedisBroker {
    inner: Arc<Inner>,
}

/// What the broker's parts share: the command connection, the link, the settings.
struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    timeout: Duration,
    presence_ttl: Duration,
    meta_ttl: Duration,
    link_check: Duration,
    events: OnceLock<Arc<dyn BrokerEvents>>,
    link: Link,
    /// This node's presence entries, refreshed every third of `presence_ttl`: channel and
    /// client id to the info's JSON.
    present: Mutex<HashMap<(String, String), String>>,
    metrics: RedisMetrics,
    /// Tells the broker's tasks to end (set when the broker is dropped).
    closed: tokio::sync::watch::Sender<bool>,
}

/// The broker's own metrics, under `wsx_hub_redis_*`.
#[derive(Default)]
struct RedisMetrics {
    link_up: Gauge,
    reconnects: Counter,
    caught_up: Counter,
    lost: Counter,
    errors: Counter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

fn new_epoch() -> String {
    format!("{:08x}", rand::random::<u32>())
}

impl RedisBroker {
    /// Connects to the Redis at `url` (`redis://host:port/db`, `rediss://` for TLS,
    /// `redis://:password@host`), failing when it cannot be reached within 5 seconds.
    pub async fn connect(url: &str) -> Result<RedisBroker, BrokerError> {
        let timeout = Duration::from_secs(5);
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| BrokerError::Unavailable(format!("no answer from {url} in 5 s")))?
        .map_err(unavailable)?;
        Ok(RedisBroker {
            inner: Arc::new(Inner {
                client,
                conn,
                keys: Keys::new("wsx"),
                timeout,
                presence_ttl: Duration::from_secs(60),
                meta_ttl: Duration::from_secs(24 * 3600),
                link_check: Duration::from_secs(1),
                events: OnceLock::new(),
                link: Link::default(),
                present: Mutex::default(),
                metrics: RedisMetrics::default(),
                closed: tokio::sync::watch::Sender::new(false),
            }),
        })
    }

    fn settings(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("settings are made before start");
        f(inner);
        self
    }

    /// The prefix of every key and pub/sub channel (default `wsx`): hubs that share a
    /// Redis but not their channels use different prefixes.
    pub fn prefix(self, prefix: &str) -> Self {
        self.settings(|i| i.keys = Keys::new(prefix))
    }

    /// How long a command may take before it fails (default 5 s).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.settings(|i| i.timeout = timeout)
    }

    /// How long a presence entry outlives its node's last refresh (default 60 s; each
    /// node refreshes its own every third of it).
    pub fn presence_ttl(self, ttl: Duration) -> Self {
        self.settings(|i| i.presence_ttl = ttl.max(Duration::from_secs(3)))
    }

    /// How long a stream's position (epoch, offset) is kept after its last publication
    /// expired, or after it was first asked for (default 24 hours).
    pub fn meta_ttl(self, ttl: Duration) -> Self {
        self.settings(|i| i.meta_ttl = ttl)
    }

    /// How often the link is checked with a `PING` (default 1 s); one not answered
    /// within [`timeout`](RedisBroker::timeout) makes the link reconnect.
    pub fn link_check(self, every: Duration) -> Self {
        self.settings(|i| i.link_check = every.max(Duration::from_millis(100)))
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.inner.closed.send_replace(true);
    }
}

impl Inner {
    /// Runs a command, counting its failure.
    async fn run<T: redis::FromRedisValue>(
        &self,
        f: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.metrics.errors.inc();
                Err(unavailable(e))
            }
            Err(_) => {
                self.metrics.errors.inc();
                Err(BrokerError::Unavailable(
                    "Redis did not answer in time".into(),
                ))
            }
        }
    }

    async fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        options: PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        publication.offset = 0;
        let json = serde_json::to_string(&publication).map_err(unavailable)?;
        if options.history_size == 0 || options.history_ttl.is_zero() {
            let message = format!("p0 - {json}");
            let target = self.keys.pubsub(channel);
            self.run(async |mut c| {
                redis::cmd("PUBLISH")
                    .arg(&target)
                    .arg(message)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
            return Ok(StreamPosition::default());
        }
        let (offset, epoch): (u64, String) = self
            .run(async |mut c| {
                scripts::PUBLISH
                    .key(self.keys.meta(channel))
                    .key(self.keys.stream(channel))
                    .arg(self.keys.pubsub(channel))
                    .arg(&json)
                    .arg(options.history_size)
                    .arg(options.history_ttl.as_millis().max(1) as u64)
                    .arg(options.meta_ttl.as_secs())
                    .arg(new_epoch())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(StreamPosition { offset, epoch })
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        let since = query.since.map_or(-1, |s| s as i64);
        let limit = query.limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
        let (offset, epoch, entries): (u64, String, StreamRangeReply) = self
            .run(async |mut c| {
                scripts::HISTORY
                    .key(self.keys.meta(channel))
                    .key(self.keys.stream(channel))
                    .arg(new_epoch())
                    .arg(self.meta_ttl.as_secs().max(1))
                    .arg(since)
                    .arg(limit)
                    .arg(u8::from(query.reverse))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let mut publications = Vec::with_capacity(entries.ids.len());
        for entry in entries.ids {
            let offset = entry
                .id
                .split_once('-')
                .and_then(|(o, _)| o.parse().ok())
                .ok_or_else(|| unavailable(format!("bad stream id {}", entry.id)))?;
            let json: Vec<u8> = entry
                .get("d")
                .ok_or_else(|| unavailable("stream entry without data"))?;
            let mut publication: Publication =
                serde_json::from_slice(&json).map_err(unavailable)?;
            publication.offset = offset;
            publications.push(Arc::new(publication));
        }
        Ok(HistoryPage {
            publications,
            position: StreamPosition { offset, epoch },
        })
    }

    /// Adds (or refreshes) presence entries, in one pipeline.
    async fn add_presence(&self, entries: &[(&str, &str, &str)]) -> Result<(), BrokerError> {
        let ttl = self.presence_ttl.as_secs();
        self.run(async |mut c| {
            // The script is loaded in the same pipeline, so EVALSHA finds it even on a
            // Redis that just restarted.
            let mut pipe = redis::pipe();
            pipe.cmd("SCRIPT")
                .arg("LOAD")
                .arg(scripts::ADD_PRESENCE)
                .ignore();
            let sha = &*scripts::ADD_PRESENCE_SHA;
            for (channel, client, info) in entries {
                pipe.cmd("EVALSHA")
                    .arg(sha)
                    .arg(2)
                    .arg(self.keys.presence(channel))
                    .arg(self.keys.presence_expiry(channel))
                    .arg(*client)
                    .arg(*info)
                    .arg(ttl)
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// Every third of the presence TTL, refreshes this node's presence entries.
    async fn refresh_presence(self: Arc<Self>) {
        let mut closed = self.closed.subscribe();
        let mut every = tokio::time::interval(self.presence_ttl / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = closed.changed() => return,
            }
            let snapshot: Vec<((String, String), String)> = lock(&self.present)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for batch in snapshot.chunks(500) {
                let entries: Vec<(&str, &str, &str)> = batch
                    .iter()
                    .map(|((ch, cl), info)| (ch.as_str(), cl.as_str(), info.as_str()))
                    .collect();
                if let Err(e) = self.add_presence(&entries).await {
                    tracing::warn!("presence refresh failed: {e}");
                    break;
                }
            }
        }
    }
}

impl Broker for RedisBroker {
    fn start(&self, events: Arc<dyn BrokerEvents>) {
        if self.inner.events.set(events).is_ok() {
            tokio::spawn(link::run(self.inner.clone()));
            tokio::spawn(self.inner.clone().refresh_presence());
        }
    }

    fn subscribe(&self, channel: &str) -> BrokerFuture<'_, ()> {
        let channel = channel.to_owned();
        Box::pin(async move { link::subscribe(&self.inner, &channel).await })
    }

    fn unsubscribe(&self, channel: &str) -> BrokerFuture<'_, ()> {
        link::unsubscribe(&self.inner, channel);
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: PublishOptions,
    ) -> BrokerFuture<'_, StreamPosition> {
        let channel = channel.to_owned();
        Box::pin(async move { self.inner.publish(&channel, publication, options).await })
    }

    fn publish_join(&self, channel: &str, info: ClientInfo) -> BrokerFuture<'_, ()> {
        self.presence_message(channel, 'j', info)
    }

    fn publish_leave(&self, channel: &str, info: ClientInfo) -> BrokerFuture<'_, ()> {
        self.presence_message(channel, 'l', info)
    }

    fn control(&self, message: Vec<u8>) -> BrokerFuture<'_, ()> {
        let target = self.inner.keys.control();
        Box::pin(async move {
            self.inner
                .run(async |mut c| {
                    redis::cmd("PUBLISH")
                        .arg(&target)
                        .arg(message)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await
        })
    }

    fn history(&self, channel: &str, query: HistoryQuery) -> BrokerFuture<'_, HistoryPage> {
        let channel = channel.to_owned();
        Box::pin(async move { self.inner.history(&channel, query).await })
    }

    fn remove_history(&self, channel: &str) -> BrokerFuture<'_, ()> {
        let key = self.inner.keys.stream(channel);
        Box::pin(async move {
            self.inner
                .run(async |mut c| redis::cmd("DEL").arg(&key).query_async::<()>(&mut c).await)
                .await
        })
    }

    fn add_presence(&self, channel: &str, client: &str, info: ClientInfo) -> BrokerFuture<'_, ()> {
        let channel = channel.to_owned();
        let client = client.to_owned();
        Box::pin(async move {
            let json = serde_json::to_string(&info).map_err(unavailable)?;
            self.inner
                .add_presence(&[(&channel, &client, &json)])
                .await?;
            lock(&self.inner.present).insert((channel, client), json);
            Ok(())
        })
    }

    fn remove_presence(&self, channel: &str, client: &str) -> BrokerFuture<'_, ()> {
        lock(&self.inner.present).remove(&(channel.to_owned(), client.to_owned()));
        let (hash, zset) = (
            self.inner.keys.presence(channel),
            self.inner.keys.presence_expiry(channel),
        );
        let client = client.to_owned();
        Box::pin(async move {
            self.inner
                .run(async |mut c| {
                    redis::pipe()
                        .hdel(&hash, &client)
                        .ignore()
                        .zrem(&zset, &client)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                })
                .await
        })
    }

    fn presence(&self, channel: &str) -> BrokerFuture<'_, BTreeMap<String, ClientInfo>> {
        let channel = channel.to_owned();
        Box::pin(async move {
            let pairs: Vec<(String, String)> = self
                .inner
                .run(async |mut c| {
                    scripts::PRESENCE
                        .key(self.inner.keys.presence(&channel))
                        .key(self.inner.keys.presence_expiry(&channel))
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(pairs
                .into_iter()
                .filter_map(|(client, json)| Some((client, serde_json::from_str(&json).ok()?)))
                .collect())
        })
    }

    fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.inner.metrics;
        let r = registry.sub_registry_with_prefix("redis");
        r.register(
            "link_up",
            "1 while this node's pub/sub link to Redis is up",
            m.link_up.clone(),
        );
        r.register(
            "link_reconnects",
            "Times the pub/sub link was lost and made again",
            m.reconnects.clone(),
        );
        r.register(
            "caught_up",
            "Publications missed by the link and delivered from history",
            m.caught_up.clone(),
        );
        r.register(
            "lost",
            "Times a channel's missed publications were gone from history (subscribers told to recover)",
            m.lost.clone(),
        );
        r.register(
            "errors",
            "Redis commands that failed or timed out",
            m.errors.clone(),
        );
    }
}

impl RedisBroker {
    fn presence_message(
        &self,
        channel: &str,
        kind: char,
        info: ClientInfo,
    ) -> BrokerFuture<'_, ()> {
        let target = self.inner.keys.pubsub(channel);
        Box::pin(async move {
            let json = serde_json::to_string(&info).map_err(unavailable)?;
            let message = format!("{kind}{json}");
            self.inner
                .run(async |mut c| {
                    redis::cmd("PUBLISH")
                        .arg(&target)
                        .arg(message)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await
        })
    }
}
