//! The etcd backend: a direct translation of [`MetaStore`] onto `etcd-client`.
//!
//! Every request runs under the store's request timeout, in its tracing span, and is
//! counted. Transactions are checked against [`MetaLimits`] before they are sent
//! ([`crate::check_limits`]), so an over-limit request fails exactly as it does in the embedded
//! store and never reaches etcd.

mod convert;
mod errors;
mod keep_alive;
mod prefix;
mod watch;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client as ec;

use self::errors::{ErrorContext, map_error};
use self::keep_alive::KeepAlives;
use self::prefix::KeyPrefix;
use crate::metrics::{MetaMetrics, Op};
use crate::store::{
    KeyRange, Lease, LeaseId, MetaLimits, MetaStore, RangeRequest, RangeResponse, Revision, Txn,
    TxnResponse, WatchStream,
};
use crate::{MetaError, check_limits};

const BACKEND: &str = "etcd";
/// Responses can hold whole index prefixes; tonic's 4 MiB default is too small for that.
const MAX_DECODING_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Time allowed to establish the connection and answer the first request in
    /// [`EtcdStore::connect`].
    pub connect_timeout: Duration,
    /// Time allowed for one request (for a watch: until it is established). A request that
    /// runs out of time fails with [`MetaError::Unavailable`].
    pub request_timeout: Duration,
    /// Prepended to every key sent and stripped from every key received, so several Shale
    /// clusters (or tests) can share one etcd. Empty by default.
    pub key_prefix: Vec<u8>,
    /// Checked before sending; keep etcd's defaults unless the server was started with other
    /// `--max-txn-ops` / `--max-request-bytes`.
    pub limits: MetaLimits,
    /// TLS towards etcd. When set, endpoints must be `https://` URLs.
    pub tls: Option<EtcdTls>,
    /// etcd password authentication.
    pub credentials: Option<EtcdCredentials>,
}

/// TLS settings for etcd, as PEM bytes.
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA certificates that sign etcd's server certificate (the only trust roots).
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and private key, for an etcd that requires client
    /// certificates (`--client-cert-auth`).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

// Hand-written so the private key never reaches a log line.
impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// An etcd user and its password.
#[derive(Clone)]
pub struct EtcdCredentials {
    pub user: String,
    pub password: String,
}

// Hand-written so the password never reaches a log line.
impl fmt::Debug for EtcdCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            key_prefix: Vec::new(),
            limits: MetaLimits::default(),
            tls: None,
            credentials: None,
        }
    }
}

