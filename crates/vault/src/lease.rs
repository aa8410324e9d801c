//! Leases: how backups and the garbage collector's sweep stay out of each other's way on a
//! store without compare-and-swap. The protocol is described in the store crate's docs
//! ("Garbage collection without compare-and-swap"); this is its implementation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Instant as LeaseClock;

use blockvault_core::{LeaseKind, LeaseRecord};
use blockvault_store::{ListedLease, Store};
use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::{Error, Result};

/// A lease that has not been rewritten for this long is dead: its holder crashed, hangs, or
/// lost the store. Others may then ignore it.
pub const LEASE_TTL: Duration = Duration::from_secs(300);

/// Removals of leases dropped without [`Lease::release`], started and not yet done.
static DROPPED_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How often a holder rewrites its lease.
const REFRESH_EVERY: Duration = Duration::from_secs(20);

/// A writer refuses to commit when its lease was last rewritten longer ago than this: the
/// process was paused or the store unreachable long enough that a sweep may have judged it
/// dead. Half the lease time leaves the other half for the commit itself.
const COMMIT_WITHIN: Duration = Duration::from_secs(150);

/// A lease held in a vault, rewritten in the background until [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    store: Store,
    record: LeaseRecord,
    state: Arc<Mutex<State>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    /// Dead leases this holder removed (see [`Lease::blockers`]).
    dead_removed: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct State {
    /// When the last successful write of the lease started (the store stamps it no earlier).
    last_written: LeaseClock,
    /// Set for good when two successful writes were further apart than [`COMMIT_WITHIN`]: the
    /// lease may have looked dead to a sweep in between (the process was paused, the store
    /// unreachable), so a later rewrite cannot make it trustworthy again.
    lapsed: Option<Duration>,
    released: bool,
}

