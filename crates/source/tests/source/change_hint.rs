use std::ops::Range;
use std::sync::Mutex;

use blockvault_core::{BlockMap, BlockSize, ChunkCodec, ChunkId};
use blockvault_source::{ChangeHint, Chunker, DataBlocks, Error, FullScanReason, RawFile};
use jiff::Timestamp;
use proptest::prelude::*;

use crate::fixtures::{Change, Disk};

const K64: u64 = 64 << 10;

fn bs(bytes: u64) -> BlockSize {
    BlockSize::new(bytes).expect("block size")
}

fn full_map(chunker: &Chunker, disk: &Disk) -> BlockMap {
    let image = RawFile::open(&disk.path).expect("open");
    chunker
        .map(&image, Timestamp::UNIX_EPOCH)
        .expect("full scan")
}

/// The map built from `parent` and `hint`, the blocks its scan visited, and the plan's
/// verdict.
fn hinted_map(
    chunker: &Chunker,
    disk: &Disk,
    parent: &BlockMap,
    hint: &ChangeHint,
) -> (BlockMap, Vec<usize>, bool) {
    let image = RawFile::open(&disk.path).expect("open");
    let plan = chunker.plan(&image, Some(parent), hint).expect("plan");
    let seen = Mutex::new(Vec::new());
    let map = plan
        .scan(&image, Timestamp::UNIX_EPOCH, |block| {
            seen.lock().expect("lock").push(block.index);
            Ok::<(), Error>(())
        })
        .expect("hinted scan");
    let mut seen = seen.into_inner().expect("lock");
    seen.sort_unstable();
    assert_eq!(plan.blocks().iter().collect::<Vec<_>>(), seen);
    (map, seen, plan.is_incremental())
}

/// The blocks that overlap any of `extents` in a `size`-byte disk, the slow way.
fn blocks_touched(extents: &[Range<u64>], block_size: u64, size: u64) -> Vec<usize> {
    let blocks = block_size_blocks(size, block_size);
    (0..blocks)
        .filter(|&b| {
            let (start, end) = (
                b as u64 * block_size,
                ((b as u64 + 1) * block_size).min(size),
            );
            extents.iter().any(|e| e.start < end && start < e.end)
        })
        .collect()
}

fn block_size_blocks(size: u64, block_size: u64) -> usize {
    size.div_ceil(block_size) as usize
}

/// An offset anywhere in the disk, or near its end (where the short last block is).
fn offset(size: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        0..size,
        (0..3 * K64).prop_map(move |back| size.saturating_sub(back)),
    ]
}

fn change(size: u64) -> impl Strategy<Value = Change> {
    (offset(size), 1u64..200_000, any::<u8>(), 0u8..10).prop_map(|(offset, len, byte, kind)| {
        match kind {
            0 => Change::Zero { offset, len },
            1 | 2 => Change::Punch { offset, len },
            _ => Change::Write { offset, len, byte },
        }
    })
}

