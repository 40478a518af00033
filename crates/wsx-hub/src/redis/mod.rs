//! [`RedisBroker`]: a [`Broker`] on Redis, so that several hub nodes act as one.
//!
//! - **Publications** are numbered, kept and published by one Lua function (see
//!   [`scripts`]; Redis 7 or later): a publication is in the channel's history (a Redis Stream) before the
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
use link::{Link, SlotRange};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::streams::StreamRangeReply;
use scripts::Keys;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// A broker on one Redis server or cluster (see the module documentation). Every node of
/// a hub uses the same Redis and the same [`prefix`](RedisBroker::prefix). Its settings
/// (`prefix`, `timeout`, ...) are made before it is given to a hub: they panic once
/// [`Broker::start`] has run.
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
    conn: Commands,
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

/// The connection for commands: to one server, or to a cluster (routed by key slot).
#[derive(Clone)]
enum Commands {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Commands::Single(c) => c.req_packed_command(cmd),
            Commands::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Commands::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(c) => c.get_db(),
            Commands::Cluster(c) => c.get_db(),
        }
    }
}

/// The cluster slot of a key or channel name (CRC16 of its hash tag, or of all of it).
pub(crate) fn slot(name: &[u8]) -> u16 {
    let tagged = name.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &name[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(name)) % 16384
}

/// Where the broker connects: `redis://` or `rediss://` for one server;
/// `redis+cluster://HOST:PORT,HOST:PORT` (or `rediss+cluster://`), or a comma-separated
/// list of `redis://` URLs, for a cluster (those are its seed nodes).
fn seeds(url: &str) -> Result<(bool, Vec<String>), BrokerError> {
    let bad = || BrokerError::Unavailable(format!("not a Redis URL: {url}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if let Some(scheme) = scheme.strip_suffix("+cluster") {
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let seeds: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}"))
            .collect();
        if seeds.is_empty() {
            return Err(bad());
        }
        return Ok((true, seeds));
    }
    let list: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).collect();
    Ok((list.len() > 1, list))
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
    /// Connects to Redis at `url`, failing when it cannot be reached within 5 seconds:
    /// `redis://HOST:PORT/DB` (`rediss://` for TLS, `redis://:PASSWORD@HOST`) for one
    /// server; `redis+cluster://HOST:PORT,HOST:PORT` (`rediss+cluster://`), or several
    /// `redis://` URLs separated by commas, for a Redis Cluster, whose channels are then
    /// spread over its masters with sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`).
    pub async fn connect(url: &str) -> Result<RedisBroker, BrokerError> {
        let timeout = Duration::from_secs(5);
        let (cluster, seeds) = seeds(url)?;
        let no_answer = || BrokerError::Unavailable(format!("no answer from {url} in 5 s"));
        let (conn, link) = if cluster {
            let client = redis::cluster::ClusterClient::builder(seeds.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map_err(unavailable)?;
            let mut conn = tokio::time::timeout(timeout, client.get_async_connection())
                .await
                .map_err(|_| no_answer())?
                .map_err(unavailable)?;
            let reply: redis::Value = tokio::time::timeout(
                timeout,
                redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn),
            )
            .await
            .map_err(|_| no_answer())?
            .map_err(unavailable)?;
            let template = redis::IntoConnectionInfo::into_connection_info(seeds[0].as_str())
                .map_err(unavailable)?;
            let (servers, slots) = masters(&reply, &template)?;
            (Commands::Cluster(conn), Link::new(servers, slots))
        } else {
            let client = redis::Client::open(seeds[0].as_str()).map_err(unavailable)?;
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
            .map_err(|_| no_answer())?
            .map_err(unavailable)?;
            let link = Link::new(vec![client.get_connection_info().clone()], Vec::new());
            (Commands::Single(conn), link)
        };
        let broker = RedisBroker {
            inner: Arc::new(Inner {
                conn,
                keys: Keys::new("wsx"),
                timeout,
                presence_ttl: Duration::from_secs(60),
                meta_ttl: Duration::from_secs(24 * 3600),
                link_check: Duration::from_secs(1),
                events: OnceLock::new(),
                link,
                present: Mutex::default(),
                metrics: RedisMetrics::default(),
                closed: tokio::sync::watch::Sender::new(false),
            }),
        };
        broker.inner.load_library().await.map_err(|e| {
            BrokerError::Unavailable(format!(
                "cannot load the hub's functions (Redis 7 or later is needed): {e}"
            ))
        })?;
        Ok(broker)
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

/// The masters of a cluster from its `CLUSTER SLOTS` reply, as addresses like
/// `template`'s (same scheme, credentials and database), and the slot ranges of each.
fn masters(
    reply: &redis::Value,
    template: &redis::ConnectionInfo,
) -> Result<(Vec<redis::ConnectionInfo>, Vec<SlotRange>), BrokerError> {
    use redis::Value;
    let bad = || BrokerError::Unavailable("unexpected CLUSTER SLOTS reply".into());
    let Value::Array(ranges) = reply else {
        return Err(bad());
    };
    let mut servers: Vec<(String, u16)> = Vec::new();
    let mut slots = Vec::new();
    for range in ranges {
        let Value::Array(r) = range else {
            return Err(bad());
        };
        let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(master))) =
            (r.first(), r.get(1), r.get(2))
        else {
            return Err(bad());
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) => h.clone(),
            _ => return Err(bad()),
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return Err(bad());
        };
        let server = (host, *port as u16);
        let index = match servers.iter().position(|s| *s == server) {
            Some(i) => i,
            None => {
                servers.push(server);
                servers.len() - 1
            }
        };
        slots.push((*from as u16, *to as u16, index));
    }
    let infos = servers
        .into_iter()
        .map(|(host, port)| {
            let addr = match template.addr() {
                redis::ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } => redis::ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: *insecure,
                    tls_params: tls_params.clone(),
                },
                _ => redis::ConnectionAddr::Tcp(host, port),
            };
            template.clone().set_addr(addr)
        })
        .collect();
    Ok((infos, slots))
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.inner.closed.send_replace(true);
    }
}

