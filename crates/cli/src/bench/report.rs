//! Bench results: one struct for every bench, printed as aligned text or one JSON object.
//!
//! Throughput counts payload bytes (record values, or object bodies for `put`); MB is 10^6
//! bytes. Latencies are recorded in microseconds and shown in milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::metrics::{AgentSample, StoreCounts};

/// Highest latency a histogram records (one hour, in µs); larger values are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Records `elapsed` into `histogram`, clamped to its range.
pub(crate) fn record_latency(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US);
    histogram.saturating_record(micros);
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Latency {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Latency {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

/// The result of one bench run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// produce, consume, e2e or put.
    pub(crate) bench: &'static str,
    /// The topic, or the object store URL without its query (which may hold credentials).
    pub(crate) target: String,
    pub(crate) partitions: Option<u32>,
    /// Producer streams, consumers, or concurrent PUTs.
    pub(crate) concurrency: usize,
    /// Bytes per record value, or per object for `put`.
    pub(crate) record_size: u64,
    pub(crate) batch_records: Option<u32>,
    /// Records (or objects) completed.
    pub(crate) records: u64,
    /// Payload bytes completed.
    pub(crate) bytes: u64,
    pub(crate) elapsed_secs: f64,
    pub(crate) records_per_sec: f64,
    pub(crate) mb_per_sec: f64,
    /// By kind: "produce" (send to durable ack), "e2e" (send to consumed), "put".
    pub(crate) latency_ms: BTreeMap<&'static str, Latency>,
    /// Requests the agent made to its object store during the run; null when its metrics
    /// endpoint could not be read.
    pub(crate) object_store_requests: Option<StoreCounts>,
    /// The agent's CPU time (user + system) during the run; null when unknown.
    pub(crate) agent_cpu_seconds: Option<f64>,
    /// The cost per GB (10^9 payload bytes) moved: agent CPU seconds and object-store requests.
    pub(crate) per_gb: Option<PerGb>,
}

/// What one GB of payload cost the agent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct PerGb {
    pub(crate) agent_cpu_seconds: Option<f64>,
    pub(crate) puts: f64,
    /// GETs and ranged GETs.
    pub(crate) gets: f64,
}

impl Report {
    /// A report with throughput computed from `records`, `bytes` and `elapsed`.
    pub(crate) fn new(
        bench: &'static str,
        target: String,
        records: u64,
        bytes: u64,
        elapsed: Duration,
    ) -> Self {
        let secs = elapsed.as_secs_f64();
        let rate = |amount: f64| if secs > 0.0 { amount / secs } else { 0.0 };
        Self {
            bench,
            target,
            partitions: None,
            concurrency: 1,
            record_size: 0,
            batch_records: None,
            records,
            bytes,
            elapsed_secs: secs,
            records_per_sec: rate(records as f64),
            mb_per_sec: rate(bytes as f64) / 1e6,
            latency_ms: BTreeMap::new(),
            object_store_requests: None,
            agent_cpu_seconds: None,
            per_gb: None,
        }
    }

    /// Fills in what the agent spent during the run, and its cost per GB.
    pub(crate) fn set_usage(&mut self, usage: Option<AgentSample>) {
        let Some(usage) = usage else {
            return;
        };
        self.object_store_requests = Some(usage.store);
        self.agent_cpu_seconds = usage.cpu_seconds;
        if self.bytes > 0 {
            let gb = self.bytes as f64 / 1e9;
            self.per_gb = Some(PerGb {
                agent_cpu_seconds: usage.cpu_seconds.map(|seconds| seconds / gb),
                puts: usage.store.put as f64 / gb,
                gets: (usage.store.get + usage.store.get_range) as f64 / gb,
            });
        }
    }

