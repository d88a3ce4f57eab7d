//! The produce load shared by the agent benches: `concurrency` workers, each with its own
//! connection and pipelined producer, sending fixed-size records in fixed-size requests to
//! partitions in turn, until a record count or a deadline is reached. Each ack's latency
//! (send to durable ack) goes into the worker's histogram.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use hdrhistogram::Histogram;
use shale_client::{Client, ClientError, ProduceAck, ProduceRequest, ProducerOptions, Record};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bench::LoadArgs;
use crate::bench::report::{Latency, Report, latency_histogram, record_latency};
use crate::bench::topic::BenchTopic;
use crate::cmd::{Target, connect};

/// What to produce.
#[derive(Debug)]
pub(crate) struct LoadPlan {
    pub(crate) topic: String,
    pub(crate) partitions: u32,
    pub(crate) record_size: usize,
    pub(crate) batch_records: u32,
    pub(crate) max_in_flight: usize,
    pub(crate) budget: Budget,
    /// Records per second over all workers; `None` for as fast as acked.
    pub(crate) rate: Option<u64>,
    /// For e2e: each value starts with the microseconds since this instant at send time.
    pub(crate) stamp_epoch: Option<Instant>,
    pub(crate) encoding: shale_client::Encoding,
}

impl LoadPlan {
    /// The plan `args` describe for `topic`, spending `budget` at `rate`.
    pub(crate) fn new(
        args: &LoadArgs,
        topic: &BenchTopic,
        budget: Budget,
        rate: Option<u64>,
        stamp_epoch: Option<Instant>,
    ) -> Self {
        Self {
            topic: topic.name.clone(),
            partitions: topic.partitions,
            record_size: args.record_size.as_u64() as usize,
            encoding: args.encoding.into(),
            batch_records: args.batch_records,
            max_in_flight: args.max_in_flight as usize,
            budget,
            rate,
            stamp_epoch,
        }
    }
}

/// Hands out records until a count or a deadline is reached.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: Option<u64>,
    deadline: Option<Instant>,
    claimed: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limit: Option<u64>, duration: Option<Duration>) -> Self {
        Self {
            limit,
            deadline: duration.map(|duration| Instant::now() + duration),
            claimed: AtomicU64::new(0),
        }
    }

    /// How many of `want` records the caller may send now; 0 when the run is over.
    pub(crate) fn claim(&self, want: u64) -> u64 {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return 0;
        }
        let Some(limit) = self.limit else {
            return want;
        };
        let before = self.claimed.fetch_add(want, Ordering::Relaxed);
        want.min(limit.saturating_sub(before))
    }
}

/// Totals of a load run.
#[derive(Debug)]
pub(crate) struct LoadTotals {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Histogram<u64>,
}

impl LoadTotals {
    /// The report of a run that produced these totals: throughput, the load's shape and the
    /// send-to-ack latency.
    pub(crate) fn report(
        &self,
        bench: &'static str,
        args: &LoadArgs,
        topic: &BenchTopic,
    ) -> Report {
        let mut report = Report::new(
            bench,
            topic.name.clone(),
            self.records,
            self.bytes,
            self.elapsed,
        );
        report.partitions = Some(topic.partitions);
        report.concurrency = args.concurrency as usize;
        report.record_size = args.record_size.as_u64();
        report.batch_records = Some(args.batch_records);
        if let Some(latency) = Latency::of(&self.latency) {
            report.latency_ms.insert("produce", latency);
        }
        report
    }
}

/// Runs the plan with `concurrency` workers; `acked` counts acknowledged records as they come
/// (for progress). The first failure stops the run.
pub(crate) async fn produce(
    addr: &Target,
    plan: Arc<LoadPlan>,
    concurrency: u32,
    acked: Arc<AtomicU64>,
) -> Result<LoadTotals> {
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        // A connection each, so streams do not share one TCP window.
        clients.push(connect(addr).await?);
    }
    let filler = filler(plan.record_size);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for (worker, client) in clients.into_iter().enumerate() {
        workers.spawn(run_worker(
            client,
            Arc::clone(&plan),
            worker as u32,
            concurrency,
            filler.clone(),
            Arc::clone(&acked),
        ));
    }
    let mut totals = LoadTotals {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latency: latency_histogram(),
    };
    while let Some(joined) = workers.join_next().await {
        let worker = joined.context("a producer task failed")??;
        totals.records += worker.records;
        totals.bytes += worker.bytes;
        totals
            .latency
            .add(&worker.latency)
            .context("merging latency histograms")?;
    }
    totals.elapsed = started.elapsed();
    Ok(totals)
}

