//! Where each object lives in a vault. One place, so the layout reads as a table:
//!
//! | key | object |
//! |---|---|
//! | `vault.config` | [`VaultConfig`](blockvault_core::VaultConfig): makes the location a vault |
//! | `chunks/<2 hex>/<64 hex>` | a chunk, keyed by its full id; 256 fan-out prefixes |
//! | `maps/<vm>/<point>/<disk>.map` | the block map of one disk at one point |
//! | `points/<vm>/<point>` | the recovery point record, written last: the commit |
//! | `leases/<kind>-<id>` | a lease of a writer (backup, transfer), of a GC sweep, or a pending sweep's hold on new writers |
//! | `gc/epoch` | the epoch of the last GC sweep: hosts' chunk caches older than it are stale |
//! | `gc/forgotten/<epoch>` | [`ForgottenChunks`](blockvault_core::ForgottenChunks): that sweep's candidates, for caches one sweep behind |
//! | `damaged/<64 hex>` | a chunk verify found bad: the next backup holding its data re-uploads it |
//! | `deleted/<vm>` | [`SoftDeleteMarker`](blockvault_core::SoftDeleteMarker): the VM's points are soft-deleted |
//! | `deleted-points/<vm>/<point>` | [`PointDeleteMarker`](blockvault_core::PointDeleteMarker): one point a user forgot is soft-deleted (a directory store cannot hold a file `deleted/<vm>` and a directory `deleted/<vm>/` at once, hence its own top level) |
//! | `protection/<vm>` | [`ProtectionRecord`](blockvault_core::ProtectionRecord): the host that protects the VM, its policy and settings, since when, protected or stopped |
//! | `quarantine/points/<vm>/<point>` | a damaged point record set aside (its bytes as they were); nothing reads it |
//! | `quarantine/vault.config.<unix time>` | a damaged vault config set aside (the snapshot tier rebuilds its own) |
//!
//! In an encrypted vault every object here but `vault.config`, chunks (encrypted by the chunk
//! codec) and the empty `damaged/` marks is sealed by the store's codec, bound to its key;
//! the keys themselves stay readable (see "Encryption" in the crate docs).

use blockvault_core::{ChunkId, DiskName, LeaseKind, PointId, VmName};
use object_store::path::Path;

pub(crate) fn config() -> Path {
    Path::from("vault.config")
}

pub(crate) fn chunk(id: &ChunkId) -> Path {
    let hex = id.to_hex();
    Path::from(format!("chunks/{}/{hex}", &hex[..2]))
}

/// The top-level directories of the table above, each object's first key segment but for
/// `vault.config`'s. Keep it in step with the table.
pub(crate) const TOP_LEVEL: [&str; 10] = [
    "chunks",
    "maps",
    "points",
    "leases",
    "gc",
    "damaged",
    "deleted",
    "deleted-points",
    "protection",
    "quarantine",
];

pub(crate) fn quarantined_point(vm: &VmName, point: &PointId) -> Path {
    Path::from(format!("quarantine/points/{vm}/{point}"))
}

pub(crate) fn quarantined_config(unix_time: i64) -> Path {
    Path::from(format!("quarantine/vault.config.{unix_time}"))
}

pub(crate) fn chunks_root() -> Path {
    Path::from("chunks")
}

pub(crate) fn map(vm: &VmName, point: &PointId, disk: &DiskName) -> Path {
    Path::from(format!("maps/{vm}/{point}/{disk}.map"))
}

pub(crate) fn maps_of_vm(vm: &VmName) -> Path {
    Path::from(format!("maps/{vm}"))
}

pub(crate) fn maps_of(vm: &VmName, point: &PointId) -> Path {
    Path::from(format!("maps/{vm}/{point}"))
}

pub(crate) fn points_root() -> Path {
    Path::from("points")
}

pub(crate) fn points_of(vm: &VmName) -> Path {
    Path::from(format!("points/{vm}"))
}

pub(crate) fn point(vm: &VmName, point: &PointId) -> Path {
    Path::from(format!("points/{vm}/{point}"))
}

pub(crate) fn leases_root() -> Path {
    Path::from("leases")
}

pub(crate) fn lease(kind: LeaseKind, id: &str) -> Path {
    Path::from(format!("leases/{}-{id}", kind.as_str()))
}

pub(crate) fn gc_epoch() -> Path {
    Path::from("gc/epoch")
}

pub(crate) fn forgotten_root() -> Path {
    Path::from("gc/forgotten")
}

pub(crate) fn forgotten(epoch: &str) -> Path {
    Path::from(format!("gc/forgotten/{epoch}"))
}

pub(crate) fn damaged_root() -> Path {
    Path::from("damaged")
}

pub(crate) fn damaged(id: &ChunkId) -> Path {
    Path::from(format!("damaged/{}", id.to_hex()))
}

pub(crate) fn maps_root() -> Path {
    Path::from("maps")
}

pub(crate) fn soft_delete_root() -> Path {
    Path::from("deleted")
}

pub(crate) fn soft_delete(vm: &VmName) -> Path {
    Path::from(format!("deleted/{vm}"))
}

pub(crate) fn point_deletes_root() -> Path {
    Path::from("deleted-points")
}

pub(crate) fn point_deletes_of(vm: &VmName) -> Path {
    Path::from(format!("deleted-points/{vm}"))
}

pub(crate) fn point_delete(vm: &VmName, point: &PointId) -> Path {
    Path::from(format!("deleted-points/{vm}/{point}"))
}

pub(crate) fn protection_root() -> Path {
    Path::from("protection")
}

pub(crate) fn protection(vm: &VmName) -> Path {
    Path::from(format!("protection/{vm}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_but_the_config_lies_under_a_top_level_directory() {
        let vm = VmName::new("vm").expect("vm");
        let point = PointId::generate(jiff::Timestamp::UNIX_EPOCH, b"p");
        let disk = DiskName::new("d").expect("disk");
        let id = ChunkId::of(b"x");
        let keys = [
            chunk(&id),
            chunks_root(),
            map(&vm, &point, &disk),
            maps_of_vm(&vm),
            maps_of(&vm, &point),
            points_root(),
            points_of(&vm),
            self::point(&vm, &point),
            leases_root(),
            lease(LeaseKind::Writer, "1"),
            gc_epoch(),
            forgotten_root(),
            forgotten("e"),
            damaged_root(),
            damaged(&id),
            maps_root(),
            soft_delete(&vm),
            quarantined_point(&vm, &point),
            soft_delete_root(),
            point_deletes_root(),
            point_deletes_of(&vm),
            point_delete(&vm, &point),
            protection_root(),
            protection(&vm),
        ];
        for key in keys {
            let first = key.parts().next().expect("a segment");
            assert!(TOP_LEVEL.contains(&first.as_ref()), "{key}");
        }
        assert!(!TOP_LEVEL.contains(&config().as_ref()));
    }
}
