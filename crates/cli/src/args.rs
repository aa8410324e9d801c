//! The command line, as clap sees it. Help texts are written to teach: each command says what
//! it does, what it refuses, and shows an example.

use std::path::PathBuf;

use blockvault_store::VaultLocation;
use clap::{Args, Parser, Subcommand};

pub use self::install::{CompletionsArgs, ManArgs};
pub use self::{
    backup::{BackupArgs, PointsArgs, RestoreArgs},
    forget::ForgetArgs,
    jobs::{JobsArgs, JobsCommand},
    keys::{EncryptionArgs, KeyCommand},
    maintenance::{GcArgs, PruneArgs, VerifyArgs},
    policy::{PolicyCommand, PolicySettings},
    protection::{
        BackupNowArgs, DaemonArgs, ItemsArgs, ProtectArgs, StopProtectionArgs, UndeleteArgs,
    },
    vault::VaultCommand,
};

/// The exit code table, appended to every command's long help (a macro so `concat!` can use it).
macro_rules! exit_codes {
    () => {
        "\n\nExit codes:
  0  success
  1  the operation failed (I/O error, unreachable storage, disk changed during the read, ...)
  2  invalid arguments (unknown flag, bad block size, bad name or time, ...)
  3  not found (no such disk, vault, VM, point, job, policy or policy file; no point at or
     before --at)
  4  integrity failure (a chunk, block map or record in the vault or snapshot tier is corrupt)
  5  backup completed with warning: the snapshot was taken, the transfer to the vault failed
  6  refused: the state of the vault, VM or policy does not allow it (changing the redundancy
     of a vault that holds backup items; promoting a replica whose primary still holds the
     vault; a VM protected by another vault, soft-deleted or stopped; a policy in use)
  7  locked: an encrypted vault that cannot be unlocked (wrong passphrase, none given, key
     file missing)"
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
  blockvault vault init --vault /srv/vault --redundancy replicated --secondary /mnt/replica
  BLOCKVAULT_PASSWORD_FILE=/root/vault.pass blockvault vault init --vault /srv/vault --encryption"
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

// After the help-text macros, which they use.
mod backup;
mod forget;
mod install;
mod jobs;
mod keys;
mod maintenance;
mod policy;
mod protection;
mod vault;

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
        long_about = "List the recovery points of a VM (or of every VM) in both tiers: the vault \
            and this host's snapshot tier, with what retention says of each.\n\n\
            When the vault cannot be opened (unreachable, moved), the points of this host's \
            snapshot tier answer alone, with a warning, only if this host knows the vault at \
            that location (a backup to it recorded its id), and only that vault's points. A \
            location this host does not know lists nothing and fails: exit 3 for a directory \
            that is not a vault or a missing bucket, 1 when the storage cannot be reached.",
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
            complete, so a failed restore never leaves a file that looks done.\n\n\
            When the vault cannot be opened, a point still in the snapshot tier restores from \
            there, with a warning, if this host knows the vault at that location (by its id) \
            and the point was taken for it; otherwise the restore fails with the vault's error \
            (exit 3 for a directory that is not a vault, 1 for unreachable storage).",
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
            Existing recovery points are kept; those the policy's retention removes at the next \
            prune are listed (the daily rule keeps each day's last point).\n\n\
            The vault is opened first: one this host cannot read (a wrong secret) is refused \
            before anything is recorded. The protection is recorded in the vault too \
            (protection/<vm>: this host, the policy, since when), so a VM another host protects \
            there is refused (exit 6) naming that host; `--take-over` moves it here \
            deliberately. `blockvault items --vault V` shows what a vault records.",
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

    #[command(
        about = forget::ABOUT,
        long_about = forget::LONG_ABOUT,
        after_help = forget::EXAMPLES,
        after_long_help = concat!(
            "Examples:
  blockvault forget --vault /srv/vault --vm web01 --point 20261123-081500
  blockvault forget --vault /srv/vault --vm web01 --keep-daily 7 --keep-weekly 4 --dry-run",
            exit_codes!()
        )
    )]
    Forget(ForgetArgs),

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
            snapshot fails its job, a cut transfer leaves the job Completed with warning.\n\n\
            Rolling verify: at start and each UTC midnight, a share of each vault's chunks (slice \
            d mod N of the chunk ids on day d) is re-read and re-hashed in the background, so each \
            vault is read whole every --verify-every-days days (default 30; 0 = off). Each share \
            is recorded as Verify jobs (`blockvault jobs --operation verify`); damage is logged \
            as an error and its chunks are marked damaged, as `blockvault verify` does, so the \
            next backup of the same data sends them again.",
        after_help = "Examples:\n  ExecStart=/usr/local/bin/blockvault daemon\n  KillSignal=SIGTERM\n  blockvault daemon --verify-every-days 7    # read each vault whole every week"
    )]
    Daemon(DaemonArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(
        long_about = "Print the completion script of a shell on stdout, for every command and \
            flag of this blockvault. Nothing else is read or written. Install it where your shell \
            looks for completions (see the examples), or source it from your shell's startup file. \
            A shell not in the list is a usage error (exit code 2).",
        after_help = "Examples:\n  \
            blockvault completions bash > /usr/share/bash-completion/completions/blockvault\n  \
            blockvault completions zsh > /usr/local/share/zsh/site-functions/_blockvault\n  \
            blockvault completions fish > ~/.config/fish/completions/blockvault.fish"
    )]
    Completions(CompletionsArgs),

    /// Print the man page (blockvault.1) on stdout, or write every page with --out-dir.
    #[command(
        long_about = "Print the manual page blockvault(1), in roff, on stdout: the commands and \
            global options of this blockvault. With --out-dir, write it and one page per \
            subcommand (blockvault-backup(1), blockvault-vault-init(1), ...) into a directory, \
            created if missing, replacing pages of the same names (a directory that cannot be \
            written fails with exit code 1). Nothing else is read or written.",
        after_help = "Examples:\n  \
            blockvault man > /usr/local/share/man/man1/blockvault.1\n  \
            blockvault man --out-dir /usr/local/share/man/man1\n  \
            blockvault man | man -l -"
    )]
    Man(ManArgs),
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

