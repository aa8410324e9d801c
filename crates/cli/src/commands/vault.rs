//! `blockvault vault`: create a vault (single or replicated), show one, change its redundancy
//! while it holds no backup items; replace or resync a secondary, promote one (`secondary`).

mod secondary;

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use blockvault_core::{Redundancy, VmName};
use blockvault_store::VaultLocation;
use blockvault_vault::Vault;
use serde_json::json;

use super::Report;
use crate::args::{RedundancyKind, VaultCommand};
use crate::exit::UsageError;
use crate::progress::Bar;

pub async fn run(command: VaultCommand, state: &Path, bar: Arc<Bar>) -> Result<Report> {
    match command {
        VaultCommand::Init {
            vault,
            vault_flag,
            redundancy,
            secondary,
        } => {
            let Some(location) = vault.or(vault_flag) else {
                return Err(UsageError("vault init needs the vault's location".into()).into());
            };
            let secondary = secondary_for(&location, redundancy, secondary)?;
            let vault = crate::open::init_vault(&location, secondary.as_ref(), state).await?;
            let config = vault.config();
            // Every vault starts with the default policy (a new catalog already has it; this
            // brings it back if it was deleted).
            blockvault_jobs::Catalog::open(state.join("catalog.sqlite"))?.ensure_policy(
                &blockvault_jobs::Policy::default_policy(),
                jiff::Timestamp::now(),
            )?;
            let replicated = match config.redundancy.secondary() {
                Some(to) => format!(", replicated to {to}"),
                None => String::new(),
            };
            Ok(Report {
                text: format!(
                    "created vault {} at {} (default block size {}{replicated})",
                    config.id, location, config.default_block_size
                ),
                json: json!({
                    "vault": location.to_string(),
                    "id": config.id,
                    "created": config.created,
                    "default_block_size": config.default_block_size,
                    "redundancy": kind(&config.redundancy),
                    "secondary": config.redundancy.secondary(),
                }),
                warnings: Vec::new(),
                exit_code: None,
            })
        }
        VaultCommand::Show { vault: location } => show(&location.vault, state).await,
        VaultCommand::SetRedundancy {
            vault: location,
            redundancy,
            secondary,
        } => set_redundancy(&location.vault, redundancy, secondary, state).await,
        VaultCommand::ReplaceSecondary {
            vault,
            secondary: to,
            transfer,
        } => secondary::replace(&vault.vault, &to, transfer.concurrency, state, bar).await,
        VaultCommand::Resync { vault, transfer } => {
            secondary::resync(&vault.vault, transfer.concurrency, state, bar).await
        }
        VaultCommand::Promote { vault, force } => {
            secondary::promote(&vault.vault, force, state).await
        }
    }
}

/// The secondary `--redundancy` and `--secondary` ask for: replicated needs a secondary, a
/// secondary needs replicated, and it must be another place than the vault.
fn secondary_for(
    location: &VaultLocation,
    redundancy: Option<RedundancyKind>,
    secondary: Option<VaultLocation>,
) -> Result<Option<VaultLocation>> {
    match (redundancy, secondary) {
        (None | Some(RedundancyKind::Single), None) => Ok(None),
        (Some(RedundancyKind::Replicated), None) => Err(UsageError(
            "--redundancy replicated needs --secondary DIR|s3://BUCKET/PREFIX: the store every \
             object is also written to"
                .into(),
        )
        .into()),
        (None | Some(RedundancyKind::Single), Some(secondary)) => Err(UsageError(format!(
            "--secondary {secondary} is only for --redundancy replicated (a single vault has \
             one store)"
        ))
        .into()),
        (Some(RedundancyKind::Replicated), Some(secondary)) => {
            let (a, b) = (
                crate::open::canonical(location),
                crate::open::canonical(&secondary),
            );
            let nested = match (&a, &b) {
                (VaultLocation::Local(a), VaultLocation::Local(b)) => {
                    a.starts_with(b) || b.starts_with(a)
                }
                _ => a == b,
            };
            if nested {
                return Err(UsageError(format!(
                    "--secondary {secondary} must be another place than the vault {location}, \
                     neither inside it nor around it"
                ))
                .into());
            }
            Ok(Some(secondary))
        }
    }
}

