//! Disaster recovery of a replicated vault: a lost secondary is replaced (or a damaged one
//! mended) by a resync from the primary; a lost primary is replaced by promoting the
//! secondary.
//!
//! # Replacing the secondary
//!
//! [`Vault::replace_secondary`] takes a target that is empty, or that is already this vault's
//! replica (the configured secondary to mend, or a replacement whose resync was interrupted).
//! An empty target first gets the replica's config, so that a run killed at any moment leaves
//! a location that the next run recognises and resumes. Then the store copies what the target
//! lacks, records last ([`Store::resync_to`]), and only then does the primary's config name
//! the target: until that switch the vault keeps its old secondary (and, if that one is gone,
//! keeps refusing writes). Allowed whatever the vault holds: it never lowers redundancy, and
//! on a single vault (a promoted replica, say) it adds a secondary.
//!
//! A backup can run while a secondary that still works is replaced: what it writes goes to the
//! old secondary, and a second pass after the switch copies what landed meanwhile. A backup
//! that opened the vault before the switch and commits after that pass leaves its objects on
//! the old secondary only; `vault resync` copies them (a lost secondary has no such race: no
//! write succeeds until the switch).
//!
//! # Promoting the secondary
//!
//! [`Vault::promote`] turns a replica into the vault itself: a single vault with the primary's
//! id. The id is what this host's state and the snapshot tier know the vault by (the chunk
//! index under `vaults/<id>/`, the vault a snapshot-tier point was taken for), so backups and
//! transfers carry on against the promoted location as they did against the primary. What the
//! hosts' chunk indexes say the vault holds was learned from the primary, so the promotion
//! first writes a new GC epoch: every host rebuilds its index from a listing of the promoted
//! vault before it trusts it.
//!
//! Two vaults with one id must not both take writes. So promotion is refused while the
//! primary answers and still holds the vault (unless the caller says it is lost for good);
//! and a primary that comes back after a promotion cannot write: its secondary now holds a
//! vault of its own, not its replica, so every write fails naming it, while reads still work
//! (its points are those it had when it was lost).

use blockvault_core::{GcEpoch, Redundancy, VaultConfig};
use blockvault_store::{ResyncOptions, ResyncProgress, ResyncReport, Store};
use jiff::Timestamp;

use crate::{Error, Progress, Result, Vault};

/// What [`Vault::replace_secondary`] did.
#[derive(Debug)]
pub struct SecondaryReplaced {
    /// The vault as it now is: replicated to the target.
    pub vault: Vault,
    /// What the resync copied (both passes, when there were two).
    pub report: ResyncReport,
    /// Whether the target already was this vault's replica (mended, or an interrupted
    /// replacement resumed) rather than new.
    pub resumed: bool,
    /// The secondary the vault had before, when it was another location.
    pub previous: Option<String>,
}

/// Lets a vault [`Progress`] follow a store resync.
struct Phases<'a>(&'a dyn Progress);

impl ResyncProgress for Phases<'_> {
    fn begin(&self, phase: &str, total_bytes: u64) {
        self.0.begin(phase, total_bytes);
    }

    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }
}

