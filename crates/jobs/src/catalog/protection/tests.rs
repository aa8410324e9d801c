use super::*;
use crate::{DEFAULT_POLICY, Policy};

fn vm(s: &str) -> VmName {
    s.parse().expect("vm")
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("time")
}

fn web01() -> ProtectedItem {
    ProtectedItem {
        vm: vm("web01"),
        vault: "/srv/vault".into(),
        disks: vec![PathBuf::from("/vms/web01.raw")],
        policy: DEFAULT_POLICY.parse().expect("name"),
        hooks: Hooks {
            pre: Some("virsh domfsfreeze web01".into()),
            post: None,
            timeout: Some(Duration::from_secs(60)),
        },
        since: at("2026-11-23T10:00:00Z"),
        handled: None,
        state: ProtectionState::Protected,
        capture: CaptureMode::Auto,
        disk_format: None,
    }
}

#[test]
fn the_capture_is_kept_with_the_hooks_and_an_older_item_reads_as_auto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("open");
    let read_under_hook = ProtectedItem {
        capture: CaptureMode::Read,
        ..web01()
    };
    catalog.protect(&read_under_hook).expect("protect");
    let read = catalog.protected_item(&vm("web01")).expect("read");
    assert_eq!(read.map(|i| i.capture), Some(CaptureMode::Read));
    // Hooks stored before the capture was: no key, so `auto`.
    catalog
        .write(|tx| {
            tx.execute(
                "UPDATE protected SET hooks = '{\"pre\":null,\"post\":null,\"timeout_secs\":null}'",
                [],
            )?;
            Ok(())
        })
        .expect("old hooks");
    let read = catalog.protected_item(&vm("web01")).expect("read");
    assert_eq!(read.map(|i| i.capture), Some(CaptureMode::Auto));
}

#[test]
fn protect_read_back_and_claim_slots_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("open");
    assert_eq!(catalog.protected_item(&vm("web01")).expect("read"), None);
    catalog.protect(&web01()).expect("protect");
    assert_eq!(catalog.protected_items().expect("list"), [web01()]);

    let slot = at("2026-11-23T23:00:00Z");
    assert!(catalog.claim_slot(&vm("web01"), slot).expect("claim"));
    assert!(!catalog.claim_slot(&vm("web01"), slot).expect("again"));
    assert!(
        !catalog
            .claim_slot(&vm("web01"), at("2026-11-22T23:00:00Z"))
            .expect("older")
    );
    assert!(!catalog.claim_slot(&vm("db01"), slot).expect("unprotected"));

    // Re-protecting (new disks) keeps the scheduler's place.
    let mut changed = web01();
    changed.disks.push(PathBuf::from("/vms/web01-data.raw"));
    catalog.protect(&changed).expect("update");
    let read = catalog
        .protected_item(&vm("web01"))
        .expect("read")
        .expect("protected");
    assert_eq!(read.disks.len(), 2);
    assert_eq!(read.handled, Some(slot));
}

#[test]
fn policies_in_use_cannot_be_deleted_and_unknown_ones_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("open");
    let mut item = web01();
    item.policy = "nope".parse().expect("name");
    let err = catalog.protect(&item).expect_err("unknown policy");
    assert!(matches!(err, Error::UnknownPolicy { .. }), "{err}");

    let enhanced = Policy::enhanced("e4".parse().expect("name"), jiff::tz::TimeZone::UTC);
    catalog
        .create_policy(&enhanced, at("2026-11-23T10:00:00Z"))
        .expect("create");
    catalog.protect(&web01()).expect("protect");
    catalog
        .set_item_policy(&vm("web01"), &enhanced.name)
        .expect("move");
    let err = catalog.delete_policy(&enhanced.name).expect_err("in use");
    assert!(
        matches!(&err, Error::PolicyInUse { vms, .. } if vms == &["web01"]),
        "{err}"
    );
    assert!(err.to_string().contains("web01"), "{err}");
    let listed = catalog.policies().expect("list");
    assert_eq!(listed[1].protects, ["web01"]);
    let kept = catalog
        .delete_policy(&DEFAULT_POLICY.parse().expect("name"))
        .expect_err("the default stays, used or not");
    assert!(matches!(kept, Error::DefaultPolicyKept { .. }), "{kept}");
    assert!(
        catalog
            .policy(&DEFAULT_POLICY.parse().expect("name"))
            .is_ok()
    );
}

