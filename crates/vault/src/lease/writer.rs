//! The lease itself: written, rewritten in the background, checked before a commit or a
//! delete, and removed; a writer's lease yields to a sweep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Instant as LeaseClock;

use blockvault_core::{LeaseKind, LeaseRecord};
use blockvault_store::Store;
use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::{Error, Result};

use super::listed::{random_id, store_now, sweep_listed, whoami};

/// Removals of leases dropped without [`Lease::release`], started and not yet done.
static DROPPED_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How often a holder rewrites its lease.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(20);

/// A writer refuses to commit when its lease was last rewritten longer ago than this: the
/// process was paused or the store unreachable long enough that a sweep may have judged it
/// dead. Half the lease time leaves the other half for the commit itself.
const COMMIT_WITHIN: Duration = Duration::from_secs(150);

/// A lease held in a vault, rewritten in the background until [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    pub(super) store: Store,
    pub(super) record: LeaseRecord,
    pub(super) state: Arc<Mutex<State>>,
    pub(super) refresher: Option<tokio::task::JoinHandle<()>>,
    /// Dead leases this holder removed (see [`Lease::blockers`]).
    pub(super) dead_removed: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
pub(super) struct State {
    /// When the last successful write of the lease started (the store stamps it no earlier).
    pub(super) last_written: LeaseClock,
    /// Set for good when two successful writes were further apart than [`COMMIT_WITHIN`]: the
    /// lease may have looked dead to a sweep in between (the process was paused, the store
    /// unreachable), so a later rewrite cannot make it trustworthy again.
    pub(super) lapsed: Option<Duration>,
    pub(super) released: bool,
}

