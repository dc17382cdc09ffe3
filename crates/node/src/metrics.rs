//! Prometheus metrics of a node.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Metric labels as (name, value) pairs.
pub type Labels = Vec<(String, String)>;

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub txs_admitted: Counter,
    /// Refused transactions, by reason code.
    pub txs_refused: Family<Vec<(String, String)>, Counter>,
    pub txs_committed: Counter,
    pub blocks_committed: Counter,
    /// Bytes of certified blocks a full node fetched from validators.
    pub follow_bytes: Counter,
    /// Blocks with no transaction: on an idle network, one per idle interval.
    pub blocks_empty: Counter,
    /// Blocks decided after round 0: a proposer was down or slow.
    pub blocks_late_round: Counter,
    pub head_height: Gauge,
    pub mempool_txs: Gauge,
    pub block_txs: Histogram,
    /// Time from taking transactions out of the mempool to the block being durable.
    pub block_seconds: Histogram,
    /// Client transactions queued for gossip to the other validators.
    pub gossip_txs_queued: Counter,
    /// Client transactions not gossiped because the queue was full; they wait for this node's
    /// own proposal instead.
    pub gossip_txs_unsent: Counter,
    /// Transactions received from other validators' gossip.
    pub gossip_txs_received: Counter,
    /// The highest height the other validators report: the target of catch-up.
    pub sync_target_height: Gauge,
    /// How many heights this node is behind `sync_target_height` (0 when following the head).
    pub sync_behind_heights: Gauge,
    /// HTTP requests answered, by route (the matched path pattern, never the path with its ids),
    /// method and status.
    pub http_requests: Family<Labels, Counter>,
    /// Time to answer an HTTP request, by route.
    pub http_request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

fn http_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("medledger");
        let metrics = Metrics {
            txs_admitted: Counter::default(),
            txs_refused: Family::default(),
            txs_committed: Counter::default(),
            blocks_committed: Counter::default(),
            blocks_empty: Counter::default(),
            follow_bytes: Counter::default(),
            blocks_late_round: Counter::default(),
            head_height: Gauge::default(),
            mempool_txs: Gauge::default(),
            block_txs: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            block_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            gossip_txs_queued: Counter::default(),
            gossip_txs_unsent: Counter::default(),
            gossip_txs_received: Counter::default(),
            sync_target_height: Gauge::default(),
            sync_behind_heights: Gauge::default(),
            http_requests: Family::default(),
            http_request_seconds: Family::new_with_constructor(http_seconds_histogram),
            registry: Registry::default(),
        };
        registry.register(
            "txs_admitted",
            "Transactions admitted to the mempool",
            metrics.txs_admitted.clone(),
        );
        registry.register(
            "txs_refused",
            "Transactions refused, by reason",
            metrics.txs_refused.clone(),
        );
        registry.register(
            "txs_committed",
            "Transactions in committed blocks",
            metrics.txs_committed.clone(),
        );
        registry.register(
            "blocks_committed",
            "Blocks committed",
            metrics.blocks_committed.clone(),
        );
        registry.register(
            "follow_bytes",
            "Bytes of certified blocks this full node fetched from validators",
            metrics.follow_bytes.clone(),
        );
        registry.register(
            "blocks_empty",
            "Blocks committed with no transaction",
            metrics.blocks_empty.clone(),
        );
        registry.register(
            "blocks_late_round",
            "Blocks decided after round 0 (a proposer was down or slow)",
            metrics.blocks_late_round.clone(),
        );
        registry.register(
            "head_height",
            "Height of the last committed block",
            metrics.head_height.clone(),
        );
        registry.register(
            "mempool_txs",
            "Transactions waiting in the mempool",
            metrics.mempool_txs.clone(),
        );
        registry.register(
            "block_txs",
            "Transactions per committed block",
            metrics.block_txs.clone(),
        );
        registry.register(
            "block_commit_seconds",
            "Time to execute a block and make it durable",
            metrics.block_seconds.clone(),
        );
        registry.register(
            "gossip_txs_queued",
            "Client transactions queued for gossip to the other validators",
            metrics.gossip_txs_queued.clone(),
        );
        registry.register(
            "gossip_txs_unsent",
            "Client transactions not gossiped because the gossip queue was full",
            metrics.gossip_txs_unsent.clone(),
        );
        registry.register(
            "gossip_txs_received",
            "Transactions received from other validators",
            metrics.gossip_txs_received.clone(),
        );
        registry.register(
            "sync_target_height",
            "Highest height reported by the other validators",
            metrics.sync_target_height.clone(),
        );
        registry.register(
            "sync_behind_heights",
            "Heights this node is behind the other validators while catching up",
            metrics.sync_behind_heights.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "Time to answer an HTTP request, by route",
            metrics.http_request_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub fn refused(&self, code: &str) {
        self.txs_refused
            .get_or_create(&vec![("reason".to_string(), code.to_string())])
            .inc();
    }

    /// Counts one answered HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&vec![
                ("route".to_string(), route.to_string()),
                ("method".to_string(), method.to_string()),
                ("status".to_string(), status.to_string()),
            ])
            .inc();
        self.http_request_seconds
            .get_or_create(&vec![("route".to_string(), route.to_string())])
            .observe(seconds);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String never fails");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
