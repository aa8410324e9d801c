use anyhow::Result;
use blockvault_core::RecoveryPoint;
use serde_json::json;
use std::path::Path;

use super::Report;
use crate::args::PointsArgs;
use crate::format;

pub async fn run(args: PointsArgs, state: &Path) -> Result<Report> {
    let vault = crate::open::vault(&args.vault.vault, state).await?;
    let vms = match args.vm {
        Some(vm) => vec![vm],
        None => vault.vms().await?,
    };
    let mut points = Vec::new();
    for vm in &vms {
        points.extend(vault.points(vm).await?);
    }
    let json_points: Vec<serde_json::Value> = points
        .iter()
        .map(|p| {
            let mut value = json!(p);
            // Every point lives in the vault tier until the snapshot tier exists.
            value["tiers"] = json!(["vault"]);
            value
        })
        .collect();
    Ok(Report {
        text: table(&points),
        json: json!({ "points": json_points }),
        warnings: Vec::new(),
    })
}

fn table(points: &[RecoveryPoint]) -> String {
    if points.is_empty() {
        return "no recovery points".to_owned();
    }
    let header = [
        "VM",
        "POINT",
        "TIME",
        "CONSISTENCY",
        "DISKS",
        "SIZE",
        "CHANGED",
        "STORED",
        "TIERS",
    ];
    let rows: Vec<[String; 9]> = points
        .iter()
        .map(|p| {
            [
                p.vm.to_string(),
                p.id.to_string(),
                format::time(p.time),
                p.consistency.to_string(),
                p.disks.len().to_string(),
                format::bytes(p.total_size()),
                format::bytes(p.stats.bytes_changed),
                format::bytes(p.stats.bytes_stored),
                "vault".to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(&header.map(str::to_owned))];
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}
