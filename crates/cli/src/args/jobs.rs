//! `blockvault jobs`: the job history, filtered, or one job in detail.

use blockvault_core::VmName;
use clap::{Args, Subcommand};

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
