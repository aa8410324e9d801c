//! In-place restore: existing disks rolled back to a point, writing only the blocks that differ.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::RecoveryPoint;
use blockvault_source::RawFile;
use blockvault_store::Error as StoreError;
use blockvault_vault::{
    Error, NoProgress, PointSelector, RestoreReport, RestoreRequest, TransferOptions, Vault,
};

use crate::support::{Image, Write, backup, block_size, new_vault};

const BS: u64 = 64 << 10;

async fn restore_in_place(
    vault: &Vault,
    point: &RecoveryPoint,
    target: &Path,
) -> blockvault_vault::Result<RestoreReport> {
    let request = RestoreRequest {
        vm: point.vm.clone(),
        point: PointSelector::Id(point.id.to_string()),
        target: target.to_owned(),
        // Irrelevant in place.
        overwrite: false,
        in_place: true,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    vault.restore(&request, Arc::new(NoProgress)).await
}

/// Writes whole blocks `blocks` of `image` with pattern `kind`.
fn fill_blocks(image: &mut Image, blocks: impl IntoIterator<Item = u64>, kind: u8) {
    for block in blocks {
        image.apply(Write {
            offset: block * BS,
            len: BS as usize,
            kind,
        });
    }
}

/// The blocks in which `now`, set to `then`'s length (cut, or extended with zeros), differs
/// from `then`: what an in-place restore of `then` over `now` must change.
fn differing_blocks(then: &[u8], now: &[u8]) -> Vec<u64> {
    let mut now = now.to_vec();
    now.resize(then.len(), 0);
    then.chunks(BS as usize)
        .zip(now.chunks(BS as usize))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i as u64)
        .collect()
}

/// The chunk file holding block `index` of disk `disk` of `point`.
async fn chunk_file(
    vault: &Vault,
    dir: &Path,
    point: &RecoveryPoint,
    disk: usize,
    index: usize,
) -> PathBuf {
    let disk = &point.disks[disk];
    let map = vault
        .store()
        .get_map(&point.vm, &point.id, &disk.name, Some(&disk.map_digest))
        .await
        .expect("map");
    let hex = map.get(index).expect("a block of the map").to_hex();
    dir.join("vault/chunks").join(&hex[..2]).join(hex)
}

