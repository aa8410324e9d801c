//! Protection records (`protection/<vm>`): which host protects a VM, with which policy, since
//! when. Written like soft-delete markers, to the primary and the secondary of a replicated
//! store, so a promoted replica still says who holds each VM. Sealed with the vault's codec
//! (they name hosts, policies and their settings).

use blockvault_core::{ProtectionRecord, VmName};

use crate::store::Entries;
use crate::{Error, Result, Store, layout};

impl Store {
    /// Records (or replaces) the protection of `record.vm`.
    pub async fn put_protection(&self, record: &ProtectionRecord) -> Result<()> {
        let key = layout::protection(&record.vm);
        self.put(&key, self.seal(&key, record.encode())).await
    }

    /// The protection record of `vm`; `None` when no host holds it.
    pub async fn protection(&self, vm: &VmName) -> Result<Option<ProtectionRecord>> {
        let key = layout::protection(vm);
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        crate::checks::open(&self.codec, &key, &bytes)
            .and_then(|plain| ProtectionRecord::decode(&plain))
            .map(Some)
            .map_err(|source| Error::ObjectCorrupt {
                key: key.to_string(),
                source,
            })
    }

    /// Removes the protection record of `vm` (its data deleted or purged); none is not an
    /// error.
    pub async fn remove_protection(&self, vm: &VmName) -> Result<()> {
        self.delete(&layout::protection(vm)).await
    }

    /// The VMs that have a protection record, by name.
    pub async fn list_protected_vms(&self) -> Result<Vec<VmName>> {
        self.list_names(&layout::protection_root(), Entries::Objects)
            .await
    }
}
