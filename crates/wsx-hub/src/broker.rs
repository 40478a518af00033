//! Where publications travel: the [`Broker`] trait. A broker numbers each channel's
//! publications (offset, epoch), keeps history, keeps presence, and hands every
//! publication, join and leave of the channels this node is subscribed to back to the hub
//! ([`BrokerEvents`]), in offset order per channel. Nothing outside the broker knows
//! whether that is a call in the same process ([`crate::MemoryBroker`]) or a trip through
//! another system.

use crate::protocol::{ClientInfo, Publication, StreamPosition};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The future of a broker operation.
pub type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// A broker operation that failed. Clients get error 100 (internal, temporary) for it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot be reached or failed.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// How a publication is kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishOptions {
    /// Publications kept in the channel's history (0: none).
    pub history_size: usize,
    /// How long each is kept.
    pub history_ttl: Duration,
    /// How long the stream's position outlives its last publication.
    pub meta_ttl: Duration,
}

/// What part of a channel's history to return.
#[derive(Clone, Copy, Debug, Default)]
pub struct HistoryQuery {
    /// Where to start: publications after this offset (with `reverse`, before it).
    pub since: Option<u64>,
    /// At most this many (`None`: all that are kept).
    pub limit: Option<usize>,
    /// Newest first: from the end of the stream, or from just before `since`, going
    /// back.
    pub reverse: bool,
}

/// A page of history and the stream's current position.
#[derive(Debug, Default)]
pub struct HistoryPage {
    /// The publications, in the order asked.
    pub publications: Vec<Arc<Publication>>,
    /// The stream's last offset and its epoch.
    pub position: StreamPosition,
}

/// What a broker delivers to the hub of this node.
pub trait BrokerEvents: Send + Sync + 'static {
    /// A publication in a channel this node is subscribed to, with its offset set; called
    /// in offset order for each channel.
    fn publication(&self, channel: &str, publication: &Arc<Publication>);
    /// A client joined a channel.
    fn join(&self, channel: &str, info: &ClientInfo);
    /// A client left a channel.
    fn leave(&self, channel: &str, info: &ClientInfo);
    /// Publications of `channel` were lost on their way to this node and are no longer in
    /// its history: its subscribers here must recover by themselves (the hub disconnects
    /// them with 3010, and their SDKs reconnect and recover, or learn they cannot).
    fn lost(&self, channel: &str);
    /// A message some node (this one included) sent with [`Broker::control`].
    fn control(&self, message: &[u8]);
}

/// A message broker with history and presence (see the module documentation).
pub trait Broker: Send + Sync + 'static {
    /// Where this node's deliveries go; called once, before anything else.
    fn start(&self, events: Arc<dyn BrokerEvents>);
    /// A subscriber of this node joins `channel`: called for each one, before it reads
    /// the channel's history. Completes once the channel's deliveries reach this node, so
    /// that nothing published after that read can miss the subscriber.
    fn subscribe(&self, channel: &str) -> BrokerFuture<'_, ()>;
    /// A subscriber of this node left `channel` (one call for each successful
    /// [`subscribe`](Broker::subscribe)); after the last, the node stops receiving it.
    fn unsubscribe(&self, channel: &str) -> BrokerFuture<'_, ()>;
    /// Numbers and keeps a publication, delivers it, and returns its position. When the
    /// future completes the publication is in history (when history is kept).
    fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: PublishOptions,
    ) -> BrokerFuture<'_, StreamPosition>;
    /// Delivers a join.
    fn publish_join(&self, channel: &str, info: ClientInfo) -> BrokerFuture<'_, ()>;
    /// Delivers a leave.
    fn publish_leave(&self, channel: &str, info: ClientInfo) -> BrokerFuture<'_, ()>;
    /// Part of a channel's history, and its position.
    fn history(&self, channel: &str, query: HistoryQuery) -> BrokerFuture<'_, HistoryPage>;
    /// Forgets a channel's publications (its position stays).
    fn remove_history(&self, channel: &str) -> BrokerFuture<'_, ()>;
    /// Records a client as present in a channel.
    fn add_presence(&self, channel: &str, client: &str, info: ClientInfo) -> BrokerFuture<'_, ()>;
    /// Removes a client from a channel's presence.
    fn remove_presence(&self, channel: &str, client: &str) -> BrokerFuture<'_, ()>;
    /// Who is present in a channel, by client id.
    fn presence(&self, channel: &str) -> BrokerFuture<'_, BTreeMap<String, ClientInfo>>;
    /// Sends `message` to every node's hub, this one included
    /// ([`BrokerEvents::control`]): server API calls that act on clients wherever they
    /// are connected, and what nodes know of each other.
    fn control(&self, message: Vec<u8>) -> BrokerFuture<'_, ()>;
    /// Drops what has expired; the hub calls it every few seconds.
    fn sweep(&self) {}
    /// Adds the broker's own metrics to the hub's (called once, by [`crate::Hub::new`]).
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let _ = registry;
    }
}
