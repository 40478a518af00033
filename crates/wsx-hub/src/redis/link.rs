//! The link: this node's one pub/sub connection to Redis, subscribed to the channels that
//! have subscribers here, and the order checks on what it receives.
//!
//! # Order and gaps
//!
//! Every publication of a channel with history carries its offset and epoch. For each
//! channel the link remembers the last offset it delivered (its baseline is read right
//! after `SUBSCRIBE` is confirmed, before any subscriber of this node reads history). A
//! publication at or below it is a duplicate and dropped; the next one is delivered; one
//! further on means some were missed: later ones are held while the missing ones are read
//! from the channel's stream, then all are delivered in order. After the link was lost and
//! made again, every channel catches up the same way. When the stream no longer holds what
//! was missed (trimmed, expired, or a new epoch), the hub is told
//! ([`BrokerEvents::lost`](crate::BrokerEvents::lost)) and the channel's subscribers
//! recover on their own.
//!
//! # Subscribing
//!
//! Channels are counted: the first subscriber of this node sends `SUBSCRIBE`, the last
//! one leaving sends `UNSUBSCRIBE`. Commands go to the link task in order, each with its
//! channel's generation, so that a quick unsubscribe and subscribe again cannot confirm the
//! new subscription with the old one's answer. [`subscribe`] returns once the channel's
//! deliveries reach this node: a subscriber reads history only after that, so nothing
//! published after its history read can miss it.

use super::{lock, Inner};
use crate::broker::{BrokerError, HistoryQuery};
use crate::protocol::{ClientInfo, Publication};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Publications one catch-up reads at most; a gap longer than this is treated as lost.
const MAX_CATCH_UP: usize = 10_000;
/// Publications held while a channel catches up; beyond this the channel is lost.
const MAX_HELD: usize = 10_000;
/// Channels per `SUBSCRIBE` when resubscribing after a reconnect.
const RESUBSCRIBE_BATCH: usize = 500;

/// The link's state, shared by the link tasks and the broker's calls.
pub(super) struct Link {
    state: Mutex<State>,
    /// One connection per Redis server holding channels: one, or each master of a
    /// cluster.
    shards: Vec<Shard>,
    /// A cluster's slot ranges, with the shard serving each (empty: one server).
    slots: Vec<SlotRange>,
}

/// Slots `from..=to` of a cluster, and the index of the shard serving them.
pub(super) type SlotRange = (u16, u16, usize);

/// One server's connection of the link.
struct Shard {
    /// Where, with RESP3 (pushes on a multiplexed connection).
    server: redis::ConnectionInfo,
    commands: mpsc::UnboundedSender<Command>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl Link {
    /// A link to `servers`; with `slots`, channels are spread over them by the cluster's
    /// slots and use sharded pub/sub (`SSUBSCRIBE`).
    pub(super) fn new(servers: Vec<redis::ConnectionInfo>, slots: Vec<SlotRange>) -> Self {
        let shards = servers
            .into_iter()
            .map(|server| {
                let (commands, receiver) = mpsc::unbounded_channel();
                let settings = server
                    .redis_settings()
                    .clone()
                    .set_protocol(redis::ProtocolVersion::RESP3);
                Shard {
                    server: server.set_redis_settings(settings),
                    commands,
                    receiver: Mutex::new(Some(receiver)),
                }
            })
            .collect();
        Link {
            state: Mutex::default(),
            shards,
            slots,
        }
    }

    /// How many connections the link has (a task each).
    pub(super) fn shards(&self) -> usize {
        self.shards.len()
    }

    fn sharded(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The shard of a pub/sub channel.
    fn shard_of(&self, pubsub: &str) -> usize {
        let slot = super::slot(pubsub.as_bytes());
        self.slots
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&slot))
            .map_or(0, |(_, _, shard)| *shard)
    }
}

#[derive(Default)]
struct State {
    channels: HashMap<String, Channel>,
    next_generation: u64,
}

