//! `shale bench consume`: records/s and MB/s reading partitions from their start to the high
//! watermark seen when the run starts. A throwaway topic is filled first (not measured).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use bytes::Bytes;
use shale_client::{Client, OffsetSpec, PartitionOffset};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bench::load::{self, Budget, LoadPlan};
use crate::bench::progress::{Goal, Progress};
use crate::bench::report::Report;
use crate::bench::topic::BenchTopic;
use crate::bench::{DEFAULT_RECORDS, LoadArgs, scrape, store_requests_since};
use crate::cmd::{Target, connect};

pub(crate) async fn run(addr: &Target, args: &LoadArgs) -> Result<Report> {
    let client = connect(addr).await?;
    let topic = BenchTopic::prepare(&client, args).await?;
    let result = async {
        if topic.is_throwaway() {
            fill(addr, args, &topic).await?;
        }
        measure(addr, &client, args, &topic).await
    }
    .await;
    topic.finish(&client).await;
    result
}

/// Writes the records the run will read.
async fn fill(addr: &Target, args: &LoadArgs, topic: &BenchTopic) -> Result<()> {
    let records = args.records.unwrap_or(DEFAULT_RECORDS);
    let plan = Arc::new(LoadPlan::new(
        args,
        topic,
        Budget::new(Some(records), None),
        None,
        None,
    ));
    let acked = Arc::new(AtomicU64::new(0));
    let _progress = Progress::start(
        "fill",
        "record",
        Goal::Count(records),
        Arc::clone(&acked),
        args.json,
    );
    load::produce(addr, plan, args.concurrency, acked).await?;
    Ok(())
}

/// The shared stop condition and tallies of the consumers.
#[derive(Debug)]
struct Tally {
    records: Arc<AtomicU64>,
    bytes: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
}

impl Tally {
    fn is_over(&self) -> bool {
        self.limit
            .is_some_and(|limit| self.records.load(Ordering::Relaxed) >= limit)
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }
}

async fn measure(
    addr: &Target,
    client: &Client,
    args: &LoadArgs,
    topic: &BenchTopic,
) -> Result<Report> {
    let offsets = |list: Vec<PartitionOffset>| -> BTreeMap<u32, i64> {
        list.into_iter()
            .filter_map(|offset| Some((offset.partition, offset.offset?)))
            .collect()
    };
    let ends = offsets(
        client
            .list_offsets(&topic.name, &[], OffsetSpec::Latest)
            .await?,
    );
    let starts = offsets(
        client
            .list_offsets(&topic.name, &[], OffsetSpec::Earliest)
            .await?,
    );
    let available: u64 = ends
        .iter()
        .map(|(partition, end)| (end - starts.get(partition).copied().unwrap_or(0)).max(0) as u64)
        .sum();
    let limit = args
        .records
        .map_or(available, |records| records.min(available));

    let tally = Arc::new(Tally {
        records: Arc::new(AtomicU64::new(0)),
        bytes: AtomicU64::new(0),
        limit: Some(limit),
        deadline: args.duration.map(|duration| Instant::now() + duration),
    });
    let before = scrape(&args.metrics_url).await;
    let progress_goal = match args.duration {
        Some(duration) => Goal::Time(duration),
        None => Goal::Count(limit),
    };
    let progress = Progress::start(
        "consume",
        "record",
        progress_goal,
        Arc::clone(&tally.records),
        args.json,
    );

    let started = Instant::now();
    let mut consumers = JoinSet::new();
    for consumer in 0..args.concurrency {
        let assigned: Vec<(u32, i64, i64)> = ends
            .iter()
            .filter(|(partition, _)| *partition % args.concurrency == consumer)
            .map(|(&partition, &end)| {
                (partition, starts.get(&partition).copied().unwrap_or(0), end)
            })
            .filter(|(_, start, end)| start < end)
            .collect();
        if assigned.is_empty() {
            continue;
        }
        let client = connect(addr)
            .await?
            .with_fetch_encoding(args.encoding.into());
        let (tally, topic) = (Arc::clone(&tally), topic.name.clone());
        consumers.spawn(async move {
            let reads = assigned.into_iter().map(|(partition, start, end)| {
                read_partition(&client, &topic, partition, start, end, &tally)
            });
            futures::future::try_join_all(reads).await.map(|_| ())
        });
    }
    while let Some(joined) = consumers.join_next().await {
        joined??;
    }
    let elapsed = started.elapsed();
    drop(progress);

    let mut report = Report::new(
        "consume",
        topic.name.clone(),
        tally.records.load(Ordering::Relaxed),
        tally.bytes.load(Ordering::Relaxed),
        elapsed,
    );
    report.partitions = Some(topic.partitions);
    report.concurrency = args.concurrency as usize;
    report.record_size = args.record_size.as_u64();
    report.set_usage(store_requests_since(&args.metrics_url, before).await);
    Ok(report)
}

async fn read_partition(
    client: &Client,
    topic: &str,
    partition: u32,
    start: i64,
    end: i64,
    tally: &Tally,
) -> Result<()> {
    let mut consumer = client.consumer(topic, partition, start);
    while consumer.position() < end && !tally.is_over() {
        let batch = consumer.next_batch().await?;
        let records: Vec<_> = batch
            .records
            .iter()
            .filter(|record| record.offset < end)
            .collect();
        let bytes: usize = records
            .iter()
            .map(|record| record.value.as_ref().map_or(0, Bytes::len))
            .sum();
        tally
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        tally.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    Ok(())
}
