//! The rolling verification: each day, a share of every vault's chunks is re-read and
//! re-hashed, so that each vault is read whole every [`DaemonOptions::verify_every_days`]
//! days (30 by default; 0 turns it off).
//!
//! # Which chunks, which day
//!
//! Days are UTC days, numbered from the Unix epoch. With `N` days, day `d` reads slice
//! `d mod N` of the chunk id space ([`ChunkShare::of_day`]): the ids whose first eight bytes,
//! as a number, fall in the `(d mod N)`-th of `N` equal ranges. The slice of a chunk depends on
//! its id alone, so the `N` slices partition the vault's chunks whatever comes and goes: a
//! chunk that lives through `N` consecutive days is read exactly once in them, a new chunk at
//! the latest `N` days after it is written, and the days of two hosts on one vault agree.
//! Every block map of every point is read each day (a map is small, and it is how the chunks
//! are found); a damaged map is thus found the next day.
//!
//! Each share is one [`Engine::verify_share`] over every VM of the vault (the vaults of this
//! host's protected items): `Verify` jobs as `blockvault verify` records them, one per VM,
//! Failed when damage touches the VM; bad chunks are marked damaged in the vault and dropped
//! from this host's index, so the next backup that reads the same data sends them again. The
//! verification takes no lease, as the manual one: a point deleted while it is read (retention,
//! `prune`, a collection after them) is no damage.
//!
//! # When
//!
//! At the daemon's start (today's share), and at each UTC midnight after it, in the background
//! (backups start and run meanwhile; a Verify job does not lock its VM). One verification runs at
//! a time: days that pass while one runs (a large share, the host suspended) are caught up
//! after it, oldest first, at most `N` of them. A restart forgets which days were read: it reads
//! today's share again, and days the daemon did not run are left to the next round, `N` days
//! later. A stop cuts the running verification; its jobs are ended as they stand.

use std::sync::Arc;

use blockvault_core::bytes;
use blockvault_vault::{ChunkShare, NoProgress};
use jiff::Timestamp;
use tokio::task::JoinHandle;

use super::{Daemon, Level};
use crate::{Operation, ProtectedItem, VerifyOutcome, VerifyScope};

const DAY: i64 = 24 * 3600;

/// Which days' shares are due: the days since the last one read, at most a round of them.
#[derive(Clone, Copy, Debug)]
pub(super) struct VerifyDays {
    every: u32,
    last: Option<i64>,
}

impl VerifyDays {
    pub(super) fn new(every: u32) -> VerifyDays {
        VerifyDays { every, last: None }
    }

    /// The days whose shares are due at `now`, oldest first; they count as read from here on.
    pub(super) fn take_due(&mut self, now: Timestamp) -> Vec<i64> {
        if self.every == 0 {
            return Vec::new();
        }
        let today = day_of(now);
        let first = match self.last {
            Some(last) if last >= today => return Vec::new(),
            Some(last) => (last + 1).max(today - i64::from(self.every) + 1),
            None => today,
        };
        self.last = Some(today);
        (first..=today).collect()
    }

    /// When the next day's share is due (the next UTC midnight); `None` when off.
    pub(super) fn next(&self, now: Timestamp) -> Option<Timestamp> {
        if self.every == 0 {
            return None;
        }
        Timestamp::from_second((day_of(now) + 1) * DAY).ok()
    }
}

/// Resolves when the running rolling verification (if any) ends, and forgets it; never
/// without one.
pub(super) async fn ended(task: &mut Option<JoinHandle<()>>) {
    match task {
        Some(handle) => {
            if let Err(e) = handle.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
            *task = None;
        }
        None => std::future::pending().await,
    }
}

/// The UTC day of `t`, counted from the Unix epoch.
pub(super) fn day_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(DAY)
}

impl Daemon {
    /// Reads the shares of `days` of the vaults of `items`, in a background task that logs
    /// what it read and found (see the module docs).
    pub(super) fn verify_days(&self, items: &[&ProtectedItem], days: Vec<i64>) -> JoinHandle<()> {
        let mut locations: Vec<String> = items.iter().map(|i| i.vault.clone()).collect();
        locations.sort();
        locations.dedup();
        let (engine, vaults, log, every) = (
            Arc::clone(&self.engine),
            Arc::clone(&self.vaults),
            Arc::clone(&self.log),
            self.options.verify_every_days,
        );
        tokio::spawn(async move {
            for day in days {
                let Some(share) = ChunkShare::of_day(day, every) else {
                    return;
                };
                for location in &locations {
                    let vault = match vaults.open(location).await {
                        Ok(vault) => vault,
                        Err(e) => {
                            log.log(
                                Level::Warning,
                                &format!(
                                    "rolling verify of {} ({share}) skipped: {}",
                                    e.location, e.reason
                                ),
                            );
                            continue;
                        }
                    };
                    log.log(
                        Level::Info,
                        &format!(
                            "rolling verify of {location}: reading {share} of its chunks (the \
                             whole vault every {every} day(s))"
                        ),
                    );
                    let options = vaults.transfer_options(location);
                    let outcome = engine
                        .verify_share(
                            &vault,
                            &VerifyScope::All,
                            share,
                            options,
                            Arc::new(NoProgress),
                        )
                        .await;
                    let (level, message) = match outcome {
                        Ok(outcome) => said(location, share, &outcome),
                        Err(e) => (
                            Level::Error,
                            format!("rolling verify of {location} ({share}) could not run: {e}"),
                        ),
                    };
                    log.log(level, &message);
                }
            }
        })
    }

