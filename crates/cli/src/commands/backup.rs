use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use blockvault_vault::BackupRequest;
use serde_json::json;

use super::Report;
use crate::args::BackupArgs;
use crate::format;
use crate::progress::Bar;

pub async fn run(args: BackupArgs, state: &Path, bar: Arc<Bar>) -> Result<Report> {
    let vault = crate::open::vault(&args.vault.vault, state).await?;
    let request = BackupRequest {
        vm: args.vm,
        disks: args.disks,
        block_size: args.block_size,
        options: crate::open::transfer(&args.vault.vault, args.transfer.concurrency),
    };
    let report = vault.backup(&request, bar.clone()).await;
    bar.finish();
    let report = report?;
    let point = &report.point;
    let stats = &point.stats;
    let text = format!(
        "point {} of {}: {} scanned, {} changed, {} stored in {} new chunks; {} ({})",
        point.id,
        point.vm,
        format::bytes(stats.bytes_scanned),
        format::bytes(stats.bytes_changed),
        format::bytes(stats.bytes_stored),
        stats.chunks_stored,
        format::duration(report.elapsed),
        format::rate(stats.bytes_scanned, report.elapsed),
    );
    let secs = report.elapsed.as_secs_f64();
    Ok(Report {
        text,
        json: json!({
            "point": point,
            "elapsed_seconds": secs,
            "scanned_bytes_per_second": stats.bytes_scanned as f64 / secs.max(1e-9),
            "warnings": report.warnings,
        }),
        warnings: report.warnings.clone(),
    })
}
