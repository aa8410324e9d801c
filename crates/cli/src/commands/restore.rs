use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use blockvault_vault::{PointSelector, RestoreRequest};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::json;

use super::Report;
use crate::args::RestoreArgs;
use crate::exit::UsageError;
use crate::format;
use crate::progress::Bar;

pub async fn run(args: RestoreArgs, state: &Path, bar: Arc<Bar>) -> Result<Report> {
    let point = match (&args.at, &args.point) {
        (Some(at), _) => PointSelector::At(parse_time(at)?),
        (None, Some(id)) => PointSelector::Id(id.clone()),
        (None, None) => PointSelector::Latest,
    };
    let vault = crate::open::vault(&args.vault.vault, state).await?;
    let request = RestoreRequest {
        vm: args.vm,
        point,
        target: args.to,
        overwrite: args.force,
        options: crate::open::transfer(&args.vault.vault, args.transfer.concurrency),
    };
    let report = vault.restore(&request, bar.clone()).await;
    bar.finish();
    let report = report?;
    let size: u64 = report.disks.iter().map(|d| d.size).sum();
    let written: u64 = report.disks.iter().map(|d| d.bytes_written).sum();
    let text = format!(
        "restored point {} of {} ({}) to {}: {} disk(s), {} image, {} written; {} ({})",
        report.point.id,
        report.point.vm,
        format::time(report.point.time),
        request.target.display(),
        report.disks.len(),
        format::bytes(size),
        format::bytes(written),
        format::duration(report.elapsed),
        format::rate(written, report.elapsed),
    );
    let secs = report.elapsed.as_secs_f64();
    let disks: Vec<serde_json::Value> = report
        .disks
        .iter()
        .map(|d| json!({"name": d.name, "path": d.path, "size": d.size, "bytes_written": d.bytes_written}))
        .collect();
    Ok(Report {
        text,
        json: json!({
            "vm": report.point.vm,
            "point": report.point.id,
            "time": report.point.time,
            "disks": disks,
            "elapsed_seconds": secs,
            "written_bytes_per_second": written as f64 / secs.max(1e-9),
        }),
        warnings: Vec::new(),
    })
}

/// Reads `--at`: RFC 3339 with an offset, or a local date and time.
fn parse_time(text: &str) -> Result<Timestamp, UsageError> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(TimeZone::system()).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            UsageError(format!(
                "cannot read --at {text:?}: use RFC 3339 (2026-11-23T09:00:00Z) or a local time \
                 (2026-11-23 09:00)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_accepts_rfc3339_and_local_times() {
        let utc = parse_time("2026-11-23T09:00:00Z").expect("rfc3339");
        assert_eq!(utc.to_string(), "2026-11-23T09:00:00Z");
        let offset = parse_time("2026-11-23T10:00:00+01:00").expect("offset");
        assert_eq!(offset, utc);
        assert!(parse_time("2026-11-23 09:00").is_ok());
        assert!(parse_time("2026-11-23T09:00:00").is_ok());
        let err = parse_time("yesterday").expect_err("garbage");
        assert!(err.to_string().contains("yesterday"));
    }
}
