//! `shale consume TOPIC`: print records, optionally as a consumer group.
//!
//! One task follows each partition and hands batches to the printer, so records of different
//! partitions interleave while each partition's come in offset order. Without `--follow`, each
//! partition stops at the high watermark it had when the command started. With `--group`,
//! partitions start at the group's committed offsets, and the offsets after the last printed
//! (and flushed) record are committed every `--commit-interval` and on the way out, including
//! on Ctrl-C, so nothing printed is read again and nothing unprinted is skipped. With
//! `--group` and `--follow`, the process joins the group as a member instead and consumes
//! the partitions the group's coordinator assigns it (see [`member`]).

mod member;
mod printer;
mod start;

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use shale_client::{Client, ClientError, Consumer, GroupOffset, OffsetSpec, StoredRecord};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cmd::{Target, connect, shutdown_signal};
use crate::output::Format;
use crate::parse::StartFrom;
use printer::Printer;
use start::{by_partition, resume_group, select_partitions, start_offsets};

/// How long the commit on the way out may take.
const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Where to start in partitions without a committed group offset: earliest, latest, an
    /// offset, or @TIMESTAMP_MS (also @RFC3339, e.g. @2024-05-01T12:00:00Z).
    #[arg(long, default_value = "earliest", value_name = "POSITION")]
    from: StartFrom,
    /// Partition to read (repeatable) [default: all].
    #[arg(long, short = 'p')]
    partition: Vec<u32>,
    /// Consumer group: resume from its committed offsets and commit after printing. With
    /// --follow, consume as a member of the group: its members share the partitions.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Partition assignor of a group member: sticky, range or roundrobin.
    #[arg(long, default_value = "sticky", value_name = "NAME")]
    assignor: String,
    /// A group member not heard from for this long loses its partitions to the others.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    session_timeout: Duration,
    /// Stop after printing this many records.
    #[arg(long, short = 'n', value_name = "N")]
    max_records: Option<u64>,
    /// Keep waiting for new records instead of stopping at the high watermark seen at start.
    #[arg(long, short = 'f')]
    follow: bool,
    /// text: each value on its own line (a null value prints as an empty line). json: one
    /// object per line with partition, offset, key, headers, timestamp_ms, value; bytes that
    /// are not UTF-8 appear base64-encoded as key_base64 / value_base64.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// How often a group's offsets are committed while consuming.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    commit_interval: Duration,
}

/// What a partition task reports.
#[derive(Debug)]
enum Event {
    Records {
        partition: u32,
        records: Vec<StoredRecord>,
    },
    /// Reached the end offset.
    Done,
    Failed(ClientError),
}

/// Why printing stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Every partition was read to its end, or `--max-records` were printed.
    Finished,
    /// Ctrl-C or SIGTERM.
    Signalled,
    /// Whoever read stdout went away (`| head`).
    ReaderGone,
}

pub(crate) async fn run(addr: &Target, args: ConsumeArgs) -> Result<ExitCode> {
    let client = connect(addr).await?;
    if args.follow
        && let Some(group) = &args.group
    {
        return member::run(client, &args, group).await;
    }
    let description = client.describe_topic(&args.topic).await?;
    let partitions = select_partitions(&args.topic, &args.partition, description.topic.partitions)?;

    // Taken first: without --follow, these are where reading stops.
    let latest = by_partition(
        client
            .list_offsets(&args.topic, &partitions, OffsetSpec::Latest)
            .await?,
    );
    let mut start = start_offsets(&client, &args, &partitions, &latest).await?;
    if let Some(group) = &args.group {
        resume_group(&client, group, &args.topic, &partitions, &mut start).await?;
    }

    let (tx, mut events) = mpsc::channel(2 * partitions.len().max(1));
    let mut readers = JoinSet::new();
    for &partition in &partitions {
        let from = start[&partition];
        let end = if args.follow {
            None
        } else {
            Some(latest.get(&partition).copied().unwrap_or(from))
        };
        // Nothing to read. (An offset past the end still goes to the agent; see below.)
        if end == Some(from) {
            continue;
        }
        let consumer = client.consumer(&args.topic, partition, from);
        readers.spawn(read_partition(consumer, end, tx.clone()));
    }
    drop(tx);

    let mut printer = Printer {
        out: BufWriter::with_capacity(256 * 1024, io::stdout().lock()),
        format: args.format,
        printed: 0,
        max_records: args.max_records,
        positions: start,
        dirty: BTreeSet::new(),
    };
    let mut commit_timer = tokio::time::interval(args.commit_interval);
    commit_timer.tick().await;
    let mut signal = std::pin::pin!(shutdown_signal());

    let outcome: Result<Stop> = loop {
        if printer.is_full() {
            break Ok(Stop::Finished);
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Records { partition, records }) => match printer.print(partition, &records) {
                    Ok(true) => {}
                    Ok(false) => break Ok(Stop::ReaderGone),
                    Err(error) => break Err(anyhow!("writing to stdout failed: {error}")),
                },
                Some(Event::Done) => {}
                Some(Event::Failed(error)) => break Err(error.into()),
                None => break Ok(Stop::Finished),
            },
            _ = commit_timer.tick(), if args.group.is_some() => {
                if let Some(group) = &args.group
                    && let Err(error) = commit(&client, group, &args.topic, &mut printer).await
                {
                    eprintln!("warning: {error:#}; will retry");
                }
            }
            () = &mut signal => break Ok(Stop::Signalled),
        }
    };
    readers.abort_all();

    let committed = match &args.group {
        // Bounded, so an agent that stopped answering cannot hold the exit forever.
        Some(group) => tokio::time::timeout(
            FINAL_COMMIT_TIMEOUT,
            commit(&client, group, &args.topic, &mut printer),
        )
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "committing offsets of group {group:?} timed out after {}",
                humantime::format_duration(FINAL_COMMIT_TIMEOUT)
            ))
        }),
        None => Ok(()),
    };
    let stop = outcome?;
    committed?;
    if stop != Stop::ReaderGone {
        eprintln!(
            "consumed {} record{} from topic {}",
            printer.printed,
            if printer.printed == 1 { "" } else { "s" },
            args.topic
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows one partition until `end` (exclusive), or forever.
async fn read_partition(mut consumer: Consumer, end: Option<i64>, events: mpsc::Sender<Event>) {
    let partition = consumer.partition();
    loop {
        // Checked after each batch, not before the first: a start past the end must reach the
        // agent, which says why it is out of range.
        let event = match consumer.next_batch().await {
            Ok(mut batch) => {
                if let Some(end) = end {
                    batch.records.retain(|record| record.offset < end);
                }
                Event::Records {
                    partition,
                    records: batch.records,
                }
            }
            Err(error) => Event::Failed(error),
        };
        let failed = matches!(event, Event::Failed(_));
        if events.send(event).await.is_err() || failed {
            return;
        }
        if end.is_some_and(|end| consumer.position() >= end) {
            let _ = events.send(Event::Done).await;
            return;
        }
    }
}

/// Commits the positions of partitions printed from since the last commit.
async fn commit<W: Write>(
    client: &Client,
    group: &str,
    topic: &str,
    printer: &mut Printer<W>,
) -> Result<()> {
    if printer.dirty.is_empty() {
        return Ok(());
    }
    let offsets: Vec<GroupOffset> = printer
        .dirty
        .iter()
        .map(|partition| GroupOffset::new(*partition, printer.positions[partition]))
        .collect();
    client
        .commit_offsets(group, topic, offsets)
        .await
        .with_context(|| format!("committing offsets of group {group:?} failed"))?;
    printer.dirty.clear();
    Ok(())
}
