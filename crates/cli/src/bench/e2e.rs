//! `shale bench e2e`: produce while one consumer per partition follows the topic from its end;
//! each value carries its send time, so the consumer measures send-to-consumed latency. The
//! produce side reports send-to-durable-ack latency as `bench produce` does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use shale_client::{Client, OffsetSpec};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bench::load::{self, Budget, LoadPlan, stamped_micros};
use crate::bench::produce::goal;
use crate::bench::progress::Progress;
use crate::bench::report::{Latency, Report, latency_histogram, record_latency};
use crate::bench::topic::BenchTopic;
use crate::bench::{LoadArgs, scrape, store_requests_since};
use crate::cmd::{Target, connect};

/// How long consumers may lag behind the last ack before the run is declared failed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) async fn run(addr: &Target, args: &LoadArgs) -> Result<Report> {
    if args.record_size.as_u64() < 8 {
        bail!(
            "bench e2e needs --record-size of at least 8 bytes: the send time is stamped into each value"
        );
    }
    let client = connect(addr).await?;
    let topic = BenchTopic::prepare(&client, args).await?;
    let result = measure(addr, &client, args, &topic).await;
    topic.finish(&client).await;
    result
}

async fn measure(
    addr: &Target,
    client: &Client,
    args: &LoadArgs,
    topic: &BenchTopic,
) -> Result<Report> {
    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let e2e = Arc::new(Mutex::new(latency_histogram()));

    // Consumers start at the current end, so they see exactly what this run produces.
    let mut consumers = JoinSet::new();
    let consumer_client = connect(addr)
        .await?
        .with_fetch_encoding(args.encoding.into());
    for offset in client
        .list_offsets(&topic.name, &[], OffsetSpec::Latest)
        .await?
    {
        let start = offset.offset.unwrap_or(0);
        let consumer = consumer_client.consumer(&topic.name, offset.partition, start);
        consumers.spawn(follow(
            consumer,
            epoch,
            Arc::clone(&received),
            Arc::clone(&e2e),
        ));
    }

    let plan = Arc::new(LoadPlan::new(
        args,
        topic,
        Budget::new(args.record_limit(), args.duration),
        args.rate,
        Some(epoch),
    ));
    let before = scrape(&args.metrics_url).await;
    let progress = Progress::start(
        "e2e",
        "record",
        goal(args),
        Arc::clone(&received),
        args.json,
    );
    // Progress follows what the consumers receive; the producers' own ack count goes unused.
    let totals = load::produce(addr, plan, args.concurrency, Arc::new(AtomicU64::new(0))).await?;

    // Wait for the consumers to see everything that was acknowledged.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while received.load(Ordering::Relaxed) < totals.records {
        if let Some(joined) = consumers.try_join_next() {
            joined.context("a consumer task failed")??;
        }
        if Instant::now() >= deadline {
            bail!(
                "consumers received {} of {} acknowledged records within {} of the last ack",
                received.load(Ordering::Relaxed),
                totals.records,
                humantime::format_duration(DRAIN_TIMEOUT)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    consumers.abort_all();
    drop(progress);

    let mut report = totals.report("e2e", args, topic);
    let e2e = Latency::of(&e2e.lock().unwrap_or_else(PoisonError::into_inner));
    if let Some(latency) = e2e {
        report.latency_ms.insert("e2e", latency);
    }
    report.set_usage(store_requests_since(&args.metrics_url, before).await);
    Ok(report)
}

async fn follow(
    mut consumer: shale_client::Consumer,
    epoch: Instant,
    received: Arc<AtomicU64>,
    e2e: Arc<Mutex<Histogram<u64>>>,
) -> Result<()> {
    loop {
        let batch = consumer.next_batch().await?;
        let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        {
            let mut e2e = e2e.lock().unwrap_or_else(PoisonError::into_inner);
            for record in &batch.records {
                if let Some(sent) = record.value.as_deref().and_then(stamped_micros) {
                    record_latency(&mut e2e, Duration::from_micros(now.saturating_sub(sent)));
                }
            }
        }
        received.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
    }
}