impl Lease {
    /// Writes a new lease of `kind` for `holder` (a description for messages). The caller must
    /// then list the leases and decide whether it may go on (see [`Lease::writer`]).
    pub(super) async fn write(store: &Store, kind: LeaseKind, holder: &str) -> Result<Lease> {
        let now = Timestamp::now();
        let record = LeaseRecord {
            id: random_id(holder),
            kind,
            holder: format!("{holder} ({})", whoami()),
            started: now,
            refreshed: now,
        };
        let attempt = LeaseClock::now();
        // The put runs as its own task, so a caller dropped meanwhile (an interrupted gc)
        // cannot leave a lease that landed after it and that nothing removes: the guard
        // removes it once the put is done.
        let mut pending = PendingWrite {
            store: store.clone(),
            record: Some(record.clone()),
            put: Some(tokio::spawn({
                let (store, record) = (store.clone(), record.clone());
                async move { store.put_lease(&record).await }
            })),
        };
        if let Some(put) = pending.put.as_mut() {
            let put = put
                .await
                .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
            pending.put = None;
            put?;
        }
        pending.record = None;
        let state = Arc::new(Mutex::new(State {
            last_written: attempt,
            lapsed: None,
            released: false,
        }));
        let refresher = tokio::spawn(refresh(store.clone(), record.clone(), Arc::clone(&state)));
        Ok(Lease {
            store: store.clone(),
            record,
            state,
            refresher: Some(refresher),
            dead_removed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A writer's lease (backup, transfer), taken before the writer reads anything it will
    /// trust about which chunks the vault holds. A writer always yields to a sweep: if one is
    /// running, or pending (see [`SweepWait::hold_after`](crate::SweepWait::hold_after)), it withdraws its lease and waits
    /// until the sweep ends, then tries again. Returns the lease and how long it waited.
    ///
    /// While it waits it writes no lease: it lists until the sweep's leases are gone. Its
    /// retries would otherwise show up as writers to a pending sweep, which waits for the
    /// running writers to finish, and a dozen held backups would keep it waiting for good.
    pub async fn writer(store: &Store, holder: &str) -> Result<(Lease, Duration)> {
        let started = Instant::now();
        loop {
            let lease = Lease::write(store, LeaseKind::Writer, holder).await?;
            let leases = store.list_leases().await?;
            let now = store_now(&leases, &lease.record);
            if !sweep_listed(&leases, now) {
                return Ok((lease, started.elapsed()));
            }
            lease.release().await?;
            // Judged by the store's clock, as it stood at the write, and this host's
            // monotonic time since: a host clock far off must not take a dead sweep for live.
            let (store_then, then) = (now, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = store_then.checked_add(then.elapsed()).unwrap_or(store_then);
                if !sweep_listed(&store.list_leases().await?, now) {
                    break;
                }
            }
        }
    }

    /// Fails unless the lease was rewritten recently enough, and every time often enough,
    /// that no sweep can have taken its holder for dead. A writer calls it right before its
    /// commit, a sweeper before each delete.
    pub async fn check(&self) -> Result<()> {
        let state = self.state.lock().await;
        if let Some(gap) = state.lapsed {
            return Err(Error::LeaseLost {
                holder: self.record.holder.clone(),
                since: gap,
            });
        }
        let since = state.last_written.elapsed();
        if since > COMMIT_WITHIN {
            return Err(Error::LeaseLost {
                holder: self.record.holder.clone(),
                since,
            });
        }
        Ok(())
    }

    /// Stops refreshing and removes the lease.
    pub async fn release(mut self) -> Result<()> {
        {
            // Waits for a rewrite in flight, so none lands after the delete.
            let mut state = self.state.lock().await;
            state.released = true;
        }
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
        self.store.delete_lease(&self.record).await?;
        Ok(())
    }

    /// Waits, at most `timeout`, until the leases dropped without [`Lease::release`] are
    /// removed: for a process that cancelled its work (an interrupted `gc`) and is about to
    /// exit, which would otherwise leave them to expire. Returns whether all were removed.
    pub async fn dropped_removed(timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while DROPPED_IN_FLIGHT.load(std::sync::atomic::Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// How many dead leases [`Lease::blockers`] removed so far.
    pub fn dead_removed(&self) -> u64 {
        self.dead_removed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }
}

/// A lease being written by [`Lease::write`]: dropped before its [`Lease`] exists, it removes
/// the lease in the background once the put in flight is done (counted as a dropped lease, see
/// [`Lease::dropped_removed`]).
struct PendingWrite {
    store: Store,
    /// `None` once the lease is made, or its put failed.
    record: Option<LeaseRecord>,
    /// The put, while in flight.
    put: Option<tokio::task::JoinHandle<blockvault_store::Result<()>>>,
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        let Some(record) = self.record.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // it dies of old age after LEASE_TTL
        };
        let (store, put) = (self.store.clone(), self.put.take());
        DROPPED_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        runtime.spawn(async move {
            if let Some(put) = put {
                let _ = put.await;
            }
            let _ = store.delete_lease(&record).await;
            DROPPED_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
    }
}

impl Drop for Lease {
    /// A lease dropped without [`Lease::release`] (an error path, a cancelled task) stops
    /// refreshing and is removed in the background when a runtime is there; otherwise it dies
    /// of old age after [`LEASE_TTL`](crate::LEASE_TTL).
    fn drop(&mut self) {
        let Some(task) = self.refresher.take() else {
            return;
        };
        task.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, record, state) = (
                self.store.clone(),
                self.record.clone(),
                Arc::clone(&self.state),
            );
            DROPPED_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            runtime.spawn(async move {
                state.lock().await.released = true;
                let _ = store.delete_lease(&record).await;
                DROPPED_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            });
        }
    }
}

async fn refresh(store: Store, mut record: LeaseRecord, state: Arc<Mutex<State>>) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        let mut state = state.lock().await;
        if state.released {
            return;
        }
        record.refreshed = Timestamp::now();
        let attempt = LeaseClock::now();
        // A failed rewrite is retried at the next tick; `check` notices if they keep failing.
        if store.put_lease(&record).await.is_ok() {
            // After a pause (SIGSTOP, a suspended VM, a store outage) this rewrite succeeds
            // and would look fresh, but the lease may have been judged dead, removed and
            // swept past meanwhile: the gap is remembered, and the lease stays lost.
            let gap = attempt.duration_since(state.last_written) + attempt.elapsed();
            if gap > COMMIT_WITHIN {
                state.lapsed.get_or_insert(gap);
            }
            state.last_written = attempt;
        }
    }
}
