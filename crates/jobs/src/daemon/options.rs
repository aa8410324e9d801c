//! What the daemon is given: how it opens vaults, and its tunables; and what it reports.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use blockvault_vault::{GcOptions, TransferOptions, Vault};

use crate::VaultUnavailable;

/// Opens the vault a protected VM names (the daemon reopens it for every job, so a vault that
/// was down comes back by itself).
pub trait Vaults: Send + Sync + fmt::Debug {
    fn open<'a>(
        &'a self,
        location: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vault, VaultUnavailable>> + Send + 'a>>;

    /// Transfer settings for the vault at `location`.
    fn transfer_options(&self, _location: &str) -> TransferOptions {
        TransferOptions::default()
    }
}

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
}

impl Default for DaemonOptions {
    fn default() -> DaemonOptions {
        DaemonOptions {
            poll: Duration::from_secs(60),
            grace: Duration::from_secs(60),
            expiry_every: Duration::from_secs(3600),
            maintenance_every: Duration::from_secs(24 * 3600),
            gc: GcOptions::default(),
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
