//! `shale.v1.LogService`: produce, fetch, list offsets.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use shale_log::{DEFAULT_FETCH_MAX_BYTES, FetchRequest, Log, OffsetSpec};
use shale_proto::v1;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info_span};

use crate::budget::RequestBudget;
use crate::convert;
use crate::metrics::{DataMetrics, record_bytes};
use crate::status::{code_for, leader_hint, to_status, to_status_in};

/// Requests of one produce stream appended but not yet acknowledged.
const MAX_IN_FLIGHT_PER_STREAM: usize = 1024;
/// Longest wait of one fetch at the high watermark.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// How long a fetch stream waits per poll before checking the client is still there.
const STREAM_POLL_WAIT: Duration = Duration::from_secs(5);
/// Largest answer of one `FetchStream` message: a stream keeps at most one answer queued and
/// one being sent, so a slow reader holds about twice this.
const STREAM_MAX_BYTES: usize = 1 << 20;
/// `FetchStream`s open at once on this agent; more are refused with `RESOURCE_EXHAUSTED`.
/// With [`STREAM_MAX_BYTES`], slow readers hold at most about 512 MiB in all.
pub(crate) const MAX_FETCH_STREAMS: usize = 256;

/// The produce/fetch service.
#[derive(Debug, Clone)]
pub(crate) struct LogService {
    log: Log,
    metrics: DataMetrics,
    budget: RequestBudget,
    fetch_streams: Arc<Semaphore>,
    /// Cancelled when the agent stops: streams end at their next message, so the listener
    /// drains instead of waiting for clients to hang up.
    shutdown: CancellationToken,
}

