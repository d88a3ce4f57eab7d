//! `shale bench put`: raw object-store PUT throughput and latency, without an agent, so produce
//! throughput can be reported as a fraction of what the store accepts. PUTs are create-only,
//! as the agent's segment uploads are; the objects are deleted afterwards unless `--keep`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use bytes::Bytes;
use bytesize::ByteSize;
use clap::Args;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bench::progress::{Goal, Progress};
use crate::bench::report::{Latency, Report, latency_histogram, record_latency};
use crate::bench::store::open_object_store;

#[derive(Debug, Clone, Args)]
pub(crate) struct PutArgs {
    /// Object store URL: s3://bucket/prefix?endpoint=…, file:///path or memory://.
    #[arg(long, env = "SHALE_OBJECT_STORE", value_name = "URL")]
    object_store: String,
    /// Bytes per object (e.g. 8MiB).
    #[arg(long, default_value = "8MiB")]
    size: ByteSize,
    /// Objects to PUT.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// PUTs in flight.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Leave the objects in the store afterwards.
    #[arg(long)]
    keep: bool,
    /// Print one JSON object with every number instead of text, and no progress bar.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: &PutArgs) -> Result<Report> {
    let opened = open_object_store(&args.object_store)?;
    let store = opened.store;
    let mut body = vec![0; usize::try_from(args.size.as_u64()).context("--size is too large")?];
    // Incompressible, in case anything on the way compresses.
    shale_common::system_rng().fill(&mut body);
    let body = Bytes::from(body);
    let run_id = format!("{:08x}", shale_common::system_rng().next_u64() as u32);
    let base = Path::from(format!("shale-bench-put/{run_id}"));

    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        "put",
        "PUT",
        Goal::Count(args.count),
        Arc::clone(&done),
        args.json,
    );
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency {
        let (store, base, body) = (Arc::clone(&store), base.clone(), body.clone());
        let (next, done, count) = (Arc::clone(&next), Arc::clone(&done), args.count);
        workers.spawn(async move {
            let mut latency = latency_histogram();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(latency);
                }
                let path = base.clone().join(format!("{index:08}").as_str());
                let sent_at = Instant::now();
                store
                    .put_opts(
                        &path,
                        PutPayload::from(body.clone()),
                        PutOptions::from(PutMode::Create),
                    )
                    .await
                    .with_context(|| format!("PUT {path} failed"))?;
                record_latency(&mut latency, sent_at.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut latency = latency_histogram();
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        match joined
            .context("a PUT task failed")
            .and_then(|result| result)
        {
            Ok(worker) => latency.add(&worker).context("merging latency histograms")?,
            Err(error) => {
                workers.abort_all();
                failure.get_or_insert(error);
            }
        }
    }
    let elapsed = started.elapsed();
    drop(progress);
    if !args.keep {
        let written = next.load(Ordering::Relaxed).min(args.count);
        delete_objects(&store, &base, written, args.concurrency as usize).await;
    }
    if let Some(error) = failure {
        return Err(error);
    }

    let completed = done.load(Ordering::Relaxed);
    let mut report = Report::new(
        "put",
        opened.shown,
        completed,
        completed * body.len() as u64,
        elapsed,
    );
    report.concurrency = args.concurrency as usize;
    report.record_size = body.len() as u64;
    if let Some(latency) = Latency::of(&latency) {
        report.latency_ms.insert("put", latency);
    }
    Ok(report)
}

/// Best effort: a leftover object costs little, and the results stand either way.
async fn delete_objects(
    store: &Arc<dyn object_store::ObjectStore>,
    base: &Path,
    count: u64,
    concurrency: usize,
) {
    let failures = futures::stream::iter(0..count)
        .map(|index| {
            let path = base.clone().join(format!("{index:08}").as_str());
            async move { store.delete(&path).await }
        })
        .buffer_unordered(concurrency)
        .filter(|result| {
            std::future::ready(
                result
                    .as_ref()
                    .is_err_and(|error| !matches!(error, object_store::Error::NotFound { .. })),
            )
        })
        .count()
        .await;
    if failures > 0 {
        eprintln!("warning: could not delete {failures} objects under {base}");
    }
}
