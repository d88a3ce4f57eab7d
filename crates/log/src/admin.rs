//! Topic administration: create, delete, list, describe.

use std::collections::BTreeMap;
use std::sync::Arc;

use shale_common::TopicId;
use shale_meta::{AgentRecord, Compare, KeyRange, Record as _, TopicRecord, Txn, TxnOp};

use crate::topics::{effective_configs, parse_topic_config, validate_topic_name};
use crate::{Log, LogError};

/// A topic as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub id: TopicId,
    pub partitions: u32,
    /// Every effective config, defaults included.
    pub configs: BTreeMap<String, String>,
    pub created_at_ms: i64,
}

/// One partition as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    pub leader: Option<String>,
    pub leader_epoch: u64,
    pub log_start: i64,
    pub high_watermark: i64,
}

/// The cluster as this agent's view sees it: the live agents, and every partition's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Live agents (registered under a lease), by id.
    pub agents: Vec<AgentRecord>,
    /// Every topic, by name, with each partition's leader (`None` while none is elected).
    pub topics: Vec<(TopicDescription, Vec<PartitionDescription>)>,
}

impl From<&TopicRecord> for TopicDescription {
    fn from(topic: &TopicRecord) -> Self {
        Self {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions,
            configs: effective_configs(&topic.config),
            created_at_ms: topic.created_at_ms,
        }
    }
}

impl Log {
    /// Creates a topic. Its partitions get leaders within moments.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<TopicDescription, LogError> {
        validate_topic_name(name)?;
        let max = self.inner.config.max_partitions_per_topic;
        if partitions == 0 || partitions > max {
            return Err(LogError::InvalidRequest(format!(
                "a topic needs between 1 and {max} partitions, got {partitions}"
            )));
        }
        let config = parse_topic_config(
            configs,
            self.inner.config.default_max_message_bytes,
            self.inner
                .config
                .max_buffered_bytes
                .as_u64()
                .min(u64::from(u32::MAX)),
        )?;
        let record = TopicRecord {
            id: TopicId::random(&self.inner.rng),
            name: name.to_owned(),
            partitions,
            config,
            created_at_ms: self.inner.clock.now_ms(),
        };
        let key = self.inner.keys.topic(name);
        let response = self
            .inner
            .meta
            .txn(
                Txn::new()
                    .when([Compare::absent(key.clone())])
                    .and_then([TxnOp::put(key, record.encode())]),
            )
            .await?;
        if !response.succeeded {
            return Err(LogError::TopicExists {
                topic: name.to_owned(),
            });
        }
        self.inner.missing_topics.remove(name);
        // Read your writes: the view shows the topic before the answer goes out (the
        // revision alone could be passed by this agent's own commits first).
        let mut changes = self.inner.view.membership_changes();
        let deadline = tokio::time::Instant::now() + self.inner.config.leader_wait;
        while self
            .inner
            .view
            .topic(name)
            .is_none_or(|topic| topic.id != record.id)
        {
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(TopicDescription::from(&record))
    }

    /// Deletes a topic and its metadata in one transaction. Its objects become garbage for
    /// the collector; its records can never be read again, even under a new topic of the
    /// same name (topic ids are never reused).
    pub async fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        validate_topic_name(name)?;
        let key = self.inner.keys.topic(name);
        let Some(kv) = self.inner.meta.get(&key).await? else {
            return Err(LogError::UnknownTopic {
                topic: name.to_owned(),
            });
        };
        let topic = TopicRecord::decode(&kv.key, &kv.value)?;
        let response = self
            .inner
            .meta
            .txn(
                Txn::new()
                    .when([Compare::mod_revision(key.clone(), kv.mod_revision)])
                    .and_then([
                        TxnOp::delete(key),
                        TxnOp::Delete {
                            range: KeyRange::prefix(
                                self.inner.keys.topic_partitions_prefix(topic.id),
                            ),
                        },
                        TxnOp::Delete {
                            range: KeyRange::prefix(self.inner.keys.topic_index_prefix(topic.id)),
                        },
                    ]),
            )
            .await?;
        if !response.succeeded {
            // Deleted or re-created concurrently; report what is true now.
            return Err(LogError::UnknownTopic {
                topic: name.to_owned(),
            });
        }
        self.inner.view.wait_for_revision(response.revision).await;
        Ok(())
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicDescription> {
        self.inner
            .view
            .topics()
            .iter()
            .map(|topic| TopicDescription::from(topic.as_ref()))
            .collect()
    }

