//! The topic a bench runs against: an existing one (`--topic`), or a throwaway
//! `bench-<random>` created for the run and deleted afterwards unless `--keep`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use shale_client::Client;
use tokio::time::Instant;

use crate::bench::LoadArgs;

/// How long a new topic may take to get a leader for every partition.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct BenchTopic {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    /// Created for this run, so ours to delete.
    owned: bool,
    keep: bool,
}

impl BenchTopic {
    pub(crate) async fn prepare(client: &Client, args: &LoadArgs) -> Result<Self> {
        if let Some(name) = &args.topic {
            let description = client.describe_topic(name).await?;
            return Ok(Self {
                name: name.clone(),
                partitions: description.topic.partitions,
                owned: false,
                keep: true,
            });
        }
        let name = format!("bench-{:08x}", shale_common::system_rng().next_u64() as u32);
        client
            .create_topic(&name, args.partitions, BTreeMap::new())
            .await?;
        let topic = Self {
            name,
            partitions: args.partitions,
            owned: true,
            keep: args.keep,
        };
        if let Err(error) = wait_for_leaders(client, &topic.name).await {
            topic.finish(client).await;
            return Err(error);
        }
        Ok(topic)
    }

    /// Whether the bench may fill the topic with records of its own first.
    pub(crate) fn is_throwaway(&self) -> bool {
        self.owned
    }

    /// Deletes a throwaway topic unless asked to keep it. A failure is only a warning: the
    /// results stand.
    pub(crate) async fn finish(&self, client: &Client) {
        if !self.owned {
            return;
        }
        if self.keep {
            eprintln!("kept topic {}", self.name);
            return;
        }
        if let Err(error) = client.delete_topic(&self.name).await {
            eprintln!("warning: could not delete topic {}: {error}", self.name);
        }
    }
}

/// Produces to a partition without a leader fail; a new topic gets them within moments.
async fn wait_for_leaders(client: &Client, name: &str) -> Result<()> {
    let deadline = Instant::now() + LEADERS_TIMEOUT;
    loop {
        let description = client.describe_topic(name).await?;
        let missing = description
            .partitions
            .iter()
            .filter(|partition| partition.leader.is_none())
            .count();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{missing} partitions of topic {name} still have no leader after {}",
                humantime::format_duration(LEADERS_TIMEOUT)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