impl Inner {
    /// `SPUBLISH` on a cluster (the channel's shard only), `PUBLISH` on one server.
    fn publish_verb(&self) -> &'static str {
        if matches!(self.conn, Commands::Cluster(_)) {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Loads the library of functions (on every master of a cluster).
    async fn load_library(&self) -> Result<(), BrokerError> {
        self.run(async |mut c| {
            redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(scripts::LIBRARY_CODE)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Calls a function of the library. When Redis lost the library (a server restarted
    /// without persistence, or flushed), loads it again, and retries the call if it may
    /// (`retry`: reads and refreshes, not publishes).
    async fn call<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        retry: bool,
    ) -> Result<T, BrokerError> {
        match self.run(async |mut c| cmd.query_async(&mut c).await).await {
            Err(BrokerError::Unavailable(e)) if e.contains("Function not found") => {
                tracing::warn!("Redis lost the hub's functions; loading them again");
                self.load_library().await?;
                if retry {
                    self.run(async |mut c| cmd.query_async(&mut c).await).await
                } else {
                    Err(BrokerError::Unavailable(e))
                }
            }
            r => r,
        }
    }

    /// Runs a command, counting its failure.
    async fn run<T: redis::FromRedisValue>(
        &self,
        f: impl AsyncFnOnce(Commands) -> redis::RedisResult<T>,
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
                redis::cmd(self.publish_verb())
                    .arg(&target)
                    .arg(message)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
            return Ok(StreamPosition::default());
        }
        let mut cmd = scripts::fcall(
            scripts::PUBLISH,
            self.keys.meta(channel),
            self.keys.stream(channel),
        );
        cmd.arg(self.keys.pubsub(channel))
            .arg(&json)
            .arg(options.history_size)
            .arg(options.history_ttl.as_millis().max(1) as u64)
            .arg(options.meta_ttl.as_secs())
            .arg(new_epoch())
            .arg(self.publish_verb());
        // Not retried: a publish in flight behind this one could overtake it.
        let (offset, epoch): (u64, String) = self.call(&cmd, false).await?;
        Ok(StreamPosition { offset, epoch })
    }

    async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        let since = query.since.map_or(-1, |s| s as i64);
        let limit = query.limit.map_or(-1, |l| l.min(i64::MAX as usize) as i64);
        let mut cmd = scripts::fcall(
            scripts::HISTORY,
            self.keys.meta(channel),
            self.keys.stream(channel),
        );
        cmd.arg(new_epoch())
            .arg(self.meta_ttl.as_secs().max(1))
            .arg(since)
            .arg(limit)
            .arg(u8::from(query.reverse));
        let (offset, epoch, entries): (u64, String, StreamRangeReply) =
            self.call(&cmd, true).await?;
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

    /// Adds (or refreshes) presence entries, up to 64 in flight at once (on a cluster
    /// each goes to its channel's master).
    async fn add_presence(&self, entries: &[(&str, &str, &str)]) -> Result<(), BrokerError> {
        for chunk in entries.chunks(64) {
            let mut batch = Vec::with_capacity(chunk.len());
            for &(channel, client, info) in chunk {
                batch.push(self.add_one_presence(channel, client, info));
            }
            for r in futures_util::future::join_all(batch).await {
                r?;
            }
        }
        Ok(())
    }

    async fn add_one_presence(
        &self,
        channel: &str,
        client: &str,
        info: &str,
    ) -> Result<(), BrokerError> {
        let mut cmd = scripts::fcall(
            scripts::ADD_PRESENCE,
            self.keys.presence(channel),
            self.keys.presence_expiry(channel),
        );
        cmd.arg(client).arg(info).arg(self.presence_ttl.as_secs());
        self.call(&cmd, true).await
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
            for shard in 0..self.inner.link.shards() {
                tokio::spawn(link::run(self.inner.clone(), shard));
            }
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
            let cmd = scripts::fcall(
                scripts::PRESENCE,
                self.inner.keys.presence(&channel),
                self.inner.keys.presence_expiry(&channel),
            );
            let pairs: Vec<(String, String)> = self.inner.call(&cmd, true).await?;
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
            "Connections of this node's pub/sub link that are up (one per Redis master)",
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
                    redis::cmd(self.inner.publish_verb())
                        .arg(&target)
                        .arg(message)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await
        })
    }
}
