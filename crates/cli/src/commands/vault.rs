use std::path::Path;

use anyhow::Result;
use blockvault_store::VaultLocation;
use blockvault_vault::Vault;
use serde_json::json;

use super::Report;
use crate::args::VaultCommand;

pub async fn run(command: VaultCommand, state: &Path) -> Result<Report> {
    match command {
        VaultCommand::Init { vault: location } => {
            let vault = match &location {
                VaultLocation::Local(dir) => Vault::init_local(dir).await?,
                VaultLocation::S3 { .. } => {
                    Vault::init(crate::open::store(&location, state)?).await?
                }
            };
            let config = vault.config();
            Ok(Report {
                text: format!(
                    "created vault {} at {} (default block size {})",
                    config.id, location, config.default_block_size
                ),
                json: json!({
                    "vault": location.to_string(),
                    "id": config.id,
                    "created": config.created,
                    "default_block_size": config.default_block_size,
                }),
                warnings: Vec::new(),
            })
        }
    }
}
