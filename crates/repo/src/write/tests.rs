//! The write session's inputs: a change hint against a named parent, and a capture read in
//! place of the image.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{BlockSize, ChunkId, Consistency, RecoveryPoint};
use blockvault_source::{ChangeHint, FullScanReason, RawFile};

use super::*;
use crate::{NoProgress, PointReader};

const BS: usize = 64 << 10;
const BLOCKS: usize = 10;

fn write_image(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write image");
}

/// Ten blocks of data, each its own pattern.
fn first_image() -> Vec<u8> {
    (0..BLOCKS * BS)
        .map(|i| (i % 251) as u8 ^ (i / BS) as u8)
        .collect()
}

fn request(disks: Vec<DiskInput>) -> BackupRequest {
    BackupRequest {
        vm: "vm".parse().expect("vm"),
        disks,
        block_size: Some(BlockSize::new(BS as u64).expect("bs")),
        consistency: Consistency::CrashConsistent,
        capture: None,
        options: TransferOptions::default(),
        time: None,
        retain_until: None,
        id: None,
        vault: None,
    }
}

fn hinted(path: &Path, extents: Vec<std::ops::Range<u64>>) -> DiskInput {
    DiskInput {
        hint: ChangeHint::Dirty(extents),
        ..DiskInput::file(path)
    }
}

async fn write(repo: &Repository, disks: Vec<DiskInput>, parent: &ParentChoice) -> BackupReport {
    repo.write(&request(disks), parent, Arc::new(NoProgress), None)
        .await
        .expect("write")
}

async fn ids(repo: &Repository, point: &RecoveryPoint) -> Vec<Option<ChunkId>> {
    let reader: PointReader = repo.reader(point.clone()).await.expect("reader");
    let map = &reader.maps()[0];
    (0..map.len()).map(|i| map.get(i)).collect()
}

async fn bytes(repo: &Repository, point: &RecoveryPoint, len: usize) -> Vec<u8> {
    let reader = repo.reader(point.clone()).await.expect("reader");
    reader.read_at(0, 0, len).await.expect("read")
}

async fn setup(dir: &Path) -> (Repository, PathBuf, Vec<u8>, RecoveryPoint) {
    let repo = Repository::init_local(dir.join("repo"))
        .await
        .expect("repo");
    let path = dir.join("disk.img");
    let data = first_image();
    write_image(&path, &data);
    let first = write(&repo, vec![DiskInput::file(&path)], &ParentChoice::Nothing).await;
    (repo, path, data, first.point)
}

#[tokio::test]
async fn a_dirty_hint_against_a_named_parent_reads_only_dirty_blocks_and_maps_the_disk_in_full() {
    let dir = tempfile::tempdir().expect("tmp");
    let (repo, path, mut data, parent) = setup(dir.path()).await;
    // Block 2 changes in one byte, block 7 in its last byte, block 4 becomes zeros.
    data[2 * BS + 10] ^= 0xff;
    data[8 * BS - 1] ^= 0xff;
    data[4 * BS..5 * BS].fill(0);
    write_image(&path, &data);
    let extents = vec![
        2 * BS as u64 + 10..2 * BS as u64 + 11,
        8 * BS as u64 - 1..8 * BS as u64,
        4 * BS as u64..5 * BS as u64,
    ];
    let report = write(
        &repo,
        vec![hinted(&path, extents)],
        &ParentChoice::Point(Box::new(parent.clone())),
    )
    .await;
    let scan = &report.scans[0];
    assert!(scan.incremental, "{scan:?}");
    assert_eq!(scan.fallback, None);
    assert_eq!(scan.bytes_read, 3 * BS as u64, "blocks 2, 4 and 7 only");
    assert_eq!(scan.bytes_allocated, data.len() as u64);
    assert_eq!(report.point.stats.bytes_scanned, 3 * BS as u64);
    assert_eq!(report.point.parent.as_ref(), Some(&parent.id));

    // The same map as a full scan of the disk as it is now, and the same bytes.
    let full = write(&repo, vec![DiskInput::file(&path)], &ParentChoice::Nothing).await;
    assert_eq!(full.scans[0].bytes_read, data.len() as u64);
    assert_eq!(
        ids(&repo, &report.point).await,
        ids(&repo, &full.point).await
    );
    assert_eq!(bytes(&repo, &report.point, data.len()).await, data);
}