/// A [`MetaStore`] backed by an etcd v3 cluster.
pub struct EtcdStore {
    client: ec::Client,
    options: EtcdOptions,
    prefix: KeyPrefix,
    metrics: MetaMetrics,
    keep_alives: KeepAlives,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`) and checks that it
    /// answers, so a wrong address fails here rather than at the first request.
    pub async fn connect<E: AsRef<str>>(
        endpoints: &[E],
        options: EtcdOptions,
        metrics: MetaMetrics,
    ) -> Result<Self, MetaError> {
        let endpoints: Vec<&str> = endpoints.iter().map(AsRef::as_ref).collect();
        let mut connect_options = ec::ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // Detects a dead connection under an idle watch.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            // Fail instead of hanging when the cluster has lost its leader.
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            if let Some(plain) = endpoints.iter().find(|e| !e.starts_with("https://")) {
                return Err(MetaError::InvalidRequest(format!(
                    "etcd endpoint {plain} is not https:// but TLS is configured"
                )));
            }
            let mut config =
                ec::TlsOptions::new().ca_certificate(ec::Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.client {
                config = config.identity(ec::Identity::from_pem(cert, key));
            }
            connect_options = connect_options.with_tls(config);
        }
        if let Some(credentials) = &options.credentials {
            connect_options = connect_options
                .with_user(&credentials.user, &credentials.password)
                // etcd's auth tokens expire (5 minutes by default); an agent runs for longer.
                .with_auto_token_refresh(true);
        }
        let connect = async {
            let mut client = ec::Client::connect(&endpoints, Some(connect_options))
                .await
                .map_err(|error| connect_error(error, &options))?;
            // Any read proves the server answers; etcd has no empty key, so probe `\0`.
            let probe_key = if options.key_prefix.is_empty() {
                vec![0]
            } else {
                options.key_prefix.clone()
            };
            match client
                .get(probe_key, Some(ec::GetOptions::new().with_count_only()))
                .await
            {
                Ok(_) => {}
                // A user granted only its cluster's prefix may not read the probe key; the
                // refusal still proves that etcd answers and accepted the credentials.
                Err(ec::Error::GRpcStatus(status))
                    if options.credentials.is_some()
                        && status.message().contains("permission denied") => {}
                Err(error) => return Err(connect_error(error, &options)),
            }
            Ok::<_, MetaError>(client)
        };
        let client = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| {
                MetaError::Unavailable(format!(
                    "etcd at {} did not answer within {:?}",
                    endpoints.join(","),
                    options.connect_timeout
                ))
            })??;
        Ok(Self {
            client,
            prefix: KeyPrefix::new(options.key_prefix.clone()),
            options,
            metrics,
            keep_alives: KeepAlives::default(),
        })
    }

    /// Runs one request with the timeout, span and metrics every request gets.
    async fn call<T>(
        &self,
        op: Op,
        request: impl Future<Output = Result<T, MetaError>>,
    ) -> Result<T, MetaError> {
        let timeout = self.options.request_timeout;
        self.metrics
            .observe(op, BACKEND, async move {
                tokio::time::timeout(timeout, request)
                    .await
                    .unwrap_or_else(|_| {
                        Err(MetaError::Unavailable(format!(
                            "etcd {op} timed out after {timeout:?}"
                        )))
                    })
            })
            .await
    }

    fn kv(&self) -> ec::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
    }
}

/// A failed connect, with what the caller needs to fix it: which user etcd refused, or the
/// transport's root cause (tonic's own message is only "transport error" or "operation was
/// canceled").
fn connect_error(error: ec::Error, options: &EtcdOptions) -> MetaError {
    let cause = match &error {
        ec::Error::GRpcStatus(status)
            if status.message().contains("authentication failed")
                || status.code() == tonic::Code::Unauthenticated =>
        {
            let user = options
                .credentials
                .as_ref()
                .map_or("(none)", |credentials| credentials.user.as_str());
            return MetaError::InvalidRequest(format!(
                "etcd refused user {user:?}: {}",
                status.message()
            ));
        }
        ec::Error::GRpcStatus(status) => match std::error::Error::source(status) {
            Some(source) => root_cause(source),
            None => return map_error(error, &ErrorContext::default()),
        },
        ec::Error::TransportError(transport) => root_cause(transport),
        _ => return map_error(error, &ErrorContext::default()),
    };
    // An etcd that requires client certificates refuses a client without one after the
    // handshake, with an alert that often loses the race with "connection closed".
    let hint = match &options.tls {
        Some(tls) if tls.client.is_none() && !cause.contains("invalid peer certificate") => {
            "; if etcd checks client certificates (--client-cert-auth), set a client certificate and key"
        }
        _ => "",
    };
    MetaError::Unavailable(format!("etcd transport: {cause}{hint}"))
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn ttl_seconds(ttl: Duration) -> i64 {
    // etcd leases have whole seconds; round up so the lease lives at least as asked.
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(seconds.max(1)).unwrap_or(i64::MAX)
}

fn header_revision(header: Option<&ec::ResponseHeader>) -> Result<Revision, MetaError> {
    header
        .map(ec::ResponseHeader::revision)
        .ok_or_else(|| MetaError::Internal("etcd response without a header".to_owned()))
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, MetaError> {
        // Boxed: etcd-client's request builders make this future large.
        self.call(
            Op::Range,
            Box::pin(async {
                let RangeRequest {
                    range,
                    limit,
                    revision,
                } = request;
                let mut options = ec::GetOptions::new();
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                if !range.end.is_empty() {
                    options = options.with_range(self.prefix.range_end(&range.end));
                }
                if limit > 0 {
                    options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
                }
                let mut response = self
                    .kv()
                    .get(
                        self.prefix.range_start(&range.start, &range.end),
                        Some(options),
                    )
                    .await
                    .map_err(|error| {
                        map_error(
                            error,
                            &ErrorContext {
                                revision,
                                ..ErrorContext::default()
                            },
                        )
                    })?;
                let revision = header_revision(response.header())?;
                let more = response.more();
                let kvs = response
                    .take_kvs()
                    .into_iter()
                    .map(|kv| convert::key_value(&self.prefix, kv))
                    .collect();
                Ok(RangeResponse {
                    kvs,
                    more,
                    revision,
                })
            }),
        )
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, MetaError> {
        self.call(Op::Txn, async {
            check_limits(&txn, self.options.limits)?;
            let context = ErrorContext {
                lease: txn
                    .success
                    .iter()
                    .chain(&txn.failure)
                    .find_map(|op| match op {
                        crate::TxnOp::Put { lease, .. } if *lease != 0 => Some(*lease),
                        _ => None,
                    })
                    .unwrap_or(0),
                ops: txn
                    .compares
                    .len()
                    .max(txn.success.len())
                    .max(txn.failure.len()),
                bytes: txn.encoded_len(),
                limits: self.options.limits,
                revision: 0,
            };
            let request = ec::Txn::new()
                .when(
                    txn.compares
                        .iter()
                        .map(|compare| convert::compare(&self.prefix, compare))
                        .collect::<Vec<_>>(),
                )
                .and_then(
                    txn.success
                        .iter()
                        .map(|op| convert::txn_op(&self.prefix, op))
                        .collect::<Vec<_>>(),
                )
                .or_else(
                    txn.failure
                        .iter()
                        .map(|op| convert::txn_op(&self.prefix, op))
                        .collect::<Vec<_>>(),
                );
            let response = self
                .kv()
                .txn(request)
                .await
                .map_err(|error| map_error(error, &context))?;
            Ok(TxnResponse {
                succeeded: response.succeeded(),
                revision: header_revision(response.header())?,
                responses: response
                    .op_responses()
                    .into_iter()
                    .map(|op| convert::txn_op_response(&self.prefix, op))
                    .collect(),
            })
        })
        .await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, MetaError> {
        self.call(Op::LeaseGrant, async {
            let response = self
                .client
                .lease_client()
                .grant(ttl_seconds(ttl), None)
                .await
                .map_err(|error| map_error(error, &ErrorContext::default()))?;
            if !response.error().is_empty() {
                return Err(MetaError::Internal(format!(
                    "etcd refused the lease: {}",
                    response.error()
                )));
            }
            Ok(Lease {
                id: response.id(),
                ttl: Duration::from_secs(u64::try_from(response.ttl()).unwrap_or(0)),
            })
        })
        .await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, MetaError> {
        self.call(
            Op::LeaseKeepAlive,
            self.keep_alives.keep_alive(&self.client, id),
        )
        .await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), MetaError> {
        self.keep_alives.forget(id);
        self.call(Op::LeaseRevoke, async {
            self.client
                .lease_client()
                .revoke(id)
                .await
                .map_err(|error| {
                    map_error(
                        error,
                        &ErrorContext {
                            lease: id,
                            ..ErrorContext::default()
                        },
                    )
                })?;
            Ok(())
        })
        .await
    }

    async fn watch(
        &self,
        range: KeyRange,
        from_revision: Revision,
    ) -> Result<WatchStream, MetaError> {
        self.call(Op::Watch, async {
            let mut options = ec::WatchOptions::new().with_start_revision(from_revision);
            if !range.end.is_empty() {
                options = options.with_range(self.prefix.range_end(&range.end));
            }
            let mut stream = self
                .client
                .watch_client()
                .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
                .watch(
                    self.prefix.range_start(&range.start, &range.end),
                    Some(options),
                )
                .await
                .map_err(|error| map_error(error, &ErrorContext::default()))?;
            // Wait for the "created" answer: from then on every new write is delivered,
            // which is what "from now" promises.
            match stream.message().await {
                Ok(Some(response)) if response.created() && !response.canceled() => {}
                Ok(Some(response)) => {
                    return Err(MetaError::Internal(format!(
                        "etcd did not create the watch: {}",
                        response.cancel_reason()
                    )));
                }
                Ok(None) => {
                    return Err(MetaError::Unavailable(
                        "etcd closed the watch before creating it".to_owned(),
                    ));
                }
                Err(error) => return Err(map_error(error, &ErrorContext::default())),
            }
            Ok(watch::into_stream(
                stream,
                self.prefix.clone(),
                from_revision,
            ))
        })
        .await
    }

    fn limits(&self) -> MetaLimits {
        self.options.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2_001)), 3);
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
    }
}
