use std::sync::Arc;

use anyhow::Result;
use blockvault_core::DiskFormat;
use blockvault_host::Host;
use blockvault_jobs::{DiskRestore, RestoreMethod};
use blockvault_vault::{NoProgress, PointSelector, RestoreRequest};
use serde_json::json;

use super::Report;
use crate::args::RestoreArgs;
use crate::format;
use crate::progress::Bar;

pub async fn run(args: RestoreArgs, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    let point = match (&args.at, &args.point) {
        (Some(at), _) => PointSelector::At(crate::when::parse_time("--at", at)?),
        (None, Some(id)) => PointSelector::Id(id.clone()),
        (None, None) => PointSelector::Latest,
    };
    let (engine, mut warnings) = host.engine().await?;
    let read = host
        .restore_vault(&engine, &args.vault.vault, args.from.tier(), &mut warnings)
        .await?;
    // Without the vault, only the tier's copies of this vault's points restore.
    let (vault, point) = read.pin(&engine, &args.vm, point).await?;
    let request = RestoreRequest {
        vm: args.vm,
        point,
        target: args.to,
        overwrite: args.force,
        in_place: args.in_place,
        known_content: Default::default(),
        options: blockvault_host::read_options(&args.vault.vault, args.transfer.concurrency),
    };
    let shown = bar.follow(engine.subscribe());
    let outcome = engine
        .restore_as(
            vault.as_ref(),
            &request,
            args.from.tier(),
            args.format,
            Arc::new(NoProgress),
        )
        .await;
    shown.finish().await;
    let outcome = outcome?;
    warnings.extend(outcome.warnings.iter().cloned());
    let report = &outcome.report;
    if report.repairs.total() > 0 {
        warnings.push(report.repairs.to_string());
    }
    let size: u64 = report.disks.iter().map(|d| d.size).sum();
    let written: u64 = report.disks.iter().map(|d| d.bytes_written).sum();
    let by_clone: Vec<&DiskRestore> = outcome
        .restored_by
        .iter()
        .filter(|d| d.method == RestoreMethod::Clone)
        .collect();
    let all_cloned = !by_clone.is_empty() && by_clone.len() == report.disks.len();
    let how = if request.in_place && all_cloned {
        let ranges: u64 = by_clone.iter().map(|d| d.ranges_cloned).sum();
        let bytes: u64 = by_clone.iter().map(|d| d.bytes_cloned).sum();
        format!(
            "rolled back in place by clone ({ranges} differing range(s), {} cloned back; nothing \
             read) to",
            format::bytes(bytes)
        )
    } else if all_cloned {
        "restored by clone (nothing read)".to_owned()
    } else if request.in_place {
        let changed: u64 = report.disks.iter().map(|d| d.blocks_changed).sum();
        let blocks: u64 = report.disks.iter().map(|d| d.blocks).sum();
        let scanned: u64 = report.disks.iter().map(|d| d.bytes_scanned).sum();
        let how = if scanned == 0 {
            "disks as blockvault last left them, no scan".to_owned()
        } else {
            format!("{} of the disks scanned", format::bytes(scanned))
        };
        format!("rolled back in place ({changed} of {blocks} blocks rewritten; {how}) to")
    } else {
        "restored".to_owned()
    };
    // Some disks by clone, the others from the chunks.
    let how = if by_clone.is_empty() || all_cloned {
        how
    } else {
        let names: Vec<&str> = by_clone.iter().map(|d| d.name.as_str()).collect();
        format!("{how} (disk(s) {} by clone)", names.join(", "))
    };
    // The format of each disk, where not raw.
    let formats: Vec<String> = outcome
        .restored_by
        .iter()
        .filter(|d| !d.format.is_raw())
        .map(|d| format!("{} as {}", d.name, d.format))
        .collect();
    let formats = if formats.is_empty() {
        String::new()
    } else {
        format!(" ({})", formats.join(", "))
    };
    let text = format!(
        "{how} point {} of {} ({}) from the {} tier to {}{formats}: {} disk(s), {} image, {} \
         written; {} ({}); job {}",
        report.point.id,
        report.point.vm,
        format::time(report.point.time),
        outcome.tier,
        request.target.display(),
        report.disks.len(),
        format::bytes(size),
        format::bytes(written),
        format::duration(report.elapsed),
        format::rate(written, report.elapsed),
        outcome.job.id,
    );
    let secs = report.elapsed.as_secs_f64();
    let disks: Vec<serde_json::Value> = report
        .disks
        .iter()
        .map(|d| {
            let how = outcome.restored_by.iter().find(|h| h.name == d.name);
            json!({
                "name": d.name,
                "path": d.path,
                "size": d.size,
                "bytes_written": d.bytes_written,
                "blocks": d.blocks,
                "blocks_changed": d.blocks_changed,
                "bytes_scanned": d.bytes_scanned,
                "restored_by": how.map_or(RestoreMethod::Chunks, |h| h.method),
                "format": how.map_or(DiskFormat::Raw, |h| h.format),
                "ranges_cloned": how.map_or(0, |h| h.ranges_cloned),
                "bytes_cloned": how.map_or(0, |h| h.bytes_cloned),
            })
        })
        .collect();
    Ok(Report {
        text,
        json: json!({
            "job": outcome.job.id,
            "vm": report.point.vm,
            "point": report.point.id,
            "time": report.point.time,
            "tier": outcome.tier,
            "in_place": request.in_place,
            "disks": disks,
            "repaired": report.repairs,
            "elapsed_seconds": secs,
            "written_bytes_per_second": written as f64 / secs.max(1e-9),
            "warnings": warnings,
        }),
        warnings,
        exit_code: None,
    })
}
