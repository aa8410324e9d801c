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
            // Every vault starts with the default policy (a new catalog already has it; this
            // brings it back if it was deleted).
            blockvault_jobs::Catalog::open(state.join("catalog.sqlite"))?.ensure_policy(
                &blockvault_jobs::Policy::default_policy(),
                jiff::Timestamp::now(),
            )?;
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
