//! The engine's Prometheus metrics. Labels are bounded: no topic or partition labels.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Handles to every engine metric. Cloning shares them.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    pub segments_uploaded: Counter,
    pub segment_bytes: Counter,
    pub flush_failures: Counter,
    pub partition_commits: Counter,
    pub commit_transactions: Counter,
    pub fenced_commits: Counter,
    pub duplicate_batches: Counter,
    pub backpressure_rejections: Counter,
    pub corrupt_reads: Counter,
    pub group_commits: Counter,
    pub group_rebalances: Counter,
    pub groups_expired: Counter,
    pub claims: Counter,
    pub lease_losses: Counter,
    pub buffered_bytes: Gauge,
    pub leader_partitions: Gauge,
    pub flush_upload_seconds: Histogram,
    pub flush_commit_seconds: Histogram,
    pub flush_total_seconds: Histogram,
}

impl LogMetrics {
    /// Metrics registered under `shale_log_*`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let registry = registry.sub_registry_with_prefix("shale_log");
        let counters = [
            (
                "segments_uploaded",
                "Segment objects uploaded",
                &metrics.segments_uploaded,
            ),
            (
                "segment_bytes",
                "Bytes of segment objects uploaded",
                &metrics.segment_bytes,
            ),
            (
                "flush_failures",
                "Segments or partition commits that failed",
                &metrics.flush_failures,
            ),
            (
                "partition_commits",
                "Partition chunks committed",
                &metrics.partition_commits,
            ),
            (
                "commit_transactions",
                "Metadata transactions sent by segment commits",
                &metrics.commit_transactions,
            ),
            (
                "fenced_commits",
                "Partition commits refused because another leader holds the partition",
                &metrics.fenced_commits,
            ),
            (
                "duplicate_batches",
                "Idempotent batches answered from memory instead of appended again",
                &metrics.duplicate_batches,
            ),
            (
                "backpressure_rejections",
                "Produces refused because the buffer stayed full",
                &metrics.backpressure_rejections,
            ),
            (
                "corrupt_reads",
                "Reads whose bytes failed their checksum",
                &metrics.corrupt_reads,
            ),
            (
                "group_commits",
                "Consumer-group offset commits",
                &metrics.group_commits,
            ),
            (
                "group_rebalances",
                "Consumer-group rebalances started by this agent's coordinator",
                &metrics.group_rebalances,
            ),
            (
                "groups_expired",
                "Consumer groups deleted after their offsets retention",
                &metrics.groups_expired,
            ),
            (
                "claims",
                "Partitions claimed by this agent",
                &metrics.claims,
            ),
            (
                "lease_losses",
                "Times this agent lost its metadata lease",
                &metrics.lease_losses,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "buffered_bytes",
            "Produced bytes in the open segment",
            metrics.buffered_bytes.clone(),
        );
        registry.register(
            "leader_partitions",
            "Partitions led by this agent",
            metrics.leader_partitions.clone(),
        );
        registry.register(
            "flush_upload_seconds",
            "Time to build and upload a segment",
            metrics.flush_upload_seconds.clone(),
        );
        registry.register(
            "flush_commit_seconds",
            "Time of a segment's metadata commit",
            metrics.flush_commit_seconds.clone(),
        );
        registry.register(
            "flush_total_seconds",
            "Time from seal to acknowledgement",
            metrics.flush_total_seconds.clone(),
        );
        metrics
    }

    /// Metrics that are counted but not exported (tests, embedding).
    pub fn unregistered() -> Self {
        let seconds = || Histogram::new(exponential_buckets(0.001, 2.0, 16));
        Self {
            segments_uploaded: Counter::default(),
            segment_bytes: Counter::default(),
            flush_failures: Counter::default(),
            partition_commits: Counter::default(),
            commit_transactions: Counter::default(),
            fenced_commits: Counter::default(),
            duplicate_batches: Counter::default(),
            backpressure_rejections: Counter::default(),
            corrupt_reads: Counter::default(),
            group_commits: Counter::default(),
            group_rebalances: Counter::default(),
            groups_expired: Counter::default(),
            claims: Counter::default(),
            lease_losses: Counter::default(),
            buffered_bytes: Gauge::default(),
            leader_partitions: Gauge::default(),
            flush_upload_seconds: seconds(),
            flush_commit_seconds: seconds(),
            flush_total_seconds: seconds(),
        }
    }
}
