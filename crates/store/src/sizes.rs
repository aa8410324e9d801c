//! What a vault's block maps and point records take, VM by VM, from listings (for `vault
//! stats`; chunks have [`Store::list_chunk_objects`]).

use std::collections::BTreeMap;

use blockvault_core::VmName;
use futures::TryStreamExt;
use object_store::path::Path;

use crate::{Result, Store, layout};

/// Bytes of the objects under `maps/<vm>/` and `points/<vm>/`, by VM, as the primary's
/// listing gives their sizes. The maps of backups that never committed count (they take
/// space until garbage collection removes them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataBytes {
    pub maps: BTreeMap<VmName, u64>,
    pub records: BTreeMap<VmName, u64>,
}

impl MetadataBytes {
    pub fn maps_of(&self, vm: &VmName) -> u64 {
        self.maps.get(vm).copied().unwrap_or(0)
    }

    pub fn records_of(&self, vm: &VmName) -> u64 {
        self.records.get(vm).copied().unwrap_or(0)
    }
}

impl Store {
    /// The bytes of the block maps and point records of `vm`, or of every VM when none.
    pub async fn metadata_bytes(&self, vm: Option<&VmName>) -> Result<MetadataBytes> {
        let (maps, points) = match vm {
            Some(vm) => (layout::maps_of_vm(vm), layout::points_of(vm)),
            None => (layout::maps_root(), layout::points_root()),
        };
        Ok(MetadataBytes {
            maps: self.bytes_by_vm(&maps).await?,
            records: self.bytes_by_vm(&points).await?,
        })
    }

    /// The sizes of the objects under `prefix` (`maps/...` or `points/...`), summed by the
    /// VM their key's second segment names.
    async fn bytes_by_vm(&self, prefix: &Path) -> Result<BTreeMap<VmName, u64>> {
        let mut bytes: BTreeMap<VmName, u64> = BTreeMap::new();
        let mut listing = self.here.list(Some(prefix));
        while let Some(meta) = listing.try_next().await? {
            let vm = meta
                .location
                .parts()
                .nth(1)
                .and_then(|part| part.as_ref().parse::<VmName>().ok());
            if let Some(vm) = vm {
                *bytes.entry(vm).or_default() += meta.size;
            }
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use blockvault_core::{DiskName, PointId};

    use super::*;

    #[tokio::test]
    async fn maps_and_records_are_summed_by_their_vm() {
        let store = Store::in_memory();
        let (a, b) = (VmName::new("a").expect("vm"), VmName::new("b").expect("vm"));
        let point = PointId::generate(jiff::Timestamp::UNIX_EPOCH, b"p");
        let disk = DiskName::new("d").expect("disk");
        for (key, len) in [
            (layout::map(&a, &point, &disk), 10),
            (
                layout::map(&a, &point, &DiskName::new("e").expect("disk")),
                5,
            ),
            (layout::map(&b, &point, &disk), 7),
            (layout::point(&a, &point), 3),
        ] {
            store
                .put_here(&key, vec![0u8; len].into())
                .await
                .expect("put");
        }
        let all = store.metadata_bytes(None).await.expect("sizes");
        assert_eq!(all.maps_of(&a), 15);
        assert_eq!(all.maps_of(&b), 7);
        assert_eq!(all.records_of(&a), 3);
        assert_eq!(all.records_of(&b), 0);
        let only_b = store.metadata_bytes(Some(&b)).await.expect("sizes");
        assert_eq!(only_b.maps.len(), 1);
        assert_eq!(only_b.maps_of(&b), 7);
    }
}
