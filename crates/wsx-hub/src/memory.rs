//! [`MemoryBroker`]: a [`Broker`] inside the process, for a hub on one node.

use crate::broker::{
    Broker, BrokerError, BrokerEvents, BrokerFuture, HistoryPage, HistoryQuery, PublishOptions,
};
use crate::protocol::{ClientInfo, Publication, StreamPosition};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Locks are split this many ways by channel, so publishers in different channels rarely
/// wait for each other.
const SHARDS: usize = 32;

/// A broker in memory: history and presence live in this process and publications are
/// delivered by a call. A publication is delivered while its channel's shard is locked, so
/// each channel's publications reach the hub in offset order.
pub struct MemoryBroker {
    events: OnceLock<Arc<dyn BrokerEvents>>,
    shards: Vec<Mutex<Shard>>,
    /// How long the position of a stream nobody published to is kept.
    meta_ttl: Duration,
}

#[derive(Default)]
struct Shard {
    streams: HashMap<String, Stream>,
    presence: HashMap<String, BTreeMap<String, ClientInfo>>,
}

struct Stream {
    epoch: String,
    top: u64,
    publications: VecDeque<(Instant, Arc<Publication>)>,
    size: usize,
    ttl: Duration,
    /// When the position itself is forgotten (refreshed by each publication).
    meta_expires: Instant,
}

impl Stream {
    fn new(meta_ttl: Duration) -> Self {
        Stream {
            epoch: new_epoch(),
            top: 0,
            publications: VecDeque::new(),
            size: 0,
            ttl: Duration::ZERO,
            meta_expires: Instant::now() + meta_ttl,
        }
    }

    fn expire(&mut self, now: Instant) {
        while self.publications.front().is_some_and(|(t, _)| *t <= now) {
            self.publications.pop_front();
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

fn new_epoch() -> String {
    format!("{:08x}", rand::random::<u32>())
}

fn ready<T: Send + 'static>(v: T) -> BrokerFuture<'static, T> {
    Box::pin(std::future::ready(Ok(v)))
}

impl Default for MemoryBroker {
    fn default() -> Self {
        MemoryBroker::new()
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        MemoryBroker {
            events: OnceLock::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            meta_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// How long the position (epoch, offset) of a stream is kept after its last
    /// publication expired, or after it was first asked for (default 24 hours). A client
    /// that comes back later finds a new epoch and is told `recovered: false`.
    pub fn meta_ttl(mut self, ttl: Duration) -> Self {
        self.meta_ttl = ttl;
        self
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        self.shards[h.finish() as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn events(&self) -> Result<&Arc<dyn BrokerEvents>, BrokerError> {
        self.events
            .get()
            .ok_or_else(|| BrokerError::Unavailable("broker not started".into()))
    }

    fn publish_now(
        &self,
        channel: &str,
        mut publication: Publication,
        options: PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let events = self.events()?.clone();
        let now = Instant::now();
        let keep = options.history_size > 0 && !options.history_ttl.is_zero();
        let mut shard = self.shard(channel);
        if !keep {
            let position = shard
                .streams
                .get(channel)
                .map(Stream::position)
                .unwrap_or_default();
            let publication = Arc::new(publication);
            events.publication(channel, &publication);
            return Ok(position);
        }
        let stream = shard
            .streams
            .entry(channel.to_owned())
            .or_insert_with(|| Stream::new(options.meta_ttl));
        stream.top += 1;
        publication.offset = stream.top;
        stream.size = options.history_size;
        stream.ttl = options.history_ttl;
        stream.meta_expires = now + options.history_ttl + options.meta_ttl;
        stream.expire(now);
        let publication = Arc::new(publication);
        stream
            .publications
            .push_back((now + options.history_ttl, publication.clone()));
        while stream.publications.len() > stream.size {
            stream.publications.pop_front();
        }
        let position = stream.position();
        // Under the shard's lock: the channel's next publication is delivered after this.
        events.publication(channel, &publication);
        Ok(position)
    }

    fn history_now(&self, channel: &str, query: HistoryQuery) -> HistoryPage {
        let mut shard = self.shard(channel);
        let Some(stream) = shard.streams.get_mut(channel) else {
            // A stream nobody published to yet: make its epoch now, so that a client that
            // subscribes before the first publication can recover from offset 0 in it.
            let stream = Stream::new(self.meta_ttl);
            let position = stream.position();
            shard.streams.insert(channel.to_owned(), stream);
            return HistoryPage {
                publications: Vec::new(),
                position,
            };
        };
        stream.expire(Instant::now());
        let limit = query.limit.unwrap_or(usize::MAX);
        let kept = stream.publications.iter().map(|(_, p)| p);
        let publications = if query.reverse {
            // Going back from the end, or from just before `since`.
            let before = query.since.unwrap_or(u64::MAX);
            kept.rev()
                .filter(|p| p.offset < before)
                .take(limit)
                .cloned()
                .collect()
        } else {
            let after = query.since.unwrap_or(0);
            kept.filter(|p| p.offset > after)
                .take(limit)
                .cloned()
                .collect()
        };
        HistoryPage {
            publications,
            position: stream.position(),
        }
    }
}

impl Broker for MemoryBroker {
    fn start(&self, events: Arc<dyn BrokerEvents>) {
        let _ = self.events.set(events);
    }

    fn subscribe(&self, _channel: &str) -> BrokerFuture<'_, ()> {
        ready(())
    }

    fn unsubscribe(&self, _channel: &str) -> BrokerFuture<'_, ()> {
        ready(())
    }

    fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: PublishOptions,
    ) -> BrokerFuture<'_, StreamPosition> {
        Box::pin(std::future::ready(self.publish_now(
            channel,
            publication,
            options,
        )))
    }

    fn publish_join(&self, channel: &str, info: ClientInfo) -> BrokerFuture<'_, ()> {
        let r = self.events().map(|e| e.join(channel, &info));
        Box::pin(std::future::ready(r))
    }

    fn publish_leave(&self, channel: &str, info: ClientInfo) -> BrokerFuture<'_, ()> {
        let r = self.events().map(|e| e.leave(channel, &info));
        Box::pin(std::future::ready(r))
    }

    fn control(&self, message: Vec<u8>) -> BrokerFuture<'_, ()> {
        let r = self.events().map(|e| e.control(&message));
        Box::pin(std::future::ready(r))
    }

