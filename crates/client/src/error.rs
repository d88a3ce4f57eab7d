//! The one error type of the SDK, and how each failure answers the two questions a caller asks
//! before retrying: "may it work if I try again?" and "did the failed call change anything?".
//! They are separate because a timed-out produce is worth retrying but may already have been
//! written, while a rejected one is not worth retrying and certainly was not.

use std::borrow::Cow;
use std::error::Error as _;
use std::io;

use shale_proto::v1;
use tonic::{Code, Status};

/// Metadata key the agent sets on NOT_LEADER answers: the current leader's agent id.
const LEADER_HINT_METADATA: &str = "shale-leader";
const LEADER_ADDR_METADATA: &str = "shale-leader-addr";
/// Metadata key the agent sets on a failed conditional append: the partition's next offset.
const NEXT_OFFSET_METADATA: &str = "shale-next-offset";
/// Metadata key the agent sets to `unknown` when a produce may or may not have been written.
const OUTCOME_METADATA: &str = "shale-outcome";
/// Metadata key naming a consumer-group protocol error (`rebalance-in-progress`, ...).
const GROUP_ERROR_METADATA: &str = "shale-group-error";

/// An error from the SDK. Messages are lowercase and name what failed, so a CLI can print them
/// as they are.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The agent address is not a usable `http://host:port` URI.
    #[error("invalid shale agent address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },

    /// No connection could be opened; nothing was sent.
    #[error("cannot reach shale agent at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },

    /// The agent answered the call with an error status. The message is the agent's own.
    #[error("{message}")]
    Status {
        code: Code,
        message: String,
        /// The current leader's agent id, when the agent was not the partition's leader.
        leader: Option<String>,
        /// The gRPC address the current leader advertises, when known.
        leader_addr: Option<String>,
        /// The partition's actual next offset, when a conditional append failed.
        next_offset: Option<i64>,
        /// The agent said the produce may or may not have been written.
        outcome_unknown: bool,
        /// Which consumer-group protocol error this is, e.g. `rebalance-in-progress`.
        group_error: Option<String>,
    },

    /// The connection failed while the call was under way; the agent may have acted on it.
    #[error("connection to shale agent at {addr} failed during the call: {reason}")]
    Transport {
        addr: String,
        code: Code,
        reason: String,
    },

    /// The TLS settings cannot be used (an unreadable file, no PEM certificate in it, a
    /// certificate without its key); nothing was sent.
    #[error("invalid tls settings: {reason}")]
    TlsSettings { reason: String },

    /// The TLS handshake with the agent failed: its certificate is not trusted, or it refused
    /// ours. Retrying does not help until the certificates change.
    #[error("tls handshake with shale agent at {addr} failed: {reason}")]
    TlsHandshake { addr: String, reason: String },

    /// The SDK rejected the request before sending it.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A produce stream ended before this request was answered.
    #[error(
        "produce stream to shale agent at {addr} broke before the request was acknowledged: {reason}{}",
        if *.sent { " (it may or may not have been written)" } else { " (it was never sent)" }
    )]
    StreamBroken {
        addr: String,
        code: Code,
        reason: String,
        /// Whether the request had been handed to the connection before the stream broke.
        sent: bool,
    },

    /// The agent answered something the protocol does not allow.
    #[error("unexpected answer from shale agent at {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

