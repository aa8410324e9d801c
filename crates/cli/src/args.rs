//! The command line, as clap sees it. Help texts are written to teach: each command says what
//! it does, what it refuses, and shows an example.

use std::path::PathBuf;

use blockvault_core::{BlockSize, VmName};
use blockvault_store::VaultLocation;
use clap::{Args, Parser, Subcommand};

/// The exit code table, appended to every command's long help (a macro so `concat!` can use it).
macro_rules! exit_codes {
    () => {
        "\n\nExit codes:
  0  success
  1  the operation failed (I/O error, unreachable storage, disk changed during the read, ...)
  2  invalid arguments (unknown flag, bad block size, bad name or time, ...)
  3  not found (no such disk, vault, VM or point; no point at or before --at)
  4  integrity failure (a chunk, block map or record in the vault or snapshot tier is corrupt)
  5  backup completed with warning: the snapshot was taken, the transfer to the vault failed"
    };
}

macro_rules! quick_start {
    () => {
        "Quick start:
  blockvault vault init /srv/vault
  blockvault backup  --vault /srv/vault --vm web01 --disk /var/lib/vms/web01.raw
  blockvault points  --vault /srv/vault --vm web01
  blockvault restore --vault /srv/vault --vm web01 --at '2026-11-23 09:00' --to /tmp/web01"
    };
}

macro_rules! backup_example {
    () => {
        "Examples:
  blockvault backup --vault /srv/vault --vm db01 \\
      --disk /var/lib/vms/db01-root.raw --disk /var/lib/vms/db01-data.raw
  blockvault backup --vault /srv/vault --vm db01 --disk /var/lib/vms/db01-root.raw \\
      --pre-hook 'virsh domfsfreeze db01' --post-hook 'virsh domfsthaw db01' \\
      --instant-restore-days 5"
    };
}

macro_rules! points_example {
    () => {
        "Example:\n  blockvault points --vault /srv/vault --vm web01 --json"
    };
}

macro_rules! restore_examples {
    () => {
        "Examples:
  blockvault restore --vault /srv/vault --vm web01 --to /tmp/web01
  blockvault restore --vault /srv/vault --vm web01 --at 2026-11-23T09:00:00Z --to /tmp/web01
  blockvault restore --vault /srv/vault --vm web01 --point 20261123-0815 --to /tmp/web01
  blockvault restore --vault /srv/vault --vm web01 --at '2026-11-23 09:00' \\
      --to /var/lib/vms --in-place"
    };
}

macro_rules! jobs_examples {
    () => {
        "Examples:
  blockvault jobs
  blockvault jobs --status failed --since 2026-11-20
  blockvault jobs --vm web01 --operation backup --json
  blockvault jobs show 42"
    };
}

macro_rules! init_example {
    () => {
        "Examples:
  blockvault vault init /srv/vault
  AWS_ENDPOINT_URL=https://minio.example.net:9000 AWS_REGION=us-east-1 \\
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... blockvault vault init s3://backups/site-a"
    };
}

