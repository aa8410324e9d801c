//! What `vault stats` shows: the vault's figures (counted by the vault crate, which defines
//! each; see `blockvault_vault::VaultStats`), with what the user should know beside them.

use std::sync::Arc;

use blockvault_core::VmName;
use blockvault_store::VaultLocation;
use blockvault_vault::{Progress, StatsOptions, VaultStats};

use crate::{Host, Result, read_options};

/// A vault's statistics, as `vault stats` shows them.
#[derive(Debug)]
pub struct StatsView {
    /// The vault's id.
    pub id: String,
    pub stats: VaultStats,
    /// A secondary that cannot be opened, maps that cannot be read, chunks missing, records
    /// damaged, garbage waiting for `gc`, damaged chunks.
    pub warnings: Vec<String>,
}

impl Host {
    /// The statistics of the vault at `location`: of `vm` only, or of every VM and the vault.
    /// `progress` counts the block maps read. A VM without a point in the vault is an error
    /// (not found).
    pub async fn vault_stats(
        &self,
        location: &VaultLocation,
        vm: Option<VmName>,
        progress: Arc<dyn Progress>,
    ) -> Result<StatsView> {
        let vault = self.vault(location).await?;
        let mut warnings: Vec<String> = crate::secondary_warning(&vault).into_iter().collect();
        let options = StatsOptions {
            vm,
            concurrency: read_options(location, None).concurrency,
        };
        let stats = vault.stats(&options, progress).await?;
        for problem in &stats.unreadable_maps {
            warnings.push(format!(
                "{problem}: its blocks are not counted; `blockvault verify` says more"
            ));
        }
        for vm in &stats.vms {
            let f = &vm.figures;
            if f.damaged_points > 0 {
                warnings.push(format!(
                    "VM {} has {} damaged point record(s): not counted (see `blockvault points`)",
                    vm.vm, f.damaged_points
                ));
            }
            if f.missing_chunks > 0 {
                warnings.push(format!(
                    "VM {} names {} chunk(s) the vault does not hold: run `blockvault verify \
                     --vm {}`",
                    vm.vm, f.missing_chunks, vm.vm
                ));
            }
        }
        if let Some(all) = &stats.vault
            && all.damaged_chunks > 0
        {
            warnings.push(format!(
                "{} chunk(s) are marked damaged: the next backup holding their data sends them \
                 again",
                all.damaged_chunks
            ));
        }
        Ok(StatsView {
            id: vault.config().id.clone(),
            stats,
            warnings,
        })
    }
}
