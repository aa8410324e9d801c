use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::Report;
use crate::args::VaultCommand;

pub async fn run(command: VaultCommand, state: &Path) -> Result<Report> {
    match command {
        VaultCommand::Init { vault: location } => {
            let vault = crate::open::init_vault(&location, state).await?;
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
                exit_code: None,
            })
        }
    }
}
