//! Bad input and damaged vaults: each gets a clear error, and nothing is lost.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use blockvault_core::{
    BlockMap, BlockSize, ChunkId, Consistency, DiskName, DiskRecord, PointId, PointStats,
    RecoveryPoint,
};
use blockvault_store::Error as StoreError;
use blockvault_vault::{
    BackupRequest, Error, PointSelector, Progress, RestoreRequest, TransferOptions, Vault,
};
use jiff::Timestamp;

use crate::support::{
    Image, Write, backup, block_size, chunk_files, files_in, new_vault, restore, vm,
};

const BS: u64 = 64 << 10;

/// A vault with one VM ("vm1") and one point of a 1 MiB disk with data in blocks 0, 3 and 9.
async fn vault_with_one_point(dir: &Path) -> (Vault, Image) {
    let vault = new_vault(dir).await;
    let mut image = Image::create(dir.join("disk.img"), 1 << 20);
    for (block, kind) in [(0u64, 1u8), (3, 2), (9, 3)] {
        image.apply(Write {
            offset: block * BS,
            len: BS as usize,
            kind,
        });
    }
    backup(&vault, "vm1", &[&image], block_size(BS))
        .await
        .expect("backup");
    (vault, image)
}

async fn point_count(vault: &Vault, name: &str) -> usize {
    vault
        .store()
        .list_point_ids(&vm(name))
        .await
        .expect("list")
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_disk_is_named_and_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, image) = vault_with_one_point(dir.path()).await;
    let missing = Image {
        path: dir.path().join("gone.img"),
        content: Vec::new(),
    };
    let err = backup(&vault, "vm1", &[&image, &missing], block_size(BS))
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, Error::Disk(blockvault_source::Error::NotFound { path }) if path.ends_with("gone.img")),
        "{err}"
    );
    assert!(err.to_string().contains("gone.img"), "{err}");
    assert_eq!(point_count(&vault, "vm1").await, 1, "no point committed");
    let err = backup(&vault, "vm9", &[&missing], block_size(BS))
        .await
        .expect_err("missing");
    assert!(matches!(err, Error::Disk(_)), "{err}");
    assert_eq!(
        vault.vms().await.expect("vms"),
        vec![vm("vm1")],
        "no other VM appeared"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_is_not_a_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let as_disk = Image {
        path: dir.path().to_owned(),
        content: Vec::new(),
    };
    let err = backup(&vault, "vm1", &[&as_disk], block_size(BS))
        .await
        .expect_err("dir");
    assert!(
        matches!(
            err,
            Error::Disk(blockvault_source::Error::NotADisk {
                kind: "a directory",
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disks_with_the_same_file_name_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    std::fs::create_dir(dir.path().join("other")).expect("mkdir");
    let a = Image::create(dir.path().join("root.img"), 1000);
    let b = Image::create(dir.path().join("other/root.img"), 1000);
    let err = backup(&vault, "vm1", &[&a, &b], block_size(BS))
        .await
        .expect_err("dup");
    assert!(
        matches!(
            err,
            Error::Repo(blockvault_repo::Error::DuplicateDiskName { .. })
        ),
        "{err}"
    );
}

/// Changes the image under the scan the first time any block is read.
struct Saboteur {
    path: std::path::PathBuf,
    new_size: u64,
    done: AtomicBool,
}

impl Progress for Saboteur {
    fn advance(&self, _bytes: u64) {
        if !self.done.swap(true, Ordering::SeqCst) {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .expect("open");
            f.set_len(self.new_size).expect("resize");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_changes_size_while_read_commits_nothing() {
    for new_size in [100 << 10, 4 << 20] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (vault, image) = vault_with_one_point(dir.path()).await;
        let request = BackupRequest {
            vm: vm("vm1"),
            disks: vec![image.path.clone().into()],
            block_size: Some(block_size(BS)),
            consistency: Consistency::CrashConsistent,
            capture: None,
            options: TransferOptions::default(),
            time: None,
            retain_until: None,
            id: None,
            vault: None,
        };
        let saboteur = Arc::new(Saboteur {
            path: image.path.clone(),
            new_size,
            done: AtomicBool::new(false),
        });
        let err = vault
            .backup(&request, saboteur)
            .await
            .expect_err("size changed");
        assert!(
            matches!(
                err,
                Error::Disk(
                    blockvault_source::Error::SizeChanged { .. }
                        | blockvault_source::Error::Truncated { .. }
                )
            ),
            "new size {new_size}: {err}"
        );
        assert!(err.to_string().contains("disk.img"), "{err}");
        assert_eq!(point_count(&vault, "vm1").await, 1, "no point committed");
        // The earlier point still restores.
        let out = dir.path().join("out");
        restore(&vault, "vm1", PointSelector::Latest, &out)
            .await
            .expect("restore");
    }
}

/// The chunk file of block `index` of the newest point's only disk.
async fn chunk_file_of_block(vault: &Vault, dir: &Path, index: usize) -> std::path::PathBuf {
    let point = vault
        .latest_point(&vm("vm1"))
        .await
        .expect("latest")
        .expect("a point");
    let disk = &point.disks[0];
    let map = vault
        .store()
        .get_map(&point.vm, &point.id, &disk.name, Some(&disk.map_digest))
        .await
        .expect("map");
    let hex = map.get(index).expect("a block of the map").to_hex();
    dir.join("vault/chunks").join(&hex[..2]).join(hex)
}

fn assert_restore_failed_cleanly(err: &Error, out: &Path, offset: u64) {
    match err {
        Error::Repo(blockvault_repo::Error::Block {
            offset: at, disk, ..
        }) => {
            assert_eq!(*at, offset, "{err}");
            assert_eq!(disk.as_str(), "disk.img");
        }
        other => panic!("expected a block error, got {other}"),
    }
    assert!(
        err.to_string().contains(&format!("offset {offset}")),
        "{err}"
    );
    assert!(files_in(out).is_empty(), "left behind: {:?}", files_in(out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_chunk_fails_the_restore_naming_the_offset_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, _) = vault_with_one_point(dir.path()).await;
    let chunk = chunk_file_of_block(&vault, dir.path(), 3).await;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&chunk)
        .expect("open");
    f.write_all_at(b"\xff\xfe\xfd", 200).expect("corrupt");
    let out = dir.path().join("out");
    let err = restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect_err("corrupt");
    assert_restore_failed_cleanly(&err, &out, 3 * BS);
    assert!(
        matches!(
            &err,
            Error::Repo(blockvault_repo::Error::Block { source, .. }) if matches!(**source, StoreError::ChunkCorrupt { .. })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_missing_chunks_fail_the_restore_and_keep_the_old_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, _) = vault_with_one_point(dir.path()).await;
    let chunk = chunk_file_of_block(&vault, dir.path(), 9).await;
    let bytes = std::fs::read(&chunk).expect("read");
    std::fs::write(&chunk, &bytes[..bytes.len() / 2]).expect("truncate");
    let out = dir.path().join("out");
    let err = restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect_err("truncated");
    assert_restore_failed_cleanly(&err, &out, 9 * BS);

    // An image already in place survives a failed --force restore untouched.
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("disk.img"), b"precious").expect("write");
    std::fs::remove_file(&chunk).expect("delete");
    let request = RestoreRequest {
        vm: vm("vm1"),
        point: PointSelector::Latest,
        target: out.clone(),
        overwrite: true,
        in_place: false,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    let err = vault
        .restore(&request, Arc::new(blockvault_vault::NoProgress))
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, Error::Repo(blockvault_repo::Error::Block { source, offset, .. })
            if *offset == 9 * BS && matches!(**source, StoreError::ChunkMissing { .. })),
        "{err}"
    );
    assert_eq!(files_in(&out), vec!["disk.img".to_owned()]);
    assert_eq!(
        std::fs::read(out.join("disk.img")).expect("read"),
        b"precious"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_and_truncated_block_maps_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, _) = vault_with_one_point(dir.path()).await;
    let point = vault
        .latest_point(&vm("vm1"))
        .await
        .expect("latest")
        .expect("point");
    let map_file = dir
        .path()
        .join(format!("vault/maps/vm1/{}/disk.img.map", point.id));
    let good = std::fs::read(&map_file).expect("read");
    let out = dir.path().join("out");
    for bad in [good[..good.len() - 5].to_vec(), {
        let mut b = good.clone();
        b[120] ^= 1;
        b
    }] {
        std::fs::write(&map_file, &bad).expect("write");
        let err = restore(&vault, "vm1", PointSelector::Latest, &out)
            .await
            .expect_err("bad map");
        assert!(
            matches!(err, Error::Store(StoreError::MapCorrupt { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains("disk.img") && err.to_string().contains(point.id.as_str()),
            "{err}"
        );
        assert!(files_in(&out).is_empty());
    }
    std::fs::write(&map_file, &good).expect("write");
    restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect("restore after repair");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_shorter_than_its_recorded_size_is_refused_at_restore() {
    // A point whose map says block 0 is 64 KiB long, but whose chunk holds 100 bytes.
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let short = vec![7u8; 100];
    let store = vault.store();
    let (id, encoded) = store.codec().encode_one(&short).expect("enc");
    store.put_chunk(&id, encoded.into()).await.expect("put");
    let time = Timestamp::now();
    let point_id = PointId::generate(time, b"short");
    let disk = DiskName::new("disk.img").expect("name");
    let bs = block_size(BS);
    let map = BlockMap::from_ids(BS, bs, time, vec![id]).expect("map");
    let digest = store
        .put_map(&vm("vm1"), &point_id, &disk, &map)
        .await
        .expect("map");
    store
        .put_point(&RecoveryPoint {
            vm: vm("vm1"),
            id: point_id,
            time,
            consistency: Consistency::CrashConsistent,
            parent: None,
            disks: vec![DiskRecord {
                name: disk,
                source: "/dev/null".into(),
                size: BS,
                block_size: bs,
                map_digest: digest,
                blocks: 1,
                data_blocks: 1,
                format: Default::default(),
            }],
            stats: PointStats::default(),
            retain_until: None,
            vault: None,
        })
        .await
        .expect("point");
    let out = dir.path().join("out");
    let err = restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect_err("short");
    assert!(
        matches!(err, Error::Repo(blockvault_repo::Error::BlockLength { expected, actual: 100, offset: 0, .. }) if expected == BS as usize),
        "{err}"
    );
    assert!(files_in(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_vms_points_and_times_are_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (vault, _) = vault_with_one_point(dir.path()).await;
    let out = dir.path().join("out");
    let err = restore(&vault, "nobody", PointSelector::Latest, &out)
        .await
        .expect_err("vm");
    assert!(
        matches!(err, Error::Repo(blockvault_repo::Error::UnknownVm { .. })),
        "{err}"
    );
    let err = restore(
        &vault,
        "vm1",
        PointSelector::Id("20200101-000000-0000".into()),
        &out,
    )
    .await
    .expect_err("point");
    assert!(
        matches!(
            err,
            Error::Repo(blockvault_repo::Error::UnknownPoint { .. })
        ),
        "{err}"
    );
    let err = restore(&vault, "vm1", PointSelector::Id("1999".into()), &out)
        .await
        .expect_err("prefix");
    assert!(
        matches!(
            err,
            Error::Repo(blockvault_repo::Error::UnknownPoint { .. })
        ),
        "{err}"
    );
    let before: Timestamp = "2001-01-01T00:00:00Z".parse().expect("ts");
    let err = restore(&vault, "vm1", PointSelector::At(before), &out)
        .await
        .expect_err("before");
    assert!(
        matches!(
            err,
            Error::Repo(blockvault_repo::Error::NoPointAtOrBefore { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("first point"), "{err}");
    assert!(files_in(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_that_is_not_a_vault_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for path in [dir.path().to_owned(), dir.path().join("missing")] {
        let err = Vault::open_local(&path).await.expect_err("not a vault");
        assert!(
            matches!(err, Error::Store(StoreError::NotAVault { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("vault init"), "{err}");
    }
    std::fs::write(dir.path().join("vault.config"), b"not a config").expect("write");
    let err = Vault::open_local(dir.path()).await.expect_err("bad config");
    assert!(
        matches!(err, Error::Store(StoreError::ConfigCorrupt { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_leaves_no_point_and_the_retry_sends_only_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    interrupted_upload_then_retry(&vault, dir.path(), &|| {}).await;
}

/// The same with this host's chunk index: the failed backup folds what landed into it (its
/// journal gone), so the retry knows those chunks without asking the store.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_with_a_chunk_index_records_what_landed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let vault = new_vault(dir.path()).await.with_state_dir(&state);
    let index = state
        .join("vaults")
        .join(&vault.config().id)
        .join("chunks.idx");
    let vault_dir = dir.path().join("vault");
    let names_every_chunk_stored = || {
        assert!(
            !index.with_extension("log").exists(),
            "the journal is folded in"
        );
        let saved = blockvault_vault::ChunkIndex::load_current(&index, None).expect("index");
        assert_eq!(saved.len(), chunk_files(&vault_dir).len());
    };
    interrupted_upload_then_retry(&vault, dir.path(), &names_every_chunk_stored).await;
    names_every_chunk_stored();
}

/// A backup whose uploads of half the id space fail: no point, and a retry sends only what
/// the failed one did not store. `after_failure` runs between the two.
async fn interrupted_upload_then_retry(vault: &Vault, dir: &Path, after_failure: &dyn Fn()) {
    let mut image = Image::create(dir.join("disk.img"), 8 << 20);
    for block in 0..64u64 {
        image.apply(Write {
            offset: block * 2 * BS,
            len: BS as usize,
            kind: 2 + (block % 7) as u8 * 2,
        });
    }
    // Files where the chunk fan-out directories of half the id space belong: every put of a
    // chunk whose id starts with 8..f fails, as a dying disk or endpoint would.
    let chunks = dir.join("vault/chunks");
    std::fs::create_dir_all(&chunks).expect("mkdir");
    let blocked: Vec<String> = (0x80..=0xffu32).map(|b| format!("{b:02x}")).collect();
    for prefix in &blocked {
        std::fs::write(chunks.join(prefix), b"").expect("block");
    }
    let err = backup(vault, "vm1", &[&image], block_size(BS))
        .await
        .expect_err("upload fails");
    // Asked first (no index), the store's lookup fails; written at once, the chunk file.
    assert!(
        matches!(
            err,
            Error::Store(StoreError::Backend { .. } | StoreError::Io { .. })
        ),
        "{err}"
    );
    assert!(
        vault.vms().await.expect("vms").is_empty(),
        "no point is visible"
    );
    let landed = chunk_files(&dir.join("vault")).len();
    after_failure();

    for prefix in &blocked {
        std::fs::remove_file(chunks.join(prefix)).expect("unblock");
    }
    let report = backup(vault, "vm1", &[&image], block_size(BS))
        .await
        .expect("retry");
    let distinct: std::collections::HashSet<ChunkId> = image
        .content
        .chunks(BS as usize)
        .map(ChunkId::of)
        .filter(|id| !id.is_zero())
        .collect();
    assert_eq!(
        report.point.stats.chunks_stored as usize,
        distinct.len() - landed
    );
    assert_eq!(chunk_files(&dir.join("vault")).len(), distinct.len());
    let out = dir.join("out");
    restore(vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect("restore");
    assert!(std::fs::read(out.join("disk.img")).expect("read") == image.content);
}

#[test]
fn block_sizes_outside_the_range_are_refused_before_anything_runs() {
    for bad in [0u64, 1000, 32 << 10, 3 << 20, 32 << 20] {
        let err = BlockSize::new(bad).expect_err("bad size");
        assert!(err.to_string().contains(&bad.to_string()), "{err}");
    }
}
