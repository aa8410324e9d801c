//! `blockvault gc`: collect a vault's garbage.

use std::sync::Arc;

use anyhow::Result;
use blockvault_vault::GcOptions;
use serde_json::json;

use super::Report;
use crate::args::GcArgs;
use crate::format;
use crate::open::Host;
use crate::progress::Bar;

pub async fn run(args: GcArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let vault = host.vault(&args.vault.vault).await?;
    let options = GcOptions {
        grace: args.grace.unsigned_abs(),
        wait: args.wait.unsigned_abs(),
        dry_run: args.dry_run,
        ..GcOptions::default()
    };
    let report = vault.collect_garbage(options, bar.clone()).await;
    bar.finish();
    let report = report?;
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let text = format!(
        "{} chunk(s) listed, {} live; {verb} {} chunk(s) ({}) and {} orphan block map(s); kept {} \
         younger than {} and {} named by points committed during the collection\n\
         mark {}, waited {} for running backups, sweep {}{}",
        report.chunks,
        report.chunks_live,
        report.chunks_deleted,
        format::bytes(report.bytes_freed),
        report.orphan_maps_deleted,
        report.chunks_young,
        args.grace,
        report.chunks_rescued,
        format::duration(std::time::Duration::from_secs_f64(report.mark_seconds)),
        format::duration(std::time::Duration::from_secs_f64(report.waited_seconds)),
        format::duration(std::time::Duration::from_secs_f64(report.sweep_seconds)),
        if report.dry_run {
            "\ndry run: nothing was deleted"
        } else {
            ""
        }
    );
    Ok(Report {
        text,
        json: json!({ "gc": report, "warnings": [] }),
        warnings: Vec::new(),
        exit_code: None,
    })
}
