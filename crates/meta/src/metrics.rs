//! Request counters and latency histograms shared by both backends, plus the tracing span
//! every request runs in. Labels are bounded: the op (six values) and the outcome (two).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::MetaError;

/// The kind of a metadata request, as counted and traced.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Op {
    Range,
    Txn,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseRevoke,
    Watch,
}

impl Op {
    /// The label value: `range`, `txn`, `lease_grant`, `lease_keep_alive`, `lease_revoke`,
    /// `watch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::Txn => "txn",
            Self::LeaseGrant => "lease_grant",
            Self::LeaseKeepAlive => "lease_keep_alive",
            Self::LeaseRevoke => "lease_revoke",
            Self::Watch => "watch",
        }
    }

    /// The span every request of this kind runs in. Names are stable (`meta.<op>`) so
    /// dashboards and log filters can rely on them.
    pub fn span(self, backend: &'static str) -> tracing::Span {
        match self {
            Self::Range => tracing::debug_span!("meta.range", backend),
            Self::Txn => tracing::debug_span!("meta.txn", backend),
            Self::LeaseGrant => tracing::debug_span!("meta.lease_grant", backend),
            Self::LeaseKeepAlive => tracing::debug_span!("meta.lease_keep_alive", backend),
            Self::LeaseRevoke => tracing::debug_span!("meta.lease_revoke", backend),
            Self::Watch => tracing::debug_span!("meta.watch", backend),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Op {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Whether a request succeeded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        let value = match self {
            Self::Ok => "ok",
            Self::Error => "error",
        };
        EncodeLabelValue::encode(&value, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: Op,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: Op,
}

type HistogramFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

/// Metrics of one metadata store. Cloning shares the same counters.
#[derive(Clone, Debug)]
pub struct MetaMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s: local embedded commits up to slow etcd fsyncs.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

impl MetaMetrics {
    /// Metrics registered as `shale_meta_requests_total{op,outcome}` and
    /// `shale_meta_request_duration_seconds{op}`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        registry.register(
            "shale_meta_requests",
            "Metadata store requests by op and outcome",
            metrics.inner.requests.clone(),
        );
        registry.register(
            "shale_meta_request_duration_seconds",
            "Metadata store request latency by op",
            metrics.inner.latency.clone(),
        );
        metrics
    }

    /// Metrics that are counted but exported nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self {
            inner: Arc::new(Inner {
                requests: Family::default(),
                latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            }),
        }
    }

    /// Records one finished request.
    pub fn record(&self, op: Op, seconds: f64, ok: bool) {
        let outcome = if ok { Outcome::Ok } else { Outcome::Error };
        self.inner
            .requests
            .get_or_create(&RequestLabels { op, outcome })
            .inc();
        self.inner
            .latency
            .get_or_create(&OpLabels { op })
            .observe(seconds);
    }

    /// How many requests of `op` ended with `outcome` so far.
    pub fn count(&self, op: Op, outcome: Outcome) -> u64 {
        self.inner
            .requests
            .get_or_create(&RequestLabels { op, outcome })
            .get()
    }

    /// Runs `request` inside its span, counts it and times it.
    pub async fn observe<T, F>(
        &self,
        op: Op,
        backend: &'static str,
        request: F,
    ) -> Result<T, MetaError>
    where
        F: Future<Output = Result<T, MetaError>>,
    {
        let start = Instant::now();
        let span = op.span(backend);
        let result = request.instrument(span.clone()).await;
        if let Err(error) = &result {
            span.in_scope(|| tracing::debug!(%error, "metadata request failed"));
        }
        self.record(op, start.elapsed().as_secs_f64(), result.is_ok());
        result
    }
}

impl Default for MetaMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_by_op_and_outcome_and_exports() {
        let mut registry = Registry::default();
        let metrics = MetaMetrics::new(&mut registry);
        let ok: Result<(), MetaError> = metrics.observe(Op::Txn, "test", async { Ok(()) }).await;
        assert!(ok.is_ok());
        let failed: Result<(), MetaError> = metrics
            .observe(Op::Range, "test", async {
                Err(MetaError::Unavailable("down".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(metrics.count(Op::Txn, Outcome::Ok), 1);
        assert_eq!(metrics.count(Op::Range, Outcome::Error), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"shale_meta_requests_total{op="txn",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("shale_meta_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
