//! The command line, as clap sees it. Help texts are written to teach: each command says what
//! it does, what it refuses, and shows an example.

use std::path::PathBuf;

use blockvault_core::{BlockSize, VmName};
use blockvault_store::VaultLocation;
use clap::{Args, Parser, Subcommand};

pub use self::vault::VaultCommand;

/// The exit code table, appended to every command's long help (a macro so `concat!` can use it).
macro_rules! exit_codes {
    () => {
        "\n\nExit codes:
  0  success
  1  the operation failed (I/O error, unreachable storage, disk changed during the read, ...)
  2  invalid arguments (unknown flag, bad block size, bad name or time, ...)
  3  not found (no such disk, vault, VM or point; no point at or before --at)
  4  integrity failure (a chunk, block map or record in the vault or snapshot tier is corrupt)
  5  backup completed with warning: the snapshot was taken, the transfer to the vault failed
  6  refused: the vault's state does not allow it (changing the redundancy of a vault that
     holds backup items; promoting a replica whose primary still holds the vault)"
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
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... blockvault vault init s3://backups/site-a
  blockvault vault init --vault /srv/vault --redundancy replicated --secondary /mnt/replica"
    };
}

macro_rules! policy_examples {
    () => {
        "Examples:
  blockvault policy create web-4h --type enhanced --hourly 4 --start 08:00 \\
      --timezone Europe/Paris --instant-restore-days 7 --daily-retention 180
  blockvault policy create nightly --at 02:30 --weekly-retention 12 --weekly-on sun
  blockvault policy edit nightly --instant-restore-days 5 --monthly-retention 24
  blockvault policy show web-4h --toml > web-4h.toml
  blockvault policy apply web-4h.toml
  blockvault policy list
  blockvault policy delete nightly"
    };
}

macro_rules! protect_examples {
    () => {
        "Examples:
  blockvault protect --vault /srv/vault --vm web01 --disk /var/lib/vms/web01.raw
  blockvault protect --vault /srv/vault --vm db01 --policy web-4h \\
      --disk /var/lib/vms/db01-root.raw --disk /var/lib/vms/db01-data.raw \\
      --pre-hook 'virsh domfsfreeze db01' --post-hook 'virsh domfsthaw db01'"
    };
}

