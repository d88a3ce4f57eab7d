//! The agent's [`Forwarder`]: produces for partitions another agent leads go to that agent
//! over one `ProduceStream` per leader, so requests forwarded in order (one client stream's)
//! reach the leader in that order and are pipelined instead of waiting for each other.
//!
//! Bounds: one link per leader address (addresses come from registered agents only), at most
//! [`LINK_QUEUE`] requests waiting to be sent and [`MAX_IN_FLIGHT`] awaiting answers per link,
//! and the engine holds produce-buffer space for every forwarded byte until its answer. A
//! link whose oldest request waits longer than [`ANSWER_TIMEOUT`] is dropped: what it had sent
//! is answered "outcome unknown", since the leader may have applied it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use shale_log::{
    ForwardReceiver, ForwardRequest, Forwarder, LogError, PartitionAck, RemoteFailure,
};
use shale_proto::v1;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use crate::server::MAX_GRPC_MESSAGE_BYTES;

/// Metadata key naming the agent that forwarded a request; such a request is never
/// forwarded again.
pub(crate) const FORWARDED_METADATA: &str = "shale-forwarded-by";
/// Requests queued for one leader before `forward` waits (backpressure on the client).
const LINK_QUEUE: usize = 256;
/// Largest record batches forwarded in one message: the stream's message limit, less room
/// for the request's other fields.
const MAX_FORWARDED_BYTES: usize = MAX_GRPC_MESSAGE_BYTES - (64 << 10);
/// Requests sent to one leader and not yet answered. The leader's own per-stream bound.
const MAX_IN_FLIGHT: usize = 1024;
/// Longest wait for a leader's answer: longer than its commit path under load (leader wait,
/// backpressure, a slow store), short enough that a hung leader does not hold requests.
const ANSWER_TIMEOUT: Duration = Duration::from_mins(1);
/// How long dialling a leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A link with nothing to send for this long closes its stream and ends.
const IDLE_TIMEOUT: Duration = Duration::from_mins(1);

/// Counters of forwarded produces (`shale_agent_forward_*`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardMetrics {
    requests: Counter,
    bytes: Counter,
    failures: Counter,
    links: Counter,
}

impl ForwardMetrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "shale_agent_forwarded_requests",
            "produce requests (per partition) forwarded to the partition's leader",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "shale_agent_forwarded",
            "record batch bytes forwarded to partition leaders",
            prometheus_client::registry::Unit::Bytes,
            metrics.bytes.clone(),
        );
        registry.register(
            "shale_agent_forward_failures",
            "forwarded requests that failed (the leader refused them, could not be reached, or did not answer)",
            metrics.failures.clone(),
        );
        registry.register(
            "shale_agent_forward_links",
            "streams opened to other agents for forwarding",
            metrics.links.clone(),
        );
        metrics
    }
}

/// Forwards over plaintext gRPC to the leaders' advertised addresses.
#[derive(Debug)]
pub(crate) struct GrpcForwarder {
    agent_id: String,
    links: Mutex<HashMap<String, mpsc::Sender<Queued>>>,
    metrics: ForwardMetrics,
}

/// One request waiting for its link.
#[derive(Debug)]
struct Queued {
    request: ForwardRequest,
    reply: oneshot::Sender<Result<PartitionAck, LogError>>,
}

impl GrpcForwarder {
    pub(crate) fn new(agent_id: String, metrics: ForwardMetrics) -> Arc<Self> {
        Arc::new(Self {
            agent_id,
            links: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The queue of the link to `addr`, started if there is none (or it ended).
    fn link(&self, addr: &str) -> Result<mpsc::Sender<Queued>, LogError> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = links.get(addr).filter(|link| !link.is_closed()) {
            return Ok(link.clone());
        }
        links.retain(|_, link| !link.is_closed());
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|error| {
                LogError::Internal(format!(
                    "the leader's advertised address {addr:?} is not dialable: {error}"
                ))
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20));
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        links.insert(addr.to_owned(), tx.clone());
        self.metrics.links.inc();
        tokio::spawn(run_link(
            addr.to_owned(),
            endpoint.connect_lazy(),
            self.agent_id.clone(),
            rx,
            self.metrics.clone(),
        ));
        Ok(tx)
    }
}

impl Forwarder for GrpcForwarder {
    fn forward(
        &self,
        request: ForwardRequest,
    ) -> BoxFuture<'static, Result<ForwardReceiver, LogError>> {
        // Refused before it is queued: a message the stream cannot carry would break the
        // link for every request on it.
        let too_large = request.record_batches.len() > MAX_FORWARDED_BYTES;
        let size = request.record_batches.len();
        let link = self.link(&request.leader_addr);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            if too_large {
                return Err(LogError::InvalidRequest(format!(
                    "the request's {size} bytes of record batches are too large to forward (at most {MAX_FORWARDED_BYTES}); send it to the partition's leader, or in smaller requests"
                )));
            }
            let link = link?;
            let (reply, receiver) = oneshot::channel();
            metrics.requests.inc();
            metrics.bytes.inc_by(request.record_batches.len() as u64);
            let leader = request.leader.clone();
            link.send(Queued { request, reply })
                .await
                .map_err(|_| LogError::Remote {
                    leader,
                    failure: RemoteFailure::Unavailable,
                    message: "the link to it closed before the request was sent; retry".to_owned(),
                })?;
            Ok(receiver)
        })
    }
}

