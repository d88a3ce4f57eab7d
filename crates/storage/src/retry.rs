//! Retrying object-store requests, and resolving ambiguous create-only PUTs.
//!
//! Only [transient](crate::ErrorClass::Transient) failures are retried (timeouts, connection
//! failures, 5xx, 429/SlowDown), a bounded number of times, with exponential backoff and jitter
//! from an injected rng. NotFound, AlreadyExists, Precondition and NotModified are answers, not
//! failures, and pass straight through. object_store's own retries are turned off when the
//! store is built (see [`crate::build_object_store`]), so attempts do not multiply.
//!
//! # Ambiguous create-only PUTs
//!
//! A PUT whose response is lost (timeout, reset, 5xx after the write) may or may not have
//! landed. Retrying an overwrite is harmless, but a retried `PutMode::Create` that meets
//! `AlreadyExists` cannot tell "our first attempt landed" from "another writer got there
//! first". So every PUT carries a random put-id as user metadata ([`PUT_ID_METADATA`], sent as
//! `x-amz-meta-shale-put-id`). When a retried create-only PUT (or `PutMode::Update`, whose
//! second attempt sees a changed ETag) fails that way after an ambiguous attempt, the object is
//! HEADed: if it carries our put-id, our earlier attempt landed and the PUT is reported as a
//! success; otherwise the `AlreadyExists`/`Precondition` error stands. Stores that cannot keep
//! metadata (the local file system) get no put-id, and the error stands: a false failure is
//! safe (the caller writes a new object), a false success would not be.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::client::HttpErrorKind;
use object_store::path::Path;
use object_store::retry::{RetryContext, RetryFailure, RetryPolicy};
use object_store::{
    Attribute, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use shale_common::{Clock, SharedRng};

use crate::classify::{ErrorClass, classify};
use crate::config::RetryConfig;
use crate::metrics::{Resolution, StorageMetrics};
use crate::object_id::ObjectIdGenerator;
use crate::op::StoreOp;

/// The user-metadata key of the put-id (`x-amz-meta-shale-put-id` on S3).
pub const PUT_ID_METADATA: &str = "shale-put-id";

/// S3's DeleteObjects takes at most 1,000 keys per request.
const DELETE_BATCH: usize = 1_000;

/// Backoff between attempts: exponential, capped, with "equal jitter" (half fixed, half
/// random) so retries spread out but never collapse to zero.
#[derive(Debug, Clone)]
struct Backoff {
    config: RetryConfig,
    rng: SharedRng,
}

impl Backoff {
    /// The pause after failed attempt number `attempt` (1-based).
    fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .config
            .initial_backoff_ms
            .saturating_mul(1u64 << exponent)
            .min(self.config.max_backoff_ms);
        let half = ceiling as f64 / 2.0;
        Duration::from_secs_f64((half + self.rng.unit() * half) / 1_000.0)
    }

    fn max_attempts(&self) -> u32 {
        self.config.max_attempts.max(1)
    }
}

/// An [`ObjectStore`] that retries transient failures of `inner`.
#[derive(Debug, Clone)]
pub struct RetryingObjectStore {
    inner: Arc<dyn ObjectStore>,
    backoff: Backoff,
    metrics: StorageMetrics,
    put_ids: Option<ObjectIdGenerator>,
}

