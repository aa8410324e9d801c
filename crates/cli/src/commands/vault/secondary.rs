//! `vault replace-secondary`, `vault resync`, `vault promote`: a replicated vault that lost its
//! secondary or its primary (see `blockvault_vault::Vault::replace_secondary` and
//! `Vault::promote`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use blockvault_store::{ResyncOptions, ResyncReport, VaultLocation};
use blockvault_vault::Vault;
use serde_json::json;

use super::{RedundancyKind, Report, kind, secondary_for};
use crate::exit::{ExitCode, UsageError};
use crate::progress::Bar;

/// `vault replace-secondary --vault V NEW`.
pub async fn replace(
    location: &VaultLocation,
    secondary: &VaultLocation,
    concurrency: Option<u16>,
    state: &Path,
    bar: Arc<Bar>,
) -> Result<Report> {
    secondary_for(
        location,
        Some(RedundancyKind::Replicated),
        Some(secondary.clone()),
    )?;
    let location = crate::open::canonical(location);
    let vault = crate::open::vault(&location, state).await?;
    let target = crate::open::new_store(secondary, state).await?;
    let options = ResyncOptions {
        concurrency: crate::open::transfer(secondary, concurrency).concurrency,
    };
    let done = vault.replace_secondary(target, options, bar.as_ref()).await;
    bar.finish();
    let done = done?;
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
    Ok(report)
}

/// `vault resync --vault V`: a replacement by the secondary the vault already has.
pub async fn resync(
    location: &VaultLocation,
    concurrency: Option<u16>,
    state: &Path,
    bar: Arc<Bar>,
) -> Result<Report> {
    let vault = crate::open::vault(&crate::open::canonical(location), state).await?;
    let Some(secondary) = vault.config().redundancy.secondary() else {
        return Err(UsageError(format!(
            "vault {} at {location} is single: it has no secondary to resync (give it one with \
             `blockvault vault replace-secondary --vault {location} NEW_SECONDARY`)",
            vault.config().id
        ))
        .into());
    };
    let secondary: VaultLocation = secondary.parse()?;
    replace(location, &secondary, concurrency, state, bar).await
}

/// `vault promote --vault REPLICA [--force]`.
pub async fn promote(location: &VaultLocation, force: bool, state: &Path) -> Result<Report> {
    let location = crate::open::canonical(location);
    let replica = crate::open::existing_store(&location, state).await?;
    let config = replica.config().await?;
    // The primary, if it still answers: promotion is refused while it holds the vault.
    let primary_location = config
        .replica_of
        .as_ref()
        .and_then(|of| of.primary.parse::<VaultLocation>().ok());
    let primary = match &primary_location {
        Some(at) if !same_place(at, &location) => crate::open::existing_store(at, state).await.ok(),
        _ => None,
    };
    let vault = Vault::promote(replica, primary, force).await?;
    let id = vault.config().id.clone();
    let (moved, mut warnings) = match &primary_location {
        Some(old) => move_protections(old, &location, state)?,
        None => (Vec::new(), Vec::new()),
    };
    let old = primary_location.map(|l| l.to_string()).unwrap_or_default();
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

/// Moves this host's protected items from the vault at `old` to `new` (same id, promoted):
/// the VMs moved, and warnings for those that could not be.
fn move_protections(
    old: &VaultLocation,
    new: &VaultLocation,
    state: &Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let catalog = blockvault_jobs::Catalog::open(state.join("catalog.sqlite"))?;
    let (old_raw, old_canonical) = (old.to_string(), crate::open::canonical(old).to_string());
    let mut moved = Vec::new();
    let mut warnings = Vec::new();
    for item in catalog.protected_items()? {
        if item.vault != old_raw && item.vault != old_canonical {
            continue;
        }
        if item.state.purge_after().is_some() {
            warnings.push(format!(
                "VM {} has soft-deleted data recorded in the old primary {}: undelete it \
                 (`blockvault undelete --vm {}`) and protect it again with --vault {new}",
                item.vm, item.vault, item.vm
            ));
            continue;
        }
        let vm = item.vm.to_string();
        catalog.protect(&blockvault_jobs::ProtectedItem {
            vault: new.to_string(),
            ..item
        })?;
        moved.push(vm);
    }
    Ok((moved, warnings))
}

fn same_place(a: &VaultLocation, b: &VaultLocation) -> bool {
    crate::open::canonical(a) == crate::open::canonical(b)
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
