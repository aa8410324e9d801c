//! Changed blocks from the file system: the extents of each disk's new clone compared with its
//! clone at the parent point (see `blockvault_capture::changed_extents`), as the write
//! session's change hints; and the periodic full scan that checks them.
//!
//! A hint is given only where its provenance is proven: the parent is the VM's newest snapshot
//! on this host (named to the write session), and its kept clone of the same disk is the file
//! the parent's map was read from. Anything else is a full scan, with the reason on the job.

use std::path::PathBuf;

use blockvault_capture::{Changes, changed_extents};
use blockvault_core::{DiskName, RecoveryPoint};
use blockvault_source::ChangeHint;

use super::{BackupSpec, Engine};
use crate::Result;

/// The change hints of a Snapshot's cloned disks.
pub(super) struct Hints {
    /// Per disk, in order.
    pub(super) hints: Vec<ChangeHint>,
    /// Per disk: why it has no hint (it is scanned in full).
    pub(super) reasons: Vec<Option<String>>,
    /// Whether this Snapshot scans in full all the same, to check the hints.
    pub(super) check: bool,
}

impl Engine {
    /// The hints for `clones` of `spec`'s disks (named `names`), against `parent`'s clones.
    pub(super) async fn change_hints(
        &self,
        spec: &BackupSpec,
        parent: Option<&RecoveryPoint>,
        names: &[DiskName],
        clones: &[PathBuf],
    ) -> Result<Hints> {
        let mut hints = Vec::with_capacity(clones.len());
        let mut reasons = Vec::with_capacity(clones.len());
        for (name, clone) in names.iter().zip(clones) {
            let Some(parent) = parent else {
                hints.push(ChangeHint::Everything);
                reasons.push(Some(
                    "no earlier snapshot of this VM on this host to compare with".to_owned(),
                ));
                continue;
            };
            let Some(parent_clone) = self.snapshots.clone_of(&spec.vm, &parent.id, name) else {
                hints.push(ChangeHint::Everything);
                reasons.push(Some(format!(
                    "the parent point {} kept no clone of disk {name} (it was read, not cloned)",
                    parent.id
                )));
                continue;
            };
            let new = clone.clone();
            let compared =
                tokio::task::spawn_blocking(move || changed_extents(&parent_clone, &new))
                    .await
                    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
            match compared {
                Ok(Changes::Dirty(ranges)) => {
                    hints.push(ChangeHint::Dirty(ranges));
                    reasons.push(None);
                }
                Ok(Changes::Unknown(doubt)) => {
                    hints.push(ChangeHint::Everything);
                    reasons.push(Some(doubt.to_string()));
                }
                Err(e) => {
                    hints.push(ChangeHint::Everything);
                    reasons.push(Some(format!("the clones could not be compared: {e}")));
                }
            }
        }
        let hinted = hints.iter().any(|h| matches!(h, ChangeHint::Dirty(_)));
        let check = hinted && self.check_due(spec).await?;
        Ok(Hints {
            hints,
            reasons,
            check,
        })
    }

    /// Whether the periodic full scan that checks change hints is due for `spec`'s VM: no
    /// full read of it on record within `check_changes_every`. For hints from reflink clones
    /// and from QEMU dirty bitmaps alike.
    pub(super) async fn check_due(&self, spec: &BackupSpec) -> Result<bool> {
        let vm = spec.vm.clone();
        let last = self.db(move |c| c.last_full_read(&vm)).await?;
        let every = jiff::SignedDuration::try_from(spec.capture.check_changes_every)
            .unwrap_or(jiff::SignedDuration::MAX);
        Ok(last.is_none_or(|last| self.now().duration_since(last) >= every))
    }
}