    /// The live agents and every partition's leader, from this agent's view (which may lag
    /// the metadata store by a watch event or two).
    pub fn describe_cluster(&self) -> ClusterDescription {
        // Both come sorted: agents by id (the view's map key), topics by name.
        let agents = self.inner.view.agents();
        let topics = self
            .inner
            .view
            .topics()
            .iter()
            .map(|topic| {
                (
                    TopicDescription::from(topic.as_ref()),
                    self.partitions_of(topic),
                )
            })
            .collect();
        ClusterDescription { agents, topics }
    }

    /// The gRPC address a live agent advertises, from this agent's view.
    pub fn agent_grpc_addr(&self, agent_id: &str) -> Option<String> {
        self.inner
            .view
            .agent_grpc_addr(agent_id)
            .filter(|addr| !addr.is_empty())
    }

    /// One topic and the state of each of its partitions.
    pub async fn describe_topic(
        &self,
        name: &str,
    ) -> Result<(TopicDescription, Vec<PartitionDescription>), LogError> {
        let topic = self.topic(name).await?;
        let partitions = self.partitions_of(&topic);
        Ok((TopicDescription::from(topic.as_ref()), partitions))
    }

    fn partitions_of(&self, topic: &TopicRecord) -> Vec<PartitionDescription> {
        (0..topic.partitions)
            .map(|partition| {
                self.inner
                    .view
                    .with_partition((topic.id, partition), |view| PartitionDescription {
                        partition,
                        leader: view.leader.as_ref().map(|leader| leader.agent_id.clone()),
                        leader_epoch: view.leader_epoch,
                        log_start: view.log_start,
                        high_watermark: view.high_watermark,
                    })
            })
            .collect()
    }

    /// A topic by name, or `UnknownTopic`.
    ///
    /// The view may lag the metadata store (a topic created through another agent a moment
    /// ago): a name it does not know is looked up in the store, and when the topic is there
    /// the view gets up to `leader_wait` to catch up. A client is never told that a topic
    /// it has just created does not exist.
    pub(crate) async fn topic(&self, name: &str) -> Result<Arc<TopicRecord>, LogError> {
        if let Some(topic) = self.inner.view.topic(name) {
            return Ok(topic);
        }
        let unknown = || LogError::UnknownTopic {
            topic: name.to_owned(),
        };
        if crate::topics::validate_topic_name(name).is_err() {
            return Err(unknown());
        }
        // A name found missing a moment ago is not read again (clients asking for missing
        // topics over and over cost no metadata reads), and reads for unknown names are
        // bounded: they cannot flood the metadata store.
        if self.inner.missing_topics.contains(name) {
            return Err(unknown());
        }
        let wait = self.inner.config.backpressure_timeout;
        let slot = tokio::time::timeout(wait, self.inner.topic_lookups.acquire())
            .await
            .map_err(|_| {
                LogError::Busy(format!(
                    "{} lookups of topics this agent does not know stayed under way",
                    crate::TOPIC_LOOKUPS
                ))
            })?
            .map_err(|_| LogError::ShuttingDown)?;
        if let Some(topic) = self.inner.view.topic(name) {
            return Ok(topic);
        }
        let stored = self.inner.meta.get(&self.inner.keys.topic(name)).await?;
        drop(slot);
        if stored.is_none() {
            self.inner.missing_topics.insert(name);
            return Err(unknown());
        }
        // It exists: give the view up to `leader_wait` to show it. (Waiting for the view to
        // reach the key's revision would not do: the agent's own commits advance the
        // view's revision ahead of the watch.)
        let mut changes = self.inner.view.membership_changes();
        let deadline = tokio::time::Instant::now() + self.inner.config.leader_wait;
        loop {
            if let Some(topic) = self.inner.view.topic(name) {
                return Ok(topic);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        match self.inner.meta.get(&self.inner.keys.topic(name)).await? {
            // Deleted again meanwhile.
            None => Err(unknown()),
            Some(_) => Err(LogError::MetaUnavailable(format!(
                "topic {name:?} exists but this agent's view of the cluster has not caught up with it; retry"
            ))),
        }
    }

    /// `UnknownPartition` unless `partition` exists.
    pub(crate) fn check_partition(topic: &TopicRecord, partition: u32) -> Result<(), LogError> {
        if partition < topic.partitions {
            Ok(())
        } else {
            Err(LogError::UnknownPartition {
                topic: topic.name.clone(),
                partition,
                partitions: topic.partitions,
            })
        }
    }
}