impl RetryingObjectStore {
    /// Wraps `inner`. With `put_ids`, every PUT carries a put-id (see the module docs); pass
    /// `false` for stores that reject user metadata.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        config: RetryConfig,
        metrics: StorageMetrics,
        clock: Arc<dyn Clock>,
        rng: SharedRng,
        put_ids: bool,
    ) -> Self {
        let put_ids = put_ids.then(|| ObjectIdGenerator::new(clock, rng.clone()));
        Self {
            inner,
            backoff: Backoff { config, rng },
            metrics,
            put_ids,
        }
    }

    /// Calls `call` until it succeeds, fails with a non-transient error, or runs out of
    /// attempts.
    async fn retry<T, F, Fut>(
        &self,
        op: StoreOp,
        path: &Path,
        mut call: F,
    ) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if classify(&error).is_transient() && attempt < self.max_attempts() => {
                    self.pause(op, path, attempt, &error).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn max_attempts(&self) -> u32 {
        self.backoff.max_attempts()
    }

    async fn pause(&self, op: StoreOp, path: &Path, attempt: u32, error: &object_store::Error) {
        let delay = self.backoff.delay(attempt);
        tracing::debug!(%op, %path, attempt, ?delay, %error, "retrying object-store request");
        self.metrics.record_retry(op);
        tokio::time::sleep(delay).await;
    }

    /// Decides a create-only (or If-Match) PUT that met `AlreadyExists`/`Precondition` after an
    /// earlier attempt may have landed: success if the object carries our put-id.
    async fn resolve_ambiguous_put(
        &self,
        location: &Path,
        put_id: &str,
        error: object_store::Error,
    ) -> object_store::Result<PutResult> {
        let head = self
            .retry(StoreOp::Head, location, || {
                self.inner
                    .get_opts(location, GetOptions::new().with_head(true))
            })
            .await;
        match head {
            Ok(found) => {
                let key = Attribute::Metadata(PUT_ID_METADATA.into());
                let theirs = found.attributes.get(&key).map(AsRef::as_ref);
                if theirs == Some(put_id) {
                    tracing::info!(%location, put_id, "ambiguous put resolved: our earlier attempt landed");
                    self.metrics.record_ambiguous_put(Resolution::Ours);
                    Ok(PutResult {
                        e_tag: found.meta.e_tag,
                        version: found.meta.version,
                        extensions: object_store::Extensions::default(),
                    })
                } else {
                    tracing::info!(%location, put_id, ?theirs, "ambiguous put resolved: another writer's object");
                    self.metrics.record_ambiguous_put(Resolution::Theirs);
                    Err(error)
                }
            }
            Err(head_error) if classify(&head_error) == ErrorClass::NotFound => {
                // Gone again (a 409 race whose winner failed): ours did not land.
                self.metrics.record_ambiguous_put(Resolution::Theirs);
                Err(error)
            }
            Err(head_error) => {
                tracing::warn!(%location, %head_error, "could not resolve ambiguous put");
                self.metrics.record_ambiguous_put(Resolution::Unknown);
                Err(head_error)
            }
        }
    }

    fn list_stream(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        // A listing is retried until it yields its first entry; after that a failure is
        // passed on, since restarting would repeat entries the caller already has.
        let this = self.clone();
        let prefix = prefix.cloned();
        let offset = offset.cloned();
        stream::once(async move {
            let shown = prefix.clone().unwrap_or_default();
            let mut attempt = 1;
            loop {
                let mut listing = match &offset {
                    Some(offset) => this.inner.list_with_offset(prefix.as_ref(), offset),
                    None => this.inner.list(prefix.as_ref()),
                };
                match listing.next().await {
                    Some(Err(error))
                        if classify(&error).is_transient() && attempt < this.max_attempts() =>
                    {
                        this.pause(StoreOp::List, &shown, attempt, &error).await;
                        attempt += 1;
                    }
                    first => return stream::iter(first).chain(listing).boxed(),
                }
            }
        })
        .flatten()
        .boxed()
    }

    /// Deletes one batch, retrying the keys whose delete failed transiently.
    async fn delete_batch(&self, batch: Vec<Path>) -> Vec<object_store::Result<Path>> {
        let mut results: Vec<Option<object_store::Result<Path>>> =
            batch.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let mut attempt = 1;
        while !pending.is_empty() {
            let locations: Vec<object_store::Result<Path>> =
                pending.iter().map(|i| Ok(batch[*i].clone())).collect();
            let answers: Vec<_> = self
                .inner
                .delete_stream(stream::iter(locations).boxed())
                .collect()
                .await;
            let last_attempt = attempt >= self.max_attempts();
            let mut retry = Vec::new();
            if answers.len() == pending.len() {
                for (index, answer) in pending.iter().zip(answers) {
                    match answer {
                        Err(error) if classify(&error).is_transient() && !last_attempt => {
                            retry.push(*index);
                        }
                        answer => results[*index] = Some(answer),
                    }
                }
            } else {
                // The whole request failed: the store yielded one error for the batch.
                let error = answers.into_iter().find_map(Result::err);
                match error {
                    Some(error) if classify(&error).is_transient() && !last_attempt => {
                        retry = pending.clone();
                    }
                    error => {
                        let message = error.map_or_else(
                            || "bulk delete returned too few results".to_owned(),
                            |error| error.to_string(),
                        );
                        for index in &pending {
                            results[*index] = Some(Err(object_store::Error::Generic {
                                store: "retry",
                                source: message.clone().into(),
                            }));
                        }
                    }
                }
            }
            if !retry.is_empty() {
                let error = object_store::Error::Generic {
                    store: "retry",
                    source: format!("{} deletes failed transiently", retry.len()).into(),
                };
                self.pause(StoreOp::Delete, &batch[retry[0]], attempt, &error)
                    .await;
                attempt += 1;
            }
            pending = retry;
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(object_store::Error::Generic {
                        store: "retry",
                        source: "delete result missing".into(),
                    })
                })
            })
            .collect()
    }
}