/// Incompressible bytes, so a codec cannot flatter the numbers.
fn filler(size: usize) -> Bytes {
    let mut bytes = vec![0; size];
    shale_common::system_rng().fill(&mut bytes);
    Bytes::from(bytes)
}

type Pending =
    Pin<Box<dyn Future<Output = (Instant, u64, Result<ProduceAck, ClientError>)> + Send>>;

async fn run_worker(
    client: Client,
    plan: Arc<LoadPlan>,
    worker: u32,
    concurrency: u32,
    filler: Bytes,
    acked: Arc<AtomicU64>,
) -> Result<LoadTotals> {
    let options = ProducerOptions {
        max_in_flight: plan.max_in_flight,
    };
    // A worker that keeps to one partition streams to its leader (in a cluster, no
    // forwarding hop); one that rotates goes through the connected agent.
    let producer = if concurrency.is_multiple_of(plan.partitions) {
        client
            .partition_producer(&plan.topic, worker % plan.partitions, options)
            .await?
    } else {
        client.producer(options).await?
    };
    let mut totals = LoadTotals {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latency: latency_histogram(),
    };
    // Each worker's share of the rate, as a gap between its requests.
    let gap = plan.rate.filter(|rate| *rate > 0).map(|rate| {
        Duration::from_secs_f64(
            f64::from(plan.batch_records) * f64::from(concurrency) / rate as f64,
        )
    });
    let mut next_send = Instant::now();
    let mut partition = worker % plan.partitions;
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut exhausted = false;
    loop {
        let can_send = !exhausted && pending.len() < plan.max_in_flight;
        if !can_send && pending.is_empty() {
            return Ok(totals);
        }
        tokio::select! {
            biased;
            Some((sent_at, count, result)) = pending.next(), if !pending.is_empty() => {
                result.with_context(|| format!("producing to topic {}", plan.topic))?;
                record_latency(&mut totals.latency, sent_at.elapsed());
                totals.records += count;
                totals.bytes += count * plan.record_size as u64;
                acked.fetch_add(count, Ordering::Relaxed);
            }
            () = tokio::time::sleep_until(next_send), if can_send => {
                let count = plan.budget.claim(u64::from(plan.batch_records));
                if count == 0 {
                    exhausted = true;
                    continue;
                }
                let sent_at = Instant::now();
                let records = (0..count).map(|_| Record::new(value(&filler, plan.stamp_epoch)));
                let mut request = ProduceRequest::new(plan.topic.clone(), records).with_partition(partition);
                request.encoding = plan.encoding;
                let ack = producer.send(request);
                pending.push_back(Box::pin(async move { (sent_at, count, ack.await) }));
                partition = (partition + concurrency) % plan.partitions;
                if let Some(gap) = gap {
                    next_send += gap;
                }
            }
        }
    }
}

/// A record value: the filler, stamped with the send time for e2e runs.
fn value(filler: &Bytes, stamp_epoch: Option<Instant>) -> Bytes {
    match stamp_epoch {
        None => filler.clone(),
        Some(epoch) => {
            let mut value = BytesMut::from(&filler[..]);
            let micros = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
            value[..8].copy_from_slice(&micros.to_be_bytes());
            value.freeze()
        }
    }
}

/// The send time stamped into an e2e value, as microseconds since the epoch instant.
pub(crate) fn stamped_micros(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_hand_out_exactly_the_limit() {
        let budget = Budget::new(Some(250), None);
        assert_eq!(budget.claim(100), 100);
        assert_eq!(budget.claim(100), 100);
        assert_eq!(budget.claim(100), 50);
        assert_eq!(budget.claim(100), 0);
        let unlimited = Budget::new(None, Some(Duration::from_mins(1)));
        assert_eq!(unlimited.claim(100), 100);
        let over = Budget::new(None, Some(Duration::ZERO));
        assert_eq!(over.claim(100), 0);
    }

    #[tokio::test]
    async fn stamps_round_trip() {
        let epoch = Instant::now();
        let stamped = value(&filler(16), Some(epoch));
        assert_eq!(stamped.len(), 16);
        assert!(stamped_micros(&stamped).unwrap() < 60_000_000);
        assert_eq!(stamped_micros(b"short"), None);
    }
}
