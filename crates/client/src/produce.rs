//! Produce requests and their acknowledgements.

use shale_proto::v1;

use crate::{ClientError, Record};

/// Compression codec of the stored batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// Whatever the topic's `compression.type` config says.
    #[default]
    TopicDefault,
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Compression> for v1::Compression {
    fn from(compression: Compression) -> Self {
        match compression {
            Compression::TopicDefault => Self::Unspecified,
            Compression::None => Self::None,
            Compression::Gzip => Self::Gzip,
            Compression::Snappy => Self::Snappy,
            Compression::Lz4 => Self::Lz4,
            Compression::Zstd => Self::Zstd,
        }
    }
}

/// Idempotent-producer fields, as in Kafka: the agent answers a retried request with the
/// offsets it already assigned instead of appending it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence number of the first record; the next request continues from
    /// `base_sequence + number of records`.
    pub base_sequence: i32,
}

/// Who turns a request's records into the stored form (Kafka RecordBatch v2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// The records go over the wire one by one; the agent encodes and compresses them and
    /// stamps records without a timestamp with the time it accepted them.
    #[default]
    Agent,
    /// The SDK encodes (and compresses) one batch and the agent stores it as it came, as
    /// Kafka clients do: far less work for the agent per byte. Needs a partition; records
    /// without a timestamp get this machine's clock. The batch must fit the topic's
    /// `max.message.bytes`, which the agent checks.
    Client,
}

/// Records to append to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    pub topic: String,
    /// Target partition; `None` lets the agent partition by key (murmur2, as Kafka does).
    pub partition: Option<u32>,
    pub records: Vec<Record>,
    /// Append only if the partition's next offset equals this; needs `partition`.
    pub expected_next_offset: Option<i64>,
    /// Needs `partition`.
    pub producer: Option<ProducerIdentity>,
    pub compression: Compression,
    pub encoding: Encoding,
}

impl ProduceRequest {
    pub fn new(topic: impl Into<String>, records: impl IntoIterator<Item = Record>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            records: records.into_iter().collect(),
            expected_next_offset: None,
            producer: None,
            compression: Compression::TopicDefault,
            encoding: Encoding::Agent,
        }
    }

    #[must_use]
    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    #[must_use]
    pub fn with_expected_next_offset(mut self, offset: i64) -> Self {
        self.expected_next_offset = Some(offset);
        self
    }

    #[must_use]
    pub fn with_producer(mut self, producer: ProducerIdentity) -> Self {
        self.producer = Some(producer);
        self
    }

    #[must_use]
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Encodes the records into a batch here instead of on the agent ([`Encoding::Client`]).
    #[must_use]
    pub fn with_client_encoding(mut self) -> Self {
        self.encoding = Encoding::Client;
        self
    }

    /// Checks what the SDK can check without the agent, so an obviously wrong request fails
    /// before it takes a slot in a pipeline.
    pub(crate) fn into_wire(self) -> Result<v1::ProduceRequest, ClientError> {
        if self.partition.is_none() {
            if self.expected_next_offset.is_some() {
                return Err(ClientError::InvalidRequest(format!(
                    "a conditional append to topic {:?} needs a partition",
                    self.topic
                )));
            }
            if self.producer.is_some() {
                return Err(ClientError::InvalidRequest(format!(
                    "an idempotent produce to topic {:?} needs a partition",
                    self.topic
                )));
            }
        }
        if self.encoding == Encoding::Client {
            return self.into_batch_wire();
        }
        Ok(v1::ProduceRequest {
            topic: self.topic,
            partition: self.partition,
            records: self.records.into_iter().map(Into::into).collect(),
            expected_next_offset: self.expected_next_offset,
            producer: self.producer.map(|producer| v1::ProducerIdentity {
                producer_id: producer.producer_id,
                producer_epoch: i32::from(producer.producer_epoch),
                base_sequence: producer.base_sequence,
            }),
            compression: v1::Compression::from(self.compression).into(),
            record_batches: bytes::Bytes::new(),
        })
    }

    /// The request with its records encoded here as one RecordBatch v2.
    fn into_batch_wire(self) -> Result<v1::ProduceRequest, ClientError> {
        let Some(partition) = self.partition else {
            return Err(ClientError::InvalidRequest(format!(
                "a client-encoded produce to topic {:?} needs a partition",
                self.topic
            )));
        };
        if self.records.is_empty() {
            return Err(ClientError::InvalidRequest(format!(
                "a produce to topic {:?} needs at least one record",
                self.topic
            )));
        }
        // The SDK stamps records as a Kafka client does, with this machine's clock; callers
        // that need fixed times set `timestamp_ms`.
        #[allow(clippy::disallowed_methods)]
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            });
        let records: Vec<shale_format::Record> = self
            .records
            .into_iter()
            .map(|record| shale_format::Record {
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|header| shale_format::Header {
                        key: header.key,
                        value: header.value,
                    })
                    .collect(),
                timestamp_ms: record.timestamp_ms.unwrap_or(now_ms),
            })
            .collect();
        let producer = self.producer;
        if let Some(p) = producer
            && (p.producer_id < 0 || p.producer_epoch < 0 || p.base_sequence < 0)
        {
            return Err(ClientError::InvalidRequest(format!(
                "producer id, epoch and base sequence must be non-negative, got {p:?}"
            )));
        }
        let options = shale_format::BatchOptions {
            // The topic's codec, if it fixes one, is applied by the agent.
            compression: match self.compression {
                Compression::TopicDefault | Compression::None => shale_format::Compression::None,
                Compression::Gzip => shale_format::Compression::Gzip,
                Compression::Snappy => shale_format::Compression::Snappy,
                Compression::Lz4 => shale_format::Compression::Lz4,
                Compression::Zstd => shale_format::Compression::Zstd,
            },
            producer_id: producer.map_or(shale_format::NO_PRODUCER_ID, |p| p.producer_id),
            producer_epoch: producer.map_or(shale_format::NO_PRODUCER_EPOCH, |p| p.producer_epoch),
            base_sequence: producer.map_or(shale_format::NO_SEQUENCE, |p| p.base_sequence),
            ..shale_format::BatchOptions::default()
        };
        let batch = shale_format::encode_batch(&records, &options).map_err(|error| {
            ClientError::InvalidRequest(format!(
                "cannot encode the records for topic {:?}: {error}",
                self.topic
            ))
        })?;
        Ok(v1::ProduceRequest {
            topic: self.topic,
            partition: Some(partition),
            records: Vec::new(),
            expected_next_offset: self.expected_next_offset,
            producer: None,
            compression: v1::Compression::Unspecified.into(),
            record_batches: batch,
        })
    }
}

