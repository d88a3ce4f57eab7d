//! `shale consume TOPIC --group G --follow`: consume as a member of the group. The group's
//! coordinator assigns this process a share of the partitions; when members join, leave or
//! die, the partitions move and each resumes at the group's committed offset.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use shale_client::{Client, GroupConsumer, GroupOptions, OffsetSpec};

use super::printer::Printer;
use super::{ConsumeArgs, FINAL_COMMIT_TIMEOUT, Stop};
use crate::cmd::shutdown_signal;
use crate::parse::StartFrom;

pub(super) async fn run(client: Client, args: &ConsumeArgs, group: &str) -> Result<ExitCode> {
    if !args.partition.is_empty() {
        bail!(
            "--partition cannot be combined with --group and --follow: the group assigns partitions to its members"
        );
    }
    if args.max_records.is_some() {
        bail!(
            "--max-records cannot be combined with --group and --follow: a member consumes until it is stopped"
        );
    }
    let start = match args.from {
        StartFrom::Earliest => OffsetSpec::Earliest,
        StartFrom::Latest => OffsetSpec::Latest,
        StartFrom::Timestamp(ms) => OffsetSpec::Timestamp(ms),
        StartFrom::Offset(_) => bail!(
            "--from OFFSET needs --partition; a group starts partitions without a committed offset at earliest, latest or @TIMESTAMP"
        ),
    };
    let mut options = GroupOptions::new(group, [args.topic.clone()]);
    options.assignors = vec![args.assignor.clone()];
    options.session_timeout = args.session_timeout;
    options.heartbeat_interval = (args.session_timeout / 3).min(Duration::from_secs(3));
    options.start = start;
    "shale-cli".clone_into(&mut options.client_id);
    let mut consumer = client.group_consumer(options).await?;
    report(&consumer, group);
    let mut generation = consumer.generation().map(|g| g.generation);

    let mut printer = Printer {
        out: BufWriter::with_capacity(256 * 1024, io::stdout().lock()),
        format: args.format,
        printed: 0,
        max_records: None,
        positions: BTreeMap::new(),
        dirty: BTreeSet::new(),
    };
    let mut commit_timer = tokio::time::interval(args.commit_interval);
    commit_timer.tick().await;
    let mut signal = std::pin::pin!(shutdown_signal());
    let outcome: Result<Stop> = loop {
        let mut commit_due = false;
        tokio::select! {
            batch = consumer.next_batch() => match batch {
                Ok(batch) => match printer.print(batch.batch.partition, &batch.batch.records) {
                    Ok(true) => {}
                    Ok(false) => break Ok(Stop::ReaderGone),
                    Err(error) => break Err(anyhow!("writing to stdout failed: {error}")),
                },
                Err(error) => break Err(error.into()),
            },
            _ = commit_timer.tick() => commit_due = true,
            () = &mut signal => break Ok(Stop::Signalled),
        }
        let now = consumer.generation().map(|g| g.generation);
        if now != generation {
            generation = now;
            report(&consumer, group);
        }
        if commit_due && let Err(error) = consumer.commit().await {
            eprintln!("warning: committing offsets of group {group:?} failed: {error}; will retry");
        }
    };
    let printed = printer.printed;
    drop(printer);
    let closed = if matches!(outcome, Ok(Stop::ReaderGone) | Err(_)) {
        // Part of the last batch may be unprinted (stdout went away or failed), or the
        // member failed: leave without committing what may not have been printed.
        consumer.abandon().await;
        Ok(())
    } else {
        finish(consumer, group).await
    };
    let stop = outcome?;
    closed?;
    if stop != Stop::ReaderGone {
        eprintln!(
            "consumed {printed} record{} from topic {} as a member of group {group}",
            if printed == 1 { "" } else { "s" },
            args.topic
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Commits and leaves, in bounded time.
async fn finish(consumer: GroupConsumer, group: &str) -> Result<()> {
    tokio::time::timeout(FINAL_COMMIT_TIMEOUT, consumer.close())
        .await
        .map_err(|_| {
            anyhow!(
                "committing offsets of group {group:?} timed out after {}",
                humantime::format_duration(FINAL_COMMIT_TIMEOUT)
            )
        })?
        .map_err(|error| anyhow!("committing offsets of group {group:?} failed: {error}"))
}

fn report(consumer: &GroupConsumer, group: &str) {
    if let Some(generation) = consumer.generation() {
        let partitions: Vec<String> = generation
            .assignment
            .iter()
            .flat_map(|(topic, partitions)| partitions.iter().map(move |p| format!("{topic}/{p}")))
            .collect();
        eprintln!(
            "group {group}: generation {}, this member consumes [{}]",
            generation.generation,
            partitions.join(", ")
        );
    }
}
