//! Fault injection for object-store calls.
//!
//! A [`FaultInjector`] is a cloneable handle that tests keep; [`FaultyObjectStore`] sits at the
//! bottom of the decorator stack (just above the real store) and consults it on every call, so
//! injected failures are seen by the metrics and the retry layer exactly like real ones. Faults
//! are built from the same error types object_store produces (a timeout is an
//! [`HttpError`] of kind `Timeout`), so [`crate::classify`] treats them alike.
//!
//! Randomness (the error rate) comes from an injected [`SharedRng`], delays from `tokio::time`,
//! so runs with a seeded rng and paused time repeat exactly.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use shale_common::SharedRng;

use crate::classify::ErrorClass;
use crate::op::StoreOp;

/// A failure to inject, modelled on what S3 and the network really do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The request timed out (transport error; retryable). Whether a PUT landed is unknown.
    Timeout,
    /// HTTP 503 SlowDown / connection refused: the store is unavailable (retryable).
    Unavailable,
    /// HTTP 500 InternalError (retryable).
    ServerError,
    /// HTTP 412 on a conditional request (not retryable).
    Precondition,
    /// A create-only write found the object present (not retryable).
    AlreadyExists,
    /// HTTP 404 (not retryable).
    NotFound,
    /// HTTP 403 (not retryable).
    PermissionDenied,
    /// The calling task panics inside the call, standing in for a bug in a layer above the
    /// store: tests use it to show a panicking task fails its work cleanly.
    Panic,
}

impl Fault {
    /// How [`crate::classify`] sees this fault.
    pub fn class(self) -> ErrorClass {
        match self {
            Fault::Timeout | Fault::Unavailable | Fault::ServerError => ErrorClass::Transient,
            Fault::Precondition => ErrorClass::Precondition,
            Fault::AlreadyExists => ErrorClass::AlreadyExists,
            Fault::NotFound => ErrorClass::NotFound,
            Fault::PermissionDenied | Fault::Panic => ErrorClass::Permanent,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Fault::Timeout => "request timed out",
            Fault::Unavailable => "503 slow down: store unavailable",
            Fault::ServerError => "500 internal error",
            Fault::Precondition => "412 precondition failed",
            Fault::AlreadyExists => "object already exists",
            Fault::NotFound => "404 not found",
            Fault::PermissionDenied => "403 access denied",
            Fault::Panic => "panic",
        }
    }

    /// The object_store error this fault produces for `op` on `path`.
    pub fn error(self, op: StoreOp, path: &Path) -> object_store::Error {
        use object_store::Error;
        let fault = InjectedFault {
            fault: self,
            op,
            path: path.to_string(),
        };
        let path = path.to_string();
        match self {
            Fault::Timeout => Error::Generic {
                store: STORE,
                source: Box::new(HttpError::new(HttpErrorKind::Timeout, fault)),
            },
            Fault::Unavailable | Fault::ServerError => Error::Generic {
                store: STORE,
                source: Box::new(fault),
            },
            Fault::Precondition => Error::Precondition {
                path,
                source: Box::new(fault),
            },
            Fault::AlreadyExists => Error::AlreadyExists {
                path,
                source: Box::new(fault),
            },
            Fault::NotFound => Error::NotFound {
                path,
                source: Box::new(fault),
            },
            Fault::PermissionDenied | Fault::Panic => Error::PermissionDenied {
                path,
                source: Box::new(fault),
            },
        }
    }
}

const STORE: &str = "fault-injection";

/// The source of every injected error, so tests and logs can tell injected from real.
#[derive(Debug, Clone, thiserror::Error)]
#[error("injected fault on {op} {path:?}: {}", fault.describe())]
pub struct InjectedFault {
    fault: Fault,
    op: StoreOp,
    path: String,
}

impl InjectedFault {
    /// Which fault this is.
    pub fn fault(&self) -> Fault {
        self.fault
    }
}

/// Which calls a fault rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ops {
    /// Every call.
    Any,
    /// Calls of one kind.
    Only(StoreOp),
}

impl Ops {
    fn matches(self, op: StoreOp) -> bool {
        match self {
            Ops::Any => true,
            Ops::Only(only) => only == op,
        }
    }
}

impl From<StoreOp> for Ops {
    fn from(op: StoreOp) -> Self {
        Ops::Only(op)
    }
}

#[derive(Debug)]
struct Rule {
    ops: Ops,
    remaining: usize,
    fault: Fault,
    /// Let the call reach the store, then report the fault anyway.
    after_success: bool,
}

#[derive(Debug, Default)]
struct State {
    unavailable: bool,
    delay: Duration,
    error_rate: f64,
    rate_fault: Option<Fault>,
    rules: VecDeque<Rule>,
    injected: u64,
}

/// What to do with one call.
#[derive(Debug, Default, Clone, Copy)]
struct Decision {
    delay: Duration,
    before: Option<Fault>,
    after: Option<Fault>,
}