#[tokio::test]
async fn a_dirty_hint_without_a_named_parent_is_a_full_scan_that_says_why() {
    let dir = tempfile::tempdir().expect("tmp");
    let (repo, path, mut data, _) = setup(dir.path()).await;
    data[BS] ^= 1;
    data[9 * BS] ^= 1;
    write_image(&path, &data);
    // The hint misses block 9: were it used, block 9 would keep its old id.
    let report = write(
        &repo,
        vec![hinted(
            &path,
            std::iter::once(BS as u64..BS as u64 + 1).collect(),
        )],
        &ParentChoice::Newest,
    )
    .await;
    let scan = &report.scans[0];
    assert!(!scan.incremental);
    assert_eq!(scan.fallback, Some(FullScanReason::ParentNotNamed));
    assert_eq!(scan.bytes_read, scan.bytes_allocated);
    assert_eq!(bytes(&repo, &report.point, data.len()).await, data);
}

#[tokio::test]
async fn a_hint_on_a_resized_disk_is_a_full_scan_that_says_why() {
    let dir = tempfile::tempdir().expect("tmp");
    let (repo, path, mut data, parent) = setup(dir.path()).await;
    data.extend(std::iter::repeat_n(7u8, BS));
    write_image(&path, &data);
    let report = write(
        &repo,
        vec![hinted(&path, vec![])],
        &ParentChoice::Point(Box::new(parent)),
    )
    .await;
    let scan = &report.scans[0];
    assert!(!scan.incremental);
    assert!(
        matches!(scan.fallback, Some(FullScanReason::SizeChanged { .. })),
        "{scan:?}"
    );
    assert_eq!(bytes(&repo, &report.point, data.len()).await, data);
}

#[tokio::test]
async fn a_capture_is_what_is_read_and_the_image_is_what_is_recorded() {
    let dir = tempfile::tempdir().expect("tmp");
    let (repo, path, data, _) = setup(dir.path()).await;
    // The capture holds the disk at the point's instant; the image has moved on since.
    let frozen = dir.path().join("capture");
    write_image(&frozen, &data);
    let mut moved_on = data.clone();
    moved_on[0] ^= 0xff;
    write_image(&path, &moved_on);
    let capture = Arc::new(RawFile::open(&frozen).expect("capture"));
    let disk = DiskInput {
        capture: Some(capture),
        ..DiskInput::file(&path)
    };
    let report = write(&repo, vec![disk], &ParentChoice::Newest).await;
    let record = &report.point.disks[0];
    assert_eq!(record.name.as_str(), "disk.img");
    assert_eq!(
        Path::new(&record.source),
        std::path::absolute(&path).expect("absolute")
    );
    assert_eq!(bytes(&repo, &report.point, data.len()).await, data);
}

#[tokio::test]
async fn a_checked_hint_is_scanned_in_full_and_what_it_missed_is_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let (repo, path, mut data, parent) = setup(dir.path()).await;
    data[BS] ^= 1;
    data[9 * BS] ^= 1;
    write_image(&path, &data);
    let check = |extents| DiskInput {
        check_hint: true,
        ..hinted(&path, extents)
    };
    // Block 9 changed where the hint said nothing did.
    let missing = std::iter::once(BS as u64..BS as u64 + 1).collect();
    let report = write(
        &repo,
        vec![check(missing)],
        &ParentChoice::Point(Box::new(parent.clone())),
    )
    .await;
    let scan = &report.scans[0];
    assert!(!scan.incremental, "a checked disk is scanned in full");
    assert_eq!(scan.bytes_read, scan.bytes_allocated);
    assert_eq!(scan.hint_missed, Some(1));
    assert_eq!(bytes(&repo, &report.point, data.len()).await, data);

    let sound = vec![BS as u64..BS as u64 + 1, 9 * BS as u64..9 * BS as u64 + 1];
    let report = write(
        &repo,
        vec![check(sound)],
        &ParentChoice::Point(Box::new(parent)),
    )
    .await;
    assert_eq!(report.scans[0].hint_missed, Some(0));
}

#[tokio::test]
async fn a_point_takes_the_id_and_format_its_caller_chose() {
    let dir = tempfile::tempdir().expect("tmp");
    let (repo, path, _, first) = setup(dir.path()).await;
    assert_eq!(
        first.disks[0].format,
        blockvault_core::DiskFormat::Raw,
        "a raw image records raw"
    );
    let chosen = PointId::generate(Timestamp::now(), b"chosen");
    let request = BackupRequest {
        id: Some(chosen.clone()),
        ..request(vec![DiskInput {
            format: blockvault_core::DiskFormat::Qcow2,
            ..DiskInput::file(&path)
        }])
    };
    let report = repo
        .write(&request, &ParentChoice::Newest, Arc::new(NoProgress), None)
        .await
        .expect("write");
    assert_eq!(report.point.id, chosen);
    assert_eq!(
        report.point.disks[0].format,
        blockvault_core::DiskFormat::Qcow2
    );
    let read = repo
        .latest_point(&"vm".parse().expect("vm"))
        .await
        .expect("read back")
        .expect("a point");
    assert_eq!(read.id, chosen);
    assert_eq!(read.disks[0].format, blockvault_core::DiskFormat::Qcow2);
}