/// Block-level backup of VM disk images into a vault, with point-in-time restore.
#[derive(Debug, Parser)]
#[command(
    name = "blockvault",
    version,
    about,
    long_about = "Block-level backup of VM disk images into a vault, with point-in-time restore.\n\n\
        A backup is a job: it reads each raw disk image in fixed blocks (holes are skipped), keeps \
        the changed blocks in a local snapshot tier (zstd-compressed, addressed by their BLAKE3 \
        hash), then transfers the blocks the vault does not hold yet and commits there a \
        recovery point that describes every disk in full. Restore writes any point back as \
        sparse image files (or in place), byte for byte, verifying every block, from the \
        snapshot tier while the point is still there, else from the vault.",
    after_help = quick_start!(),
    after_long_help = concat!(quick_start!(), exit_codes!())
)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text (errors go to stderr as JSON too).
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bar.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Directory for this host's state: the job catalog (catalog.sqlite), the locks, the
    /// snapshot tier (unless --snapshot-dir) and `s3.toml` (S3 endpoint and credentials, mode
    /// 0600). Default: $XDG_STATE_HOME/blockvault, else ~/.local/state/blockvault.
    #[arg(long, global = true, env = "BLOCKVAULT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Directory of the local snapshot tier (instant-restore copies of each VM's changed
    /// blocks). Default: STATE_DIR/snapshots. Put it on a file system with room for a full
    /// copy of each VM's data plus its churn over the instant-restore days.
    #[arg(
        long,
        global = true,
        env = "BLOCKVAULT_SNAPSHOT_DIR",
        value_name = "DIR"
    )]
    pub snapshot_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and inspect vaults.
    #[command(subcommand)]
    Vault(VaultCommand),

    /// Back up the disks of a VM as one new recovery point (a backup job).
    #[command(
        long_about = "Back up the disks of a VM as one new recovery point, as a backup job with two \
            subtasks.\n\n\
            Snapshot: every disk is read once, at one instant (between the pre- and post-snapshot \
            hooks, if given); holes are skipped, all-zero blocks are recorded without being \
            stored, and the blocks that changed since the VM's previous snapshot are compressed \
            into the local snapshot tier. From then on the VM's disks may change: nothing reads \
            them again. The point restores from the snapshot tier at once (instant restore) and \
            stays there --instant-restore-days.\n\n\
            Transfer data to vault: the blocks the vault does not hold yet are copied from the \
            snapshot to the vault and the point is committed there. It carries every change since \
            the VM's newest vault point, so a transfer that failed or was skipped loses nothing.\n\n\
            Job status: Completed when both subtasks completed (or the transfer was skipped \
            because an earlier transfer of the VM was still running); Completed with warning \
            when the transfer failed (the point is in the snapshot tier only; exit code 5); \
            Failed when the snapshot failed (no point was made; exit code 1). See `blockvault \
            jobs`.\n\n\
            Each disk is named after its file name, so a VM's disks need distinct file names.",
        after_help = backup_example!(),
        after_long_help = concat!(backup_example!(), exit_codes!())
    )]
    Backup(BackupArgs),

    /// List the recovery points of a VM (or of every VM).
    #[command(
        after_help = points_example!(),
        after_long_help = concat!(points_example!(), exit_codes!())
    )]
    Points(PointsArgs),

    /// Restore a recovery point of a VM to image files, or in place.
    #[command(
        long_about = "Restore a recovery point of a VM to image files, one per disk, named after the disks.\n\n\
            The point is read from the local snapshot tier when it is still there (instant \
            restore: nothing is read from the vault), else from the vault; the output says \
            which. Without --point or --at the newest point is restored. Zero blocks become holes, so \
            the images are as sparse as the originals. Every block is checked against its hash; \
            a corrupt or missing block fails the restore naming its disk and byte offset. Images \
            are written to hidden partial files and renamed into place only when every disk is \
            complete, so a failed restore never leaves a file that looks done.",
        after_help = restore_examples!(),
        after_long_help = concat!(restore_examples!(), exit_codes!())
    )]
    Restore(RestoreArgs),

    /// List backup and restore jobs, or show one.
    #[command(
        long_about = "List jobs, newest first, or show one with its subtasks.\n\n\
            Every backup is a job with two subtasks, Snapshot and Transfer data to vault, each \
            with its status, times and bytes; restores are jobs too. A job that was running when \
            its process was killed or the host went down is marked Failed the next time \
            blockvault starts.",
        args_conflicts_with_subcommands = true,
        after_help = jobs_examples!(),
        after_long_help = concat!(jobs_examples!(), exit_codes!())
    )]
    Jobs(JobsArgs),
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub show: Option<JobsCommand>,

    /// Only jobs with this status: in-progress, completed, completed-with-warning, failed.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<blockvault_jobs::JobStatus>,

    /// Only jobs of this VM.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<VmName>,

    /// Only jobs of this operation: backup, backup-on-demand, configure-backup,
    /// configure-backup-migrate, restore, delete-backup-data, verify.
    #[arg(long, value_name = "OPERATION")]
    pub operation: Option<blockvault_jobs::Operation>,

    /// Only jobs started at or after this time (RFC 3339, or local date and time).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only jobs started before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// At most this many jobs.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// One job in detail: subtasks, timings, bytes, throughput, error.
    Show {
        /// The job id, as `blockvault jobs` lists it.
        #[arg(value_name = "ID")]
        id: blockvault_jobs::JobId,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create a vault in a new or empty directory, or in an S3 bucket.
    #[command(
        after_help = init_example!(),
        after_long_help = concat!(init_example!(), exit_codes!())
    )]
    Init {
        /// Where: a directory (created if missing; must be empty if it exists), or
        /// s3://BUCKET/PREFIX (the bucket must exist; the prefix must be empty).
        #[arg(value_name = "DIR|s3://BUCKET/PREFIX")]
        vault: VaultLocation,
    },
}

/// Where the vault is.
#[derive(Debug, Args)]
pub struct VaultArg {
    /// The vault: a directory or s3://BUCKET/PREFIX (see `blockvault vault init`). S3 endpoint,
    /// region and credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for plain HTTP), or STATE_DIR/s3.toml.
    #[arg(long, env = "BLOCKVAULT_VAULT", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub vault: VaultLocation,
}

/// How much a transfer does at once.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Objects in flight at once; each holds at most one block in memory. Default: 8 for a
    /// directory, 16 for S3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: Option<u16>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// Name of the VM (letters, digits, '.', '_', '-').
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// A disk image of the VM (raw file or block device); repeat for each disk, in order.
    #[arg(long = "disk", value_name = "PATH", required = true)]
    pub disks: Vec<PathBuf>,

    /// Block size: a power of two from 64KiB to 16MiB. Defaults to the disk's previous block
    /// size, or 4MiB for a new disk. Changing it makes the next backup a full one.
    #[arg(long, value_name = "SIZE")]
    pub block_size: Option<BlockSize>,

    /// Days the point stays in the local snapshot tier for instant restore (1-30). The vault
    /// copy is not affected.
    #[arg(long, value_name = "DAYS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=30))]
    pub instant_restore_days: u32,

    /// Command run (with `sh -c`) just before the disks are read, to quiesce the VM, for
    /// example `virsh domfsfreeze web01`. When it succeeds the point is application-consistent;
    /// when it fails the job fails and nothing is read. Its environment has BLOCKVAULT_VM,
    /// BLOCKVAULT_HOOK=pre and BLOCKVAULT_DISKS (one path per line).
    #[arg(long, value_name = "COMMAND")]
    pub pre_hook: Option<String>,

    /// Command run just after the disks were read, whether or not the read succeeded, for
    /// example `virsh domfsthaw web01`. Its failure is a warning: the data was already read.
    #[arg(long, value_name = "COMMAND")]
    pub post_hook: Option<String>,

    /// Seconds each hook may run before it is killed and counts as failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub hook_timeout: u64,

    #[command(flatten)]
    pub transfer: TransferArgs,
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
