//! The vault of a backup job, opened alongside its Snapshot, and the early send to it.
//!
//! Opening a vault may take long: an S3 endpoint that accepts connections and never answers
//! costs its request timeouts and retries. A backup's Snapshot (pre-hook, the read of the disks
//! into the snapshot tier, post-hook) needs nothing from the vault, so it starts at once and
//! the vault opens meanwhile; only the Transfer waits for it. The Snapshot uses what is known
//! when its read starts: the vault, if it is open by then (for the early send, and the id its
//! point records); else the id last seen at that location (the catalog remembers it), and an
//! early send that starts when the vault opens.

use std::future::Future;
use std::pin::Pin;

use blockvault_core::ChunkCodec;
use blockvault_vault::{EarlySend, TransferOptions, Vault};
use tokio::sync::watch;

use super::{BackupSpec, VaultUnavailable};

type Opened = Option<Result<Vault, VaultUnavailable>>;
type Pending<'a> = Pin<Box<dyn Future<Output = Result<Vault, VaultUnavailable>> + Send + 'a>>;

/// The vault a backup job transfers to, as the caller has it: open, known to be unavailable,
/// or still being opened (see [`JobVault::opening`]). `Result<&Vault, &VaultUnavailable>`
/// converts into one.
pub struct JobVault<'a> {
    location: String,
    state: State<'a>,
}

enum State<'a> {
    Opened(Box<Result<Vault, VaultUnavailable>>),
    Opening(Pending<'a>),
}

impl<'a> JobVault<'a> {
    /// The vault at `location` (as the user gave it, without credentials), which `opening`
    /// opens. The job drives `opening` while its Snapshot runs; the Snapshot never waits for
    /// it, the Transfer does, and fails with its error when it fails.
    pub fn opening(
        location: impl Into<String>,
        opening: impl Future<Output = Result<Vault, VaultUnavailable>> + Send + 'a,
    ) -> JobVault<'a> {
        JobVault {
            location: location.into(),
            state: State::Opening(Box::pin(opening)),
        }
    }

    /// The vault at `location` (as the user gave it), open already.
    pub fn open(location: impl Into<String>, vault: Vault) -> JobVault<'static> {
        JobVault {
            location: location.into(),
            state: State::Opened(Box::new(Ok(vault))),
        }
    }

    /// Where the vault is, as the caller named it.
    pub fn location(&self) -> &str {
        &self.location
    }
}

impl std::fmt::Debug for JobVault<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Opened(opened) if opened.is_ok() => "open",
            State::Opened(_) => "unavailable",
            State::Opening(_) => "opening",
        };
        f.debug_struct("JobVault")
            .field("location", &self.location)
            .field("state", &state)
            .finish()
    }
}

impl From<Result<&Vault, &VaultUnavailable>> for JobVault<'_> {
    fn from(vault: Result<&Vault, &VaultUnavailable>) -> Self {
        match vault {
            Ok(vault) => JobVault {
                location: vault.store().location().to_owned(),
                state: State::Opened(Box::new(Ok(vault.clone()))),
            },
            Err(unavailable) => JobVault {
                location: unavailable.location.clone(),
                state: State::Opened(Box::new(Err(unavailable.clone()))),
            },
        }
    }
}

/// What the parts of a job see of its vault: `None` while it is opening, then whether it
/// opened. Clones of it follow the same vault (an early send waits on one).
pub(super) type Seen = watch::Receiver<Opened>;

/// A job's vault while the job runs: drives the opening and tells the job's parts how it went.
pub(super) struct Opening<'a> {
    location: String,
    pending: Option<Pending<'a>>,
    seen: watch::Sender<Opened>,
}

impl<'a> Opening<'a> {
    pub(super) fn new(vault: JobVault<'a>) -> (Opening<'a>, Seen) {
        let (now, pending) = match vault.state {
            State::Opened(opened) => (Some(*opened), None),
            State::Opening(pending) => (None, Some(pending)),
        };
        let (seen, receiver) = watch::channel(now);
        let opening = Opening {
            location: vault.location,
            pending,
            seen,
        };
        (opening, receiver)
    }

    pub(super) fn location(&self) -> &str {
        &self.location
    }

    /// Runs `work` to its end, opening the vault meanwhile; `work` never waits for the vault.
    pub(super) async fn alongside<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        if let Some(pending) = self.pending.as_mut() {
            let opened = tokio::select! {
                biased;
                done = &mut work => return done,
                opened = pending => opened,
            };
            self.pending = None;
            self.seen.send_replace(Some(opened));
        }
        work.await
    }

    /// Waits until the vault is open, or known not to open.
    pub(super) async fn wait(&mut self) -> Result<Vault, VaultUnavailable> {
        if let Some(pending) = self.pending.take() {
            let opened = pending.await;
            self.seen.send_replace(Some(opened));
        }
        match &*self.seen.borrow() {
            Some(opened) => opened.clone(),
            None => Err(VaultUnavailable {
                location: self.location.clone(),
                reason: "it was not opened".to_owned(),
            }),
        }
    }

    /// The vault, if it is open now.
    pub(super) fn open_now(&self) -> Option<Vault> {
        self.seen.borrow().as_ref()?.as_ref().ok().cloned()
    }
}

