//! A scripted stand-in for the agent's LogService, for the SDK's stream handling under faults a
//! real agent cannot be made to produce on cue (answers held back, a stream broken mid-way).
//! End-to-end behaviour against real agents is tested in crates/cli/tests/end_to_end.rs. It
//! answers produce streams in order (holding answers until the test
//! releases them), fails requests to topic "missing", breaks the stream on topic "break", and
//! serves fetch streams from a fixed list of records, failing after `fail_fetch_after` batches.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // test support, not library code

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::Stream;
use shale_proto::v1;
use shale_proto::v1::log_service_server::{LogService, LogServiceServer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Debug, Default)]
pub struct MockState {
    /// Produce requests received.
    pub received: AtomicUsize,
    /// Fetch streams opened, and the offset each asked for.
    pub fetch_opens: std::sync::Mutex<Vec<i64>>,
}

#[derive(Debug, Clone)]
pub struct MockLog {
    pub state: Arc<MockState>,
    /// One permit per produce answer the mock may send.
    pub answers: Arc<Semaphore>,
    /// Records served by fetch streams (offsets 0..n).
    pub records: usize,
    /// Each fetch stream fails with UNAVAILABLE after this many batches of two records.
    pub fail_fetch_after: usize,
}

impl MockLog {
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            answers: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            records: 0,
            fail_fetch_after: usize::MAX,
        }
    }

    /// Holds every produce answer until the test adds permits to `answers`.
    pub fn gated(mut self) -> Self {
        self.answers = Arc::new(Semaphore::new(0));
        self
    }

    /// Serves on a free loopback port and returns its `http://` address.
    pub async fn serve(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(LogServiceServer::new(self))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }
}

fn stored(offset: i64) -> v1::StoredRecord {
    v1::StoredRecord {
        offset,
        timestamp_ms: 1_000 + offset,
        key: None,
        value: Some(Bytes::from(format!("record {offset}"))),
        headers: vec![],
    }
}

/// Records `from..to` as one stored RecordBatch v2, as an agent serves them.
fn stored_batch(from: i64, to: i64) -> Bytes {
    let records: Vec<shale_format::Record> = (from..to)
        .map(|offset| {
            let record = stored(offset);
            shale_format::Record {
                key: record.key,
                value: record.value,
                headers: Vec::new(),
                timestamp_ms: record.timestamp_ms,
            }
        })
        .collect();
    shale_format::encode_batch(
        &records,
        &shale_format::BatchOptions {
            base_offset: from,
            ..shale_format::BatchOptions::default()
        },
    )
    .expect("encode a batch")
}

#[tonic::async_trait]
impl LogService for MockLog {
    async fn produce(
        &self,
        _request: Request<v1::ProduceRequest>,
    ) -> Result<Response<v1::ProduceResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    type ProduceStreamStream = BoxStream<v1::ProduceStreamResponse>;

    async fn produce_stream(
        &self,
        request: Request<Streaming<v1::ProduceStreamRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let this = self.clone();
        // Reading and answering are separate tasks, so held answers do not stop reads.
        let (received_tx, mut received) = mpsc::unbounded_channel();
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                state.received.fetch_add(1, Ordering::SeqCst);
                if received_tx.send(message).is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let mut next_offset = 0_i64;
            while let Some(message) = received.recv().await {
                let request = message.request.unwrap_or_default();
                this.answers.acquire().await.unwrap().forget();
                if request.topic == "break" {
                    let _ = tx
                        .send(Err(Status::unavailable("agent is shutting down")))
                        .await;
                    return;
                }
                let result = if request.topic == "missing" {
                    v1::produce_stream_response::Result::Error(v1::ProduceError {
                        code: tonic::Code::NotFound as i32,
                        message: "topic \"missing\" does not exist".into(),
                        outcome_unknown: false,
                        ..v1::ProduceError::default()
                    })
                } else {
                    let count = request.records.len() as i64;
                    let ack = v1::PartitionAck {
                        partition: request.partition.unwrap_or(0),
                        base_offset: next_offset,
                        last_offset: next_offset + count - 1,
                        record_count: count as u32,
                    };
                    next_offset += count;
                    v1::produce_stream_response::Result::Response(v1::ProduceResponse {
                        acks: vec![ack],
                    })
                };
                let answer = v1::ProduceStreamResponse {
                    request_id: message.request_id,
                    result: Some(result),
                };
                if tx.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        _request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    type FetchStreamStream = BoxStream<v1::FetchResponse>;

    async fn fetch_stream(
        &self,
        request: Request<v1::FetchStreamRequest>,
    ) -> Result<Response<Self::FetchStreamStream>, Status> {
        let request = request.into_inner();
        self.state.fetch_opens.lock().unwrap().push(request.offset);
        let end = self.records as i64;
        // Start one record early to check the consumer drops what it already returned.
        let mut offset = (request.offset - 1).max(0);
        let mut batches = Vec::new();
        while offset < end && batches.len() < self.fail_fetch_after {
            let last = (offset + 2).min(end);
            // Answer in the form asked for: stored batches (what the SDK asks for by
            // default) or records.
            // Stored batches come in pieces that cut through a batch, as an agent's do, when
            // asked for so.
            let (records, record_batches, record_batch_pieces) =
                match (request.record_batches, request.record_batch_pieces) {
                    (true, true) => {
                        let batch = stored_batch(offset, last);
                        let cut = batch.len() / 3;
                        (
                            Vec::new(),
                            Bytes::new(),
                            vec![batch.slice(..cut), batch.slice(cut..)],
                        )
                    }
                    (true, false) => (Vec::new(), stored_batch(offset, last), Vec::new()),
                    (false, _) => (
                        (offset..last).map(stored).collect(),
                        Bytes::new(),
                        Vec::new(),
                    ),
                };
            batches.push(Ok(v1::FetchResponse {
                partition: request.partition,
                records,
                record_batches,
                record_batch_pieces,
                high_watermark: end,
                log_start_offset: 0,
                next_offset: last,
            }));
            offset = last;
        }
        if offset < end {
            batches.push(Err(Status::unavailable("leader moved")));
        }
        let tail = futures::stream::pending();
        Ok(Response::new(Box::pin(futures::StreamExt::chain(
            futures::stream::iter(batches),
            tail,
        ))))
    }

    async fn list_offsets(
        &self,
        _request: Request<v1::ListOffsetsRequest>,
    ) -> Result<Response<v1::ListOffsetsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }
}
