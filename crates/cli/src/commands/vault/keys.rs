//! `vault init --encryption` (the key part of its report), the `encryption:` line of `vault
//! show`, and `vault key list|add|passwd|remove|export|import` (see `blockvault_host`'s key
//! management: everything here is said, nothing decided).

use std::path::Path;

use anyhow::Result;
use blockvault_core::{KeyHome, KeySlot, VaultConfig};
use blockvault_host::{CreatedKey, Host, NewEncryption, SlotsChanged};
use blockvault_store::VaultLocation;
use serde_json::{Value, json};

use super::Report;
use crate::args::{EncryptionArgs, KeyCommand};
use crate::exit::UsageError;

/// What `vault init --encryption` asks for; `None` for a plain vault. Options that only make
/// sense with encryption are refused without it.
pub fn new_encryption(args: &EncryptionArgs) -> Result<Option<NewEncryption>> {
    let kdf = args.kdf.kdf()?;
    let Some(mode) = args.encryption else {
        if args.key_file.is_some() || kdf.is_some() {
            return Err(UsageError(
                "--key-file and --kdf-* are for an encrypted vault: add --encryption \
                 (--encryption key-file for --key-file)"
                    .into(),
            )
            .into());
        }
        return Ok(None);
    };
    Ok(Some(NewEncryption {
        key: mode.into(),
        kdf: kdf.unwrap_or_else(blockvault_core::Kdf::recommended),
        // Absolute, so the path init reports (and BLOCKVAULT_KEY_FILE later) works from
        // anywhere.
        key_file: args
            .key_file
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
    }))
}

/// The lines and the `encryption` JSON of a vault `vault init --encryption` just made.
pub fn created(location: &VaultLocation, key: &CreatedKey) -> (String, Value) {
    let e = &key.encryption;
    let mut text = match &key.key_file {
        None => format!(
            "encryption: {}, key {} kept in the vault (slot {})\n\
             Export the key now: blockvault vault key export --vault {location} --out FILE",
            e.scheme, e.key_id, key.slot
        ),
        Some(path) => format!(
            "encryption: {}, key {} kept in the key file {} (slot {}); the vault holds no key\n\
             Copy the key file somewhere safe now (or: blockvault vault key export --vault \
             {location} --out FILE)",
            e.scheme,
            e.key_id,
            path.display(),
            key.slot
        ),
    };
    if let (Some(path), false) = (&key.key_file, key.key_file_found) {
        text.push_str(&format!(
            "\nEvery command on this vault needs BLOCKVAULT_KEY_FILE={} (this host does not \
             look there by itself)",
            path.display()
        ));
    }
    text.push_str(
        "\nKeep the key and the passphrase apart from the vault: a lost key or passphrase \
         cannot be recovered, by anyone.",
    );
    let json = json!({
        "scheme": e.scheme,
        "key_id": e.key_id,
        "key": home(e.key),
        "key_file": key.key_file,
        "slot": key.slot,
    });
    (text, json)
}

/// `vault show`'s `encryption:` line and JSON: no passphrase needed.
pub fn show(config: &VaultConfig, host: &Host) -> (String, Value) {
    let Some(e) = &config.encryption else {
        return ("encryption: none".to_owned(), Value::Null);
    };
    let slots = blockvault_host::slots(host.state(), config, e);
    let count = |n: usize| format!("{n} slot{}", if n == 1 { "" } else { "s" });
    let (text, key_file) = match e.key {
        KeyHome::Vault => (
            format!(
                "encryption: {}, key {} kept in the vault ({})",
                e.scheme,
                e.key_id,
                count(e.slots.len())
            ),
            None,
        ),
        KeyHome::KeyFile => {
            let path = blockvault_host::key_file_path(host.state(), &config.id);
            let status = match &slots {
                Ok(s) => count(s.len()),
                Err(err) => format!("not readable here: {}", blockvault_host::describe(err)),
            };
            (
                format!(
                    "encryption: {}, key {} kept in the key file {} ({status})",
                    e.scheme,
                    e.key_id,
                    path.display()
                ),
                Some(path),
            )
        }
    };
    let json = json!({
        "scheme": e.scheme,
        "key_id": e.key_id,
        "key": home(e.key),
        "key_file": key_file,
        "slots": slots.as_ref().ok().map(Vec::len),
    });
    (text, json)
}

