//! Prometheus metrics of the storage layer, and a cheap snapshot of them for tests and benches.
//!
//! Every label is drawn from a closed set (ops, outcomes, cache results), never from object
//! names, so cardinality stays bounded however many objects there are.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::op::StoreOp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    Ok,
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        let text = match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    op: StoreOp,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabels {
    op: StoreOp,
}

/// How a retried create-only PUT that met `AlreadyExists` was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Resolution {
    /// The object carries our put-id: an earlier attempt landed; reported as success.
    Ours,
    /// The object belongs to another writer; reported as `AlreadyExists`.
    Theirs,
    /// The check itself failed; the check's error is reported.
    Unknown,
}

impl EncodeLabelValue for Resolution {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        let text = match self {
            Resolution::Ours => "ours",
            Resolution::Theirs => "theirs",
            Resolution::Unknown => "unknown",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResolutionLabels {
    resolution: Resolution,
}

/// What a block lookup in the cache found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Lookup {
    /// In memory or on the local disk.
    Hit,
    /// Not cached; this reader fetched it from the store.
    Miss,
    /// Not cached, but another reader was already fetching it; this one waited.
    Coalesced,
}

impl EncodeLabelValue for Lookup {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        let text = match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Coalesced => "coalesced",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LookupLabels {
    result: Lookup,
}

type HistogramFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s: S3 first-byte latency is tens of ms, a timed-out request is seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

#[derive(Debug)]
struct Inner {
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily,
    written_bytes: Counter,
    read_bytes: Counter,
    retries: Family<OpLabels, Counter>,
    ambiguous_puts: Family<ResolutionLabels, Counter>,
    cache_lookups: Family<LookupLabels, Counter>,
    cache_served_bytes: Counter,
    cache_fetched_bytes: Counter,
    cache_inserted_bytes: Counter,
    cache_errors: Counter,
}

/// The storage layer's metrics. Cloning shares the same counters.
///
/// Names (all prefixed `shale_storage_`): `requests_total{op,outcome}`,
/// `request_duration_seconds{op}`, `written_bytes_total`, `read_bytes_total`,
/// `retries_total{op}`, `ambiguous_puts_total{resolution}`, `cache_lookups_total{result}`,
/// `cache_served_bytes_total`, `cache_fetched_bytes_total`, `cache_inserted_bytes_total`,
/// `cache_errors_total`. See `docs/storage.md` for what each counts.
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    inner: Arc<Inner>,
}

impl Default for StorageMetrics {
    /// Metrics registered nowhere, for tests and tools that only want [`Self::snapshot`].
    fn default() -> Self {
        Self::new(&mut Registry::default())
    }
}

impl StorageMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let inner = Inner {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            written_bytes: Counter::default(),
            read_bytes: Counter::default(),
            retries: Family::default(),
            ambiguous_puts: Family::default(),
            cache_lookups: Family::default(),
            cache_served_bytes: Counter::default(),
            cache_fetched_bytes: Counter::default(),
            cache_inserted_bytes: Counter::default(),
            cache_errors: Counter::default(),
        };
        registry.register(
            "shale_storage_requests",
            "Object-store requests by op and outcome; every attempt counts",
            inner.requests.clone(),
        );
        registry.register_with_unit(
            "shale_storage_request_duration",
            "Object-store request latency by op (to response headers for GETs)",
            Unit::Seconds,
            inner.request_duration.clone(),
        );
        registry.register_with_unit(
            "shale_storage_written",
            "Bytes sent in successful object-store PUTs and multipart parts",
            Unit::Bytes,
            inner.written_bytes.clone(),
        );
        registry.register_with_unit(
            "shale_storage_read",
            "Bytes returned by successful object-store GETs",
            Unit::Bytes,
            inner.read_bytes.clone(),
        );
        registry.register(
            "shale_storage_retries",
            "Object-store requests retried by op",
            inner.retries.clone(),
        );
        registry.register(
            "shale_storage_ambiguous_puts",
            "Retried create-only PUTs that found the object present, by whose it was",
            inner.ambiguous_puts.clone(),
        );
        registry.register(
            "shale_storage_cache_lookups",
            "Block-cache lookups by result (hit, miss, coalesced)",
            inner.cache_lookups.clone(),
        );
        registry.register_with_unit(
            "shale_storage_cache_served",
            "Bytes returned by block-cache range reads",
            Unit::Bytes,
            inner.cache_served_bytes.clone(),
        );
        registry.register_with_unit(
            "shale_storage_cache_fetched",
            "Bytes the block cache read from the object store",
            Unit::Bytes,
            inner.cache_fetched_bytes.clone(),
        );
        registry.register_with_unit(
            "shale_storage_cache_inserted",
            "Bytes inserted into the block cache (fills and write-through)",
            Unit::Bytes,
            inner.cache_inserted_bytes.clone(),
        );
        registry.register(
            "shale_storage_cache_errors",
            "Block-cache range reads that failed",
            inner.cache_errors.clone(),
        );
        // Every series exists from the start, at zero: a scrape before the first request
        // then reads 0 rather than a missing metric (rate() and diffs need both ends).
        for op in StoreOp::ALL {
            for outcome in [Outcome::Ok, Outcome::Error] {
                let _ = inner.requests.get_or_create(&RequestLabels { op, outcome });
            }
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Counts one request and observes its latency.
    pub(crate) fn record_request(&self, op: StoreOp, ok: bool, elapsed: Duration) {
        self.count_requests(op, ok, 1);
        self.record_request_latency(op, elapsed);
    }

    /// Observes the latency of a call without counting it.
    pub(crate) fn record_request_latency(&self, op: StoreOp, elapsed: Duration) {
        self.inner
            .request_duration
            .get_or_create(&OpLabels { op })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts requests whose individual latency is not visible (bulk deletes, list pages).
    pub(crate) fn count_requests(&self, op: StoreOp, ok: bool, requests: u64) {
        let outcome = if ok { Outcome::Ok } else { Outcome::Error };
        self.inner
            .requests
            .get_or_create(&RequestLabels { op, outcome })
            .inc_by(requests);
    }

    pub(crate) fn add_written_bytes(&self, bytes: u64) {
        self.inner.written_bytes.inc_by(bytes);
    }

    pub(crate) fn add_read_bytes(&self, bytes: u64) {
        self.inner.read_bytes.inc_by(bytes);
    }

    pub(crate) fn record_retry(&self, op: StoreOp) {
        self.inner.retries.get_or_create(&OpLabels { op }).inc();
    }

    pub(crate) fn record_ambiguous_put(&self, resolution: Resolution) {
        self.inner
            .ambiguous_puts
            .get_or_create(&ResolutionLabels { resolution })
            .inc();
    }

    pub(crate) fn record_cache_lookups(&self, result: Lookup, blocks: u64) {
        if blocks > 0 {
            self.inner
                .cache_lookups
                .get_or_create(&LookupLabels { result })
                .inc_by(blocks);
        }
    }

    pub(crate) fn add_cache_served_bytes(&self, bytes: u64) {
        self.inner.cache_served_bytes.inc_by(bytes);
    }

    pub(crate) fn add_cache_fetched_bytes(&self, bytes: u64) {
        self.inner.cache_fetched_bytes.inc_by(bytes);
    }

    pub(crate) fn add_cache_inserted_bytes(&self, bytes: u64) {
        self.inner.cache_inserted_bytes.inc_by(bytes);
    }

    pub(crate) fn record_cache_error(&self) {
        self.inner.cache_errors.inc();
    }

    fn requests(&self, op: StoreOp, outcome: Outcome) -> u64 {
        self.inner
            .requests
            .get(&RequestLabels { op, outcome })
            .map_or(0, |counter| counter.get())
    }

    fn lookups(&self, result: Lookup) -> u64 {
        self.inner
            .cache_lookups
            .get(&LookupLabels { result })
            .map_or(0, |counter| counter.get())
    }

    /// The current counter values.
    pub fn snapshot(&self) -> StorageSnapshot {
        let attempts = |op| self.requests(op, Outcome::Ok) + self.requests(op, Outcome::Error);
        let resolution = |resolution| {
            self.inner
                .ambiguous_puts
                .get(&ResolutionLabels { resolution })
                .map_or(0, |counter| counter.get())
        };
        StorageSnapshot {
            puts: attempts(StoreOp::Put),
            gets: attempts(StoreOp::Get),
            get_ranges: attempts(StoreOp::GetRange),
            heads: attempts(StoreOp::Head),
            lists: attempts(StoreOp::List),
            deletes: attempts(StoreOp::Delete),
            copies: attempts(StoreOp::Copy),
            multipart: attempts(StoreOp::Multipart),
            errors: StoreOp::ALL
                .iter()
                .map(|op| self.requests(*op, Outcome::Error))
                .sum(),
            bytes_written: self.inner.written_bytes.get(),
            bytes_read: self.inner.read_bytes.get(),
            retries: StoreOp::ALL
                .iter()
                .map(|op| {
                    self.inner
                        .retries
                        .get(&OpLabels { op: *op })
                        .map_or(0, |counter| counter.get())
                })
                .sum(),
            ambiguous_puts_ours: resolution(Resolution::Ours),
            ambiguous_puts_theirs: resolution(Resolution::Theirs),
            cache_hits: self.lookups(Lookup::Hit),
            cache_misses: self.lookups(Lookup::Miss),
            cache_coalesced: self.lookups(Lookup::Coalesced),
            cache_served_bytes: self.inner.cache_served_bytes.get(),
            cache_fetched_bytes: self.inner.cache_fetched_bytes.get(),
            cache_inserted_bytes: self.inner.cache_inserted_bytes.get(),
            cache_errors: self.inner.cache_errors.get(),
        }
    }
}

/// Counter values at one moment. Request counts include failed attempts and retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageSnapshot {
    /// PUT attempts.
    pub puts: u64,
    /// Whole-object GET attempts.
    pub gets: u64,
    /// Ranged GET attempts.
    pub get_ranges: u64,
    /// HEAD attempts.
    pub heads: u64,
    /// LIST calls (one per listing stream or delimiter listing).
    pub lists: u64,
    /// Object deletes.
    pub deletes: u64,
    /// Copies.
    pub copies: u64,
    /// Multipart requests (initiate, parts, complete, abort).
    pub multipart: u64,
    /// Failed attempts of any op.
    pub errors: u64,
    /// Bytes written by successful PUTs and parts.
    pub bytes_written: u64,
    /// Bytes returned by successful GETs.
    pub bytes_read: u64,
    /// Retries of any op.
    pub retries: u64,
    /// Ambiguous create-only PUTs resolved as ours (success).
    pub ambiguous_puts_ours: u64,
    /// Ambiguous create-only PUTs resolved as someone else's (`AlreadyExists`).
    pub ambiguous_puts_theirs: u64,
    /// Cache blocks found in memory or on disk.
    pub cache_hits: u64,
    /// Cache blocks fetched from the store by the reader that missed.
    pub cache_misses: u64,
    /// Cache blocks a reader waited for while another reader fetched them.
    pub cache_coalesced: u64,
    /// Bytes returned by cache range reads.
    pub cache_served_bytes: u64,
    /// Bytes the cache read from the store.
    pub cache_fetched_bytes: u64,
    /// Bytes inserted into the cache.
    pub cache_inserted_bytes: u64,
    /// Failed cache range reads.
    pub cache_errors: u64,
}

impl StorageSnapshot {
    /// All GET-like requests: whole, ranged and HEAD.
    pub fn all_gets(&self) -> u64 {
        self.gets + self.get_ranges + self.heads
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn counts_and_exports_bounded_names() {
        let mut registry = Registry::default();
        let metrics = StorageMetrics::new(&mut registry);
        metrics.record_request(StoreOp::Put, true, Duration::from_millis(3));
        metrics.record_request(StoreOp::Put, false, Duration::from_millis(3));
        metrics.record_request(StoreOp::GetRange, true, Duration::from_millis(1));
        metrics.add_written_bytes(10);
        metrics.add_read_bytes(7);
        metrics.record_retry(StoreOp::Put);
        metrics.record_ambiguous_put(Resolution::Ours);
        metrics.record_cache_lookups(Lookup::Hit, 3);
        metrics.record_cache_lookups(Lookup::Coalesced, 0);

        let snapshot = metrics.clone().snapshot();
        assert_eq!(snapshot.puts, 2);
        assert_eq!(snapshot.get_ranges, 1);
        assert_eq!(snapshot.errors, 1);
        assert_eq!(snapshot.bytes_written, 10);
        assert_eq!(snapshot.bytes_read, 7);
        assert_eq!(snapshot.retries, 1);
        assert_eq!(snapshot.ambiguous_puts_ours, 1);
        assert_eq!(snapshot.cache_hits, 3);
        assert_eq!(snapshot.cache_coalesced, 0);

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for expected in [
            "shale_storage_requests_total{op=\"put\",outcome=\"ok\"} 1",
            "shale_storage_requests_total{op=\"put\",outcome=\"error\"} 1",
            "shale_storage_request_duration_seconds_bucket{le=\"0.001\",op=\"get_range\"}",
            "shale_storage_written_bytes_total 10",
            "shale_storage_read_bytes_total 7",
            "shale_storage_retries_total{op=\"put\"} 1",
            "shale_storage_ambiguous_puts_total{resolution=\"ours\"} 1",
            "shale_storage_cache_lookups_total{result=\"hit\"} 3",
            "shale_storage_cache_served_bytes_total 0",
            "shale_storage_cache_errors_total 0",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }
}
