//! `file://` objects that are on disk when their write returns.
//!
//! object_store's [`LocalFileSystem`] writes a temporary file and renames it into place, but
//! never fsyncs: after a power loss an object that a metadata commit already references
//! could be empty or gone. `shale dev` commits metadata right after the PUT, so every write
//! here fsyncs the file and its directory (the rename) before it returns. Multipart uploads
//! are synced on completion.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// A [`LocalFileSystem`] whose writes are durable when they return.
#[derive(Debug, Clone)]
pub struct DurableLocalStore {
    inner: Arc<LocalFileSystem>,
    syncs: Arc<AtomicU64>,
}

impl DurableLocalStore {
    /// Wraps a local store.
    pub fn new(inner: LocalFileSystem) -> Self {
        Self {
            inner: Arc::new(inner),
            syncs: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Objects fsynced so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.inner)
    }
}

/// Fsyncs the object's file and the folder that holds its name.
async fn sync(
    store: &LocalFileSystem,
    syncs: &AtomicU64,
    location: &Path,
) -> object_store::Result<()> {
    syncs.fetch_add(1, Ordering::Relaxed);
    let file = store.path_to_filesystem(location)?;
    tokio::task::spawn_blocking(move || sync_file_and_parent(&file))
        .await
        .map_err(|error| object_store::Error::Generic {
            store: "durable-local",
            source: Box::new(error),
        })?
        .map_err(|source| object_store::Error::Generic {
            store: "durable-local",
            source: Box::new(source),
        })
}

fn sync_file_and_parent(file: &PathBuf) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(parent) = file.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        sync(&self.inner, &self.syncs, location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(DurableUpload {
            inner: upload,
            store: Arc::clone(&self.inner),
            syncs: Arc::clone(&self.syncs),
            location: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        sync(&self.inner, &self.syncs, to).await
    }
}

/// A multipart upload that fsyncs the finished object.
#[derive(Debug)]
struct DurableUpload {
    inner: Box<dyn MultipartUpload>,
    store: Arc<LocalFileSystem>,
    syncs: Arc<AtomicU64>,
    location: Path,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        sync(&self.store, &self.syncs, &self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;

    /// The decorator keeps the local store's semantics (create-only included), its writes
    /// land where reads find them, and every successful write path fsyncs (a refused one
    /// does not).
    #[tokio::test]
    async fn writes_are_synced_and_semantics_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableLocalStore::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let path = Path::from("segments/a/b.seg");
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        store
            .put_opts(&path, PutPayload::from_static(b"one"), create.clone())
            .await
            .unwrap();
        let again = store
            .put_opts(&path, PutPayload::from_static(b"two"), create)
            .await
            .unwrap_err();
        assert!(
            matches!(again, object_store::Error::AlreadyExists { .. }),
            "{again}"
        );
        let mut upload = store
            .put_multipart_opts(
                &Path::from("segments/c.seg"),
                PutMultipartOptions::default(),
            )
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from_static(b"part"))
            .await
            .unwrap();
        upload.complete().await.unwrap();
        assert_eq!(
            store.syncs(),
            2,
            "the put and the completed upload were fsynced"
        );
        let read = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(read.as_ref(), b"one");
        assert_eq!(
            std::fs::read(dir.path().join("segments/c.seg")).unwrap(),
            b"part"
        );
    }
}