    /// The report for people.
    pub(crate) fn text(&self) -> String {
        let unit = if self.bench == "put" { "PUT" } else { "record" };
        let mut out = format!("shale bench {}: {}", self.bench, self.target);
        if let Some(partitions) = self.partitions {
            let _ = write!(out, " ({partitions} partitions)");
        }
        let _ = write!(out, ", concurrency {}", self.concurrency);
        if let Some(batch) = self.batch_records {
            let _ = write!(out, ", {batch} records/request");
        }
        let _ = writeln!(out, ", {} B per {unit}", self.record_size);
        let _ = writeln!(
            out,
            "  {:<14}{} {unit}s, {} bytes in {:.3} s",
            "completed", self.records, self.bytes, self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "  {:<14}{:.0} {unit}s/s, {:.2} MB/s",
            "throughput", self.records_per_sec, self.mb_per_sec
        );
        for (kind, latency) in &self.latency_ms {
            let _ = writeln!(
                out,
                "  {:<14}p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                format!("{kind} ms"),
                latency.p50,
                latency.p99,
                latency.p999,
                latency.max
            );
        }
        if self.bench != "put" {
            let requests = match self.object_store_requests {
                Some(counts) => format!(
                    "{} PUT, {} GET, {} ranged GET",
                    counts.put, counts.get, counts.get_range
                ),
                None => "n/a".to_owned(),
            };
            let _ = writeln!(out, "  {:<14}{requests}", "object store");
            if let Some(per_gb) = self.per_gb {
                let cpu = per_gb
                    .agent_cpu_seconds
                    .map_or_else(|| "n/a".to_owned(), |seconds| format!("{seconds:.2}"));
                let _ = writeln!(
                    out,
                    "  {:<14}{cpu} agent CPU-s, {:.1} PUT, {:.1} GET",
                    "per GB", per_gb.puts, per_gb.gets
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut histogram = latency_histogram();
        for ms in 1..=100 {
            record_latency(&mut histogram, Duration::from_millis(ms));
        }
        let mut report = Report::new(
            "produce",
            "bench-x".into(),
            1000,
            1_000_000,
            Duration::from_secs(2),
        );
        report.partitions = Some(4);
        report.record_size = 1000;
        report.batch_records = Some(100);
        report
            .latency_ms
            .insert("produce", Latency::of(&histogram).unwrap());
        report
    }

    #[test]
    fn throughput_and_percentiles_are_computed() {
        let report = sample();
        assert!((report.records_per_sec - 500.0).abs() < 1e-9);
        assert!((report.mb_per_sec - 0.5).abs() < 1e-9);
        let latency = report.latency_ms["produce"];
        assert_eq!(latency.count, 100);
        assert!((latency.p50 - 50.0).abs() < 0.1, "{latency:?}");
        assert!((latency.max - 100.0).abs() < 0.1, "{latency:?}");
    }

    #[test]
    fn json_has_every_number_and_null_counts() {
        let json = serde_json::to_value(sample()).unwrap();
        for key in [
            "bench",
            "target",
            "partitions",
            "concurrency",
            "record_size",
            "batch_records",
            "records",
            "bytes",
            "elapsed_secs",
            "records_per_sec",
            "mb_per_sec",
            "latency_ms",
            "object_store_requests",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["object_store_requests"], serde_json::Value::Null);
        assert_eq!(json["latency_ms"]["produce"]["count"], 100);
        let mut report = sample();
        report.object_store_requests = Some(StoreCounts {
            put: 3,
            get: 0,
            get_range: 1,
        });
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["object_store_requests"]["put"], 3);
    }

    #[test]
    fn usage_gives_the_cost_per_gb() {
        let mut report = sample();
        report.set_usage(Some(AgentSample {
            store: StoreCounts {
                put: 2,
                get: 1,
                get_range: 3,
            },
            cpu_seconds: Some(0.004),
        }));
        // 1 MB moved: a GB is 1000 times that.
        let per_gb = report.per_gb.unwrap();
        assert!((per_gb.agent_cpu_seconds.unwrap() - 4.0).abs() < 1e-9);
        assert!((per_gb.puts - 2000.0).abs() < 1e-9);
        assert!((per_gb.gets - 4000.0).abs() < 1e-9);
        assert!(
            report
                .text()
                .contains("  per GB        4.00 agent CPU-s, 2000.0 PUT, 4000.0 GET\n"),
            "{}",
            report.text()
        );
    }

    #[test]
    fn text_says_n_a_without_metrics() {
        let text = sample().text();
        assert!(text.starts_with("shale bench produce: bench-x (4 partitions), concurrency 1, 100 records/request, 1000 B per record\n"), "{text}");
        assert!(
            text.contains("  throughput    500 records/s, 0.50 MB/s\n"),
            "{text}"
        );
        assert!(text.contains("  object store  n/a\n"), "{text}");
    }
}
