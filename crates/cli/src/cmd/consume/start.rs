//! Where each partition starts: `--from`, or the group's committed offset.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use shale_client::{Client, GroupOffset, OffsetSpec, PartitionOffset};

use super::ConsumeArgs;
use crate::parse::StartFrom;

/// The partitions to read, sorted: those asked for, or all.
pub(super) fn select_partitions(topic: &str, asked: &[u32], count: u32) -> Result<Vec<u32>> {
    if asked.is_empty() {
        return Ok((0..count).collect());
    }
    let mut partitions = asked.to_vec();
    partitions.sort_unstable();
    partitions.dedup();
    if let Some(&missing) = partitions.iter().find(|&&partition| partition >= count) {
        bail!(
            "partition {missing} of topic {topic:?} does not exist (the topic has {count} partitions)"
        );
    }
    Ok(partitions)
}

pub(super) fn by_partition(offsets: Vec<PartitionOffset>) -> BTreeMap<u32, i64> {
    offsets
        .into_iter()
        .filter_map(|offset| Some((offset.partition, offset.offset?)))
        .collect()
}

/// Where each partition starts according to `--from`.
pub(super) async fn start_offsets(
    client: &Client,
    args: &ConsumeArgs,
    partitions: &[u32],
    latest: &BTreeMap<u32, i64>,
) -> Result<BTreeMap<u32, i64>> {
    let resolved = match args.from {
        StartFrom::Earliest => by_partition(
            client
                .list_offsets(&args.topic, partitions, OffsetSpec::Earliest)
                .await?,
        ),
        StartFrom::Latest => latest.clone(),
        StartFrom::Offset(offset) => partitions.iter().map(|&p| (p, offset)).collect(),
        StartFrom::Timestamp(ms) => by_partition(
            client
                .list_offsets(&args.topic, partitions, OffsetSpec::Timestamp(ms))
                .await?,
        ),
    };
    // A timestamp after every record resolves to nothing: start at the end.
    Ok(partitions
        .iter()
        .map(|&p| {
            let offset = resolved
                .get(&p)
                .or_else(|| latest.get(&p))
                .copied()
                .unwrap_or(0);
            (p, offset)
        })
        .collect())
}

/// Replaces start offsets by the group's committed ones. A committed offset that retention
/// has since deleted moves up to the log start; there is nothing older to read.
pub(super) async fn resume_group(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: &[u32],
    start: &mut BTreeMap<u32, i64>,
) -> Result<()> {
    let committed = client.fetch_offsets(group, topic, partitions).await?;
    if committed.is_empty() {
        return Ok(());
    }
    let earliest = by_partition(
        client
            .list_offsets(topic, partitions, OffsetSpec::Earliest)
            .await?,
    );
    for GroupOffset {
        partition, offset, ..
    } in committed
    {
        let Some(slot) = start.get_mut(&partition) else {
            continue;
        };
        let log_start = earliest.get(&partition).copied().unwrap_or(0);
        if offset < log_start {
            eprintln!(
                "warning: group {group:?} committed offset {offset} in partition {partition}, \
                 before the log start {log_start}; starting at {log_start}"
            );
        }
        *slot = offset.max(log_start);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_checked() {
        assert_eq!(select_partitions("t", &[], 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(select_partitions("t", &[2, 0, 2], 3).unwrap(), vec![0, 2]);
        assert_eq!(
            select_partitions("t", &[3], 3).unwrap_err().to_string(),
            "partition 3 of topic \"t\" does not exist (the topic has 3 partitions)"
        );
    }
}