/// Where one partition's share of a produce landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAck {
    pub partition: u32,
    /// Offset of the first record of the request in this partition.
    pub base_offset: i64,
    /// Offset of the last record of the request in this partition.
    pub last_offset: i64,
    pub record_count: u32,
}

/// The acknowledgement of a durable produce: one entry per partition written, in ascending
/// partition order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceAck {
    pub partitions: Vec<PartitionAck>,
}

impl ProduceAck {
    /// Records acknowledged over all partitions.
    pub fn record_count(&self) -> u64 {
        self.partitions
            .iter()
            .map(|ack| u64::from(ack.record_count))
            .sum()
    }
}

impl From<v1::ProduceResponse> for ProduceAck {
    fn from(response: v1::ProduceResponse) -> Self {
        Self {
            partitions: response
                .acks
                .into_iter()
                .map(|ack| PartitionAck {
                    partition: ack.partition,
                    base_offset: ack.base_offset,
                    last_offset: ack.last_offset,
                    record_count: ack.record_count,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_appends_need_a_partition() {
        let error = ProduceRequest::new("t", [Record::new("x")])
            .with_expected_next_offset(3)
            .into_wire()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid request: a conditional append to topic \"t\" needs a partition"
        );
        assert!(error.has_no_side_effects());
    }

    #[test]
    fn requests_convert_to_the_wire() {
        let wire = ProduceRequest::new("t", [Record::new("x"), Record::null()])
            .with_partition(2)
            .with_compression(Compression::Zstd)
            .with_producer(ProducerIdentity {
                producer_id: 5,
                producer_epoch: 1,
                base_sequence: 10,
            })
            .into_wire()
            .unwrap();
        assert_eq!(wire.partition, Some(2));
        assert_eq!(wire.records.len(), 2);
        assert_eq!(wire.compression, v1::Compression::Zstd as i32);
        assert_eq!(wire.producer.unwrap().base_sequence, 10);
    }

    #[test]
    fn acks_count_records_over_partitions() {
        let ack = ProduceAck::from(v1::ProduceResponse {
            acks: vec![
                v1::PartitionAck {
                    partition: 0,
                    base_offset: 0,
                    last_offset: 1,
                    record_count: 2,
                },
                v1::PartitionAck {
                    partition: 1,
                    base_offset: 5,
                    last_offset: 5,
                    record_count: 1,
                },
            ],
        });
        assert_eq!(ack.record_count(), 3);
    }
}