impl Vault {
    /// Makes `target` this vault's secondary: copies to it everything of the primary it lacks
    /// (checked, point records last), then writes its replica config and makes the primary's
    /// config name it. `target` must be empty or already this vault's replica; anything else
    /// is refused ([`Error::SecondaryTarget`]) with nothing written. See the module docs.
    pub async fn replace_secondary(
        &self,
        target: Store,
        options: ResyncOptions,
        progress: &dyn Progress,
    ) -> Result<SecondaryReplaced> {
        let primary = self.store().primary();
        let refuse = |reason: String| Error::SecondaryTarget {
            location: target.location().to_owned(),
            vault: self.config().id.clone(),
            reason,
        };
        if target.location() == primary.location() {
            return Err(refuse("it is the vault's own (primary) store".into()));
        }
        let id = &self.config().id;
        let resumed = match target.config().await {
            Ok(config) => match config.replica_of {
                Some(of) if of.vault == *id => true,
                Some(of) => {
                    return Err(refuse(format!(
                        "it holds the replica of another vault ({})",
                        of.vault
                    )));
                }
                None if config.id == *id => {
                    return Err(refuse(format!(
                        "it holds vault {id} itself: the primary, or an old copy of it (such as \
                         the primary a promoted replica took over from)"
                    )));
                }
                None => return Err(refuse(format!("it holds vault {} of its own", config.id))),
            },
            Err(blockvault_store::Error::NotAVault { .. }) => {
                match target.check_empty().await {
                    Err(blockvault_store::Error::NotEmpty { .. }) => {
                        return Err(refuse("it is not empty, and holds no vault".into()));
                    }
                    other => other?,
                }
                false
            }
            Err(e) => return Err(e.into()),
        };
        let replica = self.config().for_replica(primary.location());
        if !resumed {
            // Claimed first: a run killed from here on leaves a location the next run resumes.
            target.write_config(&replica).await?;
        }

        let mut report = primary
            .resync_to(&target, options, &Phases(progress))
            .await?;

        let config = VaultConfig {
            redundancy: Redundancy::Replicated {
                secondary: target.location().to_owned(),
            },
            ..self.config().clone()
        };
        target.write_config(&replica).await?;
        primary.write_config(&config).await?;

        let previous = self
            .config()
            .redundancy
            .secondary()
            .filter(|s| *s != target.location())
            .map(str::to_owned);
        if previous.is_some() && self.store().secondary().is_some() {
            // The old secondary worked: backups may have written to it during the copy.
            let again = primary
                .resync_to(&target, options, &Phases(progress))
                .await?;
            report.copied.chunks += again.copied.chunks;
            report.copied.maps += again.copied.maps;
            report.copied.records += again.copied.records;
            report.copied.markers += again.copied.markers;
            report.bytes_copied += again.bytes_copied;
            report.vanished += again.vanished;
            report.bad.extend(again.bad);
            report.removed.extend(again.removed);
        }
        let vault = self.carried_over(primary.replicated(target), config);
        Ok(SecondaryReplaced {
            vault,
            report,
            resumed,
            previous,
        })
    }

    /// Makes the replica in `store` (a replicated vault's secondary, opened alone) the vault
    /// itself: a single vault with the primary's id, after a new GC epoch that makes every
    /// host rebuild its chunk index (see the module docs).
    ///
    /// `primary` is the store at the location the replica names as its primary, when it can
    /// be opened: while it still holds the vault, promotion is refused
    /// ([`Error::PrimaryStillThere`]) unless `force` (the primary is lost for good, or will
    /// never be used again). A location that is not a replica is refused
    /// ([`Error::NotAReplica`]). Nothing is written when refused.
    pub async fn promote(store: Store, primary: Option<Store>, force: bool) -> Result<Vault> {
        let config = store.config().await?;
        let Some(of) = config.replica_of.clone() else {
            return Err(Error::NotAReplica {
                location: store.location().to_owned(),
                vault: config.id,
                redundancy: config.redundancy,
            });
        };
        if !force
            && let Some(primary) = &primary
            && let Ok(held) = primary.config().await
            && held.id == of.vault
            && held.replica_of.is_none()
        {
            return Err(Error::PrimaryStillThere {
                location: store.location().to_owned(),
                primary: primary.location().to_owned(),
                vault: of.vault,
                secondary: held.redundancy.secondary().map(str::to_owned),
            });
        }
        let now = Timestamp::now();
        let epoch = blake3::hash(
            format!(
                "promote:{}:{}:{}",
                of.vault,
                now.as_nanosecond(),
                std::process::id()
            )
            .as_bytes(),
        )
        .to_hex()[..16]
            .to_owned();
        // Before the config: a promotion killed in between leaves a replica, promoted again
        // by the next run.
        store
            .put_gc_epoch(&GcEpoch {
                id: epoch,
                time: now,
            })
            .await?;
        let promoted = VaultConfig {
            id: of.vault,
            created: config.created,
            default_block_size: config.default_block_size,
            redundancy: Redundancy::Single,
            replica_of: None,
            encryption: config.encryption.clone(),
        };
        store.write_config(&promoted).await?;
        Ok(Vault::from_config(store, promoted))
    }
}
