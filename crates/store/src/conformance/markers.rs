//! The suite's markers and records beside the points: soft-delete markers of VMs and of
//! forgotten points, and protection records.

use blockvault_core::{PointId, VmName};
use jiff::Timestamp;

use super::{raw_put, stored};
use crate::{Error, Store, layout};

pub(super) async fn soft_delete_markers_round_trip_and_fail_by_name(store: &Store) {
    let vm = VmName::new("soft-deleted-vm").expect("name");
    assert_eq!(store.soft_delete(&vm).await.expect("none yet"), None);
    let deleted: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
    let marker = blockvault_core::SoftDeleteMarker::new(vm.clone(), deleted);
    store.put_soft_delete(&marker).await.expect("put marker");
    assert_eq!(
        store.soft_delete(&vm).await.expect("read"),
        Some(marker.clone())
    );
    // The marker is not a VM with points.
    assert!(!store.list_vms().await.expect("vms").contains(&vm));
    store.remove_soft_delete(&vm).await.expect("remove");
    assert_eq!(store.soft_delete(&vm).await.expect("gone"), None);
    store.remove_soft_delete(&vm).await.expect("remove again");

    let mut bytes = stored(store, &layout::soft_delete(&vm), marker.encode());
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    raw_put(store, &layout::soft_delete(&vm), bytes).await;
    let err = store.soft_delete(&vm).await.expect_err("corrupt");
    assert!(
        matches!(&err, Error::SoftDeleteCorrupt { vm: v, .. } if *v == vm) && err.is_corrupt(),
        "{err}"
    );
    assert!(err.to_string().contains("soft-deleted-vm"), "{err}");
    store.remove_soft_delete(&vm).await.expect("clean up");
}

/// A forgotten point's marker and its VM's marker at once (a directory store cannot hold a
/// file `deleted/<vm>` and a directory `deleted/<vm>/`), listed per VM, by name when corrupt.
pub(super) async fn point_delete_markers_live_beside_a_vms_marker(store: &Store) {
    let vm = VmName::new("forgetful-vm").expect("name");
    let deleted: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
    let (first, second) = (
        PointId::generate(deleted, b"first"),
        PointId::generate(deleted + jiff::SignedDuration::from_secs(60), b"second"),
    );
    assert_eq!(store.point_delete(&vm, &first).await.expect("none"), None);
    assert!(store.point_deletes(&vm).await.expect("none").is_empty());
    let vm_marker = blockvault_core::SoftDeleteMarker::new(vm.clone(), deleted);
    store.put_soft_delete(&vm_marker).await.expect("vm marker");
    let markers: Vec<blockvault_core::PointDeleteMarker> = [&second, &first]
        .into_iter()
        .map(|p| blockvault_core::PointDeleteMarker::new(vm.clone(), p.clone(), deleted))
        .collect();
    for marker in &markers {
        store.put_point_delete(marker).await.expect("point marker");
    }
    assert_eq!(
        store.point_deletes(&vm).await.expect("list"),
        vec![markers[1].clone(), markers[0].clone()],
        "oldest point first"
    );
    assert_eq!(
        store.point_delete_vms().await.expect("vms"),
        vec![vm.clone()]
    );
    assert_eq!(
        store.soft_delete(&vm).await.expect("vm marker"),
        Some(vm_marker)
    );
    assert!(!store.list_vms().await.expect("vms").contains(&vm));
    store
        .remove_point_delete(&vm, &second)
        .await
        .expect("remove");
    store
        .remove_point_delete(&vm, &second)
        .await
        .expect("again");
    assert_eq!(
        store.point_deletes(&vm).await.expect("list"),
        vec![markers[1].clone()]
    );

    // A damaged marker, and one under another point's key, are errors naming the point.
    let mut bytes = stored(
        store,
        &layout::point_delete(&vm, &first),
        markers[1].encode(),
    );
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    raw_put(store, &layout::point_delete(&vm, &first), bytes).await;
    let err = store.point_deletes(&vm).await.expect_err("corrupt");
    assert!(
        matches!(&err, Error::PointDeleteCorrupt { point, .. } if *point == first)
            && err.is_corrupt(),
        "{err}"
    );
    raw_put(
        store,
        &layout::point_delete(&vm, &first),
        stored(
            store,
            &layout::point_delete(&vm, &second),
            markers[0].encode(),
        ),
    )
    .await;
    let err = store
        .point_delete(&vm, &first)
        .await
        .expect_err("misplaced");
    assert!(err.to_string().contains(first.as_str()), "{err}");

    store
        .remove_point_delete(&vm, &first)
        .await
        .expect("clean up");
    store.remove_soft_delete(&vm).await.expect("clean up");
    assert!(store.point_delete_vms().await.expect("vms").is_empty());
}

pub(super) async fn protection_records_round_trip_list_and_fail_by_key(store: &Store) {
    use blockvault_core::{HeldState, HostIdentity, ProtectionRecord};
    let vm = VmName::new("held-vm").expect("name");
    assert_eq!(store.protection(&vm).await.expect("none yet"), None);
    let since: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
    let mut record = ProtectionRecord {
        vm: vm.clone(),
        host: HostIdentity {
            id: "00112233aabbccdd".into(),
            name: "hv1".into(),
            state_dir: "/var/lib/blockvault".into(),
        },
        policy: "DefaultPolicy".into(),
        policy_settings: "name = \"DefaultPolicy\"\n".into(),
        since,
        updated: since,
        state: HeldState::Protected,
    };
    store.put_protection(&record).await.expect("put record");
    assert_eq!(
        store.protection(&vm).await.expect("read"),
        Some(record.clone())
    );
    assert!(
        store
            .list_protected_vms()
            .await
            .expect("list")
            .contains(&vm)
    );
    // The record is not a VM with points.
    assert!(!store.list_vms().await.expect("vms").contains(&vm));
    record.state = HeldState::Stopped { stopped: since };
    store.put_protection(&record).await.expect("replace");
    assert_eq!(
        store.protection(&vm).await.expect("read"),
        Some(record.clone())
    );
    store.remove_protection(&vm).await.expect("remove");
    assert_eq!(store.protection(&vm).await.expect("gone"), None);
    assert!(
        !store
            .list_protected_vms()
            .await
            .expect("list")
            .contains(&vm)
    );
    store.remove_protection(&vm).await.expect("remove again");

    let mut bytes = stored(store, &layout::protection(&vm), record.encode());
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    raw_put(store, &layout::protection(&vm), bytes).await;
    let err = store.protection(&vm).await.expect_err("corrupt");
    assert!(
        matches!(&err, Error::ObjectCorrupt { key, .. } if key == "protection/held-vm"),
        "{err}"
    );
    store.remove_protection(&vm).await.expect("clean up");
}