/// The pre- and post-snapshot hooks of a VM.
#[derive(Debug, Args)]
pub struct HookArgs {
    /// Command run (with `sh -c`) just before the disks are captured, to quiesce the VM, for
    /// example `virsh domfsfreeze web01`. When it succeeds the point is application-consistent;
    /// when it fails the job fails and nothing is read. Its environment has BLOCKVAULT_VM,
    /// BLOCKVAULT_HOOK=pre and BLOCKVAULT_DISKS (one path per line).
    #[arg(long, value_name = "COMMAND")]
    pub pre_hook: Option<String>,

    /// Command run just after the disks were captured (cloned, or read), whether or not that
    /// succeeded, for example `virsh domfsthaw web01`. Its failure is a warning: the data was
    /// already captured.
    #[arg(long, value_name = "COMMAND")]
    pub post_hook: Option<String>,

    /// How to fix the instant of the disks. `auto` (the default for a backup; a protected VM
    /// keeps what it has): where the disks and the snapshot tier (--snapshot-dir) share one XFS
    /// (reflink=1) or btrfs file system, clone every disk between the hooks (the freeze lasts
    /// only the clones, milliseconds) and read the clones, with changed blocks found from the
    /// file system; elsewhere read the disks under the hook, and say why. `reflink`: clones, or
    /// fail before any hook runs. `read`: always read the disks under the hook.
    #[arg(long, value_name = "HOW", value_parser = ["auto", "reflink", "read"])]
    pub capture: Option<String>,

    /// The format of the VM's disks: auto, raw, qcow2, vmdk, vdi, vhdx, vpc or qed (QEMU's
    /// names). `auto` (the default for a backup; a protected VM keeps what it has): by each
    /// disk's header (qcow2, sparse vmdk, vdi, vhdx, dynamic vpc and qed are read through
    /// qemu-nbd, as the guest sees them, backing files included), which may not change from
    /// the previous point's: a raw disk whose header says qcow2 now (a guest can write one into
    /// its own disk) is refused until the format is said. `raw`: the files' bytes, whatever
    /// their headers say. Any other: every disk read through qemu-nbd in that format (say
    /// `vpc` for a fixed VHD, whose header is at its end). Only qcow2 (compat 1.1) holds dirty
    /// bitmaps: disks in the other formats are read in full at every backup.
    #[arg(long, value_name = "FORMAT",
          value_parser = ["auto", "raw", "qcow2", "vmdk", "vdi", "vhdx", "vpc", "qed"])]
    pub disk_format: Option<String>,
    /// The QEMU monitor (QMP) unix socket of the running VM whose disks these are, for
    /// example one added with `-qmp unix:/run/web01.qmp,server=on,wait=off` (libvirt keeps its
    /// own monitor: give QEMU a second one). One QMP transaction then fixes every disk at one
    /// instant (the hooks wrap only it: milliseconds), QEMU serves that instant over NBD while
    /// the VM runs on, and incrementals read only the blocks QEMU's dirty bitmaps mark.
    /// `--disk` names each disk by the image path QEMU has open.
    #[arg(long, value_name = "SOCKET")]
    pub qmp: Option<PathBuf>,

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

    /// `--capture`, when given.
    pub fn capture(&self) -> Option<blockvault_jobs::CaptureMode> {
        // The parser allows only the names CaptureMode knows.
        self.capture.as_deref().and_then(|c| c.parse().ok())
    }

    /// `--disk-format`, when given: `None` for auto (by the headers).
    pub fn disk_format(&self) -> Option<Option<blockvault_core::DiskFormat>> {
        // The parser allows only auto and the names DiskFormat knows.
        self.disk_format.as_deref().map(|f| f.parse().ok())
    }
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