impl Lease {
    /// Writes a new lease of `kind` for `holder` (a description for messages). The caller must
    /// then list the leases and decide whether it may go on (see [`Lease::writer`]).
    async fn write(store: &Store, kind: LeaseKind, holder: &str) -> Result<Lease> {
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
    /// running, or pending (see [`SweepWait::hold_after`]), it withdraws its lease and waits
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

    /// A sweeper's lease, held alone: waits (without a lease, so writers that start meanwhile
    /// are not held up) until no live writer is left, then writes the lease and lists again; a
    /// writer that slipped in between makes it withdraw and wait again. So backups wait at
    /// most for the sweep itself, never for the wait, unless the wait finds no pause between
    /// writers for [`SweepWait::hold_after`]: then the sweep holds new writers back with a
    /// "sweep pending" lease, for at most [`SweepWait::hold_for`], while the running ones
    /// finish. Gives up after [`SweepWait::wait`], naming who held the vault.
    pub async fn sweeper(store: &Store, holder: &str, patience: SweepWait) -> Result<Sweeper> {
        let started = Instant::now();
        let mut hold = Hold::NotYet;
        let outcome = Lease::sweeper_turn(store, holder, &patience, started, &mut hold).await;
        // Once the sweeper's own lease is written, it holds writers back itself; on an error
        // the hold must go too. One that cannot be removed now dies after the lease time.
        let _ = hold.release(started.elapsed()).await;
        let held = hold.held(started.elapsed());
        outcome.map(|(lease, dead_removed)| Sweeper {
            lease,
            waited: started.elapsed(),
            held,
            dead_removed,
        })
    }

    /// [`Lease::sweeper`]'s wait, with `hold` kept up to date; the lease and how many dead
    /// leases it removed.
    async fn sweeper_turn(
        store: &Store,
        holder: &str,
        patience: &SweepWait,
        started: Instant,
        hold: &mut Hold,
    ) -> Result<(Lease, u64)> {
        let mut dead_removed = 0;
        loop {
            // A guess by this host's clock, only to decide whether to try: the decision that
            // matters (and the removal of dead leases) is `blockers`, by the store's clock.
            let now = Timestamp::now();
            let leases = store.list_leases().await?;
            let mut holders: Vec<String> = leases
                .iter()
                .filter(|l| is_live(l, now) && !is_pending(l))
                .map(describe)
                .collect();
            if holders.is_empty() {
                let lease = Lease::write(store, LeaseKind::Sweeper, holder).await?;
                let blockers = lease.blockers().await?;
                dead_removed += lease.dead_removed();
                if blockers.is_empty() {
                    return Ok((lease, dead_removed));
                }
                lease.release().await?;
                holders = blockers.into_iter().map(|b| b.holder).collect();
            }
            if started.elapsed() >= patience.wait {
                return Err(Error::GcBlocked {
                    waited: started.elapsed(),
                    holders,
                });
            }
            hold.update(store, holder, started.elapsed(), patience)
                .await?;
            // Jittered, so two collectors that withdrew together do not meet again.
            tokio::time::sleep(patience.poll + patience.poll.mul_f64(jitter())).await;
        }
    }

    /// The live leases that keep this sweeper from deleting: every writer, and every other
    /// sweeper. Two collectors never sweep at once: each writes its lease before it lists, so
    /// at least one of them sees the other, and whichever sees the other withdraws (both may;
    /// they then try again at different times). An order such as "the older lease goes" would
    /// not do: the older one's write may land after the younger one listed, and then neither
    /// yields. Dead leases met on the way are removed.
    pub async fn blockers(&self) -> Result<Vec<LeaseRecord>> {
        let leases = self.store.list_leases().await?;
        let now = store_now(&leases, &self.record);
        for dead in leases.iter().filter(|l| !is_live(l, now)) {
            self.store.delete_lease_key(&dead.key).await?;
            self.dead_removed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(leases
            .iter()
            .filter(|l| is_live(l, now))
            .map(|l| {
                // An unreadable lease is taken for a writer: waiting is the safe side.
                l.record.clone().unwrap_or_else(|| LeaseRecord {
                    id: l.key.clone(),
                    kind: LeaseKind::Writer,
                    holder: format!("the unreadable lease {}", l.key),
                    started: l.last_modified,
                    refreshed: l.last_modified,
                })
            })
            .filter(|r| match r.kind {
                LeaseKind::Writer => true,
                LeaseKind::Sweeper => r.id != self.record.id,
                // Another collector's (or this one's) request to hold writers back: it stops
                // no sweep.
                LeaseKind::SweepPending => false,
            })
            .collect())
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
    /// of old age after [`LEASE_TTL`].
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

/// A sweeper's lease and how it got it (see [`Lease::sweeper`]).
#[derive(Debug)]
pub struct Sweeper {
    pub lease: Lease,
    /// How long the sweep waited for the writers.
    pub waited: Duration,
    /// Of that, how long it held new writers back (see [`SweepWait::hold_after`]).
    pub held: Duration,
    /// Dead leases removed on the way.
    pub dead_removed: u64,
}

/// How a sweep waits for the writers to let it in (see [`Lease::sweeper`]).
#[derive(Clone, Copy, Debug)]
pub struct SweepWait {
    /// Gives up after this long, deleting nothing.
    pub wait: Duration,
    /// Looks again this often.
    pub poll: Duration,
    /// After waiting this long without finding a pause between writers, holds new writers
    /// back (a `sweep-pending` lease) so that the running ones can finish. Writers that run
    /// already are not affected. `wait` or more: never.
    pub hold_after: Duration,
    /// Holds new writers back at most this long, once; then lets them in again for the rest
    /// of `wait`. A collector that dies while holding them blocks them for the lease time.
    pub hold_for: Duration,
}

/// Where a waiting sweep stands with holding writers back. `since` is how long the sweep had
/// waited when the hold began.
enum Hold {
    NotYet,
    Holding { lease: Box<Lease>, since: Duration },
    Done { held: Duration },
}

impl Hold {
    /// Starts holding new writers back once the sweep has waited `hold_after`, and stops
    /// `hold_for` later.
    async fn update(
        &mut self,
        store: &Store,
        holder: &str,
        waited: Duration,
        patience: &SweepWait,
    ) -> Result<()> {
        let due = matches!(self, Hold::NotYet)
            && waited >= patience.hold_after
            && patience.hold_after < patience.wait;
        let over =
            matches!(self, Hold::Holding { since, .. } if waited >= *since + patience.hold_for);
        if due {
            let lease = Lease::write(store, LeaseKind::SweepPending, holder).await?;
            *self = Hold::Holding {
                lease: Box::new(lease),
                since: waited,
            };
        } else if over {
            self.release(waited).await?;
        }
        Ok(())
    }

    /// Lets new writers in again; `waited` is how long the sweep has waited now.
    async fn release(&mut self, waited: Duration) -> Result<()> {
        let held = self.held(waited);
        match std::mem::replace(self, Hold::Done { held }) {
            Hold::Holding { lease, .. } => lease.release().await,
            Hold::NotYet | Hold::Done { .. } => Ok(()),
        }
    }

    /// How long new writers were held back, by the time the sweep has waited `waited`.
    fn held(&self, waited: Duration) -> Duration {
        match self {
            Hold::NotYet => Duration::ZERO,
            Hold::Holding { since, .. } => waited.saturating_sub(*since),
            Hold::Done { held } => *held,
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

/// Whether a lease is alive at `now`: rewritten within the lease time. Both times are the
/// store's (`now` is when the store wrote the judge's own lease, see [`store_now`]), so the
/// hosts' clocks play no part: a host whose clock runs fast cannot take a live lease for dead,
/// and a crashed holder whose clock ran ahead cannot block others past the lease time.
pub(crate) fn is_live(lease: &ListedLease, now: Timestamp) -> bool {
    let written = lease.last_modified;
    written > now || now.duration_since(written).unsigned_abs() <= LEASE_TTL
}

/// "Now" by the store's clock: when it last wrote `own` lease, as the listing that follows
/// the write reports it (this host's clock if the listing misses it).
fn store_now(leases: &[ListedLease], own: &LeaseRecord) -> Timestamp {
    leases
        .iter()
        .filter(|l| l.record.as_ref().is_some_and(|r| r.id == own.id))
        .map(|l| l.last_modified)
        .max()
        .unwrap_or_else(Timestamp::now)
}

/// Whether a live sweep, running or pending, is listed: writers wait for it. An unreadable
/// lease counts (waiting is the safe side).
fn sweep_listed(leases: &[ListedLease], now: Timestamp) -> bool {
    leases.iter().any(|l| {
        is_live(l, now)
            && l.record
                .as_ref()
                .is_none_or(|r| matches!(r.kind, LeaseKind::Sweeper | LeaseKind::SweepPending))
    })
}

/// Whether a listed lease is a sweep's request to hold writers back (which keeps no sweep
/// from running).
fn is_pending(lease: &ListedLease) -> bool {
    lease
        .record
        .as_ref()
        .is_some_and(|r| r.kind == LeaseKind::SweepPending)
}

/// Who holds a listed lease, for messages.
fn describe(lease: &ListedLease) -> String {
    match &lease.record {
        Some(record) => record.holder.clone(),
        None => format!("the unreadable lease {}", lease.key),
    }
}

fn random_id(holder: &str) -> String {
    let seed = format!(
        "{holder}:{}:{}:{:?}",
        std::process::id(),
        Timestamp::now().as_nanosecond(),
        std::thread::current().id()
    );
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_owned()
}

/// A number in [0, 1) that differs between processes and calls.
fn jitter() -> f64 {
    let seed = random_id("jitter");
    f64::from(u8::from_str_radix(&seed[..2], 16).unwrap_or(0)) / 256.0
}

/// "host NAME, pid N", for lease holders.
fn whoami() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".to_owned());
    format!("host {host}, pid {}", std::process::id())
}

#[cfg(test)]
mod tests {
    use blockvault_store::testing::ProbedStore;

    use super::*;

    const POLL: Duration = Duration::from_millis(20);

    /// A lease whose writer is dropped while the put is in flight (an interrupted `gc` taking
    /// its hold on new backups) is removed once the put lands, and the process waiting for
    /// dropped leases sees it removed. Before, the put landed after the drop and stayed.
    #[tokio::test]
    async fn a_lease_dropped_while_it_is_written_is_removed_once_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::local(dir.path()).expect("store");
        let mut write = Box::pin(Lease::write(&store, LeaseKind::SweepPending, "gc"));
        assert!(
            futures::poll!(&mut write).is_pending(),
            "the put is in flight"
        );
        drop(write);
        assert!(Lease::dropped_removed(Duration::from_secs(10)).await);
        // Whatever a put still in flight would do, it has had the time to.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let leases = store.list_leases().await.expect("list");
        assert!(leases.is_empty(), "{leases:?}");
    }

    /// Waits `wait`, never holding writers back.
    fn patience(wait: Duration) -> SweepWait {
        SweepWait {
            wait,
            poll: POLL,
            hold_after: wait,
            hold_for: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_writer_yields_to_a_sweep_and_a_sweep_waits_for_writers() {
        let store = Store::in_memory();
        let (writer, waited) = Lease::writer(&store, "backup of a").await.expect("writer");
        assert!(waited < Duration::from_secs(1), "no sweep: no wait");

        // While a writer runs, the sweep waits (holding no lease) and gives up in time.
        let blocked = Lease::sweeper(&store, "gc", patience(Duration::from_millis(200))).await;
        match blocked {
            Err(Error::GcBlocked { holders, .. }) => {
                assert_eq!(holders, vec![writer.record().holder.clone()]);
            }
            other => panic!("expected GcBlocked, got {other:?}"),
        }
        let listed = store.list_leases().await.expect("list");
        assert_eq!(listed.len(), 1, "the waiting sweep holds no lease");

        // A sweep whose lease is written while a writer runs sees it and lets it finish.
        let sweeper = Lease::write(&store, LeaseKind::Sweeper, "gc")
            .await
            .expect("sweeper");
        let blockers = sweeper.blockers().await.expect("blockers");
        assert_eq!(blockers.len(), 1, "the running writer blocks the sweep");
        assert_eq!(blockers[0].id, writer.record().id);

        // A writer arriving during the sweep waits for it.
        let late = tokio::spawn({
            let store = store.clone();
            async move { Lease::writer(&store, "backup of b").await }
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!late.is_finished(), "the late writer waits for the sweep");
        writer.release().await.expect("release");
        assert!(sweeper.blockers().await.expect("blockers").is_empty());
        sweeper.release().await.expect("release");
        let (late, waited) = late.await.expect("join").expect("writer");
        assert!(
            waited >= Duration::from_millis(500),
            "it waited: {waited:?}"
        );
        late.check().await.expect("fresh lease");
        late.release().await.expect("release");
        assert!(store.list_leases().await.expect("list").is_empty());
    }

    /// Whether the vault lists a live lease of `kind`.
    async fn listed(store: &Store, kind: LeaseKind) -> bool {
        let leases = store.list_leases().await.expect("list");
        leases
            .iter()
            .any(|l| l.record.as_ref().is_some_and(|r| r.kind == kind))
    }

    /// Polls until the vault does (`true`) or does not (`false`) list a lease of `kind`.
    async fn until_listed(store: &Store, kind: LeaseKind, present: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(store, kind).await != present {
            assert!(
                Instant::now() < deadline,
                "{kind:?} listed: {present} never came"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    #[tokio::test]
    async fn a_sweep_that_finds_no_pause_holds_new_writers_back_until_it_has_run() {
        let store = Store::in_memory();
        let (running, _) = Lease::writer(&store, "backup of a").await.expect("writer");
        let sweep = tokio::spawn({
            let store = store.clone();
            let patience = SweepWait {
                wait: Duration::from_secs(30),
                poll: POLL,
                hold_after: Duration::from_millis(100),
                hold_for: Duration::from_secs(30),
            };
            async move { Lease::sweeper(&store, "gc", patience).await }
        });
        until_listed(&store, LeaseKind::SweepPending, true).await;

        // A writer that starts now waits; the running one goes on and may commit.
        let late = tokio::spawn({
            let store = store.clone();
            async move { Lease::writer(&store, "backup of b").await }
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!late.is_finished(), "the new writer is held back");
        assert!(
            !sweep.is_finished(),
            "the sweep waits for the running writer"
        );
        let leases = store.list_leases().await.expect("list");
        assert!(
            leases
                .iter()
                .any(|l| l.record.as_ref() == Some(running.record())),
            "the running writer's lease stays"
        );
        running.check().await.expect("and it may commit");
        running.release().await.expect("release");

        // The running writer done, the sweep runs before the held writer.
        let Sweeper {
            lease: sweeper,
            waited,
            held,
            ..
        } = sweep.await.expect("join").expect("the sweep gets its turn");
        assert!(
            held >= Duration::from_millis(700) && held < waited,
            "held {held:?} of {waited:?}"
        );
        assert!(
            !listed(&store, LeaseKind::SweepPending).await,
            "the hold ends once the sweep holds its own lease"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!late.is_finished(), "the held writer waits for the sweep");
        sweeper.release().await.expect("release");
        let (late, waited) = late.await.expect("join").expect("writer");
        assert!(waited >= Duration::from_secs(1), "it waited: {waited:?}");
        late.release().await.expect("release");
        assert!(store.list_leases().await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn a_sweep_holds_writers_back_for_hold_for_at_most_and_never_after_giving_up() {
        let store = Store::in_memory();
        let (running, _) = Lease::writer(&store, "backup of a").await.expect("writer");
        let sweep = |hold_for| {
            let store = store.clone();
            let patience = SweepWait {
                wait: Duration::from_secs(2),
                poll: POLL,
                hold_after: Duration::from_millis(50),
                hold_for,
            };
            tokio::spawn(async move { Lease::sweeper(&store, "gc", patience).await })
        };

        // The hold ends after `hold_for`, well before the sweep gives up.
        let short = sweep(Duration::from_millis(300));
        until_listed(&store, LeaseKind::SweepPending, true).await;
        until_listed(&store, LeaseKind::SweepPending, false).await;
        assert!(!short.is_finished(), "the sweep still waits");
        let (other, waited) = Lease::writer(&store, "backup of b").await.expect("writer");
        assert!(
            waited < Duration::from_millis(500),
            "new writers get in again: {waited:?}"
        );
        other.release().await.expect("release");
        assert!(matches!(
            short.await.expect("join"),
            Err(Error::GcBlocked { .. })
        ));

        // Giving up while holding, the sweep lets writers in again.
        let long = sweep(Duration::from_secs(60));
        until_listed(&store, LeaseKind::SweepPending, true).await;
        match long.await.expect("join") {
            Err(Error::GcBlocked { holders, .. }) => {
                assert_eq!(holders, vec![running.record().holder.clone()]);
            }
            other => panic!("expected GcBlocked, got {other:?}"),
        }
        assert!(!listed(&store, LeaseKind::SweepPending).await);
        running.release().await.expect("release");
        assert!(store.list_leases().await.expect("list").is_empty());
    }

    /// Writers held back by a pending sweep must not look like running writers to it: they
    /// wait without a lease, or a dozen of them would keep the sweep from ever starting.
    #[tokio::test]
    async fn held_writers_wait_without_writing_leases() {
        let counting = Arc::new(ProbedStore::counting("leases/writer-"));
        let store = Store::new(counting.clone(), "counting");
        let writes = || counting.puts();
        let hold = Lease::write(&store, LeaseKind::SweepPending, "gc")
            .await
            .expect("hold");
        let held: Vec<_> = (0..10)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { Lease::writer(&store, &format!("backup {n}")).await })
            })
            .collect();
        // Three rounds of retries.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert!(held.iter().all(|w| !w.is_finished()), "all are held back");
        assert_eq!(writes(), 10, "one attempt each, then no lease while held");
        assert!(
            !listed(&store, LeaseKind::Writer).await,
            "no writer lease listed while they wait"
        );

        hold.release().await.expect("release");
        for writer in held {
            let (lease, _) = writer.await.expect("join").expect("writer");
            lease.release().await.expect("release");
        }
        assert_eq!(writes(), 20, "one more each once the hold is gone");
    }

    /// A holder stopped (SIGSTOP, a suspended VM) for longer than the lease time: a sweep may
    /// have judged it dead and run meanwhile. When it resumes, its refresher fires at once and
    /// rewrites the lease, but the lease must stay lost: committing now could name chunks the
    /// sweep deleted.
    #[tokio::test(start_paused = true)]
    async fn a_lease_that_lapsed_stays_lost_after_the_refresher_rewrites_it() {
        let store = Store::in_memory();
        let (lease, _) = Lease::writer(&store, "backup of a").await.expect("writer");
        // Refreshed on time, it holds for as long as the writer runs.
        tokio::time::sleep(LEASE_TTL * 2).await;
        lease.check().await.expect("refreshed every 20 s");

        // The process is stopped past the lease time; on resume every timer is overdue.
        tokio::time::advance(LEASE_TTL + Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let since = lease.state.lock().await.last_written.elapsed();
        assert!(
            since < REFRESH_EVERY,
            "the refresher rewrote the lease on resume"
        );
        match lease.check().await {
            Err(Error::LeaseLost { since, .. }) => {
                assert!(since > LEASE_TTL, "the gap is reported: {since:?}");
            }
            other => panic!("a lease that lapsed must stay lost, got {other:?}"),
        }
        lease.release().await.expect("release");
    }

    #[tokio::test]
    async fn two_sweepers_never_both_go_and_dead_leases_are_ignored_and_removed() {
        let store = Store::in_memory();
        let first = Lease::sweeper(&store, "gc 1", patience(POLL))
            .await
            .expect("first")
            .lease;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = Lease::write(&store, LeaseKind::Sweeper, "gc 2")
            .await
            .expect("second");
        // The first one goes on (it listed before the second wrote); the second sees it.
        assert_eq!(second.blockers().await.expect("blockers").len(), 1);
        first.release().await.expect("release");
        second.release().await.expect("release");

        // Two collectors race: B writes and lists first and sees nobody, so B sweeps. A's
        // lease says it started earlier (its clock is behind, or its write was slow) but
        // lands after B listed: A must still see B and withdraw.
        let b = Lease::write(&store, LeaseKind::Sweeper, "gc b")
            .await
            .expect("b");
        assert!(b.blockers().await.expect("blockers").is_empty(), "b sweeps");
        let earlier = Timestamp::now() - jiff::SignedDuration::from_secs(10);
        let a_record = LeaseRecord {
            id: "a".into(),
            kind: LeaseKind::Sweeper,
            holder: "gc a".into(),
            started: earlier,
            refreshed: earlier,
        };
        store.put_lease(&a_record).await.expect("put a");
        let a = Lease {
            store: store.clone(),
            record: a_record,
            state: Arc::new(Mutex::new(State {
                last_written: LeaseClock::now(),
                lapsed: None,
                released: false,
            })),
            refresher: None,
            dead_removed: std::sync::atomic::AtomicU64::new(0),
        };
        let blockers = a.blockers().await.expect("blockers");
        assert_eq!(
            blockers.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![b.record().id.clone()],
            "a sweeps only if b does not: two sweeps at once"
        );
        a.release().await.expect("release");
        b.release().await.expect("release");

        // A writer that died an hour ago.
        let old = Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let dead = LeaseRecord {
            id: "dead".into(),
            kind: LeaseKind::Writer,
            holder: "a killed backup".into(),
            started: old,
            refreshed: old,
        };
        store.put_lease(&dead).await.expect("put");
        let listed = store.list_leases().await.expect("list");
        // The in-memory store stamps the write with now: judge it at a later "now".
        let later = Timestamp::now() + jiff::SignedDuration::from_secs(400);
        assert!(!is_live(&listed[0], later), "dead after the lease time");
        assert!(
            is_live(&listed[0], Timestamp::now()),
            "alive by the store's clock"
        );
    }
}
