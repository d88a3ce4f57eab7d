//! A pipelined producer over one `ProduceStream`.
//!
//! `send` queues a request and returns at once with a future of its ack, so a caller can keep
//! many requests in flight on one stream without waiting for each flush of the agent. A driver
//! task owns the stream: it forwards queued requests while fewer than `max_in_flight` are
//! unanswered and matches answers to requests in order (the agent answers in request order
//! and echoes each request id, which the driver checks). A failed request fails only its own
//! future; if the stream breaks, every unanswered and queued request fails, saying whether it
//! may have been written.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use shale_proto::v1;
use shale_proto::v1::log_service_client::LogServiceClient;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::{ClientError, ProduceAck, ProduceRequest};

/// Tuning of a [`Producer`].
#[derive(Debug, Clone, Copy)]
pub struct ProducerOptions {
    /// Requests sent on the stream and not yet answered, at most. The agent accepts 1,024 per
    /// stream; more only queue there.
    pub max_in_flight: usize,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self { max_in_flight: 256 }
    }
}

/// A pipelined producer; see the module docs. Cloning shares the stream. Dropping every
/// clone closes the stream once all requests sent so far are answered.
#[derive(Debug, Clone)]
pub struct Producer {
    queue: mpsc::UnboundedSender<Queued>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    addr: Arc<str>,
    max_in_flight: usize,
    /// Requests sent or queued whose future has not been resolved yet.
    pending: AtomicUsize,
    /// Signalled whenever a request is resolved.
    resolved: Notify,
    /// Why the stream ended, once it has.
    broken: Mutex<Option<(Code, String)>>,
}

impl Shared {
    fn broken_error(&self, sent: bool) -> ClientError {
        let (code, reason) = self
            .broken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| (Code::Unavailable, "the producer stopped".to_owned()));
        ClientError::StreamBroken {
            addr: self.addr.to_string(),
            code,
            reason,
            sent,
        }
    }

    fn resolve(&self, ack: oneshot::Sender<AckResult>, result: AckResult) {
        // The caller may have dropped its future; the request was still handled.
        let _ = ack.send(result);
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.resolved.notify_waiters();
    }
}

type AckResult = Result<ProduceAck, ClientError>;

#[derive(Debug)]
struct Queued {
    request: v1::ProduceRequest,
    ack: oneshot::Sender<AckResult>,
}

#[derive(Debug)]
struct InFlight {
    request_id: u64,
    ack: oneshot::Sender<AckResult>,
}

impl Producer {
    pub(crate) async fn open(
        mut log: LogServiceClient<Channel>,
        addr: Arc<str>,
        options: ProducerOptions,
    ) -> Result<Self, ClientError> {
        if options.max_in_flight == 0 {
            return Err(ClientError::InvalidRequest(
                "a producer needs max_in_flight of at least 1".to_owned(),
            ));
        }
        // Never fuller than the in-flight window, so the driver's sends never wait.
        let (outbound, requests) = mpsc::channel(options.max_in_flight);
        let inbound = log
            .produce_stream(ReceiverStream::new(requests))
            .await
            .map_err(|status| ClientError::from_status(&status, &addr))?
            .into_inner();
        let (queue, queued) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            addr,
            max_in_flight: options.max_in_flight,
            pending: AtomicUsize::new(0),
            resolved: Notify::new(),
            broken: Mutex::new(None),
        });
        tokio::spawn(drive(queued, outbound, inbound, Arc::clone(&shared)));
        Ok(Self { queue, shared })
    }

    /// Queues `request` and returns at once; the future resolves with its ack once the
    /// records are durable. Requests are appended in the order `send` was called, and their
    /// futures resolve in that order. The future need not be polled for the request to go
    /// out.
    ///
    /// At most `max_in_flight` requests are on the wire; the rest wait here in memory. To
    /// bound that memory, await [`Producer::ready`] before sending.
    pub fn send(&self, request: ProduceRequest) -> AckFuture {
        let (ack, receiver) = oneshot::channel();
        let future = AckFuture {
            receiver,
            shared: Arc::clone(&self.shared),
        };
        let request = match request.into_wire() {
            Ok(request) => request,
            Err(invalid) => {
                let _ = ack.send(Err(invalid));
                return future;
            }
        };
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(queued)) = self.queue.send(Queued { request, ack }) {
            self.shared
                .resolve(queued.ack, Err(self.shared.broken_error(false)));
        }
        future
    }

    /// Waits until fewer than `max_in_flight` requests are unresolved.
    pub async fn ready(&self) {
        self.wait_until(|pending| pending < self.shared.max_in_flight)
            .await;
    }

    /// Waits until every request sent so far is resolved.
    pub async fn flush(&self) {
        self.wait_until(|pending| pending == 0).await;
    }

    /// Requests sent or queued and not yet resolved.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// The error every later `send` fails with, once the stream has broken.
    pub fn broken(&self) -> Option<ClientError> {
        let broken = self
            .shared
            .broken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        broken.then(|| self.shared.broken_error(false))
    }

    async fn wait_until(&self, done: impl Fn(usize) -> bool) {
        loop {
            // Created before the check so a resolution in between is not missed.
            let resolved = self.shared.resolved.notified();
            if done(self.pending()) {
                return;
            }
            resolved.await;
        }
    }
}

