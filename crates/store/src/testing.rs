//! A test double for the tests of this crate and others: an in-memory object store that
//! counts puts, records multipart uploads, and fails them on request, as a dying endpoint
//! would.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// An [`InMemory`] object store that counts the puts of keys under a prefix
/// ([`ProbedStore::puts`]), records the parts of multipart uploads and whether one was aborted,
/// and, when told to, refuses every multipart part after the first few.
#[derive(Debug, Default)]
pub struct ProbedStore {
    inner: InMemory,
    counted_prefix: String,
    puts: AtomicU64,
    /// Parts every multipart upload may put before the rest fail; `usize::MAX` for no limit.
    parts_allowed: AtomicUsize,
    uploads: Arc<Uploads>,
    /// Whole-object puts left before every further one fails; `None` for no limit.
    puts_left: Mutex<Option<u64>>,
}

/// What the multipart uploads did.
#[derive(Debug, Default)]
struct Uploads {
    part_sizes: Mutex<Vec<usize>>,
    aborted: AtomicBool,
}

impl ProbedStore {
    /// A store counting the puts of keys that start with `prefix`.
    pub fn counting(prefix: impl Into<String>) -> ProbedStore {
        ProbedStore {
            counted_prefix: prefix.into(),
            ..ProbedStore::failing_parts_after(usize::MAX)
        }
    }

    /// A store whose multipart uploads fail from their part `parts + 1` on (never for
    /// `usize::MAX`).
    pub fn failing_parts_after(parts: usize) -> ProbedStore {
        ProbedStore {
            parts_allowed: AtomicUsize::new(parts),
            ..ProbedStore::default()
        }
    }

    /// A store whose whole-object puts fail once `puts` have gone through, as an endpoint
    /// that dies midway would.
    pub fn failing_puts_after(puts: u64) -> ProbedStore {
        ProbedStore {
            puts_left: Mutex::new(Some(puts)),
            ..ProbedStore::counting("")
        }
    }

    /// Lets every put through again (the endpoint is back).
    pub fn heal(&self) {
        *self
            .puts_left
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Puts so far of keys under the counted prefix.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// The size of every multipart part put so far, in the order they were put.
    pub fn part_sizes(&self) -> Vec<usize> {
        self.uploads
            .part_sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a multipart upload was aborted.
    pub fn aborted(&self) -> bool {
        self.uploads.aborted.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for ProbedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "probed {}", self.inner)
    }
}

/// A multipart upload, recorded, whose parts fail once `left` reaches zero.
#[derive(Debug)]
struct ProbedUpload {
    inner: Box<dyn MultipartUpload>,
    left: usize,
    uploads: Arc<Uploads>,
}

#[async_trait::async_trait]
impl MultipartUpload for ProbedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.uploads
            .part_sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(data.content_length());
        if self.left == 0 {
            return Box::pin(async {
                Err(object_store::Error::Generic {
                    store: "probed",
                    source: "the endpoint refused the part".into(),
                })
            });
        }
        self.left -= 1;
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.uploads.aborted.store(true, Ordering::Relaxed);
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl ObjectStore for ProbedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !self.counted_prefix.is_empty() && location.as_ref().starts_with(&self.counted_prefix) {
            self.puts.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(left) = self
            .puts_left
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            if *left == 0 {
                return Err(object_store::Error::Generic {
                    store: "probed",
                    source: "the endpoint refused the put".into(),
                });
            }
            *left -= 1;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(ProbedUpload {
            inner,
            left: self.parts_allowed.load(Ordering::Relaxed),
            uploads: Arc::clone(&self.uploads),
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

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
