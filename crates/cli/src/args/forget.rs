//! `blockvault forget`: soft-delete one chosen point, or what ad-hoc keep rules do not keep.

use blockvault_core::VmName;
use clap::Args;

use super::VaultArg;

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub vault: VaultArg,

    /// The VM whose points to forget (see `blockvault points`).
    #[arg(long, value_name = "NAME")]
    pub vm: VmName,

    /// Forget this point: its id as `points` shows it, or any prefix only it has.
    #[arg(long, value_name = "ID", conflicts_with_all = ["at", "keep_last", "keep_daily",
          "keep_weekly", "keep_monthly", "keep_yearly"])]
    pub point: Option<String>,

    /// Forget the newest point taken at or before this time: RFC 3339
    /// (2026-11-23T09:00:00Z) or local time (2026-11-23 09:00).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["keep_last", "keep_daily",
          "keep_weekly", "keep_monthly", "keep_yearly"])]
    pub at: Option<String>,

    /// Keep the N newest points.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,

    /// Keep the newest point of each of the N newest days that have points (local time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_daily: Option<u32>,

    /// Keep the newest point of each of the N newest ISO weeks that have points.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_weekly: Option<u32>,

    /// Keep the newest point of each of the N newest months that have points.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_monthly: Option<u32>,

    /// Keep the newest point of each of the N newest years that have points.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_yearly: Option<u32>,

    /// Allow forgetting the newest point of a protected VM (refused without it).
    #[arg(long)]
    pub force: bool,

    /// Say what would be forgotten and kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The help of `forget`, for the command's definition in `args.rs`.
pub const ABOUT: &str = "Forget (soft-delete) one point of a VM, or what keep rules do not keep";

pub const LONG_ABOUT: &str = "Forget recovery points of a VM in a vault: one point (--point or \
    --at), or every point that ad-hoc keep rules do not keep (--keep-last, --keep-daily, \
    --keep-weekly, --keep-monthly, --keep-yearly; counts of points and of days, weeks, months, \
    years that have points, as restic's forget; local time; a point made with a retain-until \
    still ahead is kept).\n\n\
    Forgetting is a soft delete, recorded as a `Forget recovery points` job: the vault marks \
    each point deleted (every host reading the vault sees it) and this host's snapshot-tier \
    copies are removed at once. For 14 days the points stay listed by `points` as \
    SOFT-DELETED with their purge date, `restore` refuses them (exit 6), and `blockvault \
    undelete --vault VAULT --vm NAME [--point ID]` brings them back. After that `blockvault \
    daemon` purges them; only then does `blockvault gc` free their chunks.\n\n\
    Works for any VM with points in the vault, protected or not. For a VM protected in this \
    vault, keep rules are refused (exit 6: its policy's retention decides; edit the policy or \
    stop protection), and its newest point is forgotten only with --force. --dry-run changes \
    nothing. Unknown VM or point: exit 3; no rule, a count of 0 or a bad value: exit 2.";

pub const EXAMPLES: &str = "Examples:
  blockvault forget --vault /srv/vault --vm web01 --point 20261123-081500
  blockvault forget --vault /srv/vault --vm web01 --keep-daily 7 --keep-weekly 4 --dry-run
  blockvault forget --vault /srv/vault --vm web01 --keep-last 3 --json";
