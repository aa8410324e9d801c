use anyhow::Result;
use blockvault_vault::Vault;
use serde_json::json;

use super::Report;
use crate::args::VaultCommand;

pub async fn run(command: VaultCommand) -> Result<Report> {
    match command {
        VaultCommand::Init { dir } => {
            let vault = Vault::init_local(&dir).await?;
            let config = vault.config();
            Ok(Report {
                text: format!(
                    "created vault {} at {} (default block size {})",
                    config.id,
                    dir.display(),
                    config.default_block_size
                ),
                json: json!({
                    "vault": dir,
                    "id": config.id,
                    "created": config.created,
                    "default_block_size": config.default_block_size,
                }),
                warnings: Vec::new(),
            })
        }
    }
}