impl LogService {
    pub(crate) fn new(
        log: Log,
        metrics: DataMetrics,
        budget: RequestBudget,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            log,
            metrics,
            budget,
            fetch_streams: Arc::new(Semaphore::new(MAX_FETCH_STREAMS)),
            shutdown,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl v1::log_service_server::LogService for LogService {
    async fn produce(
        &self,
        request: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        let forwarded = forwarded_by(&request);
        let request = request.into_inner();
        let span =
            info_span!("agent.produce", topic = %request.topic, records = request.records.len());
        async {
            let (records, bytes) = produce_size(&request);
            let admitted = self
                .budget
                .admit(prost::Message::encoded_len(&request))
                .await
                .map_err(|e| to_status(&e))?;
            let request = convert::produce_request(request).map_err(|e| to_status(&e))?;
            let ticket = append(&self.log, request, forwarded)
                .await
                .map_err(|e| to_status_in(&self.log, &e))?;
            // Appended: the writer's buffer counts these bytes from here on.
            drop(admitted);
            let acks = ticket
                .wait()
                .await
                .map_err(|e| to_status_in(&self.log, &e))?;
            self.metrics.produced(acked_records(&acks, records), bytes);
            Ok(Response::new(convert::produce_response(acks)))
        }
        .instrument(span)
        .await
    }

    type ProduceStreamStream = BoxStream<v1::ProduceStreamResponse>;

    async fn produce_stream(
        &self,
        request: Request<Streaming<v1::ProduceStreamRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let forwarded = forwarded_by(&request);
        let mut inbound = request.into_inner();
        let log = self.log.clone();
        let metrics = self.metrics.clone();
        let budget = self.budget.clone();
        let shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(256);
        let span = info_span!("agent.produce_stream");
        // Two stages, so acks keep flowing while an append waits (for buffer space or for
        // leadership): the appender takes requests in order and appends each before reading
        // the next (offsets follow request order); the responder awaits their acks in that
        // same order. The channel between them bounds what is in flight.
        let (appended_tx, mut appended_rx) = mpsc::channel(MAX_IN_FLIGHT_PER_STREAM);
        tokio::spawn(
            async move {
                loop {
                    let next = tokio::select! {
                        next = inbound.message() => next,
                        // The agent stops: answer what was appended, then end the stream.
                        () = shutdown.cancelled() => return,
                    };
                    match next {
                        Ok(Some(message)) => {
                            let pending =
                                start_produce(&log, &metrics, &budget, message, forwarded).await;
                            if appended_tx.send(Ok(pending)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        // After the acks of everything appended before it.
                        Err(status) => {
                            let _ = appended_tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
            }
            .instrument(span.clone()),
        );
        tokio::spawn(
            async move {
                while let Some(next) = appended_rx.recv().await {
                    let response = match next {
                        Ok(pending) => Ok(pending.await),
                        Err(status) => Err(status),
                    };
                    let last = response.is_err();
                    if tx.send(response).await.is_err() || last {
                        return;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        let request = request.into_inner();
        let span = info_span!("agent.fetch", topic = %request.topic, partition = request.partition, offset = request.offset);
        async {
            let max_records = request.max_records as usize;
            let batches = AnswerForm::of(request.record_batches, request.record_batch_pieces);
            let fetch = fetch_request(
                request.topic,
                request.partition,
                request.offset,
                request.max_bytes,
                Duration::from_millis(u64::from(request.max_wait_ms)).min(MAX_FETCH_WAIT),
            );
            fetch_once(&self.log, &self.metrics, &fetch, max_records, batches)
                .await
                .map(Response::new)
        }
        .instrument(span)
        .await
    }

    type FetchStreamStream = BoxStream<v1::FetchResponse>;

    async fn fetch_stream(
        &self,
        request: Request<v1::FetchStreamRequest>,
    ) -> Result<Response<Self::FetchStreamStream>, Status> {
        let request = request.into_inner();
        let log = self.log.clone();
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        let Ok(slot) = Arc::clone(&self.fetch_streams).try_acquire_owned() else {
            return Err(Status::resource_exhausted(format!(
                "this agent already serves {MAX_FETCH_STREAMS} fetch streams; retry later or use another agent"
            )));
        };
        // One answer queued: a reader that does not keep up holds back the fetching task
        // instead of piling up answers.
        let (tx, rx) = mpsc::channel(1);
        let span =
            info_span!("agent.fetch_stream", topic = %request.topic, partition = request.partition);
        let batches = AnswerForm::of(request.record_batches, request.record_batch_pieces);
        // Fail fast on a bad topic or offset, before the stream starts.
        let mut fetch = fetch_request(
            request.topic,
            request.partition,
            request.offset,
            request.max_bytes,
            STREAM_POLL_WAIT,
        );
        fetch.max_bytes = fetch.max_bytes.min(STREAM_MAX_BYTES);
        let first = fetch_once(
            &log,
            &metrics,
            &FetchRequest {
                max_wait: Duration::ZERO,
                ..fetch.clone()
            },
            0,
            batches,
        )
        .await?;
        tokio::spawn(
            async move {
                // The stream's slot is free again when this task ends.
                let _slot = slot;
                let mut next = first;
                loop {
                    fetch.offset = next.next_offset;
                    let empty = next.records.is_empty()
                        && next.record_batches.is_empty()
                        && next.record_batch_pieces.is_empty();
                    if !empty && tx.send(Ok(next)).await.is_err() {
                        return;
                    }
                    if tx.is_closed() || shutdown.is_cancelled() {
                        return;
                    }
                    let fetched = tokio::select! {
                        fetched = fetch_once(&log, &metrics, &fetch, 0, batches) => fetched,
                        () = shutdown.cancelled() => return,
                    };
                    next = match fetched {
                        Ok(response) => response,
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    };
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_offsets(
        &self,
        request: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        let request = request.into_inner();
        let span = info_span!("agent.list_offsets", topic = %request.topic);
        async {
            let spec = match request.spec {
                Some(v1::list_offsets_request::Spec::Earliest(_)) => OffsetSpec::Earliest,
                Some(v1::list_offsets_request::Spec::Latest(_)) => OffsetSpec::Latest,
                Some(v1::list_offsets_request::Spec::TimestampMs(ts)) => OffsetSpec::Timestamp(ts),
                None => {
                    return Err(Status::invalid_argument(
                        "list offsets needs a spec: earliest, latest or timestamp_ms",
                    ));
                }
            };
            let partitions = if request.partitions.is_empty() {
                let (topic, _) = self
                    .log
                    .describe_topic(&request.topic)
                    .await
                    .map_err(|e| to_status(&e))?;
                (0..topic.partitions).collect()
            } else {
                // Each partition once: a lookup by timestamp reads stored data, and a request
                // naming one partition 10,000 times must not read it 10,000 times.
                let mut seen = std::collections::BTreeSet::new();
                if let Some(twice) = request.partitions.iter().find(|p| !seen.insert(**p)) {
                    return Err(Status::invalid_argument(format!(
                        "partition {twice} is listed more than once"
                    )));
                }
                request.partitions
            };
            let mut offsets = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let resolved = self
                    .log
                    .list_offset(&request.topic, partition, spec)
                    .await
                    .map_err(|e| to_status(&e))?;
                offsets.push(v1::PartitionOffset {
                    partition,
                    offset: resolved.map(|r| r.offset),
                    timestamp_ms: resolved.and_then(|r| r.timestamp_ms),
                });
            }
            Ok(Response::new(v1::ListOffsetsResponse { offsets }))
        }
        .instrument(span)
        .await
    }
}

fn fetch_request(
    topic: String,
    partition: u32,
    offset: i64,
    max_bytes: u32,
    max_wait: Duration,
) -> FetchRequest {
    FetchRequest {
        topic,
        partition,
        offset,
        max_bytes: if max_bytes == 0 {
            DEFAULT_FETCH_MAX_BYTES
        } else {
            max_bytes as usize
        },
        max_wait,
    }
}

/// How a fetch answer carries its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerForm {
    /// Decoded, one `StoredRecord` each.
    Records,
    /// Stored batches, joined into `record_batches` (what SDKs before pieces read).
    Batches,
    /// Stored batches as slices of cache blocks, in `record_batch_pieces`.
    Pieces,
}

impl AnswerForm {
    fn of(record_batches: bool, pieces: bool) -> Self {
        match (record_batches, pieces) {
            (false, _) => Self::Records,
            (true, false) => Self::Batches,
            (true, true) => Self::Pieces,
        }
    }
}

async fn fetch_once(
    log: &Log,
    metrics: &DataMetrics,
    fetch: &FetchRequest,
    max_records: usize,
    form: AnswerForm,
) -> Result<v1::FetchResponse, Status> {
    if form != AnswerForm::Records {
        let fetched = log
            .fetch_bytes(fetch, max_records)
            .await
            .map_err(|e| to_status(&e))?;
        metrics.fetched(fetched.record_count, fetched.len() as u64);
        let (record_batches, record_batch_pieces) = if form == AnswerForm::Pieces {
            (bytes::Bytes::new(), fetched.parts)
        } else {
            (
                shale_format::Pieces::new(fetched.parts).to_bytes(),
                Vec::new(),
            )
        };
        return Ok(v1::FetchResponse {
            partition: fetch.partition,
            records: Vec::new(),
            record_batches,
            record_batch_pieces,
            high_watermark: fetched.high_watermark,
            log_start_offset: fetched.log_start,
            next_offset: fetched.next_offset,
        });
    }
    let fetched = log
        .fetch_records(fetch, max_records)
        .await
        .map_err(|e| to_status(&e))?;
    let records: Vec<v1::StoredRecord> = fetched
        .records
        .into_iter()
        .map(convert::stored_record)
        .collect();
    let bytes = records
        .iter()
        .map(|record| {
            record_bytes(
                record.key.as_deref(),
                record.value.as_deref(),
                record
                    .headers
                    .iter()
                    .map(|header| (header.key.as_str(), header.value.as_deref())),
            )
        })
        .sum();
    metrics.fetched(records.len() as u64, bytes);
    Ok(v1::FetchResponse {
        partition: fetch.partition,
        records,
        record_batches: bytes::Bytes::new(),
        record_batch_pieces: Vec::new(),
        high_watermark: fetched.high_watermark,
        log_start_offset: fetched.log_start,
        next_offset: fetched.next_offset,
    })
}

/// Whether another agent forwarded this request (it is then never forwarded again).
fn forwarded_by<T>(request: &Request<T>) -> bool {
    request
        .metadata()
        .contains_key(crate::forward::FORWARDED_METADATA)
}

/// Hands a converted produce request to the engine.
async fn append(
    log: &Log,
    request: convert::Produce,
    forwarded: bool,
) -> Result<shale_log::ProduceTicket, shale_log::LogError> {
    match request {
        convert::Produce::Records(mut records) => {
            records.forwarded = forwarded;
            log.produce(records).await
        }
        convert::Produce::Batches {
            topic,
            partition,
            batches,
            expected_next_offset,
        } if forwarded => {
            log.produce_forwarded_batches(&topic, partition, batches, expected_next_offset)
                .await
        }
        convert::Produce::Batches {
            topic,
            partition,
            batches,
            expected_next_offset,
        } => {
            log.produce_batches(&topic, partition, batches, expected_next_offset)
                .await
        }
    }
}

/// Records an acknowledged produce appended: counted from the request's records, or from
/// the acks when the request carried batches (whose records the agent does not decode).
fn acked_records(acks: &[shale_log::PartitionAck], request_records: u64) -> u64 {
    if request_records > 0 {
        request_records
    } else {
        acks.iter().map(|ack| u64::from(ack.record_count)).sum()
    }
}

/// Records and bytes of a produce request, as the data counters count them: key, value and
/// header bytes of records, or the batch bytes of `record_batches`.
fn produce_size(request: &v1::ProduceRequest) -> (u64, u64) {
    if !request.record_batches.is_empty() {
        return (0, request.record_batches.len() as u64);
    }
    let bytes = request
        .records
        .iter()
        .map(|record| {
            record_bytes(
                record.key.as_deref(),
                record.value.as_deref(),
                record
                    .headers
                    .iter()
                    .map(|header| (header.key.as_str(), header.value.as_deref())),
            )
        })
        .sum();
    (request.records.len() as u64, bytes)
}

/// Appends one stream request now and returns the future of its response.
async fn start_produce(
    log: &Log,
    metrics: &DataMetrics,
    budget: &RequestBudget,
    message: v1::ProduceStreamRequest,
    forwarded: bool,
) -> futures::future::BoxFuture<'static, v1::ProduceStreamResponse> {
    let request_id = message.request_id;
    let hints = log.clone();
    let error = move |error: shale_log::LogError| {
        let (leader, leader_addr) = leader_hint(&hints, &error)
            .map(|(leader, addr)| (leader, addr.unwrap_or_default()))
            .unwrap_or_default();
        v1::ProduceStreamResponse {
            request_id,
            result: Some(v1::produce_stream_response::Result::Error(
                v1::ProduceError {
                    code: code_for(&error) as i32,
                    message: error.to_string(),
                    outcome_unknown: matches!(error, shale_log::LogError::OutcomeUnknown(_)),
                    leader,
                    leader_addr,
                },
            )),
        }
    };
    let Some(request) = message.request else {
        let response = error(shale_log::LogError::InvalidRequest(
            "a produce stream message needs a request".to_owned(),
        ));
        return Box::pin(async move { response });
    };
    let (records, bytes) = produce_size(&request);
    let admitted = match budget.admit(prost::Message::encoded_len(&request)).await {
        Ok(admitted) => admitted,
        Err(refused) => {
            let response = error(refused);
            return Box::pin(async move { response });
        }
    };
    let ticket = match convert::produce_request(request) {
        Ok(request) => append(log, request, forwarded).await,
        Err(invalid) => Err(invalid),
    };
    // Appended (or refused): the writer's buffer counts these bytes from here on.
    drop(admitted);
    let metrics = metrics.clone();
    match ticket {
        Ok(ticket) => Box::pin(async move {
            match ticket.wait().await {
                Ok(acks) => {
                    metrics.produced(acked_records(&acks, records), bytes);
                    v1::ProduceStreamResponse {
                        request_id,
                        result: Some(v1::produce_stream_response::Result::Response(
                            convert::produce_response(acks),
                        )),
                    }
                }
                Err(failure) => error(failure),
            }
        }),
        Err(failure) => {
            let response = error(failure);
            Box::pin(async move { response })
        }
    }
}