/// A disk of 1 byte to 2 MiB, its parent state (random writes), random changes since, and
/// extra extents (anywhere, past the end too) a hint may report beyond the changes.
fn case() -> impl Strategy<Value = (u32, u64, Vec<Change>, Vec<Change>, Vec<Range<u64>>)> {
    (16u32..=17, 1u64..(2 << 20)).prop_flat_map(|(shift, size)| {
        let base = proptest::collection::vec(
            (0..size, 1u64..300_000, 1u8..=255).prop_map(|(offset, len, byte)| Change::Write {
                offset,
                len,
                byte,
            }),
            0..6,
        );
        let churn = proptest::collection::vec(change(size), 0..6);
        let extra = proptest::collection::vec(
            (offset(size), 0u64..400_000).prop_map(|(o, len)| o..o + len),
            0..5,
        );
        (Just(shift), Just(size), base, churn, extra)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_hint_that_covers_every_change_builds_the_full_scans_map(
        (shift, size, base, churn, extra) in case()
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let chunker = Chunker::new(bs(1 << shift), ChunkCodec::plain());
        let mut disk = Disk::sparse(dir.path(), "d.img", size);
        for &c in &base {
            disk.apply(c);
        }
        let parent = full_map(&chunker, &disk);
        for &c in &churn {
            disk.apply(c);
        }
        let full = full_map(&chunker, &disk);
        // Exactly the changed ranges, unaligned, in the order they happened.
        let exact: Vec<Range<u64>> = churn.iter().map(|c| c.range(size)).collect();
        let (map, seen, incremental) =
            hinted_map(&chunker, &disk, &parent, &ChangeHint::Dirty(exact.clone()));
        prop_assert!(incremental);
        prop_assert_eq!(&map, &full);
        // Only dirty blocks are read.
        let dirty = blocks_touched(&exact, 1 << shift, size);
        prop_assert!(seen.iter().all(|b| dirty.contains(b)), "{:?} outside {:?}", seen, dirty);
        // More than what changed, overlapping, out of order, past the end: the same map.
        let mut more: Vec<Range<u64>> = extra.clone();
        more.extend(exact.iter().rev().cloned());
        more.extend(exact.iter().map(|r| r.start / 2..r.end));
        let (map, _, incremental) = hinted_map(&chunker, &disk, &parent, &ChangeHint::Dirty(more));
        prop_assert!(incremental);
        prop_assert_eq!(&map, &full);
        // The change ranges as they were asked for, before clamping to the disk.
        let raw: Vec<Range<u64>> = churn
            .iter()
            .map(|c| match *c {
                Change::Write { offset, len, .. }
                | Change::Zero { offset, len }
                | Change::Punch { offset, len } => offset..offset + len,
            })
            .collect();
        let (map, _, _) = hinted_map(&chunker, &disk, &parent, &ChangeHint::Dirty(raw));
        prop_assert_eq!(&map, &full);
    }

    #[test]
    fn everything_is_the_full_scan_whatever_the_parent(
        (shift, size, base, churn, _extra) in case()
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let chunker = Chunker::new(bs(1 << shift), ChunkCodec::plain());
        let mut disk = Disk::sparse(dir.path(), "d.img", size);
        for &c in &base {
            disk.apply(c);
        }
        let parent = full_map(&chunker, &disk);
        for &c in &churn {
            disk.apply(c);
        }
        let (map, _, incremental) = hinted_map(&chunker, &disk, &parent, &ChangeHint::Everything);
        prop_assert!(!incremental);
        prop_assert_eq!(map, full_map(&chunker, &disk));
    }
}

#[test]
fn an_empty_hint_reads_nothing_and_keeps_the_parent_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chunker = Chunker::new(bs(K64), ChunkCodec::plain());
    let mut disk = Disk::sparse(dir.path(), "d.img", 10 * K64 + 7);
    disk.apply(Change::Write {
        offset: K64 - 3,
        len: 5 * K64,
        byte: 9,
    });
    let parent = full_map(&chunker, &disk);
    let (map, seen, incremental) =
        hinted_map(&chunker, &disk, &parent, &ChangeHint::Dirty(Vec::new()));
    assert!(incremental);
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(map, parent);
    // Empty and past-the-end extents are as good as none.
    let reversed = Range { start: 5, end: 2 };
    let nothing = ChangeHint::Dirty(vec![3 * K64..3 * K64, 11 * K64..12 * K64, reversed]);
    let (map, seen, _) = hinted_map(&chunker, &disk, &parent, &nothing);
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(map, parent);
}

/// The property tests above can fail: a hint that misses a write keeps the parent's stale id,
/// which is why a hint's provenance must be proven before it is used.
#[test]
fn a_hint_that_misses_a_write_keeps_the_stale_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chunker = Chunker::new(bs(K64), ChunkCodec::plain());
    let mut disk = Disk::sparse(dir.path(), "d.img", 8 * K64);
    disk.apply(Change::Write {
        offset: 0,
        len: 8 * K64,
        byte: 1,
    });
    let parent = full_map(&chunker, &disk);
    disk.apply(Change::Write {
        offset: 3 * K64 + 10,
        len: 10,
        byte: 200,
    });
    let full = full_map(&chunker, &disk);
    let (map, seen, _) = hinted_map(
        &chunker,
        &disk,
        &parent,
        &ChangeHint::Dirty(vec![5 * K64..5 * K64 + 1]),
    );
    assert_eq!(seen, vec![5]);
    assert_ne!(map, full);
    assert_eq!(map.get(3), parent.get(3));
    let (map, seen, _) = hinted_map(
        &chunker,
        &disk,
        &parent,
        &ChangeHint::Dirty(vec![4 * K64 - 1..4 * K64 + 1]),
    );
    assert_eq!(seen, vec![3, 4]);
    assert_eq!(map, full);
}