#[test]
fn a_vm_stopped_in_one_vault_may_be_protected_in_another_a_soft_deleted_one_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("open");
    let web = vm("web01");
    catalog.protect(&web01()).expect("protect");
    let err = catalog
        .protection_in(&web, "/srv/other")
        .expect_err("protected elsewhere");
    assert!(matches!(err, Error::ProtectedElsewhere { .. }), "{err}");

    let stopped = at("2026-11-24T10:00:00Z");
    let deleted = at("2026-11-25T10:00:00Z");
    catalog
        .set_protection_state(&web, ProtectionState::soft_deleted(stopped, deleted))
        .expect("soft-delete");
    let err = catalog
        .protection_in(&web, "/srv/other")
        .expect_err("soft-deleted elsewhere");
    assert!(
        matches!(&err, Error::SoftDeletedElsewhere { vault, purge_after, .. }
            if vault == "/srv/vault" && *purge_after == at("2026-12-09T10:00:00Z")),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("/srv/vault") && message.contains("2026-12-09 10:00 UTC"),
        "names the vault and the purge date: {message}"
    );
    let err = catalog
        .protection_in(&web, "/srv/vault")
        .expect_err("soft-deleted here");
    assert!(matches!(err, Error::SoftDeleted { .. }), "{err}");
    assert!(err.to_string().contains("undelete"), "{err}");
    // The catalog itself never overwrites soft-deleted data's item.
    let err = catalog
        .protect(&web01())
        .expect_err("not over soft-deleted");
    assert!(matches!(err, Error::SoftDeleted { .. }), "{err}");
    let read = catalog.protected_item(&web).expect("read").expect("item");
    assert_eq!(read.state, ProtectionState::soft_deleted(stopped, deleted));
    assert!(!read.is_protected());

    // Undeleted: stopped with data retained, which blocks no other vault.
    catalog
        .set_protection_state(&web, ProtectionState::Stopped { stopped })
        .expect("undelete");
    assert_eq!(
        catalog.protection_in(&web, "/srv/other").expect("free"),
        None
    );
    let here = catalog.protection_in(&web, "/srv/vault").expect("here");
    assert_eq!(
        here.map(|i| i.state),
        Some(ProtectionState::Stopped { stopped })
    );
    // Protecting it in the other vault starts that protection afresh.
    let mut moved = web01();
    moved.vault = "/srv/other".into();
    moved.since = at("2026-11-26T10:00:00Z");
    moved.handled = Some(moved.since);
    catalog.protect(&moved).expect("protect elsewhere");
    assert_eq!(
        catalog.protected_item(&web).expect("read"),
        Some(moved.clone())
    );

    assert!(catalog.remove_protected_item(&web).expect("remove"));
    assert!(!catalog.remove_protected_item(&web).expect("gone"));
    let err = catalog
        .set_protection_state(&web, ProtectionState::Protected)
        .expect_err("no item");
    assert!(matches!(err, Error::NotProtected { .. }), "{err}");
}

#[test]
fn a_version_2_catalog_is_migrated_its_items_stay_protected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute_batch(super::super::SCHEMA_1).expect("v1");
        conn.execute_batch(super::super::SCHEMA_2).expect("v2");
        let policy = Policy::default_policy();
        conn.execute(
            "INSERT INTO policies (name, type, body, created, updated)
             VALUES (?1, 'standard', ?2, 1, 1)",
            params![policy.name.as_str(), policy.to_toml()],
        )
        .expect("policy");
        conn.execute(
            "INSERT INTO protected (vm, vault, disks, policy, hooks, since, handled)
             VALUES ('web01', '/srv/vault', '[\"/vms/web01.raw\"]', ?1,
                     '{\"pre\":null,\"post\":null,\"timeout_secs\":null}', ?2, NULL)",
            params![policy.name.as_str(), micros(at("2026-11-23T10:00:00Z"))],
        )
        .expect("item");
        conn.execute(
            "INSERT INTO jobs (vm, operation, status, started, pid)
             VALUES ('web01', 'configure-backup', 'completed', 1, 1)",
            [],
        )
        .expect("job");
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
    }
    let catalog = Catalog::open(&path).expect("migrate");
    let item = catalog
        .protected_item(&vm("web01"))
        .expect("read")
        .expect("kept");
    assert_eq!(item.state, ProtectionState::Protected);
    assert!(item.is_protected());
    assert_eq!(item.disks, [PathBuf::from("/vms/web01.raw")]);
    assert_eq!(item.since, at("2026-11-23T10:00:00Z"));
    assert_eq!(
        catalog.job(crate::JobId(1)).expect("job").vm.as_str(),
        "web01"
    );
    drop(catalog);
    let conn = rusqlite::Connection::open(&path).expect("sqlite");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, crate::SCHEMA_VERSION);
    drop(conn);
    let catalog = Catalog::open(&path).expect("reopen at the current version");
    catalog
        .set_protection_state(
            &vm("web01"),
            ProtectionState::Stopped {
                stopped: at("2026-11-24T10:00:00Z"),
            },
        )
        .expect("the new columns are writable");
}

#[test]
fn an_unknown_state_is_corrupt_naming_the_vm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(dir.path().join("c.sqlite")).expect("open");
    catalog.protect(&web01()).expect("protect");
    catalog
        .lock()
        .execute("UPDATE protected SET state = 'paused'", [])
        .expect("damage");
    let err = catalog.protected_items().expect_err("corrupt");
    assert!(
        matches!(&err, Error::Corrupt { what, .. } if what.contains("web01") && what.contains("paused")),
        "{err:?}"
    );
}
