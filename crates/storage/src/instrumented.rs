//! Counting and tracing every object-store request.
//!
//! This layer sits *below* the retry layer, so each attempt is counted: requests are what the
//! object store bills for, and a retry storm must show up in the metrics. Each call runs in a
//! `tracing` span named after its op (`storage.put`, `storage.get_range`, …).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::metrics::StorageMetrics;
use crate::op::StoreOp;

/// S3 returns at most 1,000 keys per LIST request, so a listing of n objects costs about
/// n / 1,000 requests. object_store hides the pages, so they are estimated from this.
const LIST_PAGE_SIZE: u64 = 1_000;

/// The tracing span of one call. Span names must be literals, hence the match.
fn span(op: StoreOp, path: &Path) -> Span {
    match op {
        StoreOp::Put => tracing::info_span!("storage.put", path = %path),
        StoreOp::Get => tracing::info_span!("storage.get", path = %path),
        StoreOp::GetRange => tracing::info_span!("storage.get_range", path = %path),
        StoreOp::Head => tracing::info_span!("storage.head", path = %path),
        StoreOp::List => tracing::info_span!("storage.list", prefix = %path),
        StoreOp::Delete => tracing::info_span!("storage.delete", path = %path),
        StoreOp::Copy => tracing::info_span!("storage.copy", path = %path),
        StoreOp::Multipart => tracing::info_span!("storage.multipart", path = %path),
    }
}

/// An [`ObjectStore`] that records metrics and a span for every request to `inner`.
#[derive(Debug, Clone)]
pub struct InstrumentedObjectStore {
    inner: Arc<dyn ObjectStore>,
    metrics: StorageMetrics,
}

impl InstrumentedObjectStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: StorageMetrics) -> Self {
        Self { inner, metrics }
    }

    /// Runs `call` as one request of `op`: timed, counted, traced.
    async fn observe<T>(
        &self,
        op: StoreOp,
        path: &Path,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        let start = Instant::now();
        let result = call.instrument(span(op, path)).await;
        self.metrics
            .record_request(op, result.is_ok(), start.elapsed());
        result
    }

    fn list_stream(
        &self,
        prefix: Option<&Path>,
        listing: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let span = span(StoreOp::List, &prefix.cloned().unwrap_or_default());
        CountedListing {
            inner: listing,
            metrics: self.metrics.clone(),
            span,
            start: Instant::now(),
            objects: 0,
            done: false,
        }
        .boxed()
    }
}

