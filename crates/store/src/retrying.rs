//! An object store wrapper that retries, within the [`RetryBudget`], the operations that
//! failed in transit where the HTTP client underneath does not retry them (see `retry.rs`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tokio::time::Instant;

use crate::retry::{Backoff, RetryBudget, in_transit};

/// Deletes sent in one batch (the most one S3 `DeleteObjects` request takes).
const DELETE_BATCH: usize = 1000;

/// Delete batches in flight at once (as `object_store`'s S3 client).
const DELETES_IN_FLIGHT: usize = 20;

/// `inner`, with the operations that are safe to repeat retried on failures in transit until
/// they succeed or the budget, counted from the start of each operation, runs out. Writes
/// that depend on what is stored (conditional puts and copies) are passed through as they are.
#[derive(Debug)]
pub(crate) struct Retrying {
    inner: Arc<dyn ObjectStore>,
    budget: RetryBudget,
}

impl Retrying {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, budget: RetryBudget) -> Retrying {
        Retrying { inner, budget }
    }

    /// Runs `op` until it succeeds, fails otherwise than in transit, or the budget is spent.
    async fn run<T, F, Fut>(&self, op: F) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        retry(self.budget, op).await
    }

    /// A listing that, when a page fails in transit, lists again after the last key it gave.
    fn resumable_list(
        &self,
        prefix: Option<&Path>,
        offset: Option<&Path>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listing = Listing {
            inner: Arc::clone(&self.inner),
            prefix: prefix.cloned(),
            budget: self.budget,
            stream: None,
            last: offset.cloned(),
            progress: Instant::now(),
            backoff: Backoff::new(&self.budget),
            retries: 0,
            done: false,
        };
        stream::unfold(listing, |mut listing| async move {
            let item = listing.next().await?;
            Some((item, listing))
        })
        .boxed()
    }
}

/// Runs `op` until it succeeds, fails otherwise than in transit, or `budget` is spent.
pub(crate) async fn retry<T, F, Fut>(budget: RetryBudget, mut op: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let start = Instant::now();
    let mut backoff = Backoff::new(&budget);
    let mut retries = 0;
    loop {
        let error = match op().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let elapsed = start.elapsed();
        let delay = match budget.next_delay(&mut backoff, elapsed, retries) {
            Some(delay) if in_transit(&error) => delay,
            _ => return Err(budget.give_up(error, elapsed)),
        };
        retries += 1;
        tokio::time::sleep(delay).await;
    }
}

/// The state of a [`Retrying::resumable_list`].
struct Listing {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    budget: RetryBudget,
    stream: Option<BoxStream<'static, object_store::Result<ObjectMeta>>>,
    /// The last key listed (or the caller's offset): a new listing starts after it.
    last: Option<Path>,
    /// When the listing last made progress (started, or gave an entry).
    progress: Instant,
    backoff: Backoff,
    retries: usize,
    done: bool,
}

