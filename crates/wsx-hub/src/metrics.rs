//! The hub's metrics, in Prometheus' text format (`prometheus-client`).

use crate::hub::Hub;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of a recovery's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    pub outcome: &'static str,
}

/// Counters and gauges, updated where things happen.
pub(crate) struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub subscriptions: Gauge,
    pub publications: Counter,
    pub deliveries: Counter,
    pub slow_disconnects: Counter,
    pub recoveries: Family<Outcome, Counter>,
    pub api_calls: Counter,
}

impl Metrics {
    pub fn new(broker: &dyn crate::Broker) -> Self {
        let mut registry = Registry::with_prefix("wsx_hub");
        let m = Metrics {
            connections: Gauge::default(),
            subscriptions: Gauge::default(),
            publications: Counter::default(),
            deliveries: Counter::default(),
            slow_disconnects: Counter::default(),
            recoveries: Family::default(),
            api_calls: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "subscriptions",
            "Subscriptions of this node's clients",
            m.subscriptions.clone(),
        );
        registry.register(
            "publications",
            "Publications delivered to this node with subscribers here",
            m.publications.clone(),
        );
        registry.register(
            "deliveries",
            "Publications queued to subscribers",
            m.deliveries.clone(),
        );
        registry.register(
            "slow_disconnects",
            "Clients disconnected for not reading fast enough (3008)",
            m.slow_disconnects.clone(),
        );
        registry.register(
            "recoveries",
            "Subscriptions that asked to recover, by outcome",
            m.recoveries.clone(),
        );
        registry.register("api_calls", "Server API calls", m.api_calls.clone());
        broker.register_metrics(&mut registry);
        Metrics { registry, ..m }
    }

    /// The text exposition.
    pub fn encode(&self, _hub: &Hub) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a recovery.
    pub fn recovery(&self, recovered: bool) {
        let outcome = if recovered {
            "recovered"
        } else {
            "not_recovered"
        };
        self.recoveries.get_or_create(&Outcome { outcome }).inc();
    }
}
