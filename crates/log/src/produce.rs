//! The produce front door: validation, partitioning, batch encoding, then the writer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::{Bytes, BytesMut};
use shale_format::{
    BatchBuilder, BatchOptions, Compression, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    Record, RecordBatch, ValidationOptions, encode_batch,
};
use shale_meta::TopicRecord;
use tokio::sync::OwnedSemaphorePermit;

use crate::forward::{ForwardReceiver, ForwardRequest};
use crate::partitioner::partition_for_key;
use crate::producers::{ProducerBatchId, add_sequence};
use crate::topics::{TopicCompression, topic_compression};
use crate::writer::{AppendAck, AppendReceiver, AppendRequest, PreparedBatch};
use crate::{Log, LogError, WorkSize};

/// Most records one native produce request may carry.
pub const MAX_RECORDS_PER_REQUEST: usize = 100_000;

/// Kafka-style idempotent producer fields of a native request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// A native produce: records that the engine encodes into batches.
#[derive(Debug, Clone, Default)]
pub struct ProduceRecords {
    pub topic: String,
    /// `None`: partition each record by key (Kafka's murmur2), keyless ones together.
    pub partition: Option<u32>,
    /// Records; a timestamp of `None` means "now".
    pub records: Vec<(Record, Option<i64>)>,
    pub expected_next_offset: Option<i64>,
    pub producer: Option<ProducerIdentity>,
    /// `None`: the topic's `compression.type` decides (none when it says `producer`).
    pub compression: Option<Compression>,
    /// The request came from another agent: answer `NOT_LEADER` instead of forwarding it
    /// again (forwarding is one hop).
    pub forwarded: bool,
}

/// Offsets one partition gave to a request's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAck {
    pub partition: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: u32,
}

/// An accepted produce: offsets are assigned; [`ProduceTicket::wait`] resolves when durable.
#[derive(Debug)]
pub struct ProduceTicket {
    parts: Vec<(u32, TicketPart)>,
}

/// One partition's share of an accepted produce.
#[derive(Debug)]
enum TicketPart {
    /// Appended here.
    Local(AppendReceiver),
    /// Passed to the partition's leader. The buffer space it holds bounds what forwarded
    /// requests keep in memory while their leaders answer.
    Forwarded {
        leader: String,
        receiver: ForwardReceiver,
        _space: OwnedSemaphorePermit,
    },
}

impl ProduceTicket {
    /// Waits until every partition's part is durable (or failed). Every part is waited for
    /// even after one failed: when some parts of a request landed (or may have) and others
    /// failed, the request as a whole is [`LogError::OutcomeUnknown`], never a clean refusal
    /// a client would retry into a duplicate.
    pub async fn wait(self) -> Result<Vec<PartitionAck>, LogError> {
        let parts = self.parts.len();
        let mut acks = Vec::with_capacity(parts);
        let mut failures = Vec::new();
        for (partition, part) in self.parts {
            match Self::wait_part(partition, part).await {
                Ok(ack) => acks.push(ack),
                Err(error) => failures.push((partition, error)),
            }
        }
        let Some((partition, first)) = failures.first() else {
            return Ok(acks);
        };
        let unknown = failures
            .iter()
            .any(|(_, error)| matches!(error, LogError::OutcomeUnknown(_)));
        if parts > 1 && (!acks.is_empty() || unknown) {
            return Err(LogError::outcome_unknown(*partition, first));
        }
        Err(first.clone())
    }

    async fn wait_part(partition: u32, part: TicketPart) -> Result<PartitionAck, LogError> {
        {
            let ack = match part {
                TicketPart::Local(receiver) => {
                    let AppendAck {
                        base_offset,
                        last_offset,
                        record_count,
                    } = receiver.await.map_err(|_| {
                        // The append was dropped without an answer (its flush task died, or
                        // the engine stopped mid-commit): its commit may have landed.
                        LogError::OutcomeUnknown(format!(
                            "partition {partition}: the agent stopped tracking this write before it was answered"
                        ))
                    })??;
                    PartitionAck {
                        partition,
                        base_offset,
                        last_offset,
                        record_count,
                    }
                }
                TicketPart::Forwarded {
                    leader, receiver, ..
                } => receiver.await.map_err(|_| {
                    LogError::OutcomeUnknown(format!(
                        "partition {partition}: the request was forwarded to its leader, agent {leader:?}, and its answer was lost"
                    ))
                })??,
            };
            Ok(ack)
        }
    }
}