/// A request sent on the current stream, awaiting its answer.
#[derive(Debug)]
struct Sent {
    request_id: u64,
    topic: String,
    partition: u32,
    leader: String,
    at: Instant,
    reply: oneshot::Sender<Result<PartitionAck, LogError>>,
}

/// Serves one leader: opens a stream when there is something to send, keeps it while
/// requests come, and reopens it after a failure.
async fn run_link(
    addr: String,
    channel: Channel,
    agent_id: String,
    mut queue: mpsc::Receiver<Queued>,
    metrics: ForwardMetrics,
) {
    let mut client = v1::log_service_client::LogServiceClient::new(channel)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let mut next_id = 0u64;
    loop {
        // Idle, or the forwarder is gone: the next forward starts a new link.
        let Ok(Some(first)) = tokio::time::timeout(IDLE_TIMEOUT, queue.recv()).await else {
            // A request queued as the link went idle was never sent: say so, rather than
            // letting it look like a lost answer.
            queue.close();
            while let Ok(queued) = queue.try_recv() {
                let _ = queued.reply.send(Err(LogError::Remote {
                    leader: queued.request.leader,
                    failure: RemoteFailure::Unavailable,
                    message: "the link to it closed before the request was sent; retry".to_owned(),
                }));
            }
            return;
        };
        let (out_tx, out_rx) = mpsc::channel::<v1::ProduceStreamRequest>(64);
        let mut request = tonic::Request::new(ReceiverStream::new(out_rx));
        if let Ok(value) = agent_id.parse() {
            request.metadata_mut().insert(FORWARDED_METADATA, value);
        }
        let mut sent: VecDeque<Sent> = VecDeque::new();
        next_id += 1;
        let first_sent = enqueue(&out_tx, next_id, first).await;
        // Opening the stream waits for the leader's response headers; the first request is
        // already buffered for it.
        let opened = tokio::time::timeout(ANSWER_TIMEOUT, client.produce_stream(request)).await;
        let mut answers = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                warn!(%addr, %status, "cannot open a forwarding stream to the leader");
                if let Some(first) = first_sent {
                    let error = if never_connected(&status) {
                        // No connection: the request never left this agent.
                        unreachable(&first.leader, &status.to_string())
                    } else if std::error::Error::source(&status).is_none() {
                        // The leader refused the stream itself, before reading from it.
                        LogError::Remote {
                            leader: first.leader.clone(),
                            failure: failure_of(status.code()),
                            message: status.message().to_owned(),
                        }
                    } else {
                        // The connection failed after the request may have reached it.
                        LogError::OutcomeUnknown(format!(
                            "forwarded to agent {:?}, whose stream failed before it answered: {status}",
                            first.leader
                        ))
                    };
                    fail(&metrics, first, error);
                }
                continue;
            }
            Err(_) => {
                warn!(%addr, "the leader did not answer a forwarding stream in time");
                if let Some(first) = first_sent {
                    let error = LogError::OutcomeUnknown(format!(
                        "forwarded to agent {:?}, which did not answer within {} s",
                        first.leader,
                        ANSWER_TIMEOUT.as_secs()
                    ));
                    fail(&metrics, first, error);
                }
                continue;
            }
        };
        sent.extend(first_sent);
        let mut forwarder_gone = false;
        let broken: LogError = loop {
            let deadline = sent.front().map(|oldest| oldest.at + ANSWER_TIMEOUT);
            tokio::select! {
                queued = queue.recv(), if sent.len() < MAX_IN_FLIGHT && !forwarder_gone => {
                    let Some(queued) = queued else {
                        if sent.is_empty() {
                            return;
                        }
                        // The forwarder is gone: finish what was sent, then end.
                        forwarder_gone = true;
                        continue;
                    };
                    next_id += 1;
                    match enqueue(&out_tx, next_id, queued).await {
                        Some(request) => sent.push_back(request),
                        None => break LogError::Remote {
                            leader: String::new(),
                            failure: RemoteFailure::Unavailable,
                            message: "the forwarding stream closed".to_owned(),
                        },
                    }
                }
                answer = answers.message() => match answer {
                    Ok(Some(answer)) => {
                        let Some(request) = sent.pop_front() else {
                            break LogError::Internal("the leader answered a request that was not sent".to_owned());
                        };
                        if request.request_id != answer.request_id {
                            let error = LogError::Internal(format!(
                                "the leader answered request {} where {} was next",
                                answer.request_id, request.request_id
                            ));
                            fail_unknown(&metrics, request, &error);
                            break error;
                        }
                        answered(&metrics, request, answer.result);
                        if forwarder_gone && sent.is_empty() {
                            return;
                        }
                    }
                    Ok(None) => break LogError::Internal("the leader ended the forwarding stream".to_owned()),
                    Err(status) => break LogError::Remote {
                        leader: String::new(),
                        failure: failure_of(status.code()),
                        message: status.message().to_owned(),
                    },
                },
                () = sleep_until(deadline) => {
                    break LogError::Internal(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()));
                }
                () = tokio::time::sleep(IDLE_TIMEOUT), if sent.is_empty() => {
                    debug!(%addr, "forwarding stream idle; closing it");
                    break LogError::Internal("idle".to_owned());
                }
            }
        };
        // Whatever was sent may have been applied by the leader.
        for request in sent.drain(..) {
            fail_unknown(&metrics, request, &broken);
        }
    }
}