fn kind(redundancy: &Redundancy) -> &'static str {
    match redundancy {
        Redundancy::Single => "single",
        Redundancy::Replicated { .. } => "replicated",
    }
}

async fn show(location: &VaultLocation, state: &Path) -> Result<Report> {
    let vault = crate::open::vault(location, state).await?;
    let config = vault.config();
    let vms = vault.vms().await?;
    let unavailable = vault.store().secondary_unavailable();
    let mut text = format!(
        "vault {} at {}\ncreated {}, default block size {}\nredundancy: {}",
        config.id,
        location,
        crate::format::time(config.created),
        config.default_block_size,
        kind(&config.redundancy)
    );
    if let Some(secondary) = config.redundancy.secondary() {
        let status = match unavailable {
            Some((_, reason)) => format!("unavailable: {reason}"),
            None => "available".to_owned(),
        };
        text.push_str(&format!("\nsecondary: {secondary} ({status})"));
    }
    if let Some(of) = &config.replica_of {
        text.push_str(&format!(
            "\nthis is the replica of vault {} at {} (open it here to restore when the primary \
             is lost)",
            of.vault, of.primary
        ));
    }
    text.push_str(&format!("\nbackup items: {}", vm_list(&vms)));
    let warnings: Vec<String> = crate::open::secondary_warning(&vault).into_iter().collect();
    Ok(Report {
        text,
        json: json!({
            "vault": location.to_string(),
            "id": config.id,
            "created": config.created,
            "default_block_size": config.default_block_size,
            "redundancy": kind(&config.redundancy),
            "secondary": config.redundancy.secondary(),
            "secondary_available": config.redundancy.secondary().map(|_| unavailable.is_none()),
            "replica_of": config.replica_of,
            "vms": vms,
            "warnings": warnings,
        }),
        warnings,
        exit_code: None,
    })
}

fn vm_list(vms: &[VmName]) -> String {
    if vms.is_empty() {
        return "none".to_owned();
    }
    vms.iter()
        .map(VmName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn set_redundancy(
    location: &VaultLocation,
    redundancy: RedundancyKind,
    secondary: Option<VaultLocation>,
    state: &Path,
) -> Result<Report> {
    let secondary = secondary_for(location, Some(redundancy), secondary)?;
    let vault = crate::open::vault(location, state).await?;
    let config = vault.config();
    let wanted = secondary
        .as_ref()
        .map(|s| crate::open::canonical(s).to_string());
    if config.redundancy.secondary() == wanted.as_deref() {
        return Ok(changed(location, &vault, "already"));
    }
    refuse_if_protected(location, &vault, state)?;
    let new_secondary = match &secondary {
        Some(secondary) => Some(crate::open::new_store(secondary, state).await?),
        None => None,
    };
    let vault = vault.set_redundancy(new_secondary).await?;
    Ok(changed(location, &vault, "now"))
}

/// Refuses when this host's catalog has VMs protected by the vault (backup items before their
/// first backup), with the same error the vault gives for VMs with points.
fn refuse_if_protected(location: &VaultLocation, vault: &Vault, state: &Path) -> Result<()> {
    let canonical = crate::open::canonical(location).to_string();
    let catalog = blockvault_jobs::Catalog::open(state.join("catalog.sqlite"))?;
    let mut vms: Vec<VmName> = catalog
        .protected_items()?
        .into_iter()
        .filter(|item| item.vault == canonical)
        .map(|item| item.vm)
        .collect();
    if vms.is_empty() {
        return Ok(());
    }
    vms.sort();
    Err(blockvault_vault::Error::RedundancyFixed {
        location: location.to_string(),
        redundancy: vault.config().redundancy.clone(),
        vms,
    }
    .into())
}

fn changed(location: &VaultLocation, vault: &Vault, how: &str) -> Report {
    let config = vault.config();
    let text = format!(
        "vault {} at {location} is {how} {}",
        config.id, config.redundancy
    );
    Report {
        text,
        json: json!({
            "vault": location.to_string(),
            "id": config.id,
            "redundancy": kind(&config.redundancy),
            "secondary": config.redundancy.secondary(),
            "changed": how == "now",
        }),
        warnings: Vec::new(),
        exit_code: None,
    }
}