impl ClientError {
    /// The gRPC code that best describes the failure.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidAddress { .. } | Self::InvalidRequest(_) | Self::TlsSettings { .. } => {
                Code::InvalidArgument
            }
            Self::Unreachable { .. } => Code::Unavailable,
            Self::TlsHandshake { .. } => Code::Unauthenticated,
            Self::Status { code, .. }
            | Self::Transport { code, .. }
            | Self::StreamBroken { code, .. } => *code,
            Self::Protocol { .. } => Code::Internal,
        }
    }

    /// The human-readable message: the agent's own for [`ClientError::Status`], the full
    /// description otherwise.
    pub fn message(&self) -> Cow<'_, str> {
        match self {
            Self::Status { message, .. } => Cow::Borrowed(message),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// Whether the same call may succeed if simply tried again later (possibly on a new
    /// connection or stream). Says nothing about whether the failed attempt had effects: see
    /// [`ClientError::has_no_side_effects`].
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Transport { .. } | Self::StreamBroken { .. } => true,
            Self::Status { code, .. } => retryable_code(*code),
            Self::InvalidAddress { .. }
            | Self::InvalidRequest(_)
            | Self::Protocol { .. }
            | Self::TlsSettings { .. }
            | Self::TlsHandshake { .. } => false,
        }
    }

    /// Whether the failed call certainly changed nothing on the agent. When false, a produce
    /// may have been written, so retrying it without an idempotent producer identity may
    /// duplicate records.
    pub fn has_no_side_effects(&self) -> bool {
        match self {
            // A refused handshake happens before any request reaches the agent.
            Self::InvalidAddress { .. }
            | Self::Unreachable { .. }
            | Self::InvalidRequest(_)
            | Self::TlsSettings { .. }
            | Self::TlsHandshake { .. } => true,
            // A NOT_LEADER answer is decided before anything is appended.
            Self::Status {
                code,
                leader,
                outcome_unknown,
                ..
            } => !outcome_unknown && (rejected_code(*code) || leader.is_some()),
            Self::StreamBroken { sent, .. } => !sent,
            Self::Transport { .. } | Self::Protocol { .. } => false,
        }
    }

    /// Whether the agent said this produce may or may not have been written: its commit's
    /// answer was lost, or leadership ended while it was under way. Reading the partition
    /// tells; an idempotent producer's retry gets the original offsets either way.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::Status {
                outcome_unknown: true,
                ..
            }
        )
    }

    /// The consumer-group protocol error the agent named: `not-coordinator` (ask
    /// FindCoordinator again), `rebalance-in-progress`, `illegal-generation` (rejoin),
    /// `unknown-member` (rejoin without a member id), `group-has-members`, `group-full`,
    /// `inconsistent-protocol`.
    pub fn group_error(&self) -> Option<&str> {
        match self {
            Self::Status { group_error, .. } => group_error.as_deref(),
            _ => None,
        }
    }

    /// The current leader's agent id, when the agent said it does not lead the partition.
    pub fn leader_hint(&self) -> Option<&str> {
        match self {
            Self::Status { leader, .. } => leader.as_deref(),
            _ => None,
        }
    }

    /// The gRPC address the current leader advertises (`host:port`), when the agent said it
    /// does not lead the partition and knew where the leader is.
    pub fn leader_addr(&self) -> Option<&str> {
        match self {
            Self::Status { leader_addr, .. } => leader_addr.as_deref(),
            _ => None,
        }
    }

    /// The partition's actual next offset, when a conditional append failed.
    pub fn next_offset(&self) -> Option<i64> {
        match self {
            Self::Status { next_offset, .. } => *next_offset,
            _ => None,
        }
    }

    /// Converts a status from a call to the agent at `addr`. Connection failures hide in the
    /// status's source chain; they become [`ClientError::Unreachable`] when the connection
    /// never opened (nothing was sent) and [`ClientError::Transport`] otherwise.
    pub(crate) fn from_status(status: &Status, addr: &str) -> Self {
        if let Some(reason) = tls_failure_in_chain(status) {
            return Self::TlsHandshake {
                addr: addr.to_owned(),
                reason,
            };
        }
        if let Some(io_error) = io_error_in_chain(status) {
            let reason = describe_io_error(io_error);
            return if is_connect_failure(io_error.kind()) {
                Self::Unreachable {
                    addr: addr.to_owned(),
                    reason,
                }
            } else {
                Self::Transport {
                    addr: addr.to_owned(),
                    code: status.code(),
                    reason,
                }
            };
        }
        if status.source().is_some() {
            // Raised by the transport rather than sent by the agent.
            return Self::Transport {
                addr: addr.to_owned(),
                code: status.code(),
                reason: root_cause(status),
            };
        }
        let metadata = status.metadata();
        let leader = metadata
            .get(LEADER_HINT_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let next_offset = metadata
            .get(NEXT_OFFSET_METADATA)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let leader_addr = metadata
            .get(LEADER_ADDR_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let outcome_unknown = metadata
            .get(OUTCOME_METADATA)
            .is_some_and(|value| value.as_bytes() == b"unknown");
        let group_error = metadata
            .get(GROUP_ERROR_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Self::Status {
            code: status.code(),
            message: status_message(status.code(), status.message().to_owned()),
            leader,
            leader_addr,
            next_offset,
            outcome_unknown,
            group_error,
        }
    }

    /// A per-request failure reported inside a produce stream.
    pub(crate) fn from_produce_error(error: v1::ProduceError) -> Self {
        let code = Code::from_i32(error.code);
        let given = |text: String| (!text.is_empty()).then_some(text);
        Self::Status {
            code,
            message: status_message(code, error.message),
            leader: given(error.leader),
            leader_addr: given(error.leader_addr),
            next_offset: None,
            outcome_unknown: error.outcome_unknown,
            group_error: None,
        }
    }

    /// A connection failure from `Endpoint::connect`.
    pub(crate) fn unreachable(addr: &str, error: &tonic::transport::Error) -> Self {
        if let Some(reason) = tls_failure_in_chain(error) {
            return Self::TlsHandshake {
                addr: addr.to_owned(),
                reason,
            };
        }
        let reason = match io_error_in_chain(error) {
            Some(io_error) => describe_io_error(io_error),
            None => root_cause(error),
        };
        Self::Unreachable {
            addr: addr.to_owned(),
            reason,
        }
    }
}

/// Codes that mean "not now" rather than "not ever".
fn retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted | Code::DeadlineExceeded
    )
}

