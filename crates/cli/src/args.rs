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
  4  integrity failure (a chunk, block map or record in the vault is corrupt)"
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
        "Example:
  blockvault backup --vault /srv/vault --vm db01 \\
      --disk /var/lib/vms/db01-root.raw --disk /var/lib/vms/db01-data.raw"
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
  blockvault restore --vault /srv/vault --vm web01 --point 20261123-0815 --to /tmp/web01"
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
        A backup reads each raw disk image in fixed blocks (holes are skipped), stores only the \
        blocks the vault does not hold yet (zstd-compressed, addressed by their BLAKE3 hash), and \
        commits a recovery point that describes every disk in full. Restore writes any point back \
        as sparse image files, byte for byte, verifying every block.",
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

    /// Directory for blockvault's own state, such as `s3.toml` (S3 endpoint and credentials,
    /// mode 0600). Default: $XDG_STATE_HOME/blockvault, else ~/.local/state/blockvault.
    #[arg(long, global = true, env = "BLOCKVAULT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and inspect vaults.
    #[command(subcommand)]
    Vault(VaultCommand),

    /// Back up the disks of a VM as one new recovery point.
    #[command(
        long_about = "Back up the disks of a VM as one new recovery point.\n\n\
            Every disk is read once: holes are skipped, all-zero blocks are recorded without being \
            stored, and only blocks the vault does not already hold are compressed and written. \
            The first backup of a VM stores all its data; later ones store only what changed. \
            The point is committed only after all its data is durable: an interrupted backup \
            leaves the previous points untouched.\n\n\
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

    /// Restore a recovery point of a VM to image files.
    #[command(
        long_about = "Restore a recovery point of a VM to image files, one per disk, named after the disks.\n\n\
            Without --point or --at the newest point is restored. Zero blocks become holes, so \
            the images are as sparse as the originals. Every block is checked against its hash; \
            a corrupt or missing block fails the restore naming its disk and byte offset. Images \
            are written to hidden partial files and renamed into place only when every disk is \
            complete, so a failed restore never leaves a file that looks done.",
        after_help = restore_examples!(),
        after_long_help = concat!(restore_examples!(), exit_codes!())
    )]
    Restore(RestoreArgs),
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
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub transfer: TransferArgs,
}
