//! `blockvault gc`: collect a vault's garbage.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use blockvault_host::Host;
use blockvault_vault::{GcOptions, Lease};
use serde_json::json;

use super::Report;
use crate::args::GcArgs;
use crate::format;
use crate::progress::Bar;
use crate::stop::StopSignals;

pub async fn run(args: GcArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let vault = host.vault(&args.vault.vault).await?;
    let options = GcOptions {
        grace: args.grace.unsigned_abs(),
        wait: args.wait.unsigned_abs(),
        hold_after: args.hold_after.unsigned_abs(),
        hold_for: args.hold_for.unsigned_abs(),
        dry_run: args.dry_run,
        ..GcOptions::default()
    };
    // Stopped by a signal, the collection removes its leases before it exits: left behind, a
    // sweep's lease or its hold would keep new backups waiting until they expire.
    let mut signals = StopSignals::listen()?;
    let report = tokio::select! {
        report = vault.collect_garbage(options, bar.clone()) => report,
        signal = signals.recv() => {
            bar.finish();
            // The collection is dropped: its leases (a sweep's, or its hold on new backups)
            // are being removed in the background; give that a moment before exiting.
            let removed = Lease::dropped_removed(Duration::from_secs(10)).await;
            let leases = if removed {
                "its leases are removed"
            } else {
                "its leases expire within 5 minutes"
            };
            anyhow::bail!(
                "gc interrupted by {signal}: nothing more is deleted and {leases}; the next \
                 gc finishes the job"
            );
        }
    };
    bar.finish();
    let report = report?;
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let seconds = |s: f64| format::duration(Duration::from_secs_f64(s));
    let mut text = format!(
        "{} chunk(s) listed, {} live; {verb} {} chunk(s) ({}) and {} orphan block map(s); kept {} \
         younger than {:#} and {} named by points committed during the collection\n\
         mark {} ({} block map(s) read, {} from this host's cache), sweep {}",
        report.chunks,
        report.chunks_live,
        report.chunks_deleted,
        format::bytes(report.bytes_freed),
        report.orphan_maps_deleted,
        report.chunks_young,
        args.grace,
        report.chunks_rescued,
        seconds(report.mark_seconds),
        report.maps_read,
        report.maps_cached,
        seconds(report.sweep_seconds),
    );
    if report.waited_seconds >= 0.1 {
        text.push_str(&format!(
            ", after waiting {} for running backups to commit",
            seconds(report.waited_seconds)
        ));
    }
    if report.held_seconds >= 0.1 {
        text.push_str(&format!(
            " (new backups held back for {} of it)",
            seconds(report.held_seconds)
        ));
    }
    if report.chunks_secondary_only > 0 {
        text.push_str(&format!(
            "\n{} of those chunk(s) only the secondary held (a backup whose primary upload failed)",
            report.chunks_secondary_only
        ));
    }
    if report.leftovers_deleted > 0 {
        text.push_str(&format!(
            "\n{verb} {} staging file(s) ({}) that writers killed mid-write left",
            report.leftovers_deleted,
            format::bytes(report.leftover_bytes)
        ));
    }
    if report.dry_run {
        text.push_str("\ndry run: nothing was deleted");
    }
    let mut warnings = Vec::new();
    if report.leftovers_skipped > 0 {
        warnings.push(format!(
            "{} directory(ies) or staging file(s) in the vault could not be read or deleted while \
             looking for what killed writers left (check their permissions); the rest of the \
             collection ran",
            report.leftovers_skipped
        ));
    }
    Ok(Report {
        text,
        json: json!({ "gc": report, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}
