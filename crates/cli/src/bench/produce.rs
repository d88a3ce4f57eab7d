//! `shale bench produce`: records/s, MB/s and send-to-durable-ack latency.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Result;

use crate::bench::load::{self, Budget, LoadPlan};
use crate::bench::progress::{Goal, Progress};
use crate::bench::report::Report;
use crate::bench::topic::BenchTopic;
use crate::bench::{LoadArgs, scrape, store_requests_since};
use crate::cmd::{Target, connect};

pub(crate) async fn run(addr: &Target, args: &LoadArgs) -> Result<Report> {
    let client = connect(addr).await?;
    let topic = BenchTopic::prepare(&client, args).await?;
    let result = measure(addr, args, &topic).await;
    topic.finish(&client).await;
    result
}

async fn measure(addr: &Target, args: &LoadArgs, topic: &BenchTopic) -> Result<Report> {
    let plan = Arc::new(LoadPlan::new(
        args,
        topic,
        Budget::new(args.record_limit(), args.duration),
        args.rate,
        None,
    ));
    let before = scrape(&args.metrics_url).await;
    let acked = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        "produce",
        "record",
        goal(args),
        Arc::clone(&acked),
        args.json,
    );
    let totals = load::produce(addr, plan, args.concurrency, acked).await?;
    drop(progress);

    let mut report = totals.report("produce", args, topic);
    report.set_usage(store_requests_since(&args.metrics_url, before).await);
    Ok(report)
}

/// What the progress bar counts toward.
pub(crate) fn goal(args: &LoadArgs) -> Goal {
    match (args.record_limit(), args.duration) {
        (Some(records), _) => Goal::Count(records),
        (None, Some(duration)) => Goal::Time(duration),
        (None, None) => Goal::Count(0),
    }
}
