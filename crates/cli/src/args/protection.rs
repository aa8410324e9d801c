//! `blockvault protect`, `items`, `backup-now`, `stop-protection`, `undelete` and `daemon`:
//! the protection lifecycle and the daemon that runs it.

use std::path::PathBuf;

use blockvault_core::VmName;
use clap::Args;

use super::{HookArgs, TransferArgs, VaultArg};

#[derive(Debug, Args)]
pub struct ProtectArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// Name of the VM to protect (letters, digits, '.', '_', '-').
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// A disk image of the VM; repeat for each disk, in order. Default when the VM is already
    /// protected: its disks.
    #[arg(long = "disk", value_name = "PATH")]
    pub disks: Vec<PathBuf>,

    /// The policy (see `blockvault policy list`). Default: DefaultPolicy for a new protection,
    /// the current policy otherwise.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,

    #[command(flatten)]
    pub hooks: HookArgs,

    #[command(flatten)]
    pub transfer: TransferArgs,

    /// Take the VM over from the host that protects it in this vault (its protection record
    /// names it): from then on this host backs it up, and the other host's daemon stops its
    /// protection there (data retained) when it next looks. Without it, a VM another host
    /// protects is refused (exit 6).
    #[arg(long)]
    pub take_over: bool,
}

#[derive(Debug, Args)]
pub struct ItemsArgs {
    /// Only this VM.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<VmName>,

    /// Show what this vault records instead of this host's catalog: every VM protected there,
    /// by which host (this one or another), with which policy and its settings, since when.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub vault: Option<blockvault_store::VaultLocation>,
}

#[derive(Debug, Args)]
pub struct BackupNowArgs {
    /// The protected VM to back up now.
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// Keep the point at least until then (a date, or RFC 3339; default 30 days from now; at
    /// most 99 years).
    #[arg(long, value_name = "DATE")]
    pub retain_until: Option<String>,

    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("data").required(true).args(["retain_data", "delete_data"]))]
pub struct StopProtectionArgs {
    /// The protected VM.
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// Keep every recovery point until protection resumes or the data is deleted.
    #[arg(long)]
    pub retain_data: bool,

    /// Soft-delete the recovery points: restorable only after `undelete` for 14 days, then
    /// purged from the vault.
    #[arg(long)]
    pub delete_data: bool,
}

#[derive(Debug, Args)]
pub struct UndeleteArgs {
    /// The VM whose soft-deleted backup data (or forgotten points) to bring back.
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// Bring back only this forgotten point (`blockvault forget`): its id, or a prefix only
    /// it has.
    #[arg(long, value_name = "ID")]
    pub point: Option<String>,

    /// The vault of the forgotten points (default: the vault protecting the VM).
    #[arg(long, env = "BLOCKVAULT_VAULT", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub vault: Option<blockvault_store::VaultLocation>,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Log file (appended to). Default: STATE_DIR/daemon.log.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Seconds running jobs get to finish their step after SIGTERM or SIGINT.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub grace: u64,

    /// Longest sleep, in seconds, between two looks at the catalog.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll: u64,

    /// Read each vault whole every N days: each UTC day a rolling share (1/N of the chunks, by
    /// chunk id) is re-read and re-hashed, recorded as Verify jobs. 0 turns it off.
    #[arg(long, value_name = "N",
          default_value_t = blockvault_jobs::DEFAULT_VERIFY_EVERY_DAYS,
          value_parser = clap::value_parser!(u32).range(0..=3660))]
    pub verify_every_days: u32,
}