fn is_hole(path: &Path, block: u64) -> bool {
    let range = block * BS..(block + 1) * BS;
    RawFile::open(path)
        .expect("open")
        .data_extents()
        .expect("extents")
        .iter()
        .all(|e| e.end <= range.start || e.start >= range.end)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_place_rollback_writes_the_churn_not_the_disk_and_a_rerun_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    // Two disks, sizes not multiples of the block size: a grows after the point, b shrinks.
    let mut a = Image::create(dir.path().join("a.img"), (8 << 20) - 5000);
    let mut b = Image::create(dir.path().join("b.img"), (4 << 20) + 777);
    fill_blocks(&mut a, 0..40, 1);
    fill_blocks(&mut a, 60..70, 2);
    // Block 45 is data then zeros: once overwritten in full, its zero pages must be cleared.
    a.apply(Write {
        offset: 45 * BS,
        len: 10_000,
        kind: 3,
    });
    fill_blocks(&mut b, [0, 1, 2], 3);
    b.apply(Write {
        offset: (4 << 20) - 100,
        len: 877,
        kind: 4,
    });
    let (then_a, then_b) = (a.content.clone(), b.content.clone());
    let point = backup(&vault, "vm1", &[&a, &b], block_size(BS))
        .await
        .expect("backup")
        .point;

    // The churn: a few blocks changed in part, one zeroed, one hole filled, a grown and b shrunk.
    for block in [5u64, 20, 61] {
        a.apply(Write {
            offset: block * BS + 1000,
            len: 3000,
            kind: 6,
        });
    }
    fill_blocks(&mut a, [10], 0);
    fill_blocks(&mut a, [45, 50], 5);
    a.resize((9 << 20) + 1);
    a.apply(Write {
        offset: 8 << 20,
        len: 100_000,
        kind: 2,
    });
    b.resize((2 << 20) + 123);
    b.apply(Write {
        offset: BS,
        len: 10,
        kind: 0,
    });
    // A later point, as there would be before a rollback.
    backup(&vault, "vm1", &[&a, &b], block_size(BS))
        .await
        .expect("second backup");
    let expected_a = differing_blocks(&then_a, &a.content);
    let expected_b = differing_blocks(&then_b, &b.content);
    assert_eq!(expected_a, [5, 10, 20, 45, 50, 61]);
    assert_eq!(expected_b, [1, 63, 64]);

    let report = restore_in_place(&vault, &point, dir.path())
        .await
        .expect("restore in place");
    assert!(std::fs::read(&a.path).expect("a") == then_a, "a differs");
    assert!(std::fs::read(&b.path).expect("b") == then_b, "b differs");
    assert_eq!(report.disks.len(), 2);
    for (disk, expected, then) in [
        (&report.disks[0], &expected_a, &then_a),
        (&report.disks[1], &expected_b, &then_b),
    ] {
        assert_eq!(disk.path, dir.path().join(disk.name.as_str()));
        assert_eq!(disk.size, then.len() as u64);
        assert_eq!(disk.blocks, (then.len() as u64).div_ceil(BS));
        assert_eq!(disk.blocks_changed, expected.len() as u64, "{}", disk.name);
        let churn: u64 = expected.len() as u64 * BS;
        assert!(
            disk.bytes_written > 0 && disk.bytes_written <= churn,
            "{}: wrote {} for {churn} bytes of churn",
            disk.name,
            disk.bytes_written
        );
    }
    // Block 50 is a hole in the point: the data written there since is punched out again.
    assert!(is_hole(&a.path, 50), "block 50 of a.img still holds data");

    let again = restore_in_place(&vault, &point, dir.path())
        .await
        .expect("again");
    for disk in &again.disks {
        assert_eq!(
            (disk.blocks_changed, disk.bytes_written),
            (0, 0),
            "{}",
            disk.name
        );
    }
    assert!(std::fs::read(&a.path).expect("a") == then_a, "a differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_over_an_identical_disk_writes_nothing_and_does_not_touch_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let mut image = Image::create(dir.path().join("disk.img"), (2 << 20) + 10);
    fill_blocks(&mut image, [0, 7, 32], 2);
    let point = backup(&vault, "vm1", &[&image], block_size(BS))
        .await
        .expect("backup")
        .point;
    let modified = std::fs::metadata(&image.path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let report = restore_in_place(&vault, &point, dir.path())
        .await
        .expect("restore in place");
    let disk = &report.disks[0];
    assert_eq!((disk.blocks_changed, disk.bytes_written), (0, 0));
    assert_eq!(disk.blocks, 33);
    assert!(std::fs::read(&image.path).expect("read") == image.content);
    let after = std::fs::metadata(&image.path)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(after, modified, "the disk was touched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_disk_is_refused_before_any_disk_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let mut a = Image::create(dir.path().join("a.img"), 1 << 20);
    let mut b = Image::create(dir.path().join("b.img"), 1 << 20);
    fill_blocks(&mut a, [0, 1], 1);
    fill_blocks(&mut b, [2], 2);
    let point = backup(&vault, "vm1", &[&a, &b], block_size(BS))
        .await
        .expect("backup")
        .point;

    // The target holds a changed a.img of another size, and no b.img.
    let target = dir.path().join("target");
    std::fs::create_dir(&target).expect("mkdir");
    let mut changed = Image::create(target.join("a.img"), (1 << 20) + 4096);
    fill_blocks(&mut changed, [0, 5], 3);
    let err = restore_in_place(&vault, &point, &target)
        .await
        .expect_err("missing disk");
    assert!(
        matches!(&err, Error::Repo(blockvault_repo::Error::TargetMissing { path }) if *path == target.join("b.img")),
        "{err}"
    );
    assert!(err.to_string().contains("b.img"), "{err}");
    assert!(
        std::fs::read(&changed.path).expect("read") == changed.content,
        "a.img was written"
    );

    // A directory under a disk's name is not a disk either.
    std::fs::create_dir(target.join("b.img")).expect("mkdir");
    let err = restore_in_place(&vault, &point, &target)
        .await
        .expect_err("directory");
    assert!(
        matches!(&err, Error::Repo(blockvault_repo::Error::TargetNotAFile { path }) if *path == target.join("b.img")),
        "{err}"
    );
    assert!(
        std::fs::read(&changed.path).expect("read") == changed.content,
        "a.img was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_blocks_that_differ_are_fetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let mut image = Image::create(dir.path().join("disk.img"), 1 << 20);
    fill_blocks(&mut image, [0, 3, 9], 2);
    let then = image.content.clone();
    let point = backup(&vault, "vm1", &[&image], block_size(BS))
        .await
        .expect("backup")
        .point;
    // Blocks 3 and 9 are unchanged on disk: their chunks are never needed.
    for block in [3, 9] {
        let chunk = chunk_file(&vault, dir.path(), &point, 0, block).await;
        std::fs::remove_file(chunk).expect("delete chunk");
    }
    fill_blocks(&mut image, [0], 4);
    let report = restore_in_place(&vault, &point, dir.path())
        .await
        .expect("restore in place");
    assert_eq!(report.disks[0].blocks_changed, 1);
    assert_eq!(report.disks[0].bytes_written, BS);
    assert!(std::fs::read(&image.path).expect("read") == then);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_chunk_fails_naming_disk_and_offset_and_a_rerun_finishes_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let mut image = Image::create(dir.path().join("disk.img"), 1 << 20);
    fill_blocks(&mut image, [0, 3, 9], 2);
    let then = image.content.clone();
    let point = backup(&vault, "vm1", &[&image], block_size(BS))
        .await
        .expect("backup")
        .point;
    fill_blocks(&mut image, [0, 3, 9, 12], 5);

    let chunk = chunk_file(&vault, dir.path(), &point, 0, 3).await;
    let good = std::fs::read(&chunk).expect("read chunk");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunk)
        .and_then(|f| f.write_all_at(b"\xff\xfe\xfd", 200))
        .expect("corrupt");
    let err = restore_in_place(&vault, &point, dir.path())
        .await
        .expect_err("corrupt chunk");
    let Error::Repo(blockvault_repo::Error::InPlacePartial { disk, source }) = &err else {
        panic!("the failure says the disk was partly rewritten: {err}");
    };
    assert_eq!(disk.as_str(), "disk.img");
    assert!(
        matches!(
            &**source,
            blockvault_repo::Error::Block { disk, offset, source, .. }
                if disk.as_str() == "disk.img"
                    && *offset == 3 * BS
                    && matches!(**source, StoreError::ChunkCorrupt { .. })
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("disk.img"), "{message}");
    assert!(message.contains(&format!("offset {}", 3 * BS)), "{message}");
    assert!(message.contains("partly rewritten"), "{message}");
    // Block 3 was not written with anything unverified.
    let now = std::fs::read(&image.path).expect("read");
    let block3 = 3 * BS as usize..4 * BS as usize;
    assert!(
        now[block3.clone()] == image.content[block3],
        "block 3 changed"
    );

    // The interrupted restore left a mix; run again once the chunk is repaired.
    std::fs::write(&chunk, good).expect("repair");
    let report = restore_in_place(&vault, &point, dir.path())
        .await
        .expect("rerun");
    let changed = report.disks[0].blocks_changed;
    assert!((1..=4).contains(&changed), "rerun changed {changed} blocks");
    assert!(std::fs::read(&image.path).expect("read") == then);
}