#[test]
fn dirty_blocks_that_became_holes_are_zero_without_a_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chunker = Chunker::new(bs(K64), ChunkCodec::plain());
    let mut disk = Disk::sparse(dir.path(), "d.img", 16 * K64);
    disk.apply(Change::Write {
        offset: 0,
        len: 16 * K64,
        byte: 1,
    });
    let parent = full_map(&chunker, &disk);
    disk.apply(Change::Punch {
        offset: 4 * K64,
        len: 4 * K64,
    });
    let full = full_map(&chunker, &disk);
    assert_eq!(full.get(5), Some(ChunkId::ZERO));
    let (map, _, _) = hinted_map(
        &chunker,
        &disk,
        &parent,
        &ChangeHint::Dirty(vec![4 * K64..8 * K64]),
    );
    assert_eq!(map, full);
}

#[test]
fn a_hint_that_does_not_apply_is_a_full_scan_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chunker = Chunker::new(bs(K64), ChunkCodec::plain());
    let mut disk = Disk::sparse(dir.path(), "d.img", 8 * K64);
    disk.apply(Change::Write {
        offset: 100,
        len: 3 * K64,
        byte: 1,
    });
    let parent = full_map(&chunker, &disk);
    let hint = ChangeHint::Dirty(vec![0..1]);
    let verdict = |chunker: &Chunker, disk: &Disk, parent: Option<&BlockMap>| {
        let image = RawFile::open(&disk.path).expect("open");
        let plan = chunker.plan(&image, parent, &hint).expect("plan");
        assert!(!plan.is_incremental());
        let map = plan
            .scan(&image, Timestamp::UNIX_EPOCH, |_| Ok::<(), Error>(()))
            .expect("scan");
        assert_eq!(map, full_map(chunker, disk), "a full scan");
        plan.fallback().cloned()
    };
    assert_eq!(
        verdict(&chunker, &disk, None),
        Some(FullScanReason::NoParent)
    );
    assert_eq!(
        verdict(
            &Chunker::new(bs(2 * K64), ChunkCodec::plain()),
            &disk,
            Some(&parent)
        ),
        Some(FullScanReason::BlockSizeChanged {
            parent: bs(K64),
            now: bs(2 * K64),
        })
    );
    disk.resize(8 * K64 + 1);
    assert_eq!(
        verdict(&chunker, &disk, Some(&parent)),
        Some(FullScanReason::SizeChanged {
            parent: 8 * K64,
            now: 8 * K64 + 1,
        })
    );
    // Everything asks for no hint: no fallback to report.
    let image = RawFile::open(&disk.path).expect("open");
    let plan = chunker
        .plan(&image, Some(&parent), &ChangeHint::Everything)
        .expect("plan");
    assert_eq!(plan.fallback(), None);
    assert!(!plan.is_incremental());
}

#[test]
fn a_plan_counts_the_bytes_it_reads_and_refuses_a_source_of_another_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chunker = Chunker::new(bs(K64), ChunkCodec::plain());
    let size = 4 * K64 + 100;
    let mut disk = Disk::sparse(dir.path(), "d.img", size);
    disk.apply(Change::Write {
        offset: 0,
        len: size,
        byte: 1,
    });
    let parent = full_map(&chunker, &disk);
    let image = RawFile::open(&disk.path).expect("open");
    let hint = ChangeHint::Dirty(vec![K64..K64 + 1, size - 1..size]);
    let plan = chunker.plan(&image, Some(&parent), &hint).expect("plan");
    assert_eq!(plan.bytes(), K64 + 100);
    let data: DataBlocks = chunker.data_blocks(&image).expect("data");
    assert_eq!(plan.allocated_bytes(), size, "every block holds data");
    assert_eq!(plan.allocated_bytes(), chunker.bytes_of(&image, &data));
    assert_eq!(
        chunker
            .plan(&image, None, &ChangeHint::Everything)
            .expect("plan")
            .bytes(),
        chunker.bytes_of(&image, &data)
    );
    disk.resize(size + 1);
    let grown = RawFile::open(&disk.path).expect("open");
    let err = plan
        .scan(&grown, Timestamp::UNIX_EPOCH, |_| Ok::<(), Error>(()))
        .expect_err("another size");
    assert!(
        matches!(err, Error::SizeChanged { before, after, .. } if before == size && after == size + 1),
        "{err}"
    );
}