struct Channel {
    /// This node's subscribers.
    refs: usize,
    generation: u64,
    /// Deliveries reach this node (the baseline is read).
    ready: bool,
    waiters: Vec<oneshot::Sender<()>>,
    /// The last offset delivered, and its epoch (`None`: not known yet).
    last: Option<(u64, Option<String>)>,
    /// While catching up: the publications received meanwhile.
    held: Option<Vec<Received>>,
}

enum Command {
    Subscribe(String, u64),
    Unsubscribe(String),
}

struct Received {
    offset: u64,
    epoch: String,
    publication: Publication,
}

/// What to do after a publication was looked at.
enum Next {
    Done,
    CatchUp,
}

/// Counts a subscriber of `channel` and returns once the channel's deliveries reach this
/// node (or fails after the broker's timeout).
pub(super) async fn subscribe(inner: &Arc<Inner>, channel: &str) -> Result<(), BrokerError> {
    let waiter = {
        let mut st = lock(&inner.link.state);
        let generation = st.next_generation;
        let ch = st
            .channels
            .entry(channel.to_owned())
            .or_insert_with(|| Channel {
                refs: 0,
                generation,
                ready: false,
                waiters: Vec::new(),
                last: None,
                held: None,
            });
        ch.refs += 1;
        if ch.ready {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        ch.waiters.push(tx);
        if ch.refs == 1 {
            st.next_generation += 1;
            let shard = inner.link.shard_of(&inner.keys.pubsub(channel));
            let _ = inner.link.shards[shard]
                .commands
                .send(Command::Subscribe(channel.to_owned(), generation));
        }
        rx
    };
    match tokio::time::timeout(inner.timeout, waiter).await {
        Ok(Ok(())) => Ok(()),
        _ => {
            unsubscribe(inner, channel);
            Err(BrokerError::Unavailable(format!(
                "no subscription to {channel} in Redis within {:?}",
                inner.timeout
            )))
        }
    }
}

/// Uncounts a subscriber of `channel`; the last one unsubscribes this node.
pub(super) fn unsubscribe(inner: &Inner, channel: &str) {
    let mut st = lock(&inner.link.state);
    let Some(ch) = st.channels.get_mut(channel) else {
        return;
    };
    ch.refs = ch.refs.saturating_sub(1);
    if ch.refs == 0 {
        st.channels.remove(channel);
        let shard = inner.link.shard_of(&inner.keys.pubsub(channel));
        let _ = inner.link.shards[shard]
            .commands
            .send(Command::Unsubscribe(channel.to_owned()));
    }
}

/// The task of shard `index`: connects, subscribes, reads, and does it again when the
/// connection is lost. Shard 0 also carries the nodes' control channel.
pub(super) async fn run(inner: Arc<Inner>, index: usize) {
    let shard = &inner.link.shards[index];
    let Some(mut commands) = lock(&shard.receiver).take() else {
        return;
    };
    let client = match redis::Client::open(shard.server.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("Redis pub/sub link: bad address: {e}");
            return;
        }
    };
    let server = shard.server.addr().to_string();
    let sharded = inner.link.sharded();
    let mut closed = inner.closed.subscribe();
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if *closed.borrow() {
            return;
        }
        let (push_tx, mut pushes) = mpsc::unbounded_channel();
        let config = redis::AsyncConnectionConfig::new()
            .set_push_sender(push_tx)
            .set_connection_timeout(Some(inner.timeout))
            .set_response_timeout(Some(inner.timeout));
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%server, "Redis pub/sub link: cannot connect: {e}; again in {backoff:?}");
                if pause(&mut closed, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        // Commands sent while the link was down are answered by resubscribing everything.
        while commands.try_recv().is_ok() {}
        let channels: Vec<(String, u64)> = {
            let mut st = lock(&inner.link.state);
            let mine = |name: &str| inner.link.shard_of(&inner.keys.pubsub(name)) == index;
            for (name, ch) in st.channels.iter_mut() {
                if ch.last.is_some() && mine(name) {
                    // Held until it has caught up with what it missed.
                    ch.held.get_or_insert_with(Vec::new);
                }
            }
            st.channels
                .iter()
                .filter(|(name, _)| mine(name))
                .map(|(name, ch)| (name.clone(), ch.generation))
                .collect()
        };
        let mut result = Ok(());
        if index == 0 {
            result = listen(&inner, &mut conn, false, vec![inner.keys.control()]).await;
        }
        if sharded {
            // One channel per SSUBSCRIBE (several must share a slot), many in flight.
            let names: Vec<String> = channels.iter().map(|(n, _)| inner.keys.pubsub(n)).collect();
            let subscribe_one = {
                let (inner, conn) = (inner.clone(), conn.clone());
                move |name: String| {
                    let (inner, mut conn) = (inner.clone(), conn.clone());
                    async move { listen(&inner, &mut conn, true, vec![name]).await }
                }
            };
            let mut all = futures_util::stream::iter(names.into_iter().map(subscribe_one))
                .buffer_unordered(64);
            while let Some(r) = all.next().await {
                if r.is_err() {
                    result = r;
                }
            }
        } else {
            for batch in channels.chunks(RESUBSCRIBE_BATCH) {
                if result.is_err() {
                    break;
                }
                let names = batch.iter().map(|(n, _)| inner.keys.pubsub(n)).collect();
                result = listen(&inner, &mut conn, false, names).await;
            }
        }
        if let Err(e) = result {
            tracing::warn!(%server, "Redis pub/sub link: subscribing failed: {e}; again in {backoff:?}");
            if pause(&mut closed, &mut backoff).await {
                return;
            }
            continue;
        }
        if first {
            tracing::info!(%server, "Redis pub/sub link up");
        } else {
            tracing::info!(%server, channels = channels.len(), "Redis pub/sub link up again; catching up");
        }
        inner.metrics.link_up.inc();
        backoff = Duration::from_millis(100);
        for (name, generation) in channels {
            tokio::spawn(settle(inner.clone(), name, generation));
        }
        let mut check = tokio::time::interval(inner.link_check);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Subscribe(name, generation)) => {
                        let current = lock(&inner.link.state)
                            .channels
                            .get(&name)
                            .is_some_and(|c| c.generation == generation);
                        if !current {
                            continue;
                        }
                        let target = vec![inner.keys.pubsub(&name)];
                        match listen(&inner, &mut conn, sharded, target).await {
                            Ok(()) => {
                                tokio::spawn(settle(inner.clone(), name, generation));
                            }
                            Err(e) => break e,
                        }
                    }
                    Some(Command::Unsubscribe(name)) => {
                        let verb = if sharded { "SUNSUBSCRIBE" } else { "UNSUBSCRIBE" };
                        let mut cmd = redis::cmd(verb);
                        cmd.arg(inner.keys.pubsub(&name));
                        if let Err(e) = timed(&inner, cmd.exec_async(&mut conn)).await {
                            break e;
                        }
                    }
                },
                push = pushes.recv() => match push {
                    None => break "connection closed".to_owned(),
                    Some(p) => match p.kind {
                        redis::PushKind::Disconnection => break "connection closed".to_owned(),
                        redis::PushKind::Message | redis::PushKind::SMessage => {
                            if let [redis::Value::BulkString(ch), redis::Value::BulkString(payload)] =
                                &p.data[..]
                            {
                                received(&inner, &String::from_utf8_lossy(ch), payload);
                            }
                        }
                        _ => {}
                    },
                },
                _ = check.tick() => {
                    let ping = redis::cmd("PING");
                    if let Err(e) = timed(&inner, ping.query_async::<redis::Value>(&mut conn)).await {
                        break format!("no answer to PING: {e}");
                    }
                }
                _ = closed.changed() => return,
            }
        };
        tracing::warn!(%server, "Redis pub/sub link lost ({why}); reconnecting");
        inner.metrics.link_up.dec();
        inner.metrics.reconnects.inc();
        first = false;
    }
}

