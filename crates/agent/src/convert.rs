//! Conversions between the wire types of `shale.v1` and the engine's types, validated once
//! at the boundary.

use bytes::Bytes;
use shale_format::{Compression, DecodedRecord, Header, Record};
use shale_log::{
    LogError, PartitionAck, PartitionDescription, ProduceRecords, ProducerIdentity,
    TopicDescription,
};
use shale_meta::AgentRecord;
use shale_proto::v1;

/// A native produce request in one of its two forms.
#[derive(Debug)]
pub(crate) enum Produce {
    /// Records the engine encodes.
    Records(ProduceRecords),
    /// Client-encoded RecordBatch v2 bytes for one partition, stored as they are.
    Batches {
        topic: String,
        partition: u32,
        batches: Bytes,
        expected_next_offset: Option<i64>,
    },
}

/// A native produce request as the engine takes it.
pub(crate) fn produce_request(request: v1::ProduceRequest) -> Result<Produce, LogError> {
    if !request.record_batches.is_empty() {
        return produce_batches(request);
    }
    produce_records(request).map(Produce::Records)
}

fn produce_batches(request: v1::ProduceRequest) -> Result<Produce, LogError> {
    if !request.records.is_empty() {
        return Err(LogError::InvalidRequest(
            "a produce request carries records or record_batches, not both".to_owned(),
        ));
    }
    let Some(partition) = request.partition else {
        return Err(LogError::InvalidRequest(
            "a produce request with record_batches needs a partition".to_owned(),
        ));
    };
    if request.producer.is_some() {
        return Err(LogError::InvalidRequest(
            "a produce request with record_batches takes its producer id, epoch and sequence from the batches; leave producer unset".to_owned(),
        ));
    }
    if compression(request.compression)?.is_some() {
        return Err(LogError::InvalidRequest(
            "a produce request with record_batches takes its codec from the batches; leave compression unspecified".to_owned(),
        ));
    }
    Ok(Produce::Batches {
        topic: request.topic,
        partition,
        batches: request.record_batches,
        expected_next_offset: request.expected_next_offset,
    })
}

fn produce_records(request: v1::ProduceRequest) -> Result<ProduceRecords, LogError> {
    let compression = compression(request.compression)?;
    let records = request
        .records
        .into_iter()
        .map(|record| {
            let timestamp = record.timestamp_ms;
            (
                Record {
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|header| Header {
                            key: header.key,
                            value: header.value,
                        })
                        .collect(),
                    timestamp_ms: 0,
                },
                timestamp,
            )
        })
        .collect();
    Ok(ProduceRecords {
        topic: request.topic,
        partition: request.partition,
        records,
        expected_next_offset: request.expected_next_offset,
        producer: request.producer.map(|producer| ProducerIdentity {
            producer_id: producer.producer_id,
            epoch: i16::try_from(producer.producer_epoch).unwrap_or(-1),
            base_sequence: producer.base_sequence,
        }),
        compression,
        forwarded: false,
    })
}

fn compression(value: i32) -> Result<Option<Compression>, LogError> {
    Ok(match v1::Compression::try_from(value) {
        Ok(v1::Compression::Unspecified) => None,
        Ok(v1::Compression::None) => Some(Compression::None),
        Ok(v1::Compression::Gzip) => Some(Compression::Gzip),
        Ok(v1::Compression::Snappy) => Some(Compression::Snappy),
        Ok(v1::Compression::Lz4) => Some(Compression::Lz4),
        Ok(v1::Compression::Zstd) => Some(Compression::Zstd),
        Err(_) => {
            return Err(LogError::InvalidRequest(format!(
                "unknown compression value {value}"
            )));
        }
    })
}

/// The acks of a produce.
pub(crate) fn produce_response(acks: Vec<PartitionAck>) -> v1::ProduceResponse {
    v1::ProduceResponse {
        acks: acks
            .into_iter()
            .map(|ack| v1::PartitionAck {
                partition: ack.partition,
                base_offset: ack.base_offset,
                last_offset: ack.last_offset,
                record_count: ack.record_count,
            })
            .collect(),
    }
}

/// A stored record on the wire.
pub(crate) fn stored_record(record: DecodedRecord) -> v1::StoredRecord {
    v1::StoredRecord {
        offset: record.offset,
        timestamp_ms: record.record.timestamp_ms,
        key: record.record.key,
        value: record.record.value,
        headers: record
            .record
            .headers
            .into_iter()
            .map(|header| v1::Header {
                key: header.key,
                value: header.value,
            })
            .collect(),
    }
}

/// A topic on the wire.
pub(crate) fn topic_info(topic: TopicDescription) -> v1::TopicInfo {
    v1::TopicInfo {
        name: topic.name,
        topic_id: topic.id.to_string(),
        partitions: topic.partitions,
        configs: topic.configs.into_iter().collect(),
        created_at_ms: topic.created_at_ms,
    }
}

/// A live agent on the wire.
pub(crate) fn agent_info(agent: AgentRecord) -> v1::AgentInfo {
    v1::AgentInfo {
        agent_id: agent.agent_id,
        grpc_addr: agent.grpc_addr,
        http_addr: agent.http_addr,
        zone: agent.zone.unwrap_or_default(),
        version: agent.version,
        started_at_ms: agent.started_at_ms,
    }
}

/// A partition on the wire.
pub(crate) fn partition_info(partition: PartitionDescription) -> v1::PartitionInfo {
    v1::PartitionInfo {
        partition: partition.partition,
        leader: partition.leader.unwrap_or_default(),
        leader_epoch: partition.leader_epoch,
        log_start_offset: partition.log_start,
        high_watermark: partition.high_watermark,
    }
}
