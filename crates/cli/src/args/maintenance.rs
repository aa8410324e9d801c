//! `blockvault verify`, `prune` and `gc`: keeping a vault sound and within its retention.

use blockvault_core::VmName;
use clap::Args;

use super::{TransferArgs, VaultArg};

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