/// Block-level backup of VM disk images into a vault, with point-in-time restore.
// After the help-text macros, which it uses.
mod vault;

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

    /// Create, show, list, edit, delete and apply backup policies.
    #[command(
        subcommand,
        long_about = "Backup policies: when a protected VM is backed up, how long its points stay \
            in the snapshot tier (instant restore) and how long retention keeps its vault points.\n\n\
            Standard: daily or weekly at HH:MM; instant restore 1-5 days (default 2); daily \
            points kept 30 days by default.\n\
            Enhanced: also hourly, every 4, 6, 8 or 12 hours from a start time (default 08:00) \
            over a window (default 24 h); instant restore 1-30 days (default 7); daily points \
            kept 180 days by default. Of an hourly schedule only the last backup of each day goes \
            to the vault (the first of the next day when that one failed); the others live in \
            the snapshot tier.\n\n\
            Times are local to the policy's IANA time zone and follow daylight saving: a time \
            the clock skips runs once at the first valid instant after it, a time that happens \
            twice runs once. Every catalog has DefaultPolicy (Standard, daily 23:00 UTC).",
        after_help = policy_examples!(),
        after_long_help = concat!(policy_examples!(), exit_codes!())
    )]
    Policy(PolicyCommand),

    /// Protect a VM with a vault and a policy (a Configure backup job), or change its policy.
    #[command(
        long_about = "Protect a VM: its disks are backed up to the vault on its policy's schedule \
            by `blockvault daemon`, and on demand with `blockvault backup-now`.\n\n\
            Every disk is checked first (it exists and is a readable disk image). A VM is \
            protected by one vault only. Run it again to change the disks, hooks or policy: \
            moving a VM from a Standard to an Enhanced policy is a migration, a Configure backup \
            (Migrate policy) job that takes a backup; it is refused while a backup job of the \
            VM is in progress, and it cannot be undone (Enhanced to Standard is refused). \
            Existing recovery points are kept.",
        after_help = protect_examples!(),
        after_long_help = concat!(protect_examples!(), exit_codes!())
    )]
    Protect(ProtectArgs),

    /// List protected VMs: state, policy, last backup, latest point and its tiers.
    #[command(
        long_about = "List the protected items: each VM with its state (Protected, Stopped (data \
            retained), or Soft-deleted (purged DATE), see `blockvault stop-protection --help`), \
            its policy, its last backup job, its latest point and its tiers, and when the daemon \
            backs it up next (protected VMs only)."
    )]
    Items(ItemsArgs),

    /// Back up a protected VM now, keeping the point until a date (Backup (on demand)).
    #[command(
        long_about = "Run an on-demand backup job of a protected VM, with its disks, hooks and \
            policy's instant-restore days. The point is kept at least until --retain-until, \
            whatever the policy's retention says, and always goes to the vault.",
        after_help = "Example:\n  blockvault backup-now --vm web01 --retain-until 2027-01-31"
    )]
    BackupNow(BackupNowArgs),

    /// Re-read, decompress and re-hash every chunk of a VM's points (or of the whole vault).
    #[command(
        long_about = "Verify vault points: every block map is checked against its point record, \
            and every chunk the points name is read, decompressed and re-hashed (each chunk once, \
            however many points share it). Each bad chunk is reported with the points, disks and \
            offsets it damages, and marked damaged in the vault: the next backup of the same \
            data (on any host) uploads an intact copy. Each VM verified gets a Verify job. Exit \
            code 4 when anything is damaged.",
        after_help = "Examples:\n  blockvault verify --vault /srv/vault --vm web01\n  \
            blockvault verify --vault /srv/vault --vm web01 --point 20261123-0815\n  \
            blockvault verify --vault /srv/vault --all --json"
    )]
    Verify(VerifyArgs),

    /// Delete vault points that protected VMs' retention no longer keeps (--dry-run to see).
    #[command(
        long_about = "Apply each protected VM's policy retention to its points in the vault: a \
            point that no rule keeps (daily, weekly, monthly, yearly, an on-demand backup's \
            retain-until) is deleted, record first, then block maps. The newest point is always \
            kept. Points of VMs that are not protected are never pruned. `blockvault points` \
            shows what keeps each point and until when. The chunks of deleted points are freed \
            by `blockvault gc`. The daemon prunes and collects garbage by itself once a day.",
        after_help = "Examples:\n  blockvault prune --vault /srv/vault --dry-run\n  \
            blockvault prune --vault /srv/vault --vm web01"
    )]
    Prune(PruneArgs),

    /// Delete chunks no recovery point names (safe while backups run).
    #[command(
        long_about = "Collect the vault's garbage: read every point's block maps, then delete \
            the chunks none of them names (and block maps of backups that never committed). \
            Backups keep running during the long part; the deletion waits until running \
            backups have committed (at most --wait), and backups that start meanwhile wait \
            only for the deletion, unless the wait reaches --hold-after: then new backups are \
            held back (at most --hold-for) until the running ones are done. Chunks younger \
            than --grace are kept. Works the same on S3 \
            stores without conditional writes (Garage): see the store crate's docs for why it \
            is safe. A collection that is killed loses nothing; the next one finishes it. \
            Stopped with Ctrl-C or SIGTERM, it removes its leases before it exits.",
        after_help = "Examples:\n  blockvault gc --vault /srv/vault --dry-run\n  \
            blockvault gc --vault s3://backups/vault --grace 2h --json"
    )]
    Gc(GcArgs),
    /// Stop protecting a VM, keeping its backup data or soft-deleting it.
    #[command(
        long_about = "Stop the protection of a VM: no more scheduled or on-demand backups. \
            Exactly one of --retain-data or --delete-data says what happens to its recovery \
            points.\n\n\
            --retain-data: every point is kept as it is, in the vault and in the snapshot tier, \
            for as long as protection stays stopped (retention does not expire them). `points` \
            lists them and `restore` restores them. `blockvault protect --vault VAULT --vm NAME` \
            resumes protection (its schedule starts then; missed slots are not caught up). The \
            VM may also be protected in another vault: its points here stay, unmanaged.\n\n\
            --delete-data: a Delete backup data job soft-deletes the points for 14 days. The \
            vault records the deletion, so every host sees it; the points are still listed (as \
            soft-deleted, with the date they are purged) but cannot be restored, and the VM \
            cannot be protected in any vault. The VM's points in this host's snapshot tier are \
            removed at once (they are local copies of the vault points). Within the 14 days, \
            `blockvault undelete --vm NAME` brings every point back, with protection stopped \
            and data retained. After them, `blockvault daemon` purges the points from the vault \
            (another Delete backup data job); that cannot be undone.",
        after_help = "Examples:\n  blockvault stop-protection --vm web01 --retain-data\n  \
            blockvault stop-protection --vm web01 --delete-data\n  \
            blockvault undelete --vm web01",
        after_long_help = concat!(
            "Examples:\n  blockvault stop-protection --vm web01 --retain-data\n  \
            blockvault stop-protection --vm web01 --delete-data\n  \
            blockvault undelete --vm web01",
            exit_codes!()
        )
    )]
    StopProtection(StopProtectionArgs),

    /// Bring back a VM's soft-deleted backup data (within 14 days of its deletion).
    #[command(
        long_about = "Undelete the backup data of a VM whose protection was stopped with \
            --delete-data, before its 14 days are over: the vault's soft-delete record is \
            removed and every point can be restored again. Protection stays stopped with the \
            data retained; `blockvault protect --vault VAULT --vm NAME` resumes it. Refused \
            once the 14 days are over (the data is purged).",
        after_help = "Example:\n  blockvault undelete --vm web01"
    )]
    Undelete(UndeleteArgs),

    /// Run protected VMs' schedules (stop with SIGTERM or Ctrl-C).
    #[command(
        long_about = "Run every protected VM's policy: start each scheduled backup job, expire \
            snapshot points past their instant-restore days, and pick up new protections and \
            policy edits as they are made. Logs go to stderr (with journald priorities under \
            systemd) and to --log.\n\n\
            Restarts: a slot that ran never runs again. Slots that passed while no daemon ran are \
            caught up at start by one backup, which the log lists them for; if any of them would \
            have gone to the vault, that backup does. Stopping (SIGTERM, SIGINT): no new job \
            starts; running jobs finish their current step (a finished snapshot does not start \
            its transfer) within --grace seconds, else they are ended as they stand: a cut \
            snapshot fails its job, a cut transfer leaves the job Completed with warning.",
        after_help = "Example (systemd):\n  ExecStart=/usr/local/bin/blockvault daemon\n  KillSignal=SIGTERM"
    )]
    Daemon(DaemonArgs),
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
    /// directory; for S3, 16 uploads (backup) or 32 downloads (restore, verify).
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

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy (values not given take the type's defaults).
    Create {
        /// The policy's name (letters, digits, '.', '_', '-').
        #[arg(value_name = "NAME")]
        name: String,
        /// standard or enhanced.
        #[arg(long = "type", value_name = "TYPE", default_value = "standard")]
        kind: String,
        #[command(flatten)]
        settings: PolicySettings,
    },
    /// Change some values of a policy (the VMs it protects follow from their next backup).
    Edit {
        /// The policy to change.
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        settings: PolicySettings,
    },
    /// Show one policy (--toml: as a policy file `policy apply` reads).
    Show {
        /// The policy to show.
        #[arg(value_name = "NAME")]
        name: String,
        /// Print the policy file instead of a summary.
        #[arg(long)]
        toml: bool,
    },
    /// List the policies and the VMs each protects.
    List,
    /// Delete a policy (refused while it protects a VM).
    Delete {
        /// The policy to delete.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Create or replace policies from TOML files (see `policy show --toml` for the format).
    Apply {
        /// Policy files, one policy each.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

/// Policy values, each optional: `create` fills the rest with the type's defaults, `edit`
/// keeps the policy's.
#[derive(Debug, Default, Args)]
pub struct PolicySettings {
    /// IANA time zone of the schedule (Europe/Paris, America/New_York, UTC). Default for a new
    /// policy: this host's zone.
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,

    /// Back up daily at HH:MM (default 23:00 for daily and weekly schedules).
    #[arg(long, value_name = "HH:MM", conflicts_with = "hourly")]
    pub at: Option<String>,

    /// Back up weekly on these days (mon,tue,...,sun) at --at, instead of daily.
    #[arg(
        long,
        value_name = "DAYS",
        value_delimiter = ',',
        conflicts_with = "hourly"
    )]
    pub weekly: Option<Vec<String>>,

    /// Back up every N hours (4, 6, 8 or 12; Enhanced only) from --start over --window.
    #[arg(long, value_name = "HOURS")]
    pub hourly: Option<i64>,

    /// First backup of the day of an hourly schedule (default 08:00).
    #[arg(long, value_name = "HH:MM", requires = "hourly")]
    pub start: Option<String>,

    /// Hours the hourly backups go on after --start (1-24, default 24).
    #[arg(long, value_name = "HOURS", requires = "hourly")]
    pub window: Option<i64>,

    /// Days a point stays in the snapshot tier (Standard 1-5, Enhanced 1-30).
    #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
    pub instant_restore_days: Option<i64>,

    /// Days daily points are kept (7-9999).
    #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
    pub daily_retention: Option<i64>,

    /// Weeks weekly points are kept (1-5163), or `off`.
    #[arg(long, value_name = "WEEKS|off")]
    pub weekly_retention: Option<String>,

    /// Days whose point is the weekly point (default sun, or the weekly schedule's days).
    #[arg(long, value_name = "DAYS", value_delimiter = ',')]
    pub weekly_on: Option<Vec<String>>,

    /// Months monthly points are kept (1-1188), or `off`.
    #[arg(long, value_name = "MONTHS|off")]
    pub monthly_retention: Option<String>,

    /// Which day is the monthly point: 1-28, last, or first|second|third|fourth|last-WEEKDAY
    /// (default first-sunday).
    #[arg(long, value_name = "DAY")]
    pub monthly_on: Option<String>,

    /// Years yearly points are kept (1-99), or `off`.
    #[arg(long, value_name = "YEARS|off")]
    pub yearly_retention: Option<String>,

    /// Which day is the yearly point: MONTH-DAY, for example jan-1, dec-last,
    /// mar-first-sunday (default jan-first-sunday).
    #[arg(long, value_name = "MONTH-DAY")]
    pub yearly_on: Option<String>,
}

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
}

