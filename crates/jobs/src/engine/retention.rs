//! Applying a policy's retention to a protected VM's vault points.

use blockvault_core::{PointId, VmName};
use blockvault_policy::{RetainedPoint, retention};
use blockvault_vault::Vault;
use jiff::Timestamp;
use serde::Serialize;

use super::Engine;
use crate::{Error, PolicyName, ProtectedItem, Result, Tier};

/// What applying retention to one VM did (or, in a dry run, would do).
#[derive(Clone, Debug, Serialize)]
pub struct Pruned {
    pub vm: VmName,
    pub policy: PolicyName,
    pub dry_run: bool,
    /// Vault points kept.
    pub kept: usize,
    /// Vault points expired: deleted, or in a dry run, to be deleted.
    pub expired: Vec<ExpiredPoint>,
}

/// A vault point retention let go.
#[derive(Clone, Debug, Serialize)]
pub struct ExpiredPoint {
    pub id: PointId,
    pub time: Timestamp,
}

impl Engine {
    /// Applies `item`'s policy to its points in `vault` (which must be the item's vault): every
    /// point no rule keeps ([`retention`]) is deleted, its record first (the point stops
    /// existing at once) and then its block maps. Its chunks become garbage for
    /// [`Vault::collect_garbage`]. The newest point is always kept. The snapshot tier is not
    /// touched: its points expire by the instant-restore days.
    ///
    /// Points are read from the vault, the source of truth, not from the catalog.
    pub async fn apply_retention(
        &self,
        vault: &Vault,
        item: &ProtectedItem,
        dry_run: bool,
    ) -> Result<Pruned> {
        let vm = &item.vm;
        let name = item.policy.clone();
        let policy = self.db(move |c| c.policy(&name)).await?;
        // Damaged records are not retention's: they stay until set aside (`verify
        // --quarantine-damaged`) or repaired, and never count as the newest point.
        // Forgotten points wait for their purge: never expired here, never the newest.
        let forgotten = vault.store().point_deletes(vm).await?;
        let mut points = vault.store().list_points(vm).await?.points;
        points.retain(|p| !forgotten.iter().any(|m| m.point == p.id));
        let retained: Vec<RetainedPoint> = points.iter().map(RetainedPoint::from).collect();
        let verdicts = retention(&retained, &policy, self.now(), true);
        let mut pruned = Pruned {
            vm: vm.clone(),
            policy: item.policy.clone(),
            dry_run,
            kept: 0,
            expired: Vec::new(),
        };
        for verdict in verdicts {
            if verdict.keep() {
                pruned.kept += 1;
                continue;
            }
            if !dry_run {
                vault.store().delete_point(vm, &verdict.id).await?;
                let (owned, id) = (vm.clone(), verdict.id.clone());
                self.db(move |c| c.remove_point_tier(&owned, &id, Tier::Vault))
                    .await?;
            }
            pruned.expired.push(ExpiredPoint {
                id: verdict.id,
                time: verdict.time,
            });
        }
        Ok(pruned)
    }

    /// Applies retention to every VM protected in `vault` (`location` as the catalog records
    /// it), or to `only` that VM. A VM named but not protected in this vault (or with its
    /// protection stopped) is an error: its points are kept.
    pub async fn apply_retention_in(
        &self,
        vault: &Vault,
        location: &str,
        only: Option<&VmName>,
        dry_run: bool,
    ) -> Result<Vec<Pruned>> {
        // Stopped protection keeps every point (retain data), and soft-deleted points wait for
        // their purge: retention applies only while protection is on.
        let at = location.to_owned();
        let items: Vec<ProtectedItem> = match only {
            Some(vm) => {
                let owned = vm.clone();
                vec![
                    self.db(move |c| c.protection_in(&owned, &at))
                        .await?
                        .filter(ProtectedItem::is_protected)
                        .ok_or_else(|| Error::NotProtected { vm: vm.clone() })?,
                ]
            }
            None => self
                .db(|c| c.protected_items())
                .await?
                .into_iter()
                .filter(|item| item.vault == location && item.is_protected())
                .collect(),
        };
        let mut all = Vec::with_capacity(items.len());
        for item in &items {
            all.push(self.apply_retention(vault, item, dry_run).await?);
        }
        Ok(all)
    }
}
