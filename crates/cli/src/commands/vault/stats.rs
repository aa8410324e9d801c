//! `blockvault vault stats`: what a vault holds, per VM and in all (the host counts, this
//! prints).

use std::sync::Arc;

use anyhow::Result;
use blockvault_core::VmName;
use blockvault_host::Host;
use blockvault_store::VaultLocation;
use blockvault_vault::Figures;
use serde_json::json;

use crate::commands::Report;
use crate::format;
use crate::progress::Bar;

pub async fn run(
    location: &VaultLocation,
    vm: Option<VmName>,
    host: &Host,
    bar: Arc<Bar>,
) -> Result<Report> {
    let view = host.vault_stats(location, vm, bar.clone()).await;
    bar.finish();
    let view = view?;
    let stats = &view.stats;
    let mut rows: Vec<[String; 9]> = stats
        .vms
        .iter()
        .map(|v| row(v.vm.as_str(), &v.figures))
        .collect();
    if let Some(all) = &stats.vault {
        rows.push(row("(vault)", &all.figures));
    }
    let mut text = format!(
        "vault {} at {location}\n{}",
        view.id,
        format::table(
            &[
                "VM",
                "POINTS",
                "LOGICAL",
                "NEWEST",
                "REFERENCED",
                "UNIQUE",
                "STORED",
                "DEDUP",
                "COMPRESSION"
            ],
            &rows
        )
    );
    if let Some(all) = &stats.vault {
        text.push_str(&format!(
            "\n\n{} chunk object(s), {}; garbage awaiting gc: {} chunk(s), {}; marked damaged: {} \
             chunk(s)",
            all.chunks,
            format::bytes(all.chunk_bytes),
            all.garbage_chunks,
            format::bytes(all.garbage_bytes),
            all.damaged_chunks
        ));
    }
    Ok(Report {
        text,
        json: json!({
            "vault": location.to_string(),
            "id": view.id,
            "vms": stats.vms,
            "total": stats.vault,
            "unreadable_maps": stats.unreadable_maps,
            "warnings": view.warnings,
        }),
        warnings: view.warnings.clone(),
        exit_code: None,
    })
}

/// One line of the table.
fn row(name: &str, f: &Figures) -> [String; 9] {
    let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
    [
        name.to_owned(),
        f.points.to_string(),
        format::bytes(f.logical_bytes),
        format::bytes(f.latest_logical_bytes),
        format::bytes(f.referenced_bytes),
        format::bytes(f.unique_bytes),
        format::bytes(f.stored_bytes),
        ratio(f.dedup_ratio),
        ratio(f.compression_ratio),
    ]
}