impl fmt::Display for InstrumentedObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for InstrumentedObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let bytes = payload.content_length() as u64;
        let result = self
            .observe(
                StoreOp::Put,
                location,
                self.inner.put_opts(location, payload, opts),
            )
            .await;
        if result.is_ok() {
            self.metrics.add_written_bytes(bytes);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self
            .observe(
                StoreOp::Multipart,
                location,
                self.inner.put_multipart_opts(location, opts),
            )
            .await?;
        Ok(Box::new(InstrumentedUpload {
            inner: upload,
            metrics: self.metrics.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = StoreOp::of_get(&options);
        let result = self
            .observe(op, location, self.inner.get_opts(location, options))
            .await;
        if let Ok(got) = &result
            && op != StoreOp::Head
        {
            // The bytes the server is sending: what a GET costs in transfer.
            self.metrics
                .add_read_bytes(got.range.end.saturating_sub(got.range.start));
        }
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let metrics = self.metrics.clone();
        let span = span(StoreOp::Delete, &Path::default());
        self.inner
            .delete_stream(locations)
            .inspect(move |result| {
                let _entered = span.enter();
                metrics.count_requests(StoreOp::Delete, result.is_ok(), 1);
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_stream(prefix, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_stream(prefix, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let shown = prefix.cloned().unwrap_or_default();
        self.observe(
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
        self.observe(StoreOp::Copy, to, self.inner.copy_opts(from, to, options))
            .await
    }
}

/// A listing stream that counts its (estimated) pages once it ends, fails or is dropped.
struct CountedListing {
    inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
    metrics: StorageMetrics,
    span: Span,
    start: Instant,
    objects: u64,
    done: bool,
}

impl CountedListing {
    fn finish(&mut self, ok: bool) {
        if !self.done {
            self.done = true;
            let pages = self.objects.div_ceil(LIST_PAGE_SIZE).max(1);
            self.metrics.count_requests(StoreOp::List, ok, pages);
            self.metrics
                .record_request_latency(StoreOp::List, self.start.elapsed());
        }
    }
}

impl Stream for CountedListing {
    type Item = object_store::Result<ObjectMeta>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = {
            let _entered = this.span.enter();
            this.inner.poll_next_unpin(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.objects += 1,
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for CountedListing {
    fn drop(&mut self) {
        // A listing abandoned early still cost the pages it read.
        self.finish(true);
    }
}

/// A multipart upload whose part, complete and abort requests are counted.
#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: StorageMetrics,
    location: Path,
}

#[async_trait]
impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let bytes = data.content_length() as u64;
        let metrics = self.metrics.clone();
        let part = self
            .inner
            .put_part(data)
            .instrument(span(StoreOp::Multipart, &self.location));
        Box::pin(async move {
            let start = Instant::now();
            let result = part.await;
            metrics.record_request(StoreOp::Multipart, result.is_ok(), start.elapsed());
            if result.is_ok() {
                metrics.add_written_bytes(bytes);
            }
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let start = Instant::now();
        let result = self
            .inner
            .complete()
            .instrument(span(StoreOp::Multipart, &self.location))
            .await;
        self.metrics
            .record_request(StoreOp::Multipart, result.is_ok(), start.elapsed());
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let start = Instant::now();
        let result = self
            .inner
            .abort()
            .instrument(span(StoreOp::Multipart, &self.location))
            .await;
        self.metrics
            .record_request(StoreOp::Multipart, result.is_ok(), start.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use shale_common::seeded_rng;

    use super::*;
    use crate::faults::{Fault, FaultInjector, FaultyObjectStore};

    #[tokio::test]
    async fn counts_every_kind_of_request() {
        let metrics = StorageMetrics::default();
        let store = InstrumentedObjectStore::new(Arc::new(InMemory::new()), metrics.clone());
        let path = Path::from("dir/a");
        store.put(&path, vec![7u8; 100].into()).await.unwrap();
        store.get(&path).await.unwrap().bytes().await.unwrap();
        store.get_range(&path, 10..30).await.unwrap();
        store.head(&path).await.unwrap();
        assert!(store.head(&Path::from("missing")).await.is_err());
        store.copy(&path, &Path::from("dir/b")).await.unwrap();
        let listed: Vec<_> = store
            .list(Some(&Path::from("dir")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        store.list_with_delimiter(None).await.unwrap();
        store.delete(&Path::from("dir/b")).await.unwrap();
        let ranges = store.get_ranges(&path, &[0..1, 5..9]).await.unwrap();
        assert_eq!(ranges[1].len(), 4);

        let mut upload = store.put_multipart(&Path::from("m")).await.unwrap();
        upload.put_part(vec![1u8; 10].into()).await.unwrap();
        upload.complete().await.unwrap();

        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.puts, 1);
        assert_eq!(snapshot.gets, 1);
        // get_ranges coalesces the two nearby ranges into one ranged GET.
        assert_eq!(snapshot.get_ranges, 2);
        assert_eq!(snapshot.heads, 2);
        assert_eq!(snapshot.copies, 1);
        assert_eq!(snapshot.lists, 2);
        assert_eq!(snapshot.deletes, 1);
        assert_eq!(snapshot.multipart, 3);
        assert_eq!(snapshot.errors, 1);
        assert_eq!(snapshot.bytes_written, 110);
        assert_eq!(snapshot.bytes_read, 100 + 20 + 9);
    }

    #[tokio::test]
    async fn failed_attempts_are_counted_as_errors() {
        let metrics = StorageMetrics::default();
        let faults = FaultInjector::new(seeded_rng(3));
        let faulty = FaultyObjectStore::new(Arc::new(InMemory::new()), faults.clone());
        let store = InstrumentedObjectStore::new(Arc::new(faulty), metrics.clone());
        faults.fail_next(StoreOp::Put, 1, Fault::ServerError);
        assert!(store.put(&Path::from("a"), "x".into()).await.is_err());
        faults.set_unavailable(true);
        let listed: Result<Vec<_>, _> = store.list(None).try_collect().await;
        assert!(listed.is_err());
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.puts, 1);
        assert_eq!(snapshot.lists, 1);
        assert_eq!(snapshot.errors, 2);
        assert_eq!(snapshot.bytes_written, 0);
    }

    #[tokio::test]
    async fn large_listings_count_pages() {
        let metrics = StorageMetrics::default();
        let memory = Arc::new(InMemory::new());
        for i in 0..2_500 {
            memory
                .put(&Path::from(format!("k/{i:05}")), "x".into())
                .await
                .unwrap();
        }
        let store = InstrumentedObjectStore::new(memory, metrics.clone());
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 2_500);
        assert_eq!(metrics.snapshot().lists, 3);
        // Dropping a listing before its end still counts it.
        let mut partial = store.list(None);
        partial.next().await.unwrap().unwrap();
        drop(partial);
        assert_eq!(metrics.snapshot().lists, 4);
    }
}