/// Hands one request to the stream; `None` if the stream is gone (the request is answered
/// as not sent).
async fn enqueue(
    out: &mpsc::Sender<v1::ProduceStreamRequest>,
    request_id: u64,
    queued: Queued,
) -> Option<Sent> {
    let Queued { request, reply } = queued;
    let message = v1::ProduceStreamRequest {
        request_id,
        request: Some(v1::ProduceRequest {
            topic: request.topic.clone(),
            partition: Some(request.partition),
            records: Vec::new(),
            expected_next_offset: request.expected_next_offset,
            producer: None,
            compression: v1::Compression::Unspecified as i32,
            record_batches: request.record_batches,
        }),
    };
    if out.send(message).await.is_err() {
        let _ = reply.send(Err(LogError::Remote {
            leader: request.leader,
            failure: RemoteFailure::Unavailable,
            message: "the forwarding stream closed before the request was sent; retry".to_owned(),
        }));
        return None;
    }
    Some(Sent {
        request_id,
        topic: request.topic,
        partition: request.partition,
        leader: request.leader,
        at: Instant::now(),
        reply,
    })
}

/// Whether opening the stream failed because no connection could be made (so nothing was
/// sent).
fn never_connected(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            );
        }
        source = error.source();
    }
    false
}

/// Resolves a request with the leader's answer.
fn answered(
    metrics: &ForwardMetrics,
    request: Sent,
    result: Option<v1::produce_stream_response::Result>,
) {
    let outcome = match result {
        Some(v1::produce_stream_response::Result::Response(response)) => {
            match response.acks.as_slice() {
                [ack] if ack.partition == request.partition => Ok(PartitionAck {
                    partition: ack.partition,
                    base_offset: ack.base_offset,
                    last_offset: ack.last_offset,
                    record_count: ack.record_count,
                }),
                _ => Err(LogError::OutcomeUnknown(format!(
                    "forwarded to agent {:?}, whose answer did not name partition {}",
                    request.leader, request.partition
                ))),
            }
        }
        Some(v1::produce_stream_response::Result::Error(error)) => {
            Err(remote_error(&request, error))
        }
        None => Err(LogError::OutcomeUnknown(format!(
            "forwarded to agent {:?}, whose answer was empty",
            request.leader
        ))),
    };
    if outcome.is_err() {
        metrics.failures.inc();
    }
    let _ = request.reply.send(outcome);
}

/// The engine error for a leader's refusal.
fn remote_error(request: &Sent, error: v1::ProduceError) -> LogError {
    if error.outcome_unknown {
        return LogError::OutcomeUnknown(format!(
            "forwarded to agent {:?}: {}",
            request.leader, error.message
        ));
    }
    let code = Code::from_i32(error.code);
    if code == Code::Unavailable && !error.leader.is_empty() {
        // The partition moved on: the client asks again where it is.
        return LogError::NotLeader {
            topic: request.topic.clone(),
            partition: request.partition,
            leader: Some(error.leader),
        };
    }
    LogError::Remote {
        leader: request.leader.clone(),
        failure: failure_of(code),
        message: error.message,
    }
}

fn failure_of(code: Code) -> RemoteFailure {
    match code {
        Code::InvalidArgument => RemoteFailure::Invalid,
        Code::NotFound => RemoteFailure::NotFound,
        Code::FailedPrecondition | Code::AlreadyExists | Code::OutOfRange => RemoteFailure::Refused,
        Code::ResourceExhausted => RemoteFailure::Exhausted,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            RemoteFailure::Unavailable
        }
        Code::DataLoss => RemoteFailure::DataLoss,
        Code::Ok
        | Code::Unknown
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::Internal => RemoteFailure::Internal,
    }
}

fn unreachable(leader: &str, why: &str) -> LogError {
    LogError::Remote {
        leader: leader.to_owned(),
        failure: RemoteFailure::Unavailable,
        message: format!("cannot reach the partition's leader: {why}; retry"),
    }
}

fn fail(metrics: &ForwardMetrics, request: Sent, error: LogError) {
    metrics.failures.inc();
    let _ = request.reply.send(Err(error));
}

/// Fails a request the leader may have applied.
fn fail_unknown(metrics: &ForwardMetrics, request: Sent, cause: &LogError) {
    let error = LogError::OutcomeUnknown(format!(
        "forwarded to agent {:?}, whose stream broke before it answered: {cause}",
        request.leader
    ));
    fail(metrics, request, error);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
