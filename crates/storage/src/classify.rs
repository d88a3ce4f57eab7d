//! Sorting object-store errors into what a caller should do about them.
//!
//! object_store reports HTTP failures as `Error::Generic` wrapping a private `RetryError`, so
//! the status code is only reachable through the error text ("status code: 503 …"); transport
//! failures carry a public [`object_store::client::HttpError`] in the source chain. Both are
//! recognised here, along with the faults [`crate::FaultInjector`] makes, so the retry layer
//! treats a real 503 and an injected one the same way.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

use crate::faults::InjectedFault;

/// What kind of failure an object-store error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// May succeed if tried again: timeouts, connection failures, 5xx, 429/SlowDown.
    Transient,
    /// The object (or bucket) does not exist.
    NotFound,
    /// A create-only write found the object already there (HTTP 412 on `If-None-Match: *`,
    /// or 409 from a concurrent conditional write).
    AlreadyExists,
    /// A conditional request's precondition failed (HTTP 412 on `If-Match`).
    Precondition,
    /// A conditional GET found the object unchanged (HTTP 304).
    NotModified,
    /// Anything else: bad request, permissions, misconfiguration. Retrying will not help.
    Permanent,
}

impl ErrorClass {
    /// Whether retrying the same request can help.
    pub fn is_transient(self) -> bool {
        self == ErrorClass::Transient
    }
}

/// Classifies an object-store error.
pub fn classify(error: &object_store::Error) -> ErrorClass {
    use object_store::Error;
    match error {
        Error::NotFound { .. } => ErrorClass::NotFound,
        Error::AlreadyExists { .. } => ErrorClass::AlreadyExists,
        Error::Precondition { .. } => ErrorClass::Precondition,
        Error::NotModified { .. } => ErrorClass::NotModified,
        Error::Generic { source, .. } => classify_source(source.as_ref()),
        _ => ErrorClass::Permanent,
    }
}

/// Whether retrying the request that failed with `error` can help.
pub fn is_transient(error: &object_store::Error) -> bool {
    classify(error).is_transient()
}

fn classify_source(source: &(dyn StdError + 'static)) -> ErrorClass {
    let mut current: Option<&(dyn StdError + 'static)> = Some(source);
    while let Some(error) = current {
        if let Some(fault) = error.downcast_ref::<InjectedFault>() {
            return fault.fault().class();
        }
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Unknown => ErrorClass::Permanent,
                _ => ErrorClass::Transient,
            };
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && is_transient_io(io.kind())
        {
            return ErrorClass::Transient;
        }
        current = error.source();
    }
    classify_text(&source.to_string())
}

fn is_transient_io(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind;
    matches!(
        kind,
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionRefused
            | ErrorKind::BrokenPipe
            | ErrorKind::TimedOut
            | ErrorKind::UnexpectedEof
            | ErrorKind::Interrupted
    )
}

/// The status code or S3 error code in object_store's `RetryError` text, e.g.
/// "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown…".
fn classify_text(text: &str) -> ErrorClass {
    const TRANSIENT_CODES: [&str; 5] = [
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeTooSkewed",
    ];
    if let Some(status) = status_in_text(text)
        && (status >= 500 || status == 429 || status == 408)
    {
        return ErrorClass::Transient;
    }
    if TRANSIENT_CODES.iter().any(|code| text.contains(code)) {
        return ErrorClass::Transient;
    }
    ErrorClass::Permanent
}

fn status_in_text(text: &str) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let start = text.find(MARKER)? + MARKER.len();
    text.get(start..start + 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use object_store::Error;

    use super::*;
    use crate::faults::Fault;
    use crate::op::StoreOp;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Text(String);

    fn generic(source: impl StdError + Send + Sync + 'static) -> Error {
        Error::Generic {
            store: "S3",
            source: Box::new(source),
        }
    }

    #[test]
    fn typed_variants() {
        let boxed = || Box::new(Text("x".into()));
        let path = || "p".to_owned();
        assert_eq!(
            classify(&Error::NotFound {
                path: path(),
                source: boxed()
            }),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(&Error::AlreadyExists {
                path: path(),
                source: boxed()
            }),
            ErrorClass::AlreadyExists
        );
        assert_eq!(
            classify(&Error::Precondition {
                path: path(),
                source: boxed()
            }),
            ErrorClass::Precondition
        );
        assert_eq!(
            classify(&Error::NotModified {
                path: path(),
                source: boxed()
            }),
            ErrorClass::NotModified
        );
        assert_eq!(
            classify(&Error::PermissionDenied {
                path: path(),
                source: boxed()
            }),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn status_text_from_object_store() {
        let cases = [
            (
                "Error performing PUT http://x/b/k in 3ms - Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>",
                ErrorClass::Transient,
            ),
            (
                "Error performing GET http://x in 1ms - Server returned non-2xx status code: 500 Internal Server Error: ",
                ErrorClass::Transient,
            ),
            (
                "Error performing GET http://x in 1ms - Server returned non-2xx status code: 429 Too Many Requests: ",
                ErrorClass::Transient,
            ),
            (
                "Error performing POST http://x in 1ms - Server returned error response: <Error><Code>InternalError</Code></Error>",
                ErrorClass::Transient,
            ),
            (
                "Error performing PUT http://x in 1ms - Server returned non-2xx status code: 400 Bad Request: <Code>EntityTooSmall</Code>",
                ErrorClass::Permanent,
            ),
            ("something odd", ErrorClass::Permanent),
        ];
        for (text, expected) in cases {
            assert_eq!(classify(&generic(Text(text.into()))), expected, "{text}");
        }
    }

    #[test]
    fn transport_errors_anywhere_in_the_chain() {
        let timeout = HttpError::new(HttpErrorKind::Timeout, Text("timed out".into()));
        assert_eq!(classify(&generic(timeout)), ErrorClass::Transient);
        let connect = HttpError::new(HttpErrorKind::Connect, Text("refused".into()));
        assert_eq!(classify(&generic(connect)), ErrorClass::Transient);
        let unknown = HttpError::new(HttpErrorKind::Unknown, Text("??".into()));
        assert_eq!(classify(&generic(unknown)), ErrorClass::Permanent);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&generic(reset)), ErrorClass::Transient);
        let full = std::io::Error::other("disk full");
        assert_eq!(classify(&generic(full)), ErrorClass::Permanent);
    }

    #[test]
    fn injected_faults_classify_like_real_ones() {
        let path = object_store::path::Path::from("k");
        assert!(is_transient(&Fault::Timeout.error(StoreOp::Put, &path)));
        assert!(is_transient(&Fault::Unavailable.error(StoreOp::Put, &path)));
        assert!(is_transient(&Fault::ServerError.error(StoreOp::Get, &path)));
        assert_eq!(
            classify(&Fault::Precondition.error(StoreOp::Put, &path)),
            ErrorClass::Precondition
        );
        assert_eq!(
            classify(&Fault::AlreadyExists.error(StoreOp::Put, &path)),
            ErrorClass::AlreadyExists
        );
        assert_eq!(
            classify(&Fault::NotFound.error(StoreOp::Get, &path)),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(&Fault::PermissionDenied.error(StoreOp::Get, &path)),
            ErrorClass::Permanent
        );
    }
}