    fn history(&self, channel: &str, query: HistoryQuery) -> BrokerFuture<'_, HistoryPage> {
        ready(self.history_now(channel, query))
    }

    fn remove_history(&self, channel: &str) -> BrokerFuture<'_, ()> {
        if let Some(s) = self.shard(channel).streams.get_mut(channel) {
            s.publications.clear();
        }
        ready(())
    }

    fn add_presence(&self, channel: &str, client: &str, info: ClientInfo) -> BrokerFuture<'_, ()> {
        self.shard(channel)
            .presence
            .entry(channel.to_owned())
            .or_default()
            .insert(client.to_owned(), info);
        ready(())
    }

    fn remove_presence(&self, channel: &str, client: &str) -> BrokerFuture<'_, ()> {
        let mut shard = self.shard(channel);
        if let Some(p) = shard.presence.get_mut(channel) {
            p.remove(client);
            if p.is_empty() {
                shard.presence.remove(channel);
            }
        }
        ready(())
    }

    fn presence(&self, channel: &str) -> BrokerFuture<'_, BTreeMap<String, ClientInfo>> {
        ready(
            self.shard(channel)
                .presence
                .get(channel)
                .cloned()
                .unwrap_or_default(),
        )
    }

    fn sweep(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.streams.retain(|_, s| {
                s.expire(now);
                !s.publications.is_empty() || s.meta_expires > now
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, u64)>>);

    impl BrokerEvents for Seen {
        fn publication(&self, channel: &str, p: &Arc<Publication>) {
            self.0.lock().unwrap().push((channel.to_owned(), p.offset));
        }
        fn join(&self, _: &str, _: &ClientInfo) {}
        fn leave(&self, _: &str, _: &ClientInfo) {}
        fn lost(&self, _: &str) {}
        fn control(&self, _: &[u8]) {}
    }

    fn publication(n: u32) -> Publication {
        Publication {
            data: RawValue::from_string(n.to_string()).unwrap(),
            info: None,
            offset: 0,
            tags: None,
        }
    }

    fn options(size: usize) -> PublishOptions {
        PublishOptions {
            history_size: size,
            history_ttl: Duration::from_secs(60),
            meta_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn offsets_history_and_trimming() {
        let broker = MemoryBroker::new();
        let seen = Arc::new(Seen::default());
        broker.start(seen.clone());
        for n in 1..=5 {
            let pos = broker.publish_now("a", publication(n), options(3)).unwrap();
            assert_eq!(pos.offset, u64::from(n));
        }
        let pos = broker.publish_now("b", publication(1), options(0)).unwrap();
        assert_eq!(pos, StreamPosition::default(), "no history: no position");
        assert_eq!(seen.0.lock().unwrap().len(), 6);
        let page = broker.history_now("a", HistoryQuery::default());
        let offsets: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [3, 4, 5]);
        assert_eq!(page.position.offset, 5);
        let page = broker.history_now(
            "a",
            HistoryQuery {
                since: Some(3),
                limit: Some(1),
                reverse: false,
            },
        );
        assert_eq!(page.publications[0].offset, 4);
        let page = broker.history_now(
            "a",
            HistoryQuery {
                since: None,
                limit: Some(2),
                reverse: true,
            },
        );
        let offsets: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [5, 4]);
        // Backwards from a position: what came before it, newest first.
        let page = broker.history_now(
            "a",
            HistoryQuery {
                since: Some(5),
                limit: None,
                reverse: true,
            },
        );
        let offsets: Vec<u64> = page.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [4, 3]);
        // An epoch is made on first sight and kept.
        let e1 = broker.history_now("new", HistoryQuery::default()).position;
        let e2 = broker.history_now("new", HistoryQuery::default()).position;
        assert_eq!(e1, e2);
    }

    #[test]
    fn expired_publications_and_streams_go() {
        let broker = MemoryBroker::new();
        let short = PublishOptions {
            history_size: 10,
            history_ttl: Duration::from_millis(1),
            meta_ttl: Duration::ZERO,
        };
        let broker = broker.meta_ttl(Duration::ZERO);
        broker.start(Arc::new(Seen::default()));
        broker.publish_now("a", publication(1), short).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(broker
            .history_now("a", HistoryQuery::default())
            .publications
            .is_empty());
        broker.sweep();
        assert!(broker.shard("a").streams.is_empty());
    }
}
