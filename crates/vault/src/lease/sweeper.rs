//! The sweeper's side of the lease protocol: a collection waits for a pause between writers
//! (holding new ones back if it finds none), then sweeps alone.

use std::time::{Duration, Instant};

use blockvault_core::{LeaseKind, LeaseRecord};
use blockvault_store::Store;
use jiff::Timestamp;

use super::listed::{LEASE_TTL, describe, is_live, is_pending, jitter, store_now};
use super::writer::Lease;
use crate::{Error, NoProgress, Progress, Result};

impl Lease {
    /// A sweeper's lease, held alone: waits (without a lease, so writers that start meanwhile
    /// are not held up) until no live writer is left, then writes the lease and lists again; a
    /// writer that slipped in between makes it withdraw and wait again. So backups wait at
    /// most for the sweep itself, never for the wait, unless the wait finds no pause between
    /// writers for [`SweepWait::hold_after`]: then the sweep holds new writers back with a
    /// "sweep pending" lease, for at most [`SweepWait::hold_for`], while the running ones
    /// finish. Gives up after [`SweepWait::wait`], naming who held the vault.
    pub async fn sweeper(store: &Store, holder: &str, patience: SweepWait) -> Result<Sweeper> {
        Lease::sweeper_with(store, holder, patience, &NoProgress).await
    }

    /// [`Lease::sweeper`], telling `progress` what it waits for and until when
    /// ([`Progress::waiting`]) while live writers hold the vault.
    pub async fn sweeper_with(
        store: &Store,
        holder: &str,
        patience: SweepWait,
        progress: &dyn Progress,
    ) -> Result<Sweeper> {
        let started = Instant::now();
        let mut hold = Hold::NotYet;
        let outcome =
            Lease::sweeper_turn(store, holder, &patience, started, &mut hold, progress).await;
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
        progress: &dyn Progress,
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
            // The latest a dead holder's lease runs out (by the store's clock), and when this
            // wait gives up.
            let expires = leases
                .iter()
                .filter(|l| is_live(l, now) && !is_pending(l))
                .filter_map(|l| l.last_modified.checked_add(LEASE_TTL).ok())
                .max()
                .unwrap_or(now);
            let gives_up = now
                .checked_add(patience.wait.saturating_sub(started.elapsed()))
                .unwrap_or(now);
            progress.waiting(&holders.join(", "), expires, gives_up);
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