/// The ack of one [`Producer::send`].
#[derive(Debug)]
#[must_use = "the ack says whether the records were written"]
pub struct AckFuture {
    receiver: oneshot::Receiver<AckResult>,
    shared: Arc<Shared>,
}

impl Future for AckFuture {
    type Output = AckResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        Pin::new(&mut this.receiver).poll(cx).map(|result| {
            // Only a driver that vanished without answering (a panic) drops the sender.
            result.unwrap_or_else(|_| Err(this.shared.broken_error(true)))
        })
    }
}

/// Owns the stream until it ends; see the module docs.
async fn drive(
    mut queued: mpsc::UnboundedReceiver<Queued>,
    outbound: mpsc::Sender<v1::ProduceStreamRequest>,
    mut inbound: Streaming<v1::ProduceStreamResponse>,
    shared: Arc<Shared>,
) {
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut outbound = Some(outbound);
    let mut next_id: u64 = 0;
    let failure: (Code, String) = loop {
        let can_send = outbound.is_some() && in_flight.len() < shared.max_in_flight;
        tokio::select! {
            // Answers first: they free window slots and resolve callers.
            biased;
            answer = inbound.message() => match answer {
                Ok(Some(answer)) => {
                    if let Err(violation) = answer_oldest(&mut in_flight, answer, &shared) {
                        break (Code::Internal, violation);
                    }
                }
                Ok(None) if outbound.is_none() && in_flight.is_empty() => return,
                Ok(None) => break (Code::Unavailable, "the agent ended the stream".to_owned()),
                Err(status) => break (status.code(), stream_failure(&status)),
            },
            next = queued.recv(), if can_send => match next {
                Some(Queued { request, ack }) => {
                    let request_id = next_id;
                    next_id += 1;
                    let message = v1::ProduceStreamRequest { request_id, request: Some(request) };
                    let sent = match &outbound {
                        Some(outbound) => outbound.send(message).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        shared.resolve(ack, Err(ClientError::StreamBroken {
                            addr: shared.addr.to_string(),
                            code: Code::Unavailable,
                            reason: "the request stream closed".to_owned(),
                            sent: false,
                        }));
                        break (Code::Unavailable, "the request stream closed".to_owned());
                    }
                    in_flight.push_back(InFlight { request_id, ack });
                }
                // Every handle is gone: end the request stream; the agent answers what it has
                // and then ends the response stream.
                None => outbound = None,
            },
        }
    };
    tracing::debug!(addr = %shared.addr, reason = %failure.1, "produce stream broke");
    *shared.broken.lock().unwrap_or_else(PoisonError::into_inner) = Some(failure);
    queued.close();
    for request in in_flight.drain(..) {
        shared.resolve(request.ack, Err(shared.broken_error(true)));
    }
    while let Ok(request) = queued.try_recv() {
        shared.resolve(request.ack, Err(shared.broken_error(false)));
    }
}

/// Resolves the oldest request in flight with `answer`, or says how the agent broke the
/// protocol.
fn answer_oldest(
    in_flight: &mut VecDeque<InFlight>,
    answer: v1::ProduceStreamResponse,
    shared: &Shared,
) -> Result<(), String> {
    let Some(oldest) = in_flight.pop_front() else {
        return Err(format!(
            "answer to request {} when none was in flight",
            answer.request_id
        ));
    };
    if oldest.request_id != answer.request_id {
        let violation = format!(
            "answer to request {} while {} was the oldest in flight",
            answer.request_id, oldest.request_id
        );
        in_flight.push_front(oldest);
        return Err(violation);
    }
    let result = match answer.result {
        Some(v1::produce_stream_response::Result::Response(response)) => Ok(response.into()),
        Some(v1::produce_stream_response::Result::Error(error)) => {
            Err(ClientError::from_produce_error(error))
        }
        None => Err(ClientError::Protocol {
            addr: shared.addr.to_string(),
            reason: format!(
                "answer to request {} has neither acks nor error",
                answer.request_id
            ),
        }),
    };
    shared.resolve(oldest.ack, result);
    Ok(())
}

/// The status that ended the stream, described the way the SDK describes call failures.
fn stream_failure(status: &tonic::Status) -> String {
    match ClientError::from_status(status, "") {
        ClientError::Unreachable { reason, .. } | ClientError::Transport { reason, .. } => reason,
        other => other.message().into_owned(),
    }
}
