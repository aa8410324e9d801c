//! `blockvault verify`: re-read and re-hash vault points, naming what any damage affects.

use std::sync::Arc;

use anyhow::Result;
use blockvault_host::Host;
use blockvault_jobs::VerifyScope;
use blockvault_vault::{NoProgress, PointSelector};
use serde_json::json;

use super::Report;
use crate::args::VerifyArgs;
use crate::exit::ExitCode;
use crate::format;
use crate::progress::Bar;

/// Affected blocks listed per bad chunk in text (all of them are in the JSON).
const SHOWN: usize = 5;

pub async fn run(args: VerifyArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let (engine, mut warnings) = host.engine().await?;
    let vault = host.vault(&args.vault.vault).await?;
    warnings.extend(blockvault_host::secondary_warning(&vault));
    let scope = match args.vm {
        Some(vm) => VerifyScope::Vm {
            vm,
            point: args.point.map(PointSelector::Id),
        },
        None => VerifyScope::All,
    };
    let options = blockvault_host::read_options(&args.vault.vault, args.transfer.concurrency);
    let started = std::time::Instant::now();
    let shown = bar.follow(engine.subscribe());
    let outcome = engine
        .verify(&vault, &scope, options, Arc::new(NoProgress))
        .await;
    shown.finish().await;
    let outcome = outcome?;
    let report = &outcome.report;
    let elapsed = started.elapsed();
    let mut text = format!(
        "verified {} point(s): {} chunk(s), {} read in {} ({}); {}",
        report.points,
        report.chunks_checked,
        format::bytes(report.bytes_read),
        format::duration(elapsed),
        format::rate(report.bytes_read, elapsed),
        if report.is_clean() && report.repaired.is_empty() {
            "all intact".to_owned()
        } else if report.is_clean() {
            format!(
                "all intact after {} repair(s) from the other store",
                report.repaired.len()
            )
        } else {
            format!(
                "{} bad chunk(s), {} bad block map(s), {} unreadable point record(s)",
                report.bad_chunks.len(),
                report.bad_maps.len(),
                report.bad_records.len()
            )
        }
    );
    let mut quarantined = Vec::new();
    for record in &report.bad_records {
        text.push_str(&format!(
            "
point record {} of VM {}: {}",
            record.id, record.vm, record.problem
        ));
        if args.quarantine_damaged {
            vault
                .store()
                .quarantine_point(&record.vm, &record.id)
                .await?;
            text.push_str(" (set aside in quarantine/)");
            quarantined.push(record);
        }
    }
    if !report.bad_records.is_empty() && !args.quarantine_damaged {
        warnings.push(format!(
            "{} point record(s) cannot be read: their points cannot be restored, the VMs' other \
             points can; `--quarantine-damaged` sets them aside (see README, \"Damage\")",
            report.bad_records.len()
        ));
    }
    for map in &report.bad_maps {
        text.push_str(&format!(
            "\nblock map of {} point {} disk {}: {}",
            map.vm, map.point, map.disk, map.problem
        ));
    }
    for fixed in &report.repaired {
        text.push_str(&format!(
            "\nrepaired {} {} in the {} store {} from the other store's good copy (it was: {})",
            fixed.object, fixed.name, fixed.store, fixed.location, fixed.problem
        ));
    }
    for bad in &report.bad_chunks {
        text.push_str(&format!(
            "\nchunk {} ({}) affects {} block(s):",
            bad.id,
            bad.problem,
            bad.affects.len()
        ));
        for a in bad.affects.iter().take(SHOWN) {
            text.push_str(&format!(
                "\n  {} point {} disk {} at offset {}",
                a.vm, a.point, a.disk, a.offset
            ));
        }
        if bad.affects.len() > SHOWN {
            text.push_str(&format!("\n  ... and {} more", bad.affects.len() - SHOWN));
        }
    }
    if !report.repaired.is_empty() {
        warnings.push(format!(
            "{} object(s) were bad in one store of the replicated vault and were repaired from \
             the other's good copy",
            report.repaired.len()
        ));
    }
    let jobs: Vec<String> = outcome.jobs.iter().map(|j| j.id.to_string()).collect();
    text.push_str(&format!("\njob(s) {}", jobs.join(", ")));
    Ok(Report {
        text,
        json: json!({
            "report": report,
            "quarantined": quarantined,
            "jobs": outcome.jobs,
            "warnings": warnings,
        }),
        warnings,
        exit_code: (!report.is_clean()).then_some(ExitCode::Integrity),
    })
}