/// A cloneable handle that controls the faults of every [`FaultyObjectStore`] built with it.
#[derive(Clone)]
pub struct FaultInjector {
    state: Arc<Mutex<State>>,
    rng: SharedRng,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl FaultInjector {
    /// An injector that injects nothing until told to; `rng` drives the error rate.
    pub fn new(rng: SharedRng) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            rng,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails each call with `fault` with probability `rate` (0.0–1.0).
    pub fn set_error_rate(&self, rate: f64, fault: Fault) {
        let mut state = self.lock();
        state.error_rate = rate.clamp(0.0, 1.0);
        state.rate_fault = Some(fault);
    }

    /// Delays every call by `delay` before it reaches the store (or fails).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Fails the next `n` matching calls with `fault`; they never reach the store.
    pub fn fail_next(&self, ops: impl Into<Ops>, n: usize, fault: Fault) {
        self.push_rule(ops.into(), n, fault, false);
    }

    /// Lets the next `n` matching calls reach the store and take effect, then reports a
    /// [`Fault::Timeout`] to the caller: the ambiguous outcome of a PUT whose response was lost.
    pub fn succeed_but_report_failure(&self, ops: impl Into<Ops>, n: usize) {
        self.push_rule(ops.into(), n, Fault::Timeout, true);
    }

    fn push_rule(&self, ops: Ops, n: usize, fault: Fault, after_success: bool) {
        if n > 0 {
            self.lock().rules.push_back(Rule {
                ops,
                remaining: n,
                fault,
                after_success,
            });
        }
    }

    /// While `true`, every call fails with [`Fault::Unavailable`].
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Removes every rule, the error rate, the delay and the unavailable switch.
    pub fn clear(&self) {
        let mut state = self.lock();
        let injected = state.injected;
        *state = State {
            injected,
            ..State::default()
        };
    }

    /// How many faults have been injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    fn decide(&self, op: StoreOp) -> Decision {
        let mut state = self.lock();
        let mut decision = Decision {
            delay: state.delay,
            ..Decision::default()
        };
        if state.unavailable {
            decision.before = Some(Fault::Unavailable);
        } else if let Some(index) = state.rules.iter().position(|rule| rule.ops.matches(op)) {
            let rule = &mut state.rules[index];
            rule.remaining -= 1;
            if rule.after_success {
                decision.after = Some(rule.fault);
            } else {
                decision.before = Some(rule.fault);
            }
            if rule.remaining == 0 {
                state.rules.remove(index);
            }
        } else if let Some(fault) = state.rate_fault
            && state.error_rate > 0.0
            && self.rng.unit() < state.error_rate
        {
            decision.before = Some(fault);
        }
        if decision.before.is_some() || decision.after.is_some() {
            state.injected += 1;
        }
        decision
    }
}

/// Runs one call under a decision: delay, maybe fail before, maybe fail after success.
async fn run<T>(
    decision: Decision,
    op: StoreOp,
    path: &Path,
    call: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(fault) = decision.before {
        assert!(fault != Fault::Panic, "injected panic on {op} {path}");
        return Err(fault.error(op, path));
    }
    let result = call.await;
    match (result, decision.after) {
        (Ok(_), Some(fault)) => Err(fault.error(op, path)),
        (result, _) => result,
    }
}

/// An [`ObjectStore`] that fails calls as its [`FaultInjector`] says.
#[derive(Debug, Clone)]
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    faults: FaultInjector,
}