#[derive(Debug, Args)]
pub struct ItemsArgs {
    /// Only this VM.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<VmName>,
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
    /// The VM whose soft-deleted backup data to bring back.
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,
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
}

/// The pre- and post-snapshot hooks of a VM.
#[derive(Debug, Args)]
pub struct HookArgs {
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
}

impl HookArgs {
    pub fn hooks(&self) -> blockvault_jobs::Hooks {
        blockvault_jobs::Hooks {
            pre: self.pre_hook.clone(),
            post: self.post_hook.clone(),
            timeout: Some(std::time::Duration::from_secs(self.hook_timeout)),
        }
    }
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).args(["vm", "all"]))]
pub struct VerifyArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// The VM whose points to verify.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<VmName>,

    /// Only this point of --vm (its id or a unique prefix).
    #[arg(long, value_name = "ID", requires = "vm")]
    pub point: Option<String>,

    /// Every point of every VM in the vault.
    #[arg(long)]
    pub all: bool,

    /// Set aside the point records that cannot be read (moved to quarantine/points/VM/ in the
    /// vault; copy one back to points/VM/ to undo), so that garbage collection frees what
    /// only they named. Their points are lost: use it once no other copy (a replica, the
    /// snapshot tier) can repair them.
    #[arg(long)]
    pub quarantine_damaged: bool,

    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// Only this protected VM (default: every VM protected in the vault).
    #[arg(long, value_name = "NAME")]
    pub vm: Option<VmName>,

    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// Count what would be deleted, delete nothing (an upper bound: a backup that commits
    /// during a real collection keeps the chunks it names).
    #[arg(long)]
    pub dry_run: bool,

    /// Keep unreferenced chunks younger than this (e.g. 30m, 2h, 0s). Staging files that
    /// writers killed mid-put left (directory vaults) are kept at least 1h whatever this is.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub grace: jiff::SignedDuration,

    /// Give up (deleting nothing) if running backups still hold the vault after this long.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub wait: jiff::SignedDuration,

    /// Once the sweep has waited this long for running backups, hold new backups and
    /// transfers back (they wait, as for the sweep itself) until the running ones finish and
    /// the sweep has run. At least --wait: never.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub hold_after: jiff::SignedDuration,

    /// Hold new backups back for at most this long, then let them in again for the rest of
    /// --wait.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub hold_for: jiff::SignedDuration,
}

/// A duration like `90s`, `30m`, `2h` or `1h30m`; not negative.
fn parse_duration(text: &str) -> Result<jiff::SignedDuration, String> {
    let duration: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 15m or 2h"))?;
    if duration.is_negative() {
        return Err(format!("{text} is negative"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// `--help` teaches: every option and positional argument of every command says what it is.
    #[test]
    fn every_argument_of_every_command_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "blockvault", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
