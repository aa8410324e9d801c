use anyhow::Result;
use blockvault_jobs::ListedPoint;
use serde_json::json;

use super::Report;
use crate::args::PointsArgs;
use crate::format;
use crate::open::Host;

pub async fn run(args: PointsArgs, host: &Host) -> Result<Report> {
    let (engine, mut warnings) = host.engine().await?;
    let snapshots_can_answer = !engine.snapshots().vms()?.is_empty();
    let vault = host
        .vault_or_snapshots(&args.vault.vault, snapshots_can_answer, &mut warnings)
        .await?;
    let all = args.vm.is_none();
    let vms = match args.vm {
        Some(vm) => vec![vm],
        None => {
            let mut vms = engine.snapshots().vms()?;
            if let Some(vault) = &vault {
                vms.extend(vault.vms().await?);
            }
            vms.sort();
            vms.dedup();
            vms
        }
    };
    let mut points = Vec::new();
    for vm in &vms {
        let listing = engine.list_points(vault.as_ref(), vm).await;
        // Listing every VM skips one that has no points (its first snapshot failed).
        if all
            && let Err(blockvault_jobs::Error::Vault(e)) = &listing
            && matches!(e.as_ref(), blockvault_vault::Error::UnknownVm { .. })
        {
            continue;
        }
        let (listed, listing_warnings) = listing?;
        points.extend(listed);
        warnings.extend(listing_warnings);
    }
    Ok(Report {
        text: table(&points),
        json: json!({ "points": points, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

fn table(points: &[ListedPoint]) -> String {
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
        "SNAPSHOT UNTIL",
    ];
    let rows: Vec<[String; 10]> = points
        .iter()
        .map(|listed| {
            let p = &listed.point;
            [
                p.vm.to_string(),
                p.id.to_string(),
                format::time(p.time),
                p.consistency.to_string(),
                p.disks.len().to_string(),
                format::bytes(p.total_size()),
                format::bytes(p.stats.bytes_changed),
                format::bytes(p.stats.bytes_stored),
                listed.tiers.to_string(),
                listed
                    .snapshot_expires
                    .map(format::time)
                    .unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    format::table(&header, &rows)
}
