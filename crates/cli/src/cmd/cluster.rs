//! `shale cluster`: the live agents and who leads what.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::cmd::{Target, connect};
use crate::output::{self, Format};

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) async fn run(addr: &Target, args: ClusterArgs) -> Result<ExitCode> {
    let client = connect(addr).await?;
    let cluster = client.describe_cluster().await?;
    match args.format {
        Format::Text => output::emit(&output::cluster_text(&cluster))?,
        Format::Json => output::emit(&format!("{}\n", output::cluster_json(&cluster)))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Partitions led per agent id (`None`: no leader elected).
pub(crate) fn leaders_count(
    cluster: &shale_client::ClusterDescription,
) -> BTreeMap<Option<&str>, usize> {
    let mut counts = BTreeMap::new();
    for topic in &cluster.topics {
        for partition in &topic.partitions {
            *counts.entry(partition.leader.as_deref()).or_default() += 1;
        }
    }
    counts
}