/// Codes the agent only returns when it rejected the request before acting on it.
fn rejected_code(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::ResourceExhausted
    )
}

/// The agent's message, or a description of the code when a proxy or the runtime sent none.
fn status_message(code: Code, message: String) -> String {
    if message.is_empty() {
        format!("shale agent answered {code:?} without a message")
    } else {
        message
    }
}

fn io_error_in_chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io_error) = error.downcast_ref::<io::Error>() {
            return Some(io_error);
        }
        current = error.source();
    }
    None
}

/// Why a TLS handshake failed, if that is what the error is. The connector hands its
/// failures up wrapped in an `io::Error`, whose `source()` skips the wrapped error, so look
/// inside with `get_ref`.
fn tls_failure_in_chain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let describe = |error: &(dyn std::error::Error + 'static)| {
        if let Some(tls_error) = error.downcast_ref::<rustls::Error>() {
            return Some(describe_tls_error(tls_error));
        }
        if let Some(required) = error.downcast_ref::<crate::tls::ClientCertificateRequired>() {
            return Some(required.to_string());
        }
        error
            .downcast_ref::<crate::tls::ClientCertificateRefused>()
            .map(ToString::to_string)
    };
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(reason) = describe(error) {
            return Some(reason);
        }
        if let Some(inner) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            && let Some(reason) = describe(inner)
        {
            return Some(reason);
        }
        current = error.source();
    }
    None
}

/// rustls's words, plus what to do about the two failures a misconfiguration causes.
fn describe_tls_error(error: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError};
    let hint = match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the agent's certificate is not signed by a trusted CA: add its CA as a trust root)"
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::BadCertificate,
        ) => " (the agent requires a client certificate signed by a CA it trusts)",
        _ => "",
    };
    format!("{error}{hint}")
}

fn is_connect_failure(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NotFound
    )
}

/// "connection refused" rather than "Connection refused (os error 111)": the kind reads better
/// in a one-line message, and the OS number helps nobody.
fn describe_io_error(error: &io::Error) -> String {
    match error.kind() {
        kind @ (io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::TimedOut
        | io::ErrorKind::AddrNotAvailable
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable) => kind.to_string(),
        _ => error.to_string(),
    }
}

