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

/// The link's state, shared by the link task and the broker's calls.
pub(super) struct Link {
    state: Mutex<State>,
    commands: mpsc::UnboundedSender<Command>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl Default for Link {
    fn default() -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        Link {
            state: Mutex::default(),
            commands,
            receiver: Mutex::new(Some(receiver)),
        }
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
            let _ = inner
                .link
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
        let _ = inner
            .link
            .commands
            .send(Command::Unsubscribe(channel.to_owned()));
    }
}

/// The link task: connects, subscribes, reads, and does it again when the link is lost.
pub(super) async fn run(inner: Arc<Inner>) {
    let Some(mut commands) = lock(&inner.link.receiver).take() else {
        return;
    };
    let mut closed = inner.closed.subscribe();
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if *closed.borrow() {
            return;
        }
        let pubsub = tokio::time::timeout(inner.timeout, inner.client.get_async_pubsub()).await;
        let pubsub = match pubsub {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!("Redis pub/sub link: cannot connect: {e}; again in {backoff:?}");
                if pause(&mut closed, &mut backoff).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                tracing::warn!("Redis pub/sub link: no answer; again in {backoff:?}");
                if pause(&mut closed, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // Commands sent while the link was down are answered by resubscribing everything.
        while commands.try_recv().is_ok() {}
        let channels: Vec<(String, u64)> = {
            let mut st = lock(&inner.link.state);
            for ch in st.channels.values_mut() {
                if ch.last.is_some() {
                    // Held until it has caught up with what it missed.
                    ch.held.get_or_insert_with(Vec::new);
                }
            }
            st.channels
                .iter()
                .map(|(name, ch)| (name.clone(), ch.generation))
                .collect()
        };
        let mut ok = matches!(
            tokio::time::timeout(inner.timeout, sink.subscribe(inner.keys.control())).await,
            Ok(Ok(()))
        );
        for batch in channels.chunks(RESUBSCRIBE_BATCH) {
            if !ok {
                break;
            }
            let names: Vec<String> = batch.iter().map(|(n, _)| inner.keys.pubsub(n)).collect();
            let r = tokio::time::timeout(inner.timeout, sink.subscribe(names)).await;
            if !matches!(r, Ok(Ok(()))) {
                ok = false;
                break;
            }
        }
        if !ok {
            tracing::warn!("Redis pub/sub link: resubscribing failed; again in {backoff:?}");
            if pause(&mut closed, &mut backoff).await {
                return;
            }
            continue;
        }
        if first {
            tracing::info!("Redis pub/sub link up");
        } else {
            tracing::info!(
                channels = channels.len(),
                "Redis pub/sub link up again; catching up"
            );
        }
        inner.metrics.link_up.set(1);
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
                        let r = tokio::time::timeout(
                            inner.timeout,
                            sink.subscribe(inner.keys.pubsub(&name)),
                        )
                        .await;
                        match r {
                            Ok(Ok(())) => {
                                tokio::spawn(settle(inner.clone(), name, generation));
                            }
                            Ok(Err(e)) => break format!("SUBSCRIBE failed: {e}"),
                            Err(_) => break "SUBSCRIBE timed out".to_owned(),
                        }
                    }
                    Some(Command::Unsubscribe(name)) => {
                        let r = tokio::time::timeout(
                            inner.timeout,
                            sink.unsubscribe(inner.keys.pubsub(&name)),
                        )
                        .await;
                        if !matches!(r, Ok(Ok(()))) {
                            break "UNSUBSCRIBE failed".to_owned();
                        }
                    }
                },
                message = stream.next() => match message {
                    None => break "connection closed".to_owned(),
                    Some(m) => received(&inner, m.get_channel_name(), m.get_payload_bytes()),
                },
                _ = check.tick() => {
                    let r = tokio::time::timeout(inner.timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(r, Ok(Ok(_))) {
                        break "no answer to PING".to_owned();
                    }
                }
                _ = closed.changed() => return,
            }
        };
        tracing::warn!("Redis pub/sub link lost ({why}); reconnecting");
        inner.metrics.link_up.set(0);
        inner.metrics.reconnects.inc();
        first = false;
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
        Some((last, Some(epoch))) if *epoch != r.epoch => {
            // The stream was lost in Redis and started again: positions held by
            // subscribers mean nothing in the new one.
            tracing::warn!(channel = %name, old = %epoch, new = %r.epoch, "stream epoch changed");
            let _ = last;
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
