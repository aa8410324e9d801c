//! The backend over any `object_store`: S3 (through the `Retrying` wrapper), `InMemory`, and
//! the test doubles. A local directory is this too, for every object but its chunks
//! (`directory.rs`).

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload,
    WriteMultipart,
};

use crate::backend::{Backend, Pieces};
use crate::error::{Result, backend};

/// Objects larger than this go up in parts (S3 caps a single PUT at 5 GB and retries a failed
/// part, not the whole object). Block maps pass it for disks of about 8 TiB and more.
const MULTIPART_THRESHOLD: usize = 64 << 20;

/// Size of each part of a multipart upload (S3 wants at least 5 MiB but for the last).
const PART_SIZE: usize = 16 << 20;

/// Vault objects kept in an object store.
#[derive(Clone, Debug)]
pub(crate) struct ObjectBackend {
    objects: Arc<dyn ObjectStore>,
    location: String,
    multipart_threshold: usize,
}

impl ObjectBackend {
    /// The objects of `objects`; `location` names it in messages.
    pub(crate) fn new(objects: Arc<dyn ObjectStore>, location: impl Into<String>) -> ObjectBackend {
        ObjectBackend {
            objects,
            location: location.into(),
            multipart_threshold: MULTIPART_THRESHOLD,
        }
    }

    /// This backend, putting objects larger than `bytes` in parts.
    pub(crate) fn with_threshold(&self, bytes: usize) -> ObjectBackend {
        ObjectBackend {
            multipart_threshold: bytes,
            ..self.clone()
        }
    }

    /// A multipart upload: the object appears whole when it completes, or not at all (a failed
    /// upload is aborted so no parts linger).
    async fn put_in_parts(&self, key: &Path, bytes: Bytes) -> Result<()> {
        let upload = self
            .objects
            .put_multipart(key)
            .await
            .map_err(|source| backend("put", key, source))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.put(bytes);
        match writer.finish().await {
            Ok(_) => Ok(()),
            Err(source) => Err(backend("put", key, source)),
        }
    }
}

#[async_trait::async_trait]
impl Backend for ObjectBackend {
    fn location(&self) -> &str {
        &self.location
    }

    fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    fn with_multipart_threshold(&self, bytes: usize) -> Arc<dyn Backend> {
        Arc::new(self.with_threshold(bytes))
    }

    async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        if bytes.len() > self.multipart_threshold {
            return self.put_in_parts(key, bytes).await;
        }
        self.objects
            .put(key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| backend("put", key, source))
    }

    async fn upload(&self, key: &Path) -> Result<Option<Box<dyn MultipartUpload>>> {
        self.objects
            .put_multipart(key)
            .await
            .map(Some)
            .map_err(|source| backend("put", key, source))
    }

    async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        let result = match self.objects.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(backend("get", key, source)),
        };
        result
            .bytes()
            .await
            .map(Some)
            .map_err(|source| backend("get", key, source))
    }

    async fn get_pieces(&self, key: &Path) -> Result<Option<(u64, Pieces)>> {
        let result = match self.objects.get(key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(backend("get", key, source)),
        };
        let size = result.meta.size;
        let key = key.clone();
        let pieces = result
            .into_stream()
            .map_err(move |source| backend("get", &key, source))
            .boxed();
        Ok(Some((size, pieces)))
    }

    async fn head(&self, key: &Path) -> Result<bool> {
        match self.objects.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(backend("head", key, source)),
        }
    }

    async fn delete(&self, key: &Path) -> Result<()> {
        match self.objects.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(backend("delete", key, source)),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.cloned().unwrap_or_default();
        self.objects
            .list(prefix)
            .map_err(move |source| backend("list", &key, source))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.objects
            .list_with_delimiter(prefix)
            .await
            .map_err(|source| backend("list", &prefix.cloned().unwrap_or_default(), source))
    }
}
