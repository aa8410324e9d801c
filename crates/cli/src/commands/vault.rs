//! `blockvault vault`: create a vault (single or replicated), show one, change its redundancy
//! while it holds no backup items; replace or resync a secondary, promote one (`secondary`);
//! count what it holds (`stats`); manage an encrypted vault's key (`keys`).

mod keys;
mod secondary;
mod stats;

use std::sync::Arc;

use anyhow::Result;
use blockvault_core::{Redundancy, VmName};
use blockvault_host::Host;
use blockvault_store::VaultLocation;
use blockvault_vault::Vault;
use serde_json::json;

use super::Report;
use crate::args::VaultCommand;
use crate::exit::UsageError;
use crate::progress::Bar;

pub async fn run(command: VaultCommand, host: &Host, bar: Arc<Bar>) -> Result<Report> {
    match command {
        VaultCommand::Init {
            vault,
            vault_flag,
            redundancy,
            secondary,
            encryption,
        } => {
            let Some(location) = vault.or(vault_flag) else {
                return Err(UsageError("vault init needs the vault's location".into()).into());
            };
            let (vault, key) = match keys::new_encryption(&encryption)? {
                None => (
                    host.create_vault(&location, redundancy.map(Into::into), secondary)
                        .await?,
                    None,
                ),
                Some(new) => {
                    let (vault, key) = host
                        .create_encrypted_vault(
                            &location,
                            redundancy.map(Into::into),
                            secondary,
                            &new,
                        )
                        .await?;
                    (vault, Some(key))
                }
            };
            let config = vault.config();
            let replicated = match config.redundancy.secondary() {
                Some(to) => format!(", replicated to {to}"),
                None => String::new(),
            };
            let mut text = format!(
                "created vault {} at {} (default block size {}{replicated})",
                config.id, location, config.default_block_size
            );
            let (encryption, warnings) = match &key {
                None => (serde_json::Value::Null, Vec::new()),
                Some(key) => {
                    let (lines, json) = keys::created(&location, key);
                    text.push('\n');
                    text.push_str(&lines);
                    (json, key.warnings.clone())
                }
            };
            Ok(Report {
                text,
                json: json!({
                    "vault": location.to_string(),
                    "id": config.id,
                    "created": config.created,
                    "default_block_size": config.default_block_size,
                    "redundancy": kind(&config.redundancy),
                    "secondary": config.redundancy.secondary(),
                    "encryption": encryption,
                    "warnings": warnings,
                }),
                warnings,
                exit_code: None,
            })
        }
        VaultCommand::Key(command) => keys::run(command, host).await,
        VaultCommand::Show { vault: location } => show(&location.vault, host).await,
        VaultCommand::SetRedundancy {
            vault: location,
            redundancy,
            secondary,
        } => {
            let (vault, changed) = host
                .set_redundancy(&location.vault, redundancy.into(), secondary)
                .await?;
            Ok(redundancy_report(
                &location.vault,
                &vault,
                if changed { "now" } else { "already" },
            ))
        }
        VaultCommand::ReplaceSecondary {
            vault,
            secondary: to,
            transfer,
        } => secondary::replace(&vault.vault, &to, transfer.concurrency, host, bar).await,
        VaultCommand::Resync { vault, transfer } => {
            secondary::resync(&vault.vault, transfer.concurrency, host, bar).await
        }
        VaultCommand::Stats { vault, vm } => stats::run(&vault.vault, vm, host, bar).await,
        VaultCommand::Promote { vault, force } => {
            secondary::promote(&vault.vault, force, host).await
        }
    }
}

fn kind(redundancy: &Redundancy) -> &'static str {
    match redundancy {
        Redundancy::Single => "single",
        Redundancy::Replicated { .. } => "replicated",
    }
}

async fn show(location: &VaultLocation, host: &Host) -> Result<Report> {
    // No passphrase needed: the config and the VM names (object keys) are in clear.
    let vault = host.vault_without_key(location).await?;
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
    let (encryption, encryption_json) = keys::show(config, host);
    text.push('\n');
    text.push_str(&encryption);
    text.push_str(&format!("\nbackup items: {}", vm_list(&vms)));
    let warnings: Vec<String> = blockvault_host::secondary_warning(&vault)
        .into_iter()
        .collect();
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
            "encryption": encryption_json,
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

fn redundancy_report(location: &VaultLocation, vault: &Vault, how: &str) -> Report {
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