impl Listing {
    async fn next(&mut self) -> Option<object_store::Result<ObjectMeta>> {
        loop {
            if self.done {
                return None;
            }
            let stream = self.stream.get_or_insert_with(|| match &self.last {
                Some(last) => self.inner.list_with_offset(self.prefix.as_ref(), last),
                None => self.inner.list(self.prefix.as_ref()),
            });
            match stream.next().await {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(meta)) => {
                    self.last = Some(meta.location.clone());
                    self.progress = Instant::now();
                    self.backoff = Backoff::new(&self.budget);
                    self.retries = 0;
                    return Some(Ok(meta));
                }
                Some(Err(error)) => {
                    let elapsed = self.progress.elapsed();
                    let next = self
                        .budget
                        .next_delay(&mut self.backoff, elapsed, self.retries);
                    let delay = match next {
                        Some(delay) if in_transit(&error) => delay,
                        _ => {
                            self.done = true;
                            return Some(Err(self.budget.give_up(error, elapsed)));
                        }
                    };
                    self.retries += 1;
                    self.stream = None;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl fmt::Display for Retrying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Retrying {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        self.run(|| self.inner.put_opts(location, payload.clone(), opts.clone()))
            .await
    }

    /// Starting an upload again leaves the first one incomplete, for the bucket's lifecycle
    /// rule to abort (see the README); its parts are retried by the HTTP client.
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.run(|| self.inner.put_multipart_opts(location, opts.clone()))
            .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.run(|| self.inner.get_opts(location, options.clone()))
            .await
    }

    /// Deletes in batches, each sent again whole when it failed in transit: deleting an
    /// object that is already gone succeeds.
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let budget = self.budget;
        locations
            .ready_chunks(DELETE_BATCH)
            .map(move |batch| {
                let inner = Arc::clone(&inner);
                async move {
                    let mut results = Vec::with_capacity(batch.len());
                    let mut paths = Vec::with_capacity(batch.len());
                    for item in batch {
                        match item {
                            Ok(path) => paths.push(path),
                            Err(error) => results.push(Err(error)),
                        }
                    }
                    if !paths.is_empty() {
                        let deleted = retry(budget, || {
                            let batch = stream::iter(paths.clone().into_iter().map(Ok)).boxed();
                            inner.delete_stream(batch).try_collect::<Vec<Path>>()
                        })
                        .await;
                        match deleted {
                            Ok(deleted) => results.extend(deleted.into_iter().map(Ok)),
                            Err(error) => results.push(Err(error)),
                        }
                    }
                    stream::iter(results)
                }
            })
            .buffered(DELETES_IN_FLIGHT)
            .flatten()
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.resumable_list(prefix, None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.resumable_list(prefix, Some(offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.run(|| self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        if !matches!(options.mode, CopyMode::Overwrite) {
            return self.inner.copy_opts(from, to, options).await;
        }
        self.run(|| self.inner.copy_opts(from, to, options.clone()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use object_store::ObjectStoreExt;
    use object_store::client::{HttpError, HttpErrorKind};
    use object_store::memory::InMemory;

    use super::*;

    /// An in-memory store whose next `failures` operations fail in transit with `kind`; a
    /// listing fails after giving `list_cut` entries, once per failure.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: InMemory,
        failures: AtomicUsize,
        list_cut: usize,
        calls: AtomicUsize,
    }

    impl Flaky {
        fn failing(failures: usize) -> Arc<Flaky> {
            Arc::new(Flaky {
                failures: AtomicUsize::new(failures),
                ..Flaky::default()
            })
        }

        fn fail(&self) -> object_store::Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let left = self.failures.load(Ordering::SeqCst);
            if left == 0 {
                return Ok(());
            }
            self.failures.store(left - 1, Ordering::SeqCst);
            Err(object_store::Error::Generic {
                store: "S3",
                source: Box::new(HttpError::new(
                    HttpErrorKind::Interrupted,
                    std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                )),
            })
        }
    }

    impl fmt::Display for Flaky {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("flaky")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Flaky {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.fail()?;
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.fail()?;
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.fail()?;
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            match self.fail() {
                Ok(()) => self.inner.delete_stream(locations),
                Err(error) => stream::once(async { Err(error) }).boxed(),
            }
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.list_with_offset(prefix, &Path::default())
        }

        fn list_with_offset(
            &self,
            prefix: Option<&Path>,
            offset: &Path,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            let listed = self.inner.list_with_offset(prefix, offset);
            match self.fail() {
                Ok(()) => listed,
                Err(error) => listed
                    .take(self.list_cut)
                    .chain(stream::once(async { Err(error) }))
                    .boxed(),
            }
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.fail()?;
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.fail()?;
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn budget(secs: u64) -> RetryBudget {
        RetryBudget {
            total: Duration::from_secs(secs),
            max_retries: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_that_lost_its_connection_is_sent_again() {
        let flaky = Flaky::failing(0);
        let store = Retrying::new(flaky.clone(), budget(60));
        let key = Path::from("leases/writer-1");
        store.put(&key, "lease".into()).await.expect("put");
        flaky.failures.store(3, Ordering::SeqCst);
        store.delete(&key).await.expect("deleted at the fourth try");
        assert_eq!(
            flaky.calls.load(Ordering::SeqCst),
            5,
            "one put, four deletes"
        );
        assert!(matches!(
            store.head(&key).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_stays_down_fails_once_the_budget_is_spent() {
        let flaky = Flaky::failing(usize::MAX);
        let store = Retrying::new(flaky.clone(), budget(30));
        let started = Instant::now();
        let err = store
            .put(&Path::from("chunks/aa/aa"), "data".into())
            .await
            .expect_err("down");
        let took = started.elapsed();
        assert_eq!(
            took,
            Duration::from_secs(30),
            "the last try when the budget ends"
        );
        let text = err.to_string();
        assert!(text.contains("retry budget is 30s"), "{text}");
        // Retried with growing delays, not hammered: a few dozen tries in 30 s.
        let calls = flaky.calls.load(Ordering::SeqCst);
        assert!((5..=40).contains(&calls), "{calls} tries");
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_not_a_failure_in_transit_is_not_retried() {
        let flaky = Flaky::failing(0);
        let store = Retrying::new(flaky.clone(), budget(60));
        let err = store.get(&Path::from("missing")).await.expect_err("404");
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
        // A conditional put is not repeated: its second try could find its own first.
        flaky.failures.store(1, Ordering::SeqCst);
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let err = store
            .put_opts(&Path::from("x"), "x".into(), create)
            .await
            .expect_err("in transit, not retried");
        assert!(in_transit(&err), "{err}");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_cut_off_resumes_after_its_last_key() {
        let flaky = Arc::new(Flaky {
            list_cut: 3,
            ..Flaky::default()
        });
        let store = Retrying::new(flaky.clone(), budget(60));
        let keys: Vec<Path> = (0..10)
            .map(|i| Path::from(format!("chunks/{i:02}")))
            .collect();
        for key in &keys {
            store.put(key, "c".into()).await.expect("put");
        }
        flaky.failures.store(2, Ordering::SeqCst);
        let listed: Vec<Path> = store
            .list(Some(&Path::from("chunks")))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .expect("listed whole");
        assert_eq!(listed, keys, "no key lost, none twice");
    }
}
