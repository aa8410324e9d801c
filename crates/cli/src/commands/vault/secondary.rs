//! `vault replace-secondary`, `vault resync`, `vault promote`: a replicated vault that lost its
//! secondary or its primary (see `blockvault_vault::Vault::replace_secondary` and
//! `Vault::promote`).

use std::sync::Arc;

use anyhow::Result;
use blockvault_host::{Host, Promoted, Replaced};
use blockvault_store::{ResyncReport, VaultLocation};
use serde_json::json;

use super::{Report, kind};
use crate::exit::ExitCode;
use crate::progress::Bar;

/// `vault replace-secondary --vault V NEW`.
pub async fn replace(
    location: &VaultLocation,
    secondary: &VaultLocation,
    concurrency: Option<u16>,
    host: &Host,
    bar: Arc<Bar>,
) -> Result<Report> {
    let replaced = host
        .replace_secondary(location, secondary, concurrency, bar.as_ref())
        .await;
    bar.finish();
    Ok(replaced_report(replaced?))
}

/// `vault resync --vault V`: a replacement by the secondary the vault already has.
pub async fn resync(
    location: &VaultLocation,
    concurrency: Option<u16>,
    host: &Host,
    bar: Arc<Bar>,
) -> Result<Report> {
    let replaced = host
        .resync_secondary(location, concurrency, bar.as_ref())
        .await;
    bar.finish();
    Ok(replaced_report(replaced?))
}

fn replaced_report(replaced: Replaced) -> Report {
    let Replaced {
        location,
        before: vault,
        done,
    } = replaced;
    let config = done.vault.config();
    let to = config.redundancy.secondary().unwrap_or_default().to_owned();
    let r = &done.report;
    let how = match (&done.previous, done.resumed) {
        (Some(previous), _) => format!("replaced {previous} as its secondary"),
        (None, true) if vault.config().redundancy.secondary() == Some(to.as_str()) => {
            "resynced its secondary".to_owned()
        }
        (None, _) if vault.config().redundancy.is_single() => "is now replicated".to_owned(),
        (None, _) => "has its secondary back".to_owned(),
    };
    let text = format!(
        "vault {} at {location} {how}: {to} holds all {} objects of the primary \
         (copied {}, {}; {} were there already){}",
        config.id,
        r.on_primary.total().saturating_sub(bad_count(r)),
        r.copied.total(),
        crate::format::bytes(r.bytes_copied),
        r.already.total(),
        removed_text(r),
    );
    let mut report = resync_report(text, r);
    if let Some(doc) = report.json.as_object_mut() {
        doc.insert("vault".into(), json!(location.to_string()));
        doc.insert("id".into(), json!(config.id));
        doc.insert("redundancy".into(), json!(kind(&config.redundancy)));
        doc.insert("secondary".into(), json!(to));
        doc.insert("previous".into(), json!(done.previous));
        doc.insert("resumed".into(), json!(done.resumed));
    }
    report
}

/// `vault promote --vault REPLICA [--force]`.
pub async fn promote(location: &VaultLocation, force: bool, host: &Host) -> Result<Report> {
    let Promoted {
        location,
        vault,
        previous_primary,
        moved,
        mut warnings,
    } = host.promote(location, force).await?;
    let id = vault.config().id.clone();
    let old = previous_primary.map(|l| l.to_string()).unwrap_or_default();
    if force {
        warnings.push(format!(
            "promoted with --force: the old primary {old} must no longer be used (it cannot \
             write any more; its points stopped where they were)"
        ));
    }
    let moved_text = if moved.is_empty() {
        String::new()
    } else {
        format!(
            "; this host's protected items moved to it: {}",
            moved.join(", ")
        )
    };
    Ok(Report {
        text: format!(
            "vault {id} at {location} is now the vault itself (single; it was the replica of \
             {old}){moved_text}. Give it a secondary with `blockvault vault replace-secondary \
             --vault {location} NEW_SECONDARY`"
        ),
        json: json!({
            "vault": location.to_string(),
            "id": id,
            "redundancy": "single",
            "previous_primary": old,
            "moved_items": moved,
            "warnings": warnings,
        }),
        warnings,
        exit_code: None,
    })
}

fn bad_count(r: &ResyncReport) -> u64 {
    r.bad.len() as u64
}

fn removed_text(r: &ResyncReport) -> String {
    match r.removed.len() {
        0 => String::new(),
        n => format!("; removed {n} point record(s) or marker(s) the primary no longer has"),
    }
}

/// The text and JSON of a resync, with its bad objects as warnings and exit 4.
fn resync_report(text: String, r: &ResyncReport) -> Report {
    let warnings: Vec<String> = r
        .bad
        .iter()
        .map(|bad| {
            format!("not copied, bad on the primary: {bad} (run `blockvault verify` on the vault)")
        })
        .collect();
    Report {
        text,
        json: json!({
            "on_primary": r.on_primary,
            "already": r.already,
            "copied": r.copied,
            "bytes_copied": r.bytes_copied,
            "bad": r.bad,
            "vanished": r.vanished,
            "removed": r.removed,
            "warnings": warnings,
        }),
        exit_code: (!r.bad.is_empty()).then_some(ExitCode::Integrity),
        warnings,
    }
}
