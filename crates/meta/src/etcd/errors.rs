//! Translation of `etcd-client` errors into [`MetaError`]. etcd reports most conditions only
//! as a gRPC status with a fixed message (`rpctypes` in etcd's source), so the messages are
//! matched here, in one place.

use tonic::Code;

use crate::MetaError;
use crate::store::{LeaseId, MetaLimits, Revision};

/// What the failed request was about, to fill in the error's fields.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ErrorContext {
    pub(crate) lease: LeaseId,
    pub(crate) ops: usize,
    pub(crate) bytes: usize,
    pub(crate) limits: MetaLimits,
    /// The revision a read asked for.
    pub(crate) revision: Revision,
}

pub(crate) fn map_error(error: etcd_client::Error, context: &ErrorContext) -> MetaError {
    use etcd_client::Error;
    match error {
        Error::GRpcStatus(status) => map_status(status.code(), status.message(), context),
        Error::TransportError(error) => MetaError::Unavailable(format!("etcd transport: {error}")),
        Error::IoError(error) => MetaError::Unavailable(format!("etcd i/o: {error}")),
        Error::LeaseKeepAliveError(message) if message.contains("lease not found") => {
            MetaError::LeaseNotFound(context.lease)
        }
        Error::LeaseKeepAliveError(message) => {
            MetaError::Unavailable(format!("etcd lease keep-alive: {message}"))
        }
        Error::WatchError(message) => MetaError::Unavailable(format!("etcd watch: {message}")),
        other => MetaError::Internal(format!("etcd client: {other}")),
    }
}

fn map_status(code: Code, message: &str, context: &ErrorContext) -> MetaError {
    if message.contains("too many operations in txn request") {
        return MetaError::TooManyOps {
            ops: context.ops,
            limit: context.limits.max_txn_ops,
        };
    }
    if message.contains("request is too large")
        || (code == Code::ResourceExhausted && message.contains("larger than max"))
    {
        return MetaError::RequestTooLarge {
            bytes: context.bytes,
            limit: context.limits.max_request_bytes,
        };
    }
    if message.contains("required revision has been compacted") {
        // etcd does not say which revision is the oldest left; 0 means "unknown".
        return MetaError::Compacted {
            requested: context.revision,
            compact_revision: 0,
        };
    }
    if message.contains("database space exceeded") {
        return MetaError::NoSpace(message.to_owned());
    }
    if message.contains("requested lease not found") {
        return MetaError::LeaseNotFound(context.lease);
    }
    if message.contains("duplicate key given in txn request")
        || message.contains("key is not provided")
    {
        return MetaError::InvalidRequest(format!("etcd refused the request: {message}"));
    }
    match code {
        // `Unknown` is what a reset connection surfaces as; like a timeout, the request may
        // or may not have been applied.
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::Unknown => MetaError::Unavailable(format!("etcd: {message}")),
        _ => MetaError::Internal(format!("etcd answered {code:?}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> MetaError {
        map_error(
            etcd_client::Error::GRpcStatus(tonic::Status::new(code, message)),
            &ErrorContext {
                lease: 7,
                ops: 129,
                bytes: 1_600_000,
                limits: MetaLimits::default(),
                revision: 9,
            },
        )
    }

    #[test]
    fn maps_etcd_messages() {
        assert_eq!(
            status(
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request"
            ),
            MetaError::TooManyOps {
                ops: 129,
                limit: 128
            }
        );
        assert!(matches!(
            status(Code::InvalidArgument, "etcdserver: request is too large"),
            MetaError::RequestTooLarge {
                bytes: 1_600_000,
                ..
            }
        ));
        assert_eq!(
            status(Code::NotFound, "etcdserver: requested lease not found"),
            MetaError::LeaseNotFound(7)
        );
        assert!(matches!(
            status(Code::Unavailable, "etcdserver: request timed out"),
            MetaError::Unavailable(_)
        ));
        assert!(matches!(
            status(
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request"
            ),
            MetaError::InvalidRequest(_)
        ));
        assert_eq!(
            status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            ),
            MetaError::Compacted {
                requested: 9,
                compact_revision: 0
            }
        );
        assert!(matches!(
            status(
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded"
            ),
            MetaError::NoSpace(_)
        ));
        assert!(matches!(
            status(Code::PermissionDenied, "etcdserver: permission denied"),
            MetaError::Internal(_)
        ));
    }
}
