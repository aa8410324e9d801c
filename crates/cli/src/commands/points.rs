use anyhow::Result;
use std::collections::HashMap;

use blockvault_core::{PointId, VmName};
use blockvault_jobs::{
    Engine, KeepReason, ListedPoint, PointList, RetainedPoint, Verdict, retention,
};
use jiff::Timestamp;
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
    let mut damaged = Vec::new();
    let mut verdicts: HashMap<PointId, Verdict> = HashMap::new();
    let mut held: HashMap<VmName, Held> = HashMap::new();
    for vm in &vms {
        let listing = engine.list_points(vault.as_ref(), vm).await;
        // Listing every VM skips one that has no points (its first snapshot failed).
        if all
            && let Err(blockvault_jobs::Error::Vault(e)) = &listing
            && matches!(e.as_ref(), blockvault_vault::Error::UnknownVm { .. })
        {
            continue;
        }
        let PointList {
            points: listed,
            damaged: listed_damaged,
            warnings: listing_warnings,
        } = listing?;
        for record in &listed_damaged {
            warnings.push(format!(
                "point {} of VM {} is damaged and cannot be restored: {}; `blockvault verify \
                 --vm {} --quarantine-damaged` sets it aside (see README, \"Damage\")",
                record.id, record.vm, record.problem, record.vm
            ));
        }
        damaged.extend(listed_damaged);
        // Soft-deleted (by this host, or by any host: the vault's marker says) or stopped:
        // what holds the points is not the policy's retention.
        if let Some((vault, marker)) = engine.soft_deleted(vault.as_ref(), vm).await? {
            held.insert(vm.clone(), Held::SoftDeleted { vault, marker });
        } else if engine
            .catalog()
            .protected_item(vm)?
            .is_some_and(|item| !item.is_protected())
        {
            held.insert(vm.clone(), Held::Stopped);
        } else {
            verdicts.extend(retention_of(&engine, vm, &listed)?);
        }
        points.extend(listed);
        warnings.extend(listing_warnings);
    }
    let docs: Vec<serde_json::Value> = points
        .iter()
        .map(|listed| {
            let mut doc = json!(listed);
            match held.get(&listed.point.vm) {
                Some(Held::SoftDeleted { vault, marker }) => {
                    doc["soft_deleted"] = json!({
                        "vault": vault,
                        "deleted": marker.deleted,
                        "purge_after": marker.purge_after,
                    });
                }
                Some(Held::Stopped) => doc["protection_stopped"] = json!(true),
                None => {}
            }
            if let Some(v) = verdicts.get(&listed.point.id) {
                doc["retention"] = json!({
                    "kept_by": v.kept_by.iter().map(|(r, until)| json!({
                        "reason": r.as_str(), "until": until_json(*until),
                    })).collect::<Vec<_>>(),
                    "until": v.until().and_then(until_json),
                    "expires": !v.keep(),
                });
            }
            doc
        })
        .collect();
    let mut text = table(&points, &verdicts, &held);
    if !damaged.is_empty() {
        let rows: Vec<[String; 3]> = damaged
            .iter()
            .map(|d| [d.vm.to_string(), d.id.to_string(), "DAMAGED".to_owned()])
            .collect();
        text = format!(
            "{text}\n\n{}",
            format::table(&["VM", "POINT", "RECORD"], &rows)
        );
    }
    Ok(Report {
        text,
        json: json!({ "points": docs, "damaged": damaged, "warnings": warnings }),
        warnings,
        exit_code: None,
    })
}

/// What the policy's retention says of `vm`'s vault points, if the VM is protected (a point
/// that is not protected is kept until deleted; so are those of a stopped VM).
fn retention_of(
    engine: &Engine,
    vm: &VmName,
    listed: &[ListedPoint],
) -> Result<Vec<(PointId, Verdict)>> {
    let Some(item) = engine
        .catalog()
        .protected_item(vm)?
        .filter(|item| item.is_protected())
    else {
        return Ok(Vec::new());
    };
    let policy = engine.catalog().policy(&item.policy)?;
    let in_vault: Vec<RetainedPoint> = listed
        .iter()
        .filter(|l| l.tiers.vault)
        .map(|l| RetainedPoint {
            id: l.point.id.clone(),
            time: l.point.time,
            retain_until: l.point.retain_until,
        })
        .collect();
    Ok(retention(&in_vault, &policy, engine.now(), true)
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect())
}

/// "Forever" (the newest point while protected) has no date.
fn until_json(until: Timestamp) -> Option<Timestamp> {
    (until != Timestamp::MAX).then_some(until)
}

/// What keeps a VM's points when it is not its policy's retention.
enum Held {
    /// Protection stopped with data retained: every point is kept.
    Stopped,
    /// Soft-deleted in `vault`: listed, not restorable, purged after the marker's date.
    SoftDeleted {
        vault: String,
        marker: blockvault_core::SoftDeleteMarker,
    },
}

fn table(
    points: &[ListedPoint],
    verdicts: &HashMap<PointId, Verdict>,
    held: &HashMap<VmName, Held>,
) -> String {
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
        "VAULT RETENTION",
    ];
    let rows: Vec<[String; 11]> = points
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
                match (held.get(&p.vm), verdicts.get(&p.id)) {
                    (Some(Held::SoftDeleted { marker, .. }), _) => format!(
                        "SOFT-DELETED (purged {}; undelete to restore)",
                        format::date(marker.purge_after)
                    ),
                    (Some(Held::Stopped), _) => "retained (protection stopped)".to_owned(),
                    (None, None) => "-".to_owned(),
                    (None, Some(v)) if !v.keep() => "expires (no rule keeps it)".to_owned(),
                    (None, Some(v)) => {
                        // "retain until until DATE" reads badly: an on-demand point's reason.
                        let reasons: Vec<&str> = v
                            .kept_by
                            .iter()
                            .map(|(r, _)| match r {
                                KeepReason::RetainUntil => "on-demand",
                                r => r.as_str(),
                            })
                            .collect();
                        match v.until().and_then(until_json) {
                            Some(until) => {
                                format!("{} until {}", reasons.join("+"), format::date(until))
                            }
                            None => format!("{} (while protected)", reasons.join("+")),
                        }
                    }
                },
            ]
        })
        .collect();
    if verdicts.is_empty() && held.is_empty() {
        // No protected, stopped or soft-deleted VM listed: no retention column.
        let short: [&str; 10] = std::array::from_fn(|i| header[i]);
        let rows: Vec<[String; 10]> = rows
            .iter()
            .map(|r| std::array::from_fn(|i| r[i].clone()))
            .collect();
        return format::table(&short, &rows);
    }
    format::table(&header, &rows)
}