/// Round-robin position for keyless records, per engine.
#[derive(Debug, Default)]
pub(crate) struct KeylessCursor(AtomicU32);

impl Log {
    /// Accepts native records: validates, partitions, encodes and appends them. Offsets are
    /// assigned before this returns; the ticket resolves once the records are durable.
    ///
    /// A request that spans several partitions (keyed records without an explicit
    /// partition) is atomic per partition, not across them: validation and leadership are
    /// checked for all first, but an append can still fail after others were made (say,
    /// the buffer stays full). Retry such requests with keys that map to one partition, or
    /// give each partition its own request.
    pub async fn produce(&self, request: ProduceRecords) -> Result<ProduceTicket, LogError> {
        let topic = self.topic(&request.topic).await?;
        let compression = check_request(&topic, &request)?;
        let now_ms = self.inner.clock.now_ms();
        let keyless_partition = request.partition.unwrap_or_else(|| {
            self.inner.keyless.0.fetch_add(1, Ordering::Relaxed) % topic.partitions
        });
        let expected_next_offset = request.expected_next_offset;
        let forwarded = request.forwarded;
        // Everything that can refuse the request is checked before anything is appended:
        // encoding (sizes), and leadership of every partition it touches. Encoding
        // (compression, CRC) is CPU work: it runs off the async workers, so lease
        // keep-alives and other requests never wait behind it.
        let encode_topic = Arc::clone(&topic);
        let payload: usize = request
            .records
            .iter()
            .map(|(record, _)| record_payload(record))
            .sum();
        let size = WorkSize::of(payload, compression != Compression::None);
        // Compressing is not decompressing: no decode slot, but never inline.
        let size = if size == WorkSize::Decompresses {
            WorkSize::Large
        } else {
            size
        };
        let encoded = self
            .run_blocking("encoding", size, move || {
                encode_request(
                    &encode_topic,
                    request,
                    compression,
                    keyless_partition,
                    now_ms,
                )
            })
            .await?;
        let may_forward = !forwarded && self.inner.forwarder.is_some();
        if encoded.len() > 1 {
            let partitions: Vec<u32> = encoded.iter().map(|(partition, _)| *partition).collect();
            self.check_leaders(&topic, &partitions, may_forward).await?;
        }
        let mut parts = Vec::with_capacity(encoded.len());
        for (partition, batches) in encoded {
            let appended = self
                .append(
                    AppendRequest {
                        key: (topic.id, partition),
                        topic: Arc::clone(&topic),
                        partition,
                        batches,
                        expected_next_offset,
                    },
                    may_forward,
                )
                .await;
            match appended {
                Ok(part) => parts.push((partition, part)),
                // Earlier partitions of the request are appended and will commit: the
                // request as a whole is neither refused nor applied.
                Err(error) if !parts.is_empty() => {
                    return Err(LogError::outcome_unknown(partition, &error));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(ProduceTicket { parts })
    }

    /// Before a request for several partitions appends anything: every partition must have a
    /// leader (this agent, or, when forwarding, another one; waited for up to
    /// `leader_wait`), so a request is not left half-appended because one partition is
    /// between leaders.
    async fn check_leaders(
        &self,
        topic: &TopicRecord,
        partitions: &[u32],
        may_forward: bool,
    ) -> Result<(), LogError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.leader_wait;
        let mut changes = self.inner.view.leader_changes();
        loop {
            let mut missing = None;
            for partition in partitions {
                let key = (topic.id, *partition);
                if self.inner.writer.leads(key) {
                    continue;
                }
                match self.inner.leader_elsewhere(key) {
                    Some(leader) if !may_forward => {
                        return Err(LogError::NotLeader {
                            topic: topic.name.clone(),
                            partition: *partition,
                            leader: Some(leader),
                        });
                    }
                    Some(_) => {}
                    None => {
                        missing = Some(*partition);
                        break;
                    }
                }
            }
            let Some(partition) = missing else {
                return Ok(());
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(LogError::NotLeader {
                    topic: topic.name.clone(),
                    partition,
                    leader: None,
                });
            }
            // Our own claims show in the writer before the view: poll as well.
            let wait = (deadline - now).min(std::time::Duration::from_millis(50));
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }

    /// Accepts Kafka RecordBatch v2 bytes (one or more concatenated batches) for one
    /// partition, as a Kafka produce request or a native `record_batches` request carries
    /// them. Each batch is verified (CRC, layout, record count) and checked against the
    /// topic's `max.message.bytes`; with a topic compression other than `producer`, batches
    /// in another codec are recompressed. Otherwise the bytes are stored as they came.
    ///
    /// With `expected_next_offset`, the append is conditional, as for [`Log::produce`].
    /// Idempotence comes from the batches' own producer fields.
    pub async fn produce_batches(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        expected_next_offset: Option<i64>,
    ) -> Result<ProduceTicket, LogError> {
        let may_forward = self.inner.forwarder.is_some();
        self.produce_batches_from(topic, partition, records, expected_next_offset, may_forward)
            .await
    }

    /// [`Log::produce_batches`] for a request another agent forwarded here: it is appended
    /// if this agent leads the partition and refused with `NOT_LEADER` otherwise, never
    /// forwarded again.
    pub async fn produce_forwarded_batches(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        expected_next_offset: Option<i64>,
    ) -> Result<ProduceTicket, LogError> {
        self.produce_batches_from(topic, partition, records, expected_next_offset, false)
            .await
    }

    async fn produce_batches_from(
        &self,
        topic: &str,
        partition: u32,
        records: Bytes,
        expected_next_offset: Option<i64>,
        may_forward: bool,
    ) -> Result<ProduceTicket, LogError> {
        let topic = self.topic(topic).await?;
        Self::check_partition(&topic, partition)?;
        // CRC checks and any recompression are CPU work: off the async workers, and a
        // compressed batch first waits for a decode slot (its records section may inflate).
        let prepare_topic = Arc::clone(&topic);
        let batches = self
            .run_blocking(
                "batch check",
                batch_check_work(&topic, &records),
                move || prepare_client_batches(&prepare_topic, records),
            )
            .await?;
        let part = self
            .append(
                AppendRequest {
                    key: (topic.id, partition),
                    topic: Arc::clone(&topic),
                    partition,
                    batches,
                    expected_next_offset,
                },
                may_forward,
            )
            .await?;
        Ok(ProduceTicket {
            parts: vec![(partition, part)],
        })
    }

    /// Appends here, or, when another agent leads the partition and `may_forward`, passes
    /// the batches to that agent.
    async fn append(
        &self,
        request: AppendRequest,
        may_forward: bool,
    ) -> Result<TicketPart, LogError> {
        let key = request.key;
        let forwarder = self.inner.forwarder.as_ref().filter(|_| may_forward);
        let Some(forwarder) = forwarder else {
            let inner = Arc::clone(&self.inner);
            return self
                .inner
                .writer
                .append(
                    request,
                    move || inner.leader_elsewhere(key),
                    self.inner.view.leader_changes(),
                )
                .await
                .map(TicketPart::Local);
        };
        if let Some(leader) = self.inner.leader_elsewhere(key) {
            return self.forward(forwarder.as_ref(), leader, request).await;
        }
        // The batches are reference-counted slices: keeping them for a forward costs a few
        // words each.
        let kept = AppendRequest {
            key,
            topic: Arc::clone(&request.topic),
            partition: request.partition,
            batches: request.batches.iter().map(PreparedBatch::share).collect(),
            expected_next_offset: request.expected_next_offset,
        };
        let inner = Arc::clone(&self.inner);
        match self
            .inner
            .writer
            .append(
                request,
                move || inner.leader_elsewhere(key),
                self.inner.view.leader_changes(),
            )
            .await
        {
            Ok(receiver) => Ok(TicketPart::Local(receiver)),
            // Someone else claimed the partition while this append waited for it.
            Err(LogError::NotLeader {
                leader: Some(leader),
                ..
            }) => self.forward(forwarder.as_ref(), leader, kept).await,
            Err(error) => Err(error),
        }
    }

    /// Passes one partition's batches to `leader`, holding buffer space for them until the
    /// leader answers.
    async fn forward(
        &self,
        forwarder: &dyn crate::Forwarder,
        leader: String,
        request: AppendRequest,
    ) -> Result<TicketPart, LogError> {
        let not_leader = || LogError::NotLeader {
            topic: request.topic.name.clone(),
            partition: request.partition,
            leader: Some(leader.clone()),
        };
        let Some(leader_addr) = self.inner.view.agent_grpc_addr(&leader) else {
            // The leader's registration is gone (it is failing over): the client retries.
            return Err(not_leader());
        };
        let bytes: usize = request.batches.iter().map(|batch| batch.bytes.len()).sum();
        let space = self.inner.writer.reserve_bytes(bytes).await?;
        let record_batches = if let [one] = request.batches.as_slice() {
            one.bytes.clone()
        } else {
            let mut joined = BytesMut::with_capacity(bytes);
            for batch in &request.batches {
                joined.extend_from_slice(&batch.bytes);
            }
            joined.freeze()
        };
        let receiver = forwarder
            .forward(ForwardRequest {
                leader: leader.clone(),
                leader_addr,
                topic: request.topic.name.clone(),
                partition: request.partition,
                record_batches,
                expected_next_offset: request.expected_next_offset,
            })
            .await?;
        Ok(TicketPart::Forwarded {
            leader,
            receiver,
            _space: space,
        })
    }
}

/// Bytes of a record's key, value and headers, plus a fixed amount per record and header:
/// what encoding it costs, roughly.
fn record_payload(record: &Record) -> usize {
    PER_ITEM_WORK_BYTES * (1 + record.headers.len())
        + record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + record
            .headers
            .iter()
            .map(|header| header.key.len() + header.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}

/// How checking client batches for `topic` runs: recompressing into the topic's codec is
/// never small work, and decompressing needs a decode slot.
fn batch_check_work(topic: &TopicRecord, records: &Bytes) -> WorkSize {
    match (batch_work(records), topic_compression(&topic.config)) {
        (WorkSize::Small, TopicCompression::Codec(codec)) if codec != Compression::None => {
            WorkSize::Large
        }
        (size, _) => size,
    }
}

/// The checks of a record-form produce that need nothing but the topic; returns the codec
/// its batches get.
pub(crate) fn check_request(
    topic: &TopicRecord,
    request: &ProduceRecords,
) -> Result<Compression, LogError> {
    if request.records.is_empty() {
        return Err(LogError::InvalidRequest(
            "a produce request needs at least one record".to_owned(),
        ));
    }
    if request.records.len() > MAX_RECORDS_PER_REQUEST {
        return Err(LogError::InvalidRequest(format!(
            "a produce request may carry at most {MAX_RECORDS_PER_REQUEST} records, got {}",
            request.records.len()
        )));
    }
    if request.partition.is_none()
        && (request.expected_next_offset.is_some() || request.producer.is_some())
    {
        return Err(LogError::InvalidRequest(
            "expected_next_offset and producer fields need an explicit partition".to_owned(),
        ));
    }
    if let Some(partition) = request.partition {
        Log::check_partition(topic, partition)?;
    }
    if let Some(producer) = request.producer
        && (producer.producer_id < 0 || producer.epoch < 0 || producer.base_sequence < 0)
    {
        return Err(LogError::InvalidRequest(format!(
            "producer id, epoch and base sequence must be non-negative, got {producer:?}"
        )));
    }
    Ok(
        match (request.compression, topic_compression(&topic.config)) {
            (_, TopicCompression::Codec(codec)) | (Some(codec), TopicCompression::Producer) => {
                codec
            }
            (None, TopicCompression::Producer) => Compression::None,
        },
    )
}

/// Partitions a checked request's records (stamping those without a timestamp with
/// `now_ms`) and encodes each partition's share into batches.
pub(crate) fn encode_request(
    topic: &TopicRecord,
    request: ProduceRecords,
    compression: Compression,
    keyless_partition: u32,
    now_ms: i64,
) -> Result<Vec<(u32, Vec<PreparedBatch>)>, LogError> {
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for (mut record, timestamp) in request.records {
        record.timestamp_ms = timestamp.unwrap_or(now_ms);
        let partition = match (request.partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, topic.partitions),
            (None, None) => keyless_partition,
        };
        by_partition.entry(partition).or_default().push(record);
    }
    by_partition
        .into_iter()
        .map(|(partition, records)| {
            encode_records(topic, &records, compression, request.producer)
                .map(|batches| (partition, batches))
        })
        .collect()
}

/// Encodes records into batches no larger than the topic's `max.message.bytes`, each record
/// encoded once: records fill a batch until the next would take it over the limit
/// uncompressed. A compressed batch is almost always smaller than that; the rare one that
/// is not (incompressible data near the limit) is split in halves and encoded again.
fn encode_records(
    topic: &TopicRecord,
    records: &[Record],
    compression: Compression,
    producer: Option<ProducerIdentity>,
) -> Result<Vec<PreparedBatch>, LogError> {
    let limit = u64::from(topic.config.max_message_bytes);
    let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut groups: Vec<&[Record]> = Vec::new();
    let mut start = 0;
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for (index, record) in records.iter().enumerate() {
        if !builder
            .try_push(record, limit_bytes)
            .map_err(encode_error)?
        {
            groups.push(&records[start..index]);
            start = index;
            builder = BatchBuilder::new(BatchOptions::default());
            builder
                .try_push(record, limit_bytes)
                .map_err(encode_error)?;
        }
    }
    if start < records.len() {
        groups.push(&records[start..]);
    }
    let mut out = Vec::new();
    let mut sequence = producer.map(|p| p.base_sequence);
    // A stack in reverse, so halves of an oversized group keep record order.
    let mut pending: Vec<&[Record]> = groups.into_iter().rev().collect();
    while let Some(slice) = pending.pop() {
        let options = BatchOptions {
            compression,
            producer_id: producer.map_or(NO_PRODUCER_ID, |p| p.producer_id),
            producer_epoch: producer.map_or(NO_PRODUCER_EPOCH, |p| p.epoch),
            base_sequence: sequence.unwrap_or(NO_SEQUENCE),
            ..BatchOptions::default()
        };
        let bytes = encode_batch(slice, &options).map_err(encode_error)?;
        if bytes.len() as u64 > limit {
            if slice.len() == 1 {
                return Err(LogError::MessageTooLarge {
                    topic: topic.name.clone(),
                    size: bytes.len() as u64,
                    limit,
                });
            }
            let (first, second) = slice.split_at(slice.len() / 2);
            pending.push(second);
            pending.push(first);
            continue;
        }
        let record_count = slice.len() as u32;
        let producer_batch = producer.map(|p| {
            ProducerBatchId::new(
                p.producer_id,
                p.epoch,
                options.base_sequence,
                record_count as i32,
            )
        });
        if let Some(seq) = sequence.as_mut() {
            *seq = add_sequence(*seq, record_count as i32);
        }
        out.push(PreparedBatch {
            bytes,
            record_count,
            producer: producer_batch,
        });
    }
    Ok(out)
}

#[allow(clippy::needless_pass_by_value)] // used as a map_err function
fn encode_error(error: shale_format::BatchError) -> LogError {
    LogError::InvalidRequest(format!("cannot encode records: {error}"))
}

/// Most bytes the batches of one client request may decompress to in all. Each batch may
/// inflate to [`client_batch_decompression_limit`]; without a total, a 64 MiB request of
/// small zstd batches could make the agent inflate terabytes.
pub const MAX_DECOMPRESSED_BYTES_PER_REQUEST: usize = 128 << 20;

/// What one client batch's records section may decompress to: the topic's
/// `max.message.bytes` or 32 MiB, whichever is larger, and never more than the format's
/// 64 MiB. The agent's own batches never hold more than `max.message.bytes` uncompressed;
/// client batches get room for real compression ratios, but not for a record so large that
/// a record-form fetch answer could not carry it.
pub fn client_batch_decompression_limit(topic: &TopicRecord) -> usize {
    usize::try_from(topic.config.max_message_bytes)
        .unwrap_or(usize::MAX)
        .clamp(32 << 20, shale_format::DEFAULT_MAX_DECOMPRESSED_BYTES)
}

/// Verifies client-encoded batches and prepares them for the writer.
///
/// The headers are read first, cheaply, so that nothing is walked or decompressed for a
/// request that is refused on them: at most [`MAX_RECORDS_PER_REQUEST`] records in all, and
/// one producer per request — every batch with the same producer id and epoch and sequences
/// that continue from batch to batch, or every batch without a producer. (The writer keeps
/// one span of sequences per request, and bounds the producers one commit writes by the
/// requests' producers; a request mixing producers would corrupt both.)
pub(crate) fn prepare_client_batches(
    topic: &TopicRecord,
    records: Bytes,
) -> Result<Vec<PreparedBatch>, LogError> {
    if records.is_empty() {
        return Err(LogError::InvalidRequest(
            "the produce request holds no record batch".to_owned(),
        ));
    }
    let mut batches = Vec::new();
    let mut total_records = 0usize;
    for batch in shale_format::BatchIter::new(records) {
        let batch = batch.map_err(|error| LogError::InvalidBatch(error.to_string()))?;
        // Non-negative: the header parser refuses negative counts.
        total_records += usize::try_from(batch.record_count()).unwrap_or(usize::MAX);
        if total_records > MAX_RECORDS_PER_REQUEST {
            return Err(LogError::InvalidRequest(format!(
                "a produce request may carry at most {MAX_RECORDS_PER_REQUEST} records, its batches hold more"
            )));
        }
        if let Some(previous) = batches.last() {
            check_same_producer(previous, &batch)?;
        }
        batches.push(batch);
    }
    let limit = u64::from(topic.config.max_message_bytes);
    let target = match topic_compression(&topic.config) {
        TopicCompression::Producer => None,
        TopicCompression::Codec(codec) => Some(codec),
    };
    let options = ValidationOptions {
        max_decompressed_bytes: client_batch_decompression_limit(topic),
        ..ValidationOptions::default()
    };
    let mut decompressed = 0usize;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let summary = batch
            .validate(&options)
            .map_err(|error| LogError::InvalidBatch(error.to_string()))?;
        if batch.compression() != Compression::None {
            decompressed = decompressed.saturating_add(summary.uncompressed_records_len);
            if decompressed > MAX_DECOMPRESSED_BYTES_PER_REQUEST {
                return Err(LogError::InvalidRequest(format!(
                    "the batches of a produce request may decompress to at most {MAX_DECOMPRESSED_BYTES_PER_REQUEST} bytes in all"
                )));
            }
        }
        let header = *batch.header();
        let producer = (header.producer_id() >= 0).then(|| {
            ProducerBatchId::new(
                header.producer_id(),
                header.producer_epoch(),
                header.base_sequence(),
                summary.record_count,
            )
        });
        let bytes = match target {
            Some(codec) if codec != header.compression() => recompress(&batch, codec)?,
            // The index's timestamp ranges (and so lookups by time) come from the header: a
            // client's wrong maxTimestamp is corrected, as Kafka does.
            _ if summary.max_timestamp != header.max_timestamp() => {
                let mut bytes = BytesMut::from(batch.as_bytes().as_ref());
                shale_format::set_max_timestamp(
                    &mut bytes,
                    header.timestamp_type(),
                    summary.max_timestamp,
                )
                .map_err(|error| LogError::InvalidBatch(error.to_string()))?;
                bytes.freeze()
            }
            // As sent: a slice of the request, not a copy.
            _ => batch.as_bytes().clone(),
        };
        if bytes.len() as u64 > limit {
            return Err(LogError::MessageTooLarge {
                topic: topic.name.clone(),
                size: bytes.len() as u64,
                limit,
            });
        }
        out.push(PreparedBatch {
            bytes,
            record_count: summary.record_count as u32,
            producer,
        });
    }
    Ok(out)
}

/// Refuses `next` unless it continues `previous`'s producer: the same producer id and epoch
/// (or no producer for both) and, when idempotent, the sequence after `previous`'s last.
fn check_same_producer(previous: &RecordBatch, next: &RecordBatch) -> Result<(), LogError> {
    let (a, b) = (previous.header(), next.header());
    let idempotent = a.producer_id() >= 0;
    if idempotent != (b.producer_id() >= 0)
        || (idempotent
            && (a.producer_id() != b.producer_id() || a.producer_epoch() != b.producer_epoch()))
    {
        return Err(LogError::InvalidRequest(format!(
            "the batches of one produce request must come from one producer, got producer {} epoch {} then producer {} epoch {}",
            a.producer_id(),
            a.producer_epoch(),
            b.producer_id(),
            b.producer_epoch()
        )));
    }
    let expected = add_sequence(a.base_sequence(), a.record_count());
    if idempotent && b.base_sequence() != expected {
        return Err(LogError::InvalidRequest(format!(
            "the batches of one produce request must have consecutive sequences: producer {} expected {expected}, got {}",
            b.producer_id(),
            b.base_sequence()
        )));
    }
    Ok(())
}

/// Whether any batch in `records` is compressed, and how many records they hold, read from
/// their headers alone (batches that do not parse are refused later, by the full check).
pub(crate) fn batch_stats(records: &Bytes) -> (bool, usize) {
    shale_format::BatchIter::new(records.clone())
        .map_while(Result::ok)
        .fold((false, 0), |(compressed, count), batch| {
            (
                compressed || batch.compression() != Compression::None,
                count + usize::try_from(batch.record_count()).unwrap_or(0),
            )
        })
}

/// What walking or decoding `records` costs, as bytes: the bytes themselves plus a fixed
/// amount per record, so a chunk dense with tiny records is not mistaken for small work.
pub(crate) fn batch_work(records: &Bytes) -> WorkSize {
    let (compressed, count) = batch_stats(records);
    WorkSize::of(
        records
            .len()
            .saturating_add(count.saturating_mul(PER_ITEM_WORK_BYTES)),
        compressed,
    )
}

/// Bytes one record or header counts for in a work estimate, besides its payload.
pub(crate) const PER_ITEM_WORK_BYTES: usize = 32;

/// Re-encodes a batch with another codec, keeping every header field the producer set.
fn recompress(batch: &RecordBatch, codec: Compression) -> Result<Bytes, LogError> {
    let header = batch.header();
    let records: Vec<Record> = batch
        .records()
        .map_err(|error| LogError::InvalidBatch(error.to_string()))?
        .into_iter()
        .map(|decoded| decoded.record)
        .collect();
    let options = BatchOptions {
        compression: codec,
        timestamp_type: header.timestamp_type(),
        transactional: header.is_transactional(),
        control: header.is_control(),
        producer_id: header.producer_id(),
        producer_epoch: header.producer_epoch(),
        base_sequence: header.base_sequence(),
        base_offset: 0,
        partition_leader_epoch: header.partition_leader_epoch(),
    };
    encode_batch(&records, &options)
        .map_err(|error| LogError::InvalidBatch(format!("cannot recompress batch: {error}")))
}

#[cfg(test)]
mod ticket_tests {
    use tokio::sync::oneshot;

    use super::*;

    fn part(result: Result<AppendAck, LogError>) -> TicketPart {
        let (sender, receiver) = oneshot::channel();
        sender.send(result).unwrap();
        TicketPart::Local(receiver)
    }

    fn landed() -> AppendAck {
        AppendAck {
            base_offset: 0,
            last_offset: 0,
            record_count: 1,
        }
    }

    fn refused() -> Result<AppendAck, LogError> {
        Err(LogError::NotLeader {
            topic: "t".into(),
            partition: 1,
            leader: Some("other".into()),
        })
    }

    /// Found in review: a request whose first partition committed and whose second was
    /// refused answered with the refusal, which a client retries into a duplicate.
    #[tokio::test]
    async fn a_request_partly_written_is_outcome_unknown_never_a_clean_refusal() {
        let ticket = ProduceTicket {
            parts: vec![(0, part(Ok(landed()))), (1, part(refused()))],
        };
        let error = ticket.wait().await.unwrap_err();
        assert!(matches!(error, LogError::OutcomeUnknown(_)), "{error}");
        // Refused everywhere: a clean refusal, safe to retry.
        let ticket = ProduceTicket {
            parts: vec![(0, part(refused())), (1, part(refused()))],
        };
        let error = ticket.wait().await.unwrap_err();
        assert!(matches!(error, LogError::NotLeader { .. }), "{error}");
        let ticket = ProduceTicket {
            parts: vec![(0, part(Ok(landed()))), (1, part(Ok(landed())))],
        };
        assert_eq!(ticket.wait().await.unwrap().len(), 2);
    }
}
