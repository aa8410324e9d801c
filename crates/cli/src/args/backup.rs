//! `blockvault backup`, `points` and `restore`: a VM's recovery points, made, listed and read
//! back.

use std::path::PathBuf;

use blockvault_core::{BlockSize, DiskFormat, VmName};
use clap::Args;

use super::{HookArgs, TransferArgs, VaultArg};

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// Name of the VM (letters, digits, '.', '_', '-').
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// A disk image of the VM (a raw file or block device, or an image QEMU reads: qcow2,
    /// vmdk, vdi, vhdx, vpc, qed; see --disk-format); repeat for each disk, in order.
    #[arg(long = "disk", value_name = "PATH", required = true)]
    pub disks: Vec<PathBuf>,

    /// Block size: a power of two from 64KiB to 16MiB. Defaults to the disk's previous block
    /// size, or the vault's default block size for a new disk (shown by `vault show`: 1MiB,
    /// or 4MiB in vaults made before 1MiB became the default). Changing it makes the next
    /// backup a full one.
    #[arg(long, value_name = "SIZE")]
    pub block_size: Option<BlockSize>,

    /// Days the point stays in the local snapshot tier for instant restore (1-30). The vault
    /// copy is not affected.
    #[arg(long, value_name = "DAYS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=30))]
    pub instant_restore_days: u32,

    #[command(flatten)]
    pub hooks: HookArgs,

    #[command(flatten)]
    pub transfer: TransferArgs,

    /// Leave the vault untouched until the Snapshot completes. By default each chunk the
    /// Snapshot stores is also sent to the vault at once, overlapping the vault's writes with
    /// the scan (the Transfer then copies only what did not go early, and commits the point
    /// as always; a slow vault never slows the Snapshot).
    #[arg(long)]
    pub no_early_send: bool,

    /// Keep the point at least until then (a date, or RFC 3339; at most 99 years), whatever
    /// the retention of a policy protecting the VM says: the daily rule keeps only the day's
    /// last point, so a point made with this is not removed as an earlier point of its day.
    #[arg(long, value_name = "DATE")]
    pub retain_until: Option<String>,

    /// Read every allocated block of every disk this time, even where changed-block tracking
    /// (a QEMU dirty bitmap, the file system's extents) says what changed, and check that
    /// tracking against the read: the job then says how many changed blocks it had missed (0:
    /// sound), and the point is the full read's. Backups do this by themselves once a week.
    #[arg(long)]
    pub check_changes: bool,
}

#[derive(Debug, Args)]
pub struct PointsArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// The VM whose points to list; all VMs when omitted.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<VmName>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// The VM whose point to restore (see `blockvault points`).
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// Restore the newest point taken at or before this time: RFC 3339
    /// (2026-11-23T09:00:00Z, 2026-11-23T10:00:00+01:00) or local time (2026-11-23 09:00).
    #[arg(long, value_name = "TIME", conflicts_with = "point")]
    pub at: Option<String>,

    /// Restore this point: its id as `points` shows it, or any prefix only it has.
    #[arg(long, value_name = "ID")]
    pub point: Option<String>,

    /// Directory to write the disk images into (created if missing).
    #[arg(long, value_name = "OUTDIR")]
    pub to: PathBuf,

    /// Replace images that already exist in OUTDIR (only once the new ones are complete).
    #[arg(long, conflicts_with = "in_place")]
    pub force: bool,

    /// Which tier to read from: auto (the snapshot tier when the point is still there, else
    /// the vault), snapshot, or vault (for example to prove the vault copy restores). With
    /// snapshot or vault, --at and the newest point are chosen among that tier's points.
    #[arg(long, value_name = "TIER", default_value = "auto")]
    pub from: TierChoice,

    /// Roll the existing disk images in OUTDIR back to the point, writing only the blocks
    /// that differ (the cost is reading the disks plus the churn, not the disk size). Stop the
    /// VM first. The images are changed directly: if interrupted, run it again to finish.
    #[arg(long)]
    pub in_place: bool,

    /// The format to write every disk in: raw, qcow2, vmdk, vdi, vhdx, vpc or qed. By default
    /// each disk is written in the format it was backed up from (a qcow2 image comes back as
    /// a sparse qcow2 file, a vmdk as a vmdk, made with qemu-img; an overlay on a base image
    /// comes back whole, with no backing file). Not with --in-place, which rolls the images
    /// back as they are.
    #[arg(long, value_name = "FORMAT", conflicts_with = "in_place")]
    pub format: Option<DiskFormat>,

    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `restore --from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TierChoice {
    Auto,
    Snapshot,
    Vault,
}

impl TierChoice {
    pub fn tier(self) -> Option<blockvault_jobs::Tier> {
        match self {
            TierChoice::Auto => None,
            TierChoice::Snapshot => Some(blockvault_jobs::Tier::Snapshot),
            TierChoice::Vault => Some(blockvault_jobs::Tier::Vault),
        }
    }
}