/// The vault `seen` follows, once it is open; `None` if it does not open (or the job ends
/// first).
pub(super) async fn when_open(mut seen: Seen) -> Option<Vault> {
    let opened = seen.wait_for(Option::is_some).await.ok()?;
    opened.as_ref()?.as_ref().ok().cloned()
}

/// Opens the vault a protected VM names (the daemon reopens it for every job, so a vault that
/// was down comes back by itself).
pub trait Vaults: Send + Sync + std::fmt::Debug {
    fn open<'a>(
        &'a self,
        location: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vault, VaultUnavailable>> + Send + 'a>>;

    /// Transfer settings for the vault at `location`.
    fn transfer_options(&self, _location: &str) -> TransferOptions {
        TransferOptions::default()
    }
}

/// The early send of a backup's Transfer (see [`blockvault_vault::EarlySend`]), when the job
/// will transfer: not when its policy keeps it in the snapshot tier, not when blockvault is
/// stopping, not to a vault that failed to open. A vault still opening gets an early send that
/// starts when it opens.
/// Chunks go early only to a vault with the tier's codec (`codec`): the early send copies
/// the tier's bytes.
pub(super) fn early_send(seen: &Seen, spec: &BackupSpec, codec: &ChunkCodec) -> Option<EarlySend> {
    if !spec.early_send
        || spec.skip_transfer.is_some()
        || spec.stop.as_ref().is_some_and(|stop| *stop.borrow())
    {
        return None;
    }
    let disks = spec
        .disks
        .iter()
        .filter_map(|path| path.file_name())
        .filter_map(|name| blockvault_core::DiskName::new(name.to_string_lossy()).ok())
        .collect();
    let opened = seen.borrow().clone();
    match opened {
        Some(Ok(vault)) if vault.store().codec() != codec => None,
        Some(Ok(vault)) => Some(vault.early_send(&spec.vm, disks, spec.options)),
        Some(Err(_)) => None,
        None => Some(EarlySend::when_open(
            {
                let (seen, codec) = (seen.clone(), codec.clone());
                async move {
                    when_open(seen)
                        .await
                        .filter(|v| *v.store().codec() == codec)
                }
            },
            &spec.vm,
            disks,
            spec.options,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(why: &str) -> VaultUnavailable {
        VaultUnavailable {
            location: "s3://b/p".to_owned(),
            reason: why.to_owned(),
        }
    }

    /// The work ends first and does not wait for an opening that never ends.
    #[tokio::test(start_paused = true)]
    async fn work_alongside_a_hung_opening_does_not_wait_for_it() {
        let hung = JobVault::opening("s3://b/p", std::future::pending());
        let (mut opening, seen) = Opening::new(hung);
        let started = tokio::time::Instant::now();
        let done = opening
            .alongside(async {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                7
            })
            .await;
        assert_eq!(done, 7);
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(1));
        assert!(seen.borrow().is_none(), "still opening");
        assert!(opening.open_now().is_none());
    }

    /// An opening that ends while the work runs is seen by the work's parts (and by whoever
    /// waits), and its failure is what the transfer gets.
    #[tokio::test(start_paused = true)]
    async fn an_opening_that_fails_meanwhile_is_seen_and_waited_for() {
        let failing = JobVault::opening("s3://b/p", async {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            Err(unavailable("timed out"))
        });
        let (mut opening, seen) = Opening::new(failing);
        let waiter = tokio::spawn(when_open(seen.clone()));
        let observed = opening
            .alongside(async {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                seen.borrow().clone().map(|o| o.err())
            })
            .await;
        assert_eq!(observed, Some(Some(unavailable("timed out"))));
        assert!(waiter.await.expect("join").is_none(), "never opened");
        assert_eq!(opening.wait().await.err(), Some(unavailable("timed out")));
    }

    /// A job whose vault is still opening when it ends (its transfer did not run) leaves no
    /// early send waiting forever.
    #[tokio::test(start_paused = true)]
    async fn waiters_end_when_the_job_drops_its_opening() {
        let (opening, seen) = Opening::new(JobVault::opening("s3://b/p", std::future::pending()));
        let waiter = tokio::spawn(when_open(seen));
        drop(opening);
        assert!(waiter.await.expect("join").is_none());
    }
}