impl fmt::Display for RetryingObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryingObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let put_id = self.put_ids.as_ref().map(|ids| {
            let id = ids.next_id().to_string();
            opts.attributes.insert(
                Attribute::Metadata(PUT_ID_METADATA.into()),
                id.clone().into(),
            );
            id
        });
        let mut attempt = 1;
        // Whether an earlier attempt failed in a way that may have written the object.
        let mut maybe_landed = false;
        loop {
            let result = self
                .inner
                .put_opts(location, payload.clone(), opts.clone())
                .await;
            let Err(error) = result else {
                return result;
            };
            let class = classify(&error);
            let lost_to_ourselves = matches!(
                (&opts.mode, class),
                (PutMode::Create, ErrorClass::AlreadyExists)
                    | (PutMode::Update(_), ErrorClass::Precondition)
            );
            if maybe_landed && lost_to_ourselves {
                if let Some(put_id) = &put_id {
                    return self.resolve_ambiguous_put(location, put_id, error).await;
                }
                tracing::warn!(%location, %error, "ambiguous put without put-id: reporting the conflict");
                self.metrics.record_ambiguous_put(Resolution::Unknown);
                return Err(error);
            }
            // S3 answers 409 ConditionalRequestConflict to concurrent If-Match writes, which
            // object_store reports as AlreadyExists; for an update that is worth a retry.
            let conflict =
                matches!(opts.mode, PutMode::Update(_)) && class == ErrorClass::AlreadyExists;
            if (class.is_transient() || conflict) && attempt < self.max_attempts() {
                maybe_landed |= class.is_transient();
                self.pause(StoreOp::Put, location, attempt, &error).await;
                attempt += 1;
            } else {
                return Err(error);
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // Parts are retried by object_store itself, restarting the part under our policy.
        let policy = Arc::new(PartRetryPolicy {
            backoff: self.backoff.clone(),
            metrics: self.metrics.clone(),
        });
        let opts = opts.with_retry_policy(policy);
        self.retry(StoreOp::Multipart, location, || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = StoreOp::of_get(&options);
        self.retry(op, location, || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let this = self.clone();
        locations
            .ready_chunks(DELETE_BATCH)
            .then(move |chunk| {
                let this = this.clone();
                async move {
                    // Input errors pass through in place; valid paths are deleted as a batch.
                    let paths: Vec<Path> = chunk
                        .iter()
                        .filter_map(|p| p.as_ref().ok().cloned())
                        .collect();
                    let mut deleted = this.delete_batch(paths).await.into_iter();
                    let out: Vec<_> = chunk
                        .into_iter()
                        .map(|item| match item {
                            Ok(_) => deleted.next().unwrap_or_else(|| {
                                Err(object_store::Error::Generic {
                                    store: "retry",
                                    source: "delete result missing".into(),
                                })
                            }),
                            Err(error) => Err(error),
                        })
                        .collect();
                    stream::iter(out)
                }
            })
            .flatten()
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_stream(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_stream(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let shown = prefix.cloned().unwrap_or_default();
        self.retry(StoreOp::List, &shown, || {
            self.inner.list_with_delimiter(prefix)
        })
        .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.retry(StoreOp::Copy, to, || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }
}

/// Our backoff for multipart parts, applied by object_store when a part request fails.
#[derive(Debug)]
struct PartRetryPolicy {
    backoff: Backoff,
    metrics: StorageMetrics,
}

#[async_trait]
impl RetryPolicy for PartRetryPolicy {
    async fn retry(&self, context: RetryContext) -> bool {
        let transient = match context.failure {
            RetryFailure::Status(status) => {
                status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408
            }
            RetryFailure::Transport(kind) => kind != HttpErrorKind::Unknown,
            _ => false,
        };
        let attempt = u32::try_from(context.attempt).unwrap_or(u32::MAX);
        if !transient || attempt >= self.backoff.max_attempts() {
            return false;
        }
        self.metrics.record_retry(StoreOp::Multipart);
        tokio::time::sleep(self.backoff.delay(attempt)).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use shale_common::{ManualClock, seeded_rng};

    use super::*;
    use crate::faults::{Fault, FaultInjector, FaultyObjectStore, Ops};
    use crate::instrumented::InstrumentedObjectStore;

    struct Stack {
        store: RetryingObjectStore,
        faults: FaultInjector,
        metrics: StorageMetrics,
        memory: Arc<InMemory>,
    }

    /// Retry(Instrumented(Faults(memory))), as `build_object_store` composes it.
    fn stack(max_attempts: u32) -> Stack {
        let memory = Arc::new(InMemory::new());
        let faults = FaultInjector::new(seeded_rng(5));
        let metrics = StorageMetrics::default();
        let faulty = Arc::new(FaultyObjectStore::new(memory.clone(), faults.clone()));
        let instrumented = Arc::new(InstrumentedObjectStore::new(faulty, metrics.clone()));
        let config = RetryConfig {
            max_attempts,
            initial_backoff_ms: 10,
            max_backoff_ms: 80,
        };
        let store = RetryingObjectStore::new(
            instrumented,
            config,
            metrics.clone(),
            Arc::new(ManualClock::new(1_700_000_000_000)),
            seeded_rng(6),
            true,
        );
        Stack {
            store,
            faults,
            metrics,
            memory,
        }
    }

    fn create() -> PutOptions {
        PutOptions::from(PutMode::Create)
    }

    #[tokio::test(start_paused = true)]
    async fn transient_error_then_success() {
        let s = stack(5);
        s.faults.fail_next(StoreOp::Put, 2, Fault::Unavailable);
        s.store
            .put_opts(&Path::from("a"), "x".into(), create())
            .await
            .unwrap();
        let snapshot = s.metrics.snapshot();
        assert_eq!(snapshot.puts, 3, "every attempt is counted");
        assert_eq!(snapshot.errors, 2);
        assert_eq!(snapshot.retries, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ambiguous_create_that_landed_is_a_success() {
        let s = stack(5);
        let path = Path::from("segments/a.seg");
        s.faults.succeed_but_report_failure(StoreOp::Put, 1);
        let result = s
            .store
            .put_opts(&path, "ours".into(), create())
            .await
            .unwrap();
        assert!(result.e_tag.is_some());
        let got = s.memory.get(&path).await.unwrap();
        let put_id = got
            .attributes
            .get(&Attribute::Metadata(PUT_ID_METADATA.into()));
        assert!(put_id.is_some_and(|id| id.len() == 26), "{put_id:?}");
        assert_eq!(got.bytes().await.unwrap().as_ref(), b"ours");
        let snapshot = s.metrics.snapshot();
        assert_eq!(snapshot.puts, 2);
        assert_eq!(snapshot.heads, 1);
        assert_eq!(snapshot.ambiguous_puts_ours, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ambiguous_create_that_lost_to_another_writer_fails() {
        let s = stack(5);
        let path = Path::from("segments/a.seg");
        // Our first attempt times out without landing; meanwhile another writer creates it.
        s.faults.fail_next(StoreOp::Put, 1, Fault::Timeout);
        let other = s.memory.clone();
        let other_path = path.clone();
        let racer = tokio::spawn(async move {
            other
                .put_opts(&other_path, "theirs".into(), PutMode::Create.into())
                .await
        });
        racer.await.unwrap().unwrap();
        let error = s
            .store
            .put_opts(&path, "ours".into(), create())
            .await
            .unwrap_err();
        assert_eq!(classify(&error), ErrorClass::AlreadyExists, "{error}");
        assert_eq!(s.metrics.snapshot().ambiguous_puts_theirs, 1);
        let body = s.memory.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(body.as_ref(), b"theirs");
    }

    #[tokio::test(start_paused = true)]
    async fn plain_already_exists_is_not_resolved() {
        let s = stack(5);
        let path = Path::from("a");
        s.store
            .put_opts(&path, "first".into(), create())
            .await
            .unwrap();
        let error = s
            .store
            .put_opts(&path, "second".into(), create())
            .await
            .unwrap_err();
        assert_eq!(classify(&error), ErrorClass::AlreadyExists);
        let snapshot = s.metrics.snapshot();
        assert_eq!(snapshot.puts, 2);
        assert_eq!(snapshot.heads, 0, "no ambiguity, no HEAD");
    }

    #[tokio::test(start_paused = true)]
    async fn ambiguous_update_that_landed_is_a_success() {
        let s = stack(5);
        let path = Path::from("manifest");
        let first = s.store.put(&path, "v1".into()).await.unwrap();
        s.faults.succeed_but_report_failure(StoreOp::Put, 1);
        let update = PutOptions::from(PutMode::Update(first.into()));
        s.store.put_opts(&path, "v2".into(), update).await.unwrap();
        let body = s.memory.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(body.as_ref(), b"v2");
    }

    #[tokio::test(start_paused = true)]
    async fn update_conflict_409_is_retried() {
        // object_store reports S3's 409 ConditionalRequestConflict as AlreadyExists.
        let s = stack(5);
        let path = Path::from("manifest");
        let first = s.store.put(&path, "v1".into()).await.unwrap();
        s.faults.fail_next(StoreOp::Put, 1, Fault::AlreadyExists);
        let update = PutOptions::from(PutMode::Update(first.into()));
        s.store.put_opts(&path, "v2".into(), update).await.unwrap();
        assert_eq!(s.metrics.snapshot().retries, 1);
        assert_eq!(
            s.metrics.snapshot().heads,
            0,
            "a 409 did not land: nothing to resolve"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_errors_pass_straight_through() {
        let s = stack(5);
        for fault in [
            Fault::Precondition,
            Fault::NotFound,
            Fault::PermissionDenied,
            Fault::AlreadyExists,
        ] {
            s.faults.fail_next(Ops::Any, 1, fault);
            let start = tokio::time::Instant::now();
            assert!(s.store.get(&Path::from("a")).await.is_err());
            assert_eq!(start.elapsed(), Duration::ZERO, "no backoff for {fault:?}");
        }
        let snapshot = s.metrics.snapshot();
        assert_eq!(snapshot.gets, 4);
        assert_eq!(snapshot.retries, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let s = stack(4);
        s.faults.set_unavailable(true);
        let start = tokio::time::Instant::now();
        let error = s.store.put(&Path::from("a"), "x".into()).await.unwrap_err();
        assert!(classify(&error).is_transient());
        assert_eq!(s.metrics.snapshot().puts, 4);
        // Backoffs 10, 20, 40 ms ceilings with equal jitter: between 35 and 70 ms in total.
        let waited = start.elapsed();
        assert!(
            (Duration::from_millis(35)..=Duration::from_millis(70)).contains(&waited),
            "{waited:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff {
            config: RetryConfig {
                max_attempts: 10,
                initial_backoff_ms: 100,
                max_backoff_ms: 1_000,
            },
            rng: seeded_rng(1),
        };
        for attempt in 1..=10 {
            let ceiling = (100u64 << (attempt - 1)).min(1_000);
            let delay = backoff.delay(attempt).as_secs_f64() * 1_000.0;
            assert!(delay >= ceiling as f64 / 2.0 - 1e-6, "{attempt}: {delay}");
            assert!(delay <= ceiling as f64 + 1e-6, "{attempt}: {delay}");
        }
        assert!(backoff.delay(200) <= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn reads_listings_and_copies_are_retried() {
        let s = stack(5);
        let path = Path::from("dir/a");
        s.memory.put(&path, "hello".into()).await.unwrap();
        s.faults.fail_next(StoreOp::GetRange, 1, Fault::Timeout);
        assert_eq!(
            s.store.get_range(&path, 1..3).await.unwrap().as_ref(),
            b"el"
        );
        s.faults.fail_next(StoreOp::List, 2, Fault::ServerError);
        let listed: Vec<_> = s
            .store
            .list(Some(&Path::from("dir")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        s.faults.fail_next(StoreOp::List, 1, Fault::ServerError);
        assert_eq!(
            s.store
                .list_with_delimiter(None)
                .await
                .unwrap()
                .common_prefixes
                .len(),
            1
        );
        s.faults.fail_next(StoreOp::Copy, 1, Fault::ServerError);
        s.store.copy(&path, &Path::from("dir/b")).await.unwrap();
        assert_eq!(s.metrics.snapshot().retries, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn deletes_retry_only_what_failed() {
        let s = stack(5);
        for name in ["a", "b", "c"] {
            s.memory.put(&Path::from(name), "x".into()).await.unwrap();
        }
        // The first delete of the batch fails transiently and is retried alone.
        s.faults.fail_next(StoreOp::Delete, 1, Fault::Unavailable);
        let locations = stream::iter(["a", "b", "c"].map(|n| Ok(Path::from(n)))).boxed();
        let results: Vec<_> = s.store.delete_stream(locations).collect().await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        for name in ["a", "b", "c"] {
            assert!(
                s.memory.head(&Path::from(name)).await.is_err(),
                "{name} still there"
            );
        }
        assert_eq!(s.metrics.snapshot().deletes, 4);

        s.memory.put(&Path::from("d"), "x".into()).await.unwrap();
        s.faults
            .fail_next(StoreOp::Delete, 1, Fault::PermissionDenied);
        let locations = stream::iter([Ok(Path::from("d"))]).boxed();
        let results: Vec<_> = s.store.delete_stream(locations).collect().await;
        assert_eq!(results.len(), 1);
        assert!(results[0].is_err());
        assert_eq!(s.metrics.snapshot().retries, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn listing_failure_after_first_entry_is_passed_on() {
        let s = stack(5);
        s.memory.put(&Path::from("a"), "x".into()).await.unwrap();
        s.faults.set_unavailable(true);
        let error = s
            .store
            .list(None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(classify(&error).is_transient());
        assert_eq!(s.metrics.snapshot().lists, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn no_put_id_without_attribute_support() {
        let memory = Arc::new(InMemory::new());
        let store = RetryingObjectStore::new(
            memory.clone(),
            RetryConfig::default(),
            StorageMetrics::default(),
            Arc::new(ManualClock::new(0)),
            seeded_rng(1),
            false,
        );
        store.put(&Path::from("a"), "x".into()).await.unwrap();
        let got = memory.get(&Path::from("a")).await.unwrap();
        assert!(got.attributes.is_empty());
    }
}
