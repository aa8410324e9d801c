//! `blockvault policy ...`: backup policies, from flags or policy files.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
