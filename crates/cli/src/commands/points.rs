//! `blockvault points`: the recovery points of a VM (or of every VM) in both tiers, with what
//! retention says of each, as the host sees them.

use anyhow::Result;
use blockvault_host::{Held, Host, PointsView, retained_until};
use blockvault_jobs::KeepReason;
use serde_json::json;

use super::Report;
use crate::args::PointsArgs;
use crate::format;

pub async fn run(args: PointsArgs, host: &Host) -> Result<Report> {
    let view = host.points(&args.vault.vault, args.vm).await?;
    let docs: Vec<serde_json::Value> = view
        .points
        .iter()
        .map(|listed| {
            let mut doc = json!(listed);
            match view.held.get(&listed.point.vm) {
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
            if let Some(marker) = view.forgotten.get(&listed.point.id) {
                doc["soft_deleted"] = json!({
                    "forgotten": true,
                    "deleted": marker.deleted,
                    "purge_after": marker.purge_after,
                });
            }
            if let Some(v) = view.verdicts.get(&listed.point.id) {
                doc["retention"] = json!({
                    "kept_by": v.kept_by.iter().map(|(r, until)| json!({
                        "reason": r.as_str(), "until": retained_until(*until),
                    })).collect::<Vec<_>>(),
                    "until": v.until().and_then(retained_until),
                    "expires": !v.keep(),
                });
            }
            doc
        })
        .collect();
    let mut text = table(&view);
    if !view.damaged.is_empty() {
        let rows: Vec<[String; 3]> = view
            .damaged
            .iter()
            .map(|d| [d.vm.to_string(), d.id.to_string(), "DAMAGED".to_owned()])
            .collect();
        text = format!(
            "{text}\n\n{}",
            format::table(&["VM", "POINT", "RECORD"], &rows)
        );
    }
    let tier: Vec<serde_json::Value> = view
        .snapshot_space
        .iter()
        .map(|(vm, space)| {
            let mut doc = super::tier_space(space);
            doc["vm"] = json!(vm);
            doc
        })
        .collect();
    let PointsView {
        damaged, warnings, ..
    } = view;
    let mut json = json!({ "points": docs, "damaged": damaged, "warnings": warnings });
    // Only where a VM listed has snapshots on this host.
    if !tier.is_empty() {
        json["snapshot_tier"] = json!(tier);
    }
    Ok(Report {
        text,
        json,
        warnings,
        exit_code: None,
    })
}

/// The DISKS column: how many, and how many are in each format but raw (`1 qcow2`,
/// `3 (1 qcow2, 1 vmdk)`).
fn disks(point: &blockvault_core::RecoveryPoint) -> String {
    let n = point.disks.len();
    let mut kinds: Vec<(blockvault_core::DiskFormat, usize)> = Vec::new();
    for disk in point.disks.iter().filter(|d| !d.format.is_raw()) {
        match kinds.iter_mut().find(|(f, _)| *f == disk.format) {
            Some((_, count)) => *count += 1,
            None => kinds.push((disk.format, 1)),
        }
    }
    match kinds.as_slice() {
        [] => n.to_string(),
        [(format, q)] if *q == n => format!("{n} {format}"),
        _ => {
            let kinds: Vec<String> = kinds.iter().map(|(f, q)| format!("{q} {f}")).collect();
            format!("{n} ({})", kinds.join(", "))
        }
    }
}

fn table(view: &PointsView) -> String {
    let PointsView {
        points,
        verdicts,
        held,
        forgotten,
        ..
    } = view;
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
        "CLONE",
        "TIERS",
        "SNAPSHOT UNTIL",
        "VAULT RETENTION",
    ];
    let rows: Vec<[String; 12]> = points
        .iter()
        .map(|listed| {
            let p = &listed.point;
            [
                p.vm.to_string(),
                p.id.to_string(),
                format::time(p.time),
                p.consistency.to_string(),
                disks(p),
                format::bytes(p.total_size()),
                format::bytes(p.stats.bytes_changed),
                format::bytes(p.stats.bytes_stored),
                // What its kept clone holds alone: what the disks overwrote since.
                listed
                    .snapshot_clone_bytes
                    .map(format::bytes)
                    .unwrap_or_else(|| "-".to_owned()),
                listed.tiers.to_string(),
                listed
                    .snapshot_expires
                    .map(format::time)
                    .unwrap_or_else(|| "-".to_owned()),
                match (held.get(&p.vm), verdicts.get(&p.id)) {
                    _ if forgotten.contains_key(&p.id) => format!(
                        "SOFT-DELETED (forgotten; purged {}; undelete --point to restore)",
                        format::date(forgotten[&p.id].purge_after)
                    ),
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
                        match v.until().and_then(retained_until) {
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
    if !view.shows_retention() {
        // No protected, stopped or soft-deleted VM listed: no retention column.
        let short: [&str; 11] = std::array::from_fn(|i| header[i]);
        let rows: Vec<[String; 11]> = rows
            .iter()
            .map(|r| std::array::from_fn(|i| r[i].clone()))
            .collect();
        return format::table(&short, &rows);
    }
    format::table(&header, &rows)
}
