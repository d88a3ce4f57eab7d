//! The agent's own metrics: every gRPC call, counted by a tower layer on the server so each
//! service gets the same treatment, and the records and bytes that produce and fetch move.
//!
//! Labels are closed sets: `method` is one of [`METHODS`] or `other` (an unknown path must
//! not mint a new series), `code` one of the 17 gRPC codes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tonic::Code;

/// Every method the agent serves, as `package.Service/Method`; whether it streams its answer.
pub(crate) const METHODS: &[(&str, bool)] = &[
    ("shale.v1.LogService/Produce", false),
    ("shale.v1.LogService/ProduceStream", true),
    ("shale.v1.LogService/Fetch", false),
    ("shale.v1.LogService/FetchStream", true),
    ("shale.v1.LogService/ListOffsets", false),
    ("shale.v1.AdminService/CreateTopic", false),
    ("shale.v1.AdminService/DeleteTopic", false),
    ("shale.v1.AdminService/ListTopics", false),
    ("shale.v1.AdminService/DescribeTopic", false),
    ("shale.v1.GroupService/CommitOffsets", false),
    ("shale.v1.GroupService/FetchOffsets", false),
    (
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        true,
    ),
];

/// The `method` label: an index into [`METHODS`], or `other`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Method(Option<usize>);

impl Method {
    fn from_path(path: &str) -> Self {
        let name = path.strip_prefix('/').unwrap_or(path);
        Self(METHODS.iter().position(|(known, _)| *known == name))
    }

    fn as_str(self) -> &'static str {
        self.0.map_or("other", |index| METHODS[index].0)
    }

    fn streams(self) -> bool {
        self.0.is_some_and(|index| METHODS[index].1)
    }
}

impl EncodeLabelValue for Method {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The `code` label: a gRPC status code by its canonical name (`NOT_FOUND`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct StatusCode(Code);

impl StatusCode {
    fn as_str(self) -> &'static str {
        match self.0 {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl EncodeLabelValue for StatusCode {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: Method,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: Method,
    code: StatusCode,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 500 µs .. ~33 s: a cached fetch up to a long-poll or a produce waiting for backpressure.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 17))
}

/// Per-method gRPC metrics, shared by every call through [`GrpcMetricsLayer`].
#[derive(Debug)]
pub(crate) struct GrpcMetrics {
    requests: Family<MethodLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: HistogramFamily,
    in_flight: Gauge,
    open_streams: Gauge,
}

impl GrpcMetrics {
    /// Registers `shale_grpc_*`.
    pub(crate) fn new(registry: &mut Registry) -> Arc<Self> {
        let metrics = Arc::new(Self {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            in_flight: Gauge::default(),
            open_streams: Gauge::default(),
        });
        registry.register(
            "shale_grpc_requests",
            "gRPC calls received, by method",
            metrics.requests.clone(),
        );
        registry.register(
            "shale_grpc_errors",
            "gRPC calls that ended with a status other than OK, by method and code",
            metrics.errors.clone(),
        );
        registry.register(
            "shale_grpc_request_duration_seconds",
            "gRPC call duration from request to the end of the answer (a stream's whole life), by method",
            metrics.latency.clone(),
        );
        registry.register(
            "shale_grpc_in_flight_requests",
            "gRPC calls being served, streams included",
            metrics.in_flight.clone(),
        );
        registry.register(
            "shale_grpc_open_streams",
            "streaming gRPC calls (ProduceStream, FetchStream, reflection) whose answer stream is open",
            metrics.open_streams.clone(),
        );
        metrics
    }
}

/// Counts every call of the service it wraps in [`GrpcMetrics`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcMetricsLayer {
    metrics: Arc<GrpcMetrics>,
}

impl GrpcMetricsLayer {
    pub(crate) fn new(metrics: Arc<GrpcMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut call = Call::start(
            Arc::clone(&self.metrics),
            Method::from_path(request.uri().path()),
        );
        let response = self.inner.call(request);
        Box::pin(async move {
            // An error here is the transport's, before any status: the call failed without
            // one, and `call` records it as UNKNOWN when dropped.
            let response = response.await?;
            // A status in the headers is a trailers-only answer: the call is already over.
            match grpc_status(response.headers()) {
                Some(code) => call.code = Some(code),
                None if call.method.streams() => call.open_stream(),
                None => {}
            }
            Ok(response.map(|inner| MetricsBody {
                inner,
                call: Some(call),
            }))
        })
    }
}

/// One call being served. Dropping it records the call: its duration and, unless it ended
/// OK, its code. A call dropped before any status (the client went away) counts as
/// CANCELLED.
struct Call {
    metrics: Arc<GrpcMetrics>,
    method: Method,
    started: Instant,
    code: Option<Code>,
    stream_open: bool,
}

impl Call {
    fn start(metrics: Arc<GrpcMetrics>, method: Method) -> Self {
        metrics
            .requests
            .get_or_create(&MethodLabels { method })
            .inc();
        metrics.in_flight.inc();
        Self {
            metrics,
            method,
            started: Instant::now(),
            code: None,
            stream_open: false,
        }
    }