impl FaultyObjectStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: FaultInjector) -> Self {
        Self { inner, faults }
    }

    fn list_stream(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let decision = self.faults.decide(StoreOp::List);
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        let offset = offset.cloned();
        stream::once(async move {
            let shown = prefix.clone().unwrap_or_default();
            let listed = run(decision, StoreOp::List, &shown, async {
                Ok(match &offset {
                    Some(offset) => inner.list_with_offset(prefix.as_ref(), offset),
                    None => inner.list(prefix.as_ref()),
                })
            })
            .await;
            match listed {
                Ok(listing) => listing,
                Err(error) => stream::once(async { Err(error) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }
}

impl fmt::Display for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let decision = self.faults.decide(StoreOp::Put);
        run(
            decision,
            StoreOp::Put,
            location,
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let decision = self.faults.decide(StoreOp::Multipart);
        let upload = run(
            decision,
            StoreOp::Multipart,
            location,
            self.inner.put_multipart_opts(location, opts),
        )
        .await?;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            faults: self.faults.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = StoreOp::of_get(&options);
        let decision = self.faults.decide(op);
        run(
            decision,
            op,
            location,
            self.inner.get_opts(location, options),
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let faults = self.faults.clone();
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                let faults = faults.clone();
                async move {
                    let location = location?;
                    let decision = faults.decide(StoreOp::Delete);
                    run(
                        decision,
                        StoreOp::Delete,
                        &location,
                        inner.delete(&location),
                    )
                    .await?;
                    Ok(location)
                }
            })
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
        let decision = self.faults.decide(StoreOp::List);
        let shown = prefix.cloned().unwrap_or_default();
        run(
            decision,
            StoreOp::List,
            &shown,
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let decision = self.faults.decide(StoreOp::Copy);
        run(
            decision,
            StoreOp::Copy,
            to,
            self.inner.copy_opts(from, to, options),
        )
        .await
    }
}

/// A multipart upload whose part, complete and abort requests can fail too.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: FaultInjector,
    location: Path,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let decision = self.faults.decide(StoreOp::Multipart);
        let location = self.location.clone();
        let part = self.inner.put_part(data);
        Box::pin(async move { run(decision, StoreOp::Multipart, &location, part).await })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let decision = self.faults.decide(StoreOp::Multipart);
        run(
            decision,
            StoreOp::Multipart,
            &self.location,
            self.inner.complete(),
        )
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let decision = self.faults.decide(StoreOp::Multipart);
        run(
            decision,
            StoreOp::Multipart,
            &self.location,
            self.inner.abort(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use shale_common::seeded_rng;

    use super::*;
    use crate::classify::classify;

    fn store() -> (FaultyObjectStore, FaultInjector, Arc<InMemory>) {
        let memory = Arc::new(InMemory::new());
        let faults = FaultInjector::new(seeded_rng(1));
        (
            FaultyObjectStore::new(memory.clone(), faults.clone()),
            faults,
            memory,
        )
    }

    #[tokio::test]
    async fn fail_next_counts_down_per_op() {
        let (store, faults, _) = store();
        let path = Path::from("a");
        faults.fail_next(StoreOp::Put, 2, Fault::ServerError);
        for _ in 0..2 {
            let error = store.put(&path, "x".into()).await.unwrap_err();
            assert!(classify(&error).is_transient(), "{error}");
            assert!(
                error.to_string().contains("injected fault on put"),
                "{error}"
            );
        }
        store.put(&path, "x".into()).await.unwrap();
        // A rule for puts does not touch gets.
        faults.fail_next(StoreOp::Put, 1, Fault::ServerError);
        store.get(&path).await.unwrap();
        assert_eq!(faults.injected(), 2);
    }

    #[tokio::test]
    async fn succeed_but_report_failure_lands_the_write() {
        let (store, faults, memory) = store();
        let path = Path::from("a");
        faults.succeed_but_report_failure(Ops::Any, 1);
        let error = store.put(&path, "landed".into()).await.unwrap_err();
        assert!(classify(&error).is_transient());
        let bytes = memory.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.as_ref(), b"landed");
    }

    #[tokio::test]
    async fn unavailable_until_cleared() {
        let (store, faults, _) = store();
        let path = Path::from("a");
        faults.set_unavailable(true);
        assert!(store.put(&path, "x".into()).await.is_err());
        assert!(store.head(&path).await.is_err());
        let listed: Result<Vec<_>, _> = store.list(None).try_collect().await;
        assert!(listed.is_err());
        faults.set_unavailable(false);
        store.put(&path, "x".into()).await.unwrap();
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
    }

    #[tokio::test]
    async fn error_rate_is_seeded() {
        let run_once = || async {
            let (store, faults, _) = store();
            faults.set_error_rate(0.5, Fault::Unavailable);
            let mut outcomes = Vec::new();
            for i in 0..40 {
                outcomes.push(
                    store
                        .put(&Path::from(format!("k{i}")), "x".into())
                        .await
                        .is_ok(),
                );
            }
            outcomes
        };
        let first = run_once().await;
        assert_eq!(first, run_once().await);
        let failures = first.iter().filter(|ok| !**ok).count();
        assert!((5..35).contains(&failures), "{failures}");
    }

    #[tokio::test(start_paused = true)]
    async fn delay_uses_tokio_time() {
        let (store, faults, _) = store();
        faults.set_delay(Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        store.put(&Path::from("a"), "x".into()).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn deletes_and_multipart_can_fail() {
        let (store, faults, memory) = store();
        memory.put(&Path::from("a"), "x".into()).await.unwrap();
        memory.put(&Path::from("b"), "x".into()).await.unwrap();
        faults.fail_next(StoreOp::Delete, 1, Fault::PermissionDenied);
        let locations = stream::iter([Ok(Path::from("a")), Ok(Path::from("b"))]).boxed();
        let results: Vec<_> = store.delete_stream(locations).collect().await;
        assert!(results[0].is_err());
        assert_eq!(results[1].as_ref().unwrap(), &Path::from("b"));

        faults.fail_next(StoreOp::Multipart, 1, Fault::ServerError);
        assert!(store.put_multipart(&Path::from("m")).await.is_err());
        let mut upload = store.put_multipart(&Path::from("m")).await.unwrap();
        faults.fail_next(StoreOp::Multipart, 1, Fault::Timeout);
        assert!(upload.put_part("part".into()).await.is_err());
        upload.put_part("part".into()).await.unwrap();
        upload.complete().await.unwrap();
    }

    #[tokio::test]
    async fn clear_removes_everything() {
        let (store, faults, _) = store();
        faults.fail_next(Ops::Any, 10, Fault::NotFound);
        faults.set_error_rate(1.0, Fault::ServerError);
        faults.set_unavailable(true);
        faults.clear();
        store.put(&Path::from("a"), "x".into()).await.unwrap();
    }
}