/// `SUBSCRIBE` (or, sharded, `SSUBSCRIBE`) to `names`, waiting for the confirmation.
async fn listen(
    inner: &Inner,
    conn: &mut redis::aio::MultiplexedConnection,
    sharded: bool,
    names: Vec<String>,
) -> Result<(), String> {
    if sharded {
        let mut cmd = redis::cmd("SSUBSCRIBE");
        cmd.arg(names);
        timed(inner, cmd.exec_async(conn)).await
    } else {
        timed(inner, conn.subscribe(names)).await
    }
}

/// A link command with the broker's timeout.
async fn timed<T>(
    inner: &Inner,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(inner.timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Waits `backoff` (doubled for next time, up to 5 s); true when the broker closed.
async fn pause(closed: &mut tokio::sync::watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = closed.changed() => true,
    }
}

/// After `SUBSCRIBE` was confirmed: reads the baseline of a new channel, or catches up a
/// channel that was subscribed before the link was lost; then wakes its waiters.
async fn settle(inner: Arc<Inner>, name: String, generation: u64) {
    let catching_up = {
        let st = lock(&inner.link.state);
        match st.channels.get(&name) {
            Some(ch) if ch.generation == generation => ch.held.is_some(),
            _ => return,
        }
    };
    if catching_up {
        catch_up(&inner, &name).await;
    } else {
        let meta = inner.keys.meta(&name);
        loop {
            let r: Result<(Option<u64>, Option<String>), _> = inner
                .run(async |mut c| {
                    redis::cmd("HMGET")
                        .arg(&meta)
                        .arg("o")
                        .arg("e")
                        .query_async(&mut c)
                        .await
                })
                .await;
            match r {
                Ok((offset, epoch)) => {
                    let mut st = lock(&inner.link.state);
                    if let Some(ch) = st.channels.get_mut(&name) {
                        if ch.generation == generation && ch.last.is_none() {
                            ch.last = Some((offset.unwrap_or(0), epoch));
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(channel = %name, "cannot read the stream's position: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let gone = lock(&inner.link.state)
                        .channels
                        .get(&name)
                        .is_none_or(|c| c.generation != generation);
                    if gone {
                        return;
                    }
                }
            }
        }
    }
    let mut st = lock(&inner.link.state);
    if let Some(ch) = st.channels.get_mut(&name) {
        if ch.generation == generation {
            ch.ready = true;
            for w in ch.waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

/// A message from the link.
fn received(inner: &Arc<Inner>, pubsub: &str, payload: &[u8]) {
    let Some(events) = inner.events.get() else {
        return;
    };
    let Some(channel) = inner.keys.channel_of(pubsub) else {
        if pubsub == inner.keys.control() {
            events.control(payload);
        }
        return;
    };
    let Some((&kind, rest)) = payload.split_first() else {
        return;
    };
    match kind {
        b'j' | b'l' => {
            let Ok(info) = serde_json::from_slice::<ClientInfo>(rest) else {
                tracing::warn!(%channel, "unreadable join or leave from Redis");
                return;
            };
            if kind == b'j' {
                events.join(channel, &info);
            } else {
                events.leave(channel, &info);
            }
        }
        b'p' => {
            let Some(r) = parse_publication(rest) else {
                tracing::warn!(%channel, "unreadable publication from Redis");
                return;
            };
            if r.offset == 0 {
                events.publication(channel, &Arc::new(r.publication));
                return;
            }
            let next = {
                let mut st = lock(&inner.link.state);
                match st.channels.get_mut(channel) {
                    Some(ch) => order(inner, channel, ch, r),
                    None => Next::Done,
                }
            };
            if let Next::CatchUp = next {
                let (inner, channel) = (inner.clone(), channel.to_owned());
                tokio::spawn(async move { catch_up(&inner, &channel).await });
            }
        }
        _ => {}
    }
}

/// `{offset} {epoch} {json}`.
fn parse_publication(bytes: &[u8]) -> Option<Received> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (offset, rest) = text.split_once(' ')?;
    let (epoch, json) = rest.split_once(' ')?;
    let mut publication: Publication = serde_json::from_str(json).ok()?;
    let offset: u64 = offset.parse().ok()?;
    publication.offset = offset;
    Some(Received {
        offset,
        epoch: epoch.to_owned(),
        publication,
    })
}

/// Delivers, drops or holds one publication of a channel, under the link's lock (so the
/// channel's deliveries keep their order).
fn order(inner: &Inner, name: &str, ch: &mut Channel, r: Received) -> Next {
    if let Some(held) = &mut ch.held {
        if held.len() >= MAX_HELD {
            // Far behind: what was held is dropped, and the catch-up finds it lost.
            held.clear();
        }
        held.push(r);
        return Next::Done;
    }
    let Some(events) = inner.events.get() else {
        return Next::Done;
    };
    match &ch.last {
        Some((_, Some(epoch))) if *epoch != r.epoch => {
            // The stream was lost in Redis and started again: positions held by
            // subscribers mean nothing in the new one.
            tracing::warn!(channel = %name, old = %epoch, new = %r.epoch, "stream epoch changed");
            inner.metrics.lost.inc();
            events.lost(name);
            ch.last = Some((r.offset, Some(r.epoch)));
            Next::Done
        }
        Some((last, _)) if r.offset <= *last => Next::Done,
        Some((last, _)) if r.offset > *last + 1 => {
            ch.held = Some(vec![r]);
            Next::CatchUp
        }
        _ => {
            ch.last = Some((r.offset, Some(r.epoch)));
            events.publication(name, &Arc::new(r.publication));
            Next::Done
        }
    }
}

/// Reads what a channel missed from its stream and delivers it, then what was held
/// meanwhile. Retries while Redis cannot be reached and the channel is still subscribed.
async fn catch_up(inner: &Arc<Inner>, name: &str) {
    loop {
        let Some((since, epoch)) = ({
            let st = lock(&inner.link.state);
            st.channels
                .get(name)
                .map(|c| c.last.clone().unwrap_or((0, None)))
        }) else {
            return;
        };
        let query = HistoryQuery {
            since: Some(since),
            limit: Some(MAX_CATCH_UP),
            reverse: false,
        };
        let page = match inner.history(name, query).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(channel = %name, "catching up failed: {e}; again soon");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let Some(events) = inner.events.get() else {
            return;
        };
        let mut st = lock(&inner.link.state);
        let Some(ch) = st.channels.get_mut(name) else {
            return;
        };
        if ch.last.as_ref().map(|l| l.0) != Some(since) {
            // Moved on while reading (delivered by another catch-up): read again.
            continue;
        }
        let held = ch.held.take().unwrap_or_default();
        let same_epoch = epoch.as_deref().is_none_or(|e| e == page.position.epoch);
        let complete = same_epoch
            && page.position.offset - since.min(page.position.offset) <= MAX_CATCH_UP as u64
            && match page.publications.first() {
                Some(p) => p.offset == since + 1,
                None => page.position.offset <= since,
            };
        if complete {
            let n = page.publications.len() as u64;
            if let Some(p) = page.publications.last() {
                ch.last = Some((p.offset, Some(page.position.epoch.clone())));
            } else {
                ch.last = Some((since, Some(page.position.epoch.clone())));
            }
            for p in &page.publications {
                events.publication(name, p);
            }
            if n > 0 {
                inner.metrics.caught_up.inc_by(n);
                tracing::info!(channel = %name, publications = n, "caught up from history");
            }
        } else {
            tracing::warn!(channel = %name, since, top = page.position.offset,
                "missed publications are gone from history; subscribers will recover");
            inner.metrics.lost.inc();
            events.lost(name);
            ch.last = Some((page.position.offset, Some(page.position.epoch.clone())));
        }
        let mut again = false;
        let mut rest = held.into_iter();
        for r in rest.by_ref() {
            if let Next::CatchUp = order(inner, name, ch, r) {
                again = true;
                break;
            }
        }
        if again {
            if let Some(held) = &mut ch.held {
                held.extend(rest);
            }
            continue;
        }
        return;
    }
}
