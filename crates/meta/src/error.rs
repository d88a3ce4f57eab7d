//! The one error type of the metadata layer.
//!
//! It is `Clone` because one failed transaction is reported for every partition it carried
//! (see [`crate::commit`]); sources that are not `Clone` are kept as their messages.

use crate::store::{LeaseId, Revision};

/// Why a metadata request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The store could not be reached or did not answer in time (transport error, timeout,
    /// no leader, store shut down).
    ///
    /// **A write that fails this way may or may not have been applied**: the request may have
    /// reached the store and committed before the answer was lost. Resolve it by reading the
    /// keys back (e.g. compare the `mod_revision` you expect) before deciding to retry.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),

    /// The lease does not exist: it expired, was revoked, or was never granted here.
    #[error("lease {0:#x} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),

    /// The requested revision is older than the retained history.
    #[error(
        "revision {requested} has been compacted; the oldest revision still available is {compact_revision}"
    )]
    Compacted {
        requested: Revision,
        compact_revision: Revision,
    },

    /// The store refuses writes because its space quota is used up (etcd's `NOSPACE` alarm).
    /// Nothing was written. An operator must compact and defragment etcd, or raise
    /// `--quota-backend-bytes`, then disarm the alarm.
    #[error(
        "metadata store is out of space and refuses writes ({0}); compact and defragment etcd, then disarm its NOSPACE alarm"
    )]
    NoSpace(String),

    /// A transaction has more compares, or more ops in one branch, than the store allows.
    /// Nothing was written.
    #[error("transaction has {ops} operations in one part, more than the limit of {limit}")]
    TooManyOps { ops: usize, limit: usize },

    /// A request is larger than the store accepts. Nothing was written.
    #[error("request of about {bytes} bytes is larger than the limit of {limit} bytes")]
    RequestTooLarge { bytes: usize, limit: usize },

    /// A stored value could not be decoded.
    #[error("corrupt value at key {key:?}: {reason}")]
    Corrupt { key: String, reason: String },

    /// The embedded store's directory is already open in another process (or another handle in
    /// this one). The embedded store belongs to exactly one process.
    #[error(
        "embedded metadata store at {path} is already open ({detail}); \
         only one process may use it at a time"
    )]
    InUse { path: String, detail: String },

    /// The request is malformed (e.g. the same key written twice in one transaction branch).
    /// Nothing was written.
    #[error("invalid metadata request: {0}")]
    InvalidRequest(String),

    /// The request was not applied because of a concurrent change; retrying may succeed.
    #[error("metadata request not applied: {0}")]
    Contended(String),

    /// A bug, an unexpected answer from the store, or a local storage failure.
    #[error("internal metadata store error: {0}")]
    Internal(String),
}

impl MetaError {
    /// Whether the same request may succeed if sent again unchanged.
    ///
    /// `Unavailable` is retryable, but remember its outcome is unknown: a retried
    /// unconditional write is fine, a retried compare-and-swap must expect to find its own
    /// earlier write.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Contended(_))
    }

    /// A [`MetaError::Corrupt`] for `key`.
    pub fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(MetaError::Unavailable("x".into()).is_retryable());
        assert!(MetaError::Contended("x".into()).is_retryable());
        assert!(!MetaError::LeaseNotFound(1).is_retryable());
        assert!(
            !MetaError::TooManyOps {
                ops: 129,
                limit: 128
            }
            .is_retryable()
        );
        assert!(!MetaError::corrupt(b"k", "bad").is_retryable());
    }

    #[test]
    fn messages_are_lowercase_and_carry_context() {
        let error = MetaError::TooManyOps {
            ops: 129,
            limit: 128,
        };
        assert_eq!(
            error.to_string(),
            "transaction has 129 operations in one part, more than the limit of 128"
        );
        let error = MetaError::corrupt(b"/shale/topics/a", "expected value");
        assert!(error.to_string().contains("/shale/topics/a"));
        assert!(MetaError::LeaseNotFound(255).to_string().contains("0xff"));
    }
}