    fn open_stream(&mut self) {
        self.metrics.open_streams.inc();
        self.stream_open = true;
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let method = self.method;
        self.metrics
            .latency
            .get_or_create(&MethodLabels { method })
            .observe(self.started.elapsed().as_secs_f64());
        let code = self.code.unwrap_or(Code::Cancelled);
        if code != Code::Ok {
            self.metrics
                .errors
                .get_or_create(&ErrorLabels {
                    method,
                    code: StatusCode(code),
                })
                .inc();
        }
        self.metrics.in_flight.dec();
        if self.stream_open {
            self.metrics.open_streams.dec();
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

pin_project_lite::pin_project! {
    /// The answer's body, watched for the trailers that carry the final status; the call is
    /// recorded when the body ends or is dropped.
    pub(crate) struct MetricsBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(trailers), Some(call)) = (frame.trailers_ref(), this.call.as_mut())
                    && let Some(code) = grpc_status(trailers)
                {
                    call.code = Some(code);
                }
            }
            Some(Err(_)) => {
                if let Some(call) = this.call.as_mut() {
                    call.code.get_or_insert(Code::Unknown);
                }
                *this.call = None;
            }
            None => *this.call = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Records and bytes moved by produce and fetch. Bytes are the records' keys, values and
/// headers as the client sent or receives them, before any compression.
#[derive(Debug, Clone)]
pub(crate) struct DataMetrics {
    produced_records: Counter,
    produced_bytes: Counter,
    fetched_records: Counter,
    fetched_bytes: Counter,
}

impl DataMetrics {
    /// Registers `shale_agent_{produced,fetched}_{records,bytes}_total`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            produced_records: Counter::default(),
            produced_bytes: Counter::default(),
            fetched_records: Counter::default(),
            fetched_bytes: Counter::default(),
        };
        registry.register(
            "shale_agent_produced_records",
            "records acknowledged to producers",
            metrics.produced_records.clone(),
        );
        registry.register_with_unit(
            "shale_agent_produced",
            "bytes acknowledged to producers: keys, values and headers of records, or the record batches as sent",
            prometheus_client::registry::Unit::Bytes,
            metrics.produced_bytes.clone(),
        );
        registry.register(
            "shale_agent_fetched_records",
            "records returned to consumers",
            metrics.fetched_records.clone(),
        );
        registry.register_with_unit(
            "shale_agent_fetched",
            "bytes returned to consumers: keys, values and headers of records, or the record batches as stored",
            prometheus_client::registry::Unit::Bytes,
            metrics.fetched_bytes.clone(),
        );
        metrics
    }

    pub(crate) fn produced(&self, records: u64, bytes: u64) {
        self.produced_records.inc_by(records);
        self.produced_bytes.inc_by(bytes);
    }

    pub(crate) fn fetched(&self, records: u64, bytes: u64) {
        self.fetched_records.inc_by(records);
        self.fetched_bytes.inc_by(bytes);
    }
}

/// The bytes of a record that the data counters count.
pub(crate) fn record_bytes<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> u64 {
    let headers: usize = headers
        .into_iter()
        .map(|(key, value)| key.len() + value.map_or(0, <[u8]>::len))
        .sum();
    (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + headers) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            Method::from_path("/shale.v1.LogService/Produce").as_str(),
            "shale.v1.LogService/Produce"
        );
        assert!(Method::from_path("/shale.v1.LogService/FetchStream").streams());
        assert_eq!(Method::from_path("/evil/x1").as_str(), "other");
        assert_eq!(Method::from_path("/evil/x2"), Method::from_path("/nope"));
        assert!(!Method::from_path("/nope").streams());
    }

    #[test]
    fn every_code_has_its_grpc_name() {
        for value in 0..=16 {
            let code = Code::from_i32(value);
            let name = StatusCode(code).as_str();
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
        }
        assert_eq!(StatusCode(Code::NotFound).as_str(), "NOT_FOUND");
    }
}