/// The innermost error's message: the outer layers of a transport error only say "transport
/// error" or "error trying to connect".
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    const ADDR: &str = "http://127.0.0.1:7070";

    #[test]
    fn agent_statuses_keep_their_message_and_code() {
        let error =
            ClientError::from_status(&Status::not_found("topic \"x\" does not exist"), ADDR);
        assert_eq!(error.code(), Code::NotFound);
        assert_eq!(error.to_string(), "topic \"x\" does not exist");
        assert_eq!(error.message(), "topic \"x\" does not exist");
        assert!(!error.is_retryable());
        assert!(error.has_no_side_effects());
    }

    #[test]
    fn not_leader_is_retryable_and_harmless() {
        let mut status = Status::unavailable("this agent does not lead t/0");
        status
            .metadata_mut()
            .insert(LEADER_HINT_METADATA, MetadataValue::from_static("agent-2"));
        let error = ClientError::from_status(&status, ADDR);
        assert!(error.is_retryable());
        assert!(error.has_no_side_effects());
        assert_eq!(error.leader_hint(), Some("agent-2"));
        assert_eq!(error.leader_addr(), None);
        status.metadata_mut().insert(
            LEADER_ADDR_METADATA,
            MetadataValue::from_static("agent-2.shale:7070"),
        );
        let error = ClientError::from_status(&status, ADDR);
        assert_eq!(error.leader_addr(), Some("agent-2.shale:7070"));
        // The same hints inside a produce stream.
        let streamed = ClientError::from_produce_error(v1::ProduceError {
            code: 14,
            message: "this agent does not lead t/0".into(),
            leader: "agent-2".into(),
            leader_addr: "agent-2.shale:7070".into(),
            ..v1::ProduceError::default()
        });
        assert!(streamed.has_no_side_effects());
        assert_eq!(
            (streamed.leader_hint(), streamed.leader_addr()),
            (Some("agent-2"), Some("agent-2.shale:7070"))
        );
    }

    #[test]
    fn unavailable_without_hint_may_have_written() {
        let error =
            ClientError::from_status(&Status::unavailable("object store unavailable"), ADDR);
        assert!(error.is_retryable());
        assert!(!error.has_no_side_effects());
    }

    #[test]
    fn an_unknown_outcome_is_said_so_on_both_paths() {
        let mut status = Status::unavailable("the write may or may not have been applied");
        status
            .metadata_mut()
            .insert(OUTCOME_METADATA, MetadataValue::from_static("unknown"));
        let error = ClientError::from_status(&status, ADDR);
        assert!(error.outcome_unknown());
        assert!(error.is_retryable());
        assert!(!error.has_no_side_effects());
        let streamed = ClientError::from_produce_error(v1::ProduceError {
            code: 14,
            message: "may or may not".into(),
            outcome_unknown: true,
            ..v1::ProduceError::default()
        });
        assert!(streamed.outcome_unknown());
        assert!(!streamed.has_no_side_effects());
        let plain =
            ClientError::from_status(&Status::unavailable("object store unavailable"), ADDR);
        assert!(!plain.outcome_unknown());
    }

    #[test]
    fn failed_condition_carries_the_next_offset() {
        let mut status = Status::failed_precondition("conditional append failed");
        status
            .metadata_mut()
            .insert(NEXT_OFFSET_METADATA, MetadataValue::from_static("42"));
        let error = ClientError::from_status(&status, ADDR);
        assert_eq!(error.next_offset(), Some(42));
        assert!(!error.is_retryable());
        assert!(error.has_no_side_effects());
    }

    #[test]
    fn backpressure_is_retryable_and_harmless() {
        let error = ClientError::from_produce_error(v1::ProduceError {
            code: 8,
            message: "produce buffer is full".into(),
            ..v1::ProduceError::default()
        });
        assert_eq!(error.code(), Code::ResourceExhausted);
        assert!(error.is_retryable());
        assert!(error.has_no_side_effects());
    }

    #[test]
    fn data_loss_and_internal_are_neither() {
        for code in [Code::DataLoss, Code::Internal, Code::Unknown] {
            let error = ClientError::from_status(&Status::new(code, "boom"), ADDR);
            assert!(!error.is_retryable(), "{code:?}");
            assert!(!error.has_no_side_effects(), "{code:?}");
        }
    }

    #[test]
    fn deadline_exceeded_is_retryable_but_ambiguous() {
        let error = ClientError::from_status(&Status::deadline_exceeded("slow"), ADDR);
        assert!(error.is_retryable());
        assert!(!error.has_no_side_effects());
    }

    #[test]
    fn empty_messages_are_described() {
        let error = ClientError::from_status(&Status::new(Code::Internal, ""), ADDR);
        assert_eq!(
            error.to_string(),
            "shale agent answered Internal without a message"
        );
    }

    #[test]
    fn refused_connections_in_a_status_source_are_unreachable() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let status = Status::from_error(Box::new(refused));
        let error = ClientError::from_status(&status, ADDR);
        assert_eq!(
            error.to_string(),
            "cannot reach shale agent at http://127.0.0.1:7070: connection refused"
        );
        assert!(error.is_retryable());
        assert!(error.has_no_side_effects());
    }

    #[test]
    fn resets_mid_call_are_ambiguous() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let error = ClientError::from_status(&Status::from_error(Box::new(reset)), ADDR);
        assert!(matches!(error, ClientError::Transport { .. }), "{error:?}");
        assert!(error.is_retryable());
        assert!(!error.has_no_side_effects());
        assert_eq!(
            error.to_string(),
            "connection to shale agent at http://127.0.0.1:7070 failed during the call: connection reset"
        );
    }

    #[test]
    fn broken_streams_say_whether_the_request_left() {
        let broken = |sent| ClientError::StreamBroken {
            addr: ADDR.into(),
            code: Code::Unavailable,
            reason: "connection reset".into(),
            sent,
        };
        assert!(
            broken(true)
                .to_string()
                .ends_with("(it may or may not have been written)")
        );
        assert!(!broken(true).has_no_side_effects());
        assert!(broken(false).has_no_side_effects());
        assert!(broken(false).is_retryable());
    }
}
