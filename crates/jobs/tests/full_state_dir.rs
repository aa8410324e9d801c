//! A state directory on a full file system (a real, loop-mounted ext4 filled up): a backup
//! fails saying so (no space left on the device holding the state directory, its path, how
//! much is free) instead of "disk I/O error", and nothing in the vault is lost.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use blockvault_capture::testing::{LoopFs, LoopKind};
use blockvault_core::{BlockSize, VmName};
use blockvault_jobs::{BackupSpec, Engine};
use blockvault_vault::{NoProgress, Vault};

const MIB: u64 = 1 << 20;

/// Writes into `path` until the file system refuses (ENOSPC): 1 MiB at a time, then 4 KiB.
fn fill(path: &std::path::Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    for piece in [MIB as usize, 4096, 512] {
        let data = vec![0xa5u8; piece];
        while file.write_all(&data).and_then(|()| file.sync_all()).is_ok() {}
    }
}

#[tokio::test]
#[ignore = "needs root, loop devices and mkfs.xfs/mkfs.btrfs: scripts/test.sh runs it"]
async fn a_full_state_directory_names_the_cause_and_loses_nothing_in_the_vault() {
    let fs = LoopFs::new(LoopKind::Ext4, 16 * MIB);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let state = fs.path().join("state");
    let (engine, _) = Engine::open(&state, Some(elsewhere.path().join("snapshots")))
        .await
        .expect("engine");
    let vault = Vault::init_local(elsewhere.path().join("vault"))
        .await
        .expect("vault");
    let disk = elsewhere.path().join("disk.raw");
    let image = std::fs::File::create(&disk).expect("disk");
    image.set_len(4 * MIB).expect("size");
    image.write_all_at(&[0x11; 256 << 10], MIB).expect("write");
    let vm = VmName::new("vm1").expect("vm");
    let mut spec = BackupSpec::new(vm.clone(), vec![disk.clone()]);
    spec.block_size = Some(BlockSize::new(64 << 10).expect("bs"));
    let first = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("first backup");
    let first = first.point.expect("a point");

    fill(&fs.path().join("filler"));
    image.write_all_at(&[0x22; 256 << 10], MIB).expect("write");
    let failed = match engine.backup(Ok(&vault), &spec, Arc::new(NoProgress)).await {
        Err(e) => e.to_string(),
        Ok(outcome) => outcome
            .job
            .error
            .clone()
            .unwrap_or_else(|| panic!("a backup with a full state directory: {outcome:?}")),
    };
    assert!(
        failed.contains("no space left on the device holding the state directory"),
        "{failed}"
    );
    assert!(failed.contains(&state.display().to_string()), "{failed}");
    assert!(failed.contains(" free)"), "{failed}");
    assert!(!failed.contains("disk I/O error"), "{failed}");

    // Nothing in the vault is lost: the first point is there and whole.
    let listed = vault.points(&vm).await.expect("points").points;
    assert!(listed.iter().any(|p| p.id == first.id), "{listed:?}");
    std::fs::remove_file(fs.path().join("filler")).expect("free the space");
    let again = engine
        .backup(Ok(&vault), &spec, Arc::new(NoProgress))
        .await
        .expect("a backup once there is space");
    assert!(again.point.is_some(), "{again:?}");
    let listed = vault.points(&vm).await.expect("points").points;
    assert!(listed.iter().any(|p| p.id == first.id), "{listed:?}");
}