pub async fn run(command: KeyCommand, host: &Host) -> Result<Report> {
    Ok(match command {
        KeyCommand::List { vault } => list(&vault.vault, host).await?,
        KeyCommand::Add { vault, kdf } => {
            let kdf = kdf.kdf()?;
            let changed = host.add_key_slot(&vault.vault, kdf).await?;
            let text = format!(
                "added key slot {} to vault {} (the current passphrase opened slot {}); {} now \
                 open it",
                changed.added.join(", "),
                changed.vault_id,
                changed.opened,
                slot_count(changed.slots.len()),
            );
            changed_report(&vault.vault, changed, text)
        }
        KeyCommand::Passwd { vault, kdf } => {
            let kdf = kdf.kdf()?;
            let changed = host.change_passphrase(&vault.vault, kdf).await?;
            let text = format!(
                "changed the passphrase of vault {}: slot {} is replaced by slot {}, and the \
                 old passphrase no longer opens the vault. Key files exported earlier still \
                 hold the old slot: export again and destroy the old copies.",
                changed.vault_id,
                changed.opened,
                changed.added.join(", "),
            );
            changed_report(&vault.vault, changed, text)
        }
        KeyCommand::Remove { vault, slot } => {
            let changed = host.remove_key_slot(&vault.vault, &slot).await?;
            let text = format!(
                "removed key slot {slot} from vault {}: its passphrase no longer opens the \
                 vault ({} left). Key files exported earlier still hold it.",
                changed.vault_id,
                slot_count(changed.slots.len()),
            );
            changed_report(&vault.vault, changed, text)
        }
        KeyCommand::Export { vault, out } => {
            let to = out.filter(|p| p.as_os_str() != "-");
            let file = host.export_key(&vault.vault, to.as_deref()).await?;
            let text = match &to {
                None => file.encode().trim_end().to_owned(),
                Some(path) => format!(
                    "exported key {} of vault {} ({}) to {} (mode 0600). It still needs a \
                     passphrase; keep it and the passphrase apart from the vault: a lost key \
                     or passphrase cannot be recovered, by anyone.",
                    file.key_id,
                    file.vault,
                    slot_count(file.slots.len()),
                    path.display()
                ),
            };
            Report {
                text,
                json: json!({
                    "vault": vault.vault.to_string(),
                    "id": file.vault,
                    "key_id": file.key_id,
                    "out": to,
                    "key_file": serde_json::to_value(&file)?,
                }),
                warnings: Vec::new(),
                exit_code: None,
            }
        }
        KeyCommand::Import { vault, file } => {
            let changed = host.import_key(&vault.vault, &file).await?;
            let text = imported_text(&file, &changed);
            changed_report(&vault.vault, changed, text)
        }
    })
}

async fn list(location: &VaultLocation, host: &Host) -> Result<Report> {
    let view = host.vault_keys(location).await?;
    let e = &view.encryption;
    let kept = match &view.key_file {
        None => "kept in the vault".to_owned(),
        Some(path) => format!("kept in the key file {}", path.display()),
    };
    let mut text = format!(
        "vault {} at {}: key {} ({}), {kept}",
        view.vault_id, view.location, e.key_id, e.scheme
    );
    let mut warnings = Vec::new();
    let slots = match &view.slots {
        Ok(slots) => {
            let rows: Vec<[String; 3]> = slots
                .iter()
                .map(|s| [s.id.clone(), crate::format::time(s.created), kdf_words(s)])
                .collect();
            text.push('\n');
            text.push_str(&crate::format::table(&["SLOT", "CREATED", "KDF"], &rows));
            slots.iter().map(slot_json).collect()
        }
        Err(problem) => {
            warnings.push(problem.clone());
            Vec::new()
        }
    };
    Ok(Report {
        text,
        json: json!({
            "vault": view.location.to_string(),
            "id": view.vault_id,
            "scheme": e.scheme,
            "key_id": e.key_id,
            "key": home(e.key),
            "key_file": view.key_file,
            "slots": slots,
            "warnings": warnings,
        }),
        warnings,
        exit_code: None,
    })
}

fn imported_text(file: &Path, changed: &SlotsChanged) -> String {
    match (changed.key, changed.written.first()) {
        (KeyHome::KeyFile, Some(at)) => format!(
            "installed the key file {} of vault {} (key {}, {}) at {at}",
            file.display(),
            changed.vault_id,
            changed.key_id,
            slot_count(changed.slots.len())
        ),
        (_, _) if changed.added.is_empty() => format!(
            "vault {} already holds every key slot of {}: nothing changed",
            changed.vault_id,
            file.display()
        ),
        _ => format!(
            "restored key slot{} {} of {} to vault {} ({} now)",
            if changed.added.len() == 1 { "" } else { "s" },
            changed.added.join(", "),
            file.display(),
            changed.vault_id,
            slot_count(changed.slots.len())
        ),
    }
}

fn changed_report(location: &VaultLocation, changed: SlotsChanged, text: String) -> Report {
    Report {
        text,
        json: json!({
            "vault": location.to_string(),
            "id": changed.vault_id,
            "key_id": changed.key_id,
            "key": home(changed.key),
            "opened": changed.opened,
            "added": changed.added,
            "removed": changed.removed,
            "slots": changed.slots.iter().map(slot_json).collect::<Vec<_>>(),
            "written": changed.written,
            "warnings": changed.warnings,
        }),
        warnings: changed.warnings,
        exit_code: None,
    }
}

fn slot_json(slot: &KeySlot) -> Value {
    json!({
        "id": slot.id,
        "created": slot.created,
        "kdf": {
            "algorithm": slot.kdf.algorithm,
            "memory_kib": slot.kdf.memory_kib,
            "iterations": slot.kdf.iterations,
            "parallelism": slot.kdf.parallelism,
        },
    })
}

fn kdf_words(slot: &KeySlot) -> String {
    format!(
        "{} {} MiB, {} pass{}",
        slot.kdf.algorithm,
        slot.kdf.memory_kib / 1024,
        slot.kdf.iterations,
        if slot.kdf.iterations == 1 { "" } else { "es" }
    )
}

fn slot_count(n: usize) -> String {
    format!("{n} slot{}", if n == 1 { "" } else { "s" })
}

/// How JSON names where a vault keeps its key.
fn home(key: KeyHome) -> &'static str {
    match key {
        KeyHome::Vault => "vault",
        KeyHome::KeyFile => "key-file",
    }
}