    /// Cuts the running rolling verification (the stop) and ends its jobs as they stand.
    pub(super) async fn stop_verifying(&self, task: JoinHandle<()>) {
        task.abort();
        let _ = task.await;
        self.engine.catalog().settled().await;
        let pid = std::process::id();
        let reason = "the daemon stopped during the rolling verify (its share is read again in \
                      the next round)";
        let unfinished = match self.engine.catalog().call(|c| c.unfinished_jobs()).await {
            Ok(jobs) => jobs,
            Err(e) => {
                let message = format!("could not end the rolling verify's jobs: {e}");
                return self.log.log(Level::Error, &message);
            }
        };
        for job in unfinished {
            if job.pid != pid || job.operation != Operation::Verify {
                continue;
            }
            match self.engine.interrupt_job(&job, reason).await {
                Ok(status) => self.log.log(
                    Level::Warning,
                    &format!("{}: job {} ended {status}: {reason}", job.vm, job.id),
                ),
                Err(crate::Error::JobEnded { .. }) => {}
                Err(e) => self.log.log(
                    Level::Error,
                    &format!("{}: could not end job {}: {e}", job.vm, job.id),
                ),
            }
        }
    }
}

/// The log line of one share's verification: what it read, and the damage at error level.
fn said(location: &str, share: ChunkShare, outcome: &VerifyOutcome) -> (Level, String) {
    let report = &outcome.report;
    let jobs: Vec<String> = outcome.jobs.iter().map(|j| j.id.to_string()).collect();
    let read = format!(
        "rolling verify of {location} ({share}): {} point(s), {} chunk(s), {} read",
        report.points,
        report.chunks_checked,
        bytes(report.bytes_read)
    );
    let jobs = if jobs.is_empty() {
        String::new()
    } else {
        format!(" (job(s) {})", jobs.join(", "))
    };
    if report.is_clean() {
        let repaired = if report.repaired.is_empty() {
            String::new()
        } else {
            format!(
                " after {} repair(s) from the other store",
                report.repaired.len()
            )
        };
        return (Level::Info, format!("{read}: all intact{repaired}{jobs}"));
    }
    let chunks: Vec<String> = report.bad_chunks.iter().map(|b| b.id.to_string()).collect();
    (
        Level::Error,
        format!(
            "{read}: {} bad chunk(s){}, {} bad block map(s), {} unreadable point record(s); \
             bad chunks are marked damaged and the next backup of the same data sends them \
             again; `blockvault verify` lists the offsets{jobs}",
            report.bad_chunks.len(),
            if chunks.is_empty() {
                String::new()
            } else {
                format!(" ({})", chunks.join(", "))
            },
            report.bad_maps.len(),
            report.bad_records.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn one_share_a_day_and_missed_days_caught_up_up_to_a_round() {
        let mut days = VerifyDays::new(4);
        let first = days.take_due(at("2026-03-02T12:00:00Z"));
        let today = day_of(at("2026-03-02T12:00:00Z"));
        assert_eq!(first, vec![today]);
        assert!(days.take_due(at("2026-03-02T23:59:59Z")).is_empty());
        assert_eq!(
            days.next(at("2026-03-02T12:00:00Z")),
            Some(at("2026-03-03T00:00:00Z"))
        );
        assert_eq!(days.take_due(at("2026-03-03T00:00:00Z")), vec![today + 1]);
        // Two days passed unseen: both read.
        assert_eq!(
            days.take_due(at("2026-03-05T08:00:00Z")),
            vec![today + 2, today + 3]
        );
        // Ten days: one round (four), the latest.
        assert_eq!(
            days.take_due(at("2026-03-15T08:00:00Z")),
            vec![today + 10, today + 11, today + 12, today + 13]
        );
    }

    #[test]
    fn zero_days_is_off() {
        let mut days = VerifyDays::new(0);
        assert!(days.take_due(at("2026-03-02T12:00:00Z")).is_empty());
        assert_eq!(days.next(at("2026-03-02T12:00:00Z")), None);
    }
}
