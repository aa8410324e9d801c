//! What the daemon is given: its tunables (how it opens vaults is the engine's [`Vaults`](crate::Vaults)); and what it reports.

use std::time::Duration;

use blockvault_vault::GcOptions;

/// The rolling verification's default round: each vault read whole once a month.
pub const DEFAULT_VERIFY_EVERY_DAYS: u32 = 30;

/// Tunables of the daemon.
#[derive(Clone, Copy, Debug)]
pub struct DaemonOptions {
    /// Longest sleep between two looks at the catalog (new protections, policy edits).
    pub poll: Duration,
    /// How long running jobs may take to finish their step after a stop.
    pub grace: Duration,
    /// How often each VM's expired snapshot points are deleted when no backup does it.
    pub expiry_every: Duration,
    /// How often retention is applied to the vault points of protected VMs, followed by a
    /// garbage collection of each vault that protects them (see [`Daemon`](crate::Daemon)).
    pub maintenance_every: Duration,
    /// The collection's settings (its grace period, how long it waits for running backups).
    pub gc: GcOptions,
    /// The rolling verification reads each vault whole every this many days, a share a day
    /// (see [`Daemon`](crate::Daemon), "Rolling verification"); 0 turns it off.
    pub verify_every_days: u32,
}

impl Default for DaemonOptions {
    fn default() -> DaemonOptions {
        DaemonOptions {
            poll: Duration::from_secs(60),
            grace: Duration::from_secs(60),
            expiry_every: Duration::from_secs(3600),
            maintenance_every: Duration::from_secs(24 * 3600),
            gc: GcOptions::default(),
            verify_every_days: DEFAULT_VERIFY_EVERY_DAYS,
        }
    }
}

/// What a daemon run did, for its caller's last log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonReport {
    pub jobs_started: u64,
    /// Slots folded into a catch-up backup (missed while no daemon ran).
    pub slots_missed: u64,
    /// Jobs still running at the end of the grace period, ended as they stood.
    pub jobs_interrupted: u64,
}
