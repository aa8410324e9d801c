use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use blockvault_core::{BlockSize, ChunkCodec, ChunkId};
use blockvault_source::{BlockSource, ChangeHint, Chunker, Error, Result};
use jiff::Timestamp;

const K64: u64 = 64 << 10;

/// A disk in memory that is not a file: it reports the extents it is told to, hands out at
/// most `max_read` bytes a call, and can be made to end early or change size.
struct Memory {
    data: Vec<u8>,
    extents: Vec<Range<u64>>,
    max_read: usize,
    /// Reads stop here, as if the disk were cut short.
    ends_at: u64,
    /// What `current_size` answers after the scan.
    size_now: AtomicU64,
}

impl Memory {
    fn new(data: Vec<u8>, extents: Vec<Range<u64>>) -> Memory {
        let size = data.len() as u64;
        Memory {
            data,
            extents,
            max_read: 4000,
            ends_at: size,
            size_now: AtomicU64::new(size),
        }
    }
}

impl BlockSource for Memory {
    fn path(&self) -> &Path {
        Path::new("memory")
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn current_size(&self) -> Result<u64> {
        Ok(self.size_now.load(Ordering::Relaxed))
    }

    fn data_extents(&self) -> Result<Vec<Range<u64>>> {
        Ok(self.extents.clone())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let start = offset.min(self.ends_at) as usize;
        let end = (offset + buf.len() as u64).min(self.ends_at) as usize;
        let n = (end - start).min(self.max_read);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }
}

fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8 | 1).collect()
}

fn bs() -> BlockSize {
    BlockSize::new(K64).expect("bs")
}

#[test]
fn a_source_that_is_not_a_file_scans_through_dyn_and_its_extents_decide_what_is_read() {
    let size = 6 * K64 + 10;
    let data = pattern(size as usize);
    // Block 2 is not reported: it is taken to be a hole, read or not.
    let memory = Memory::new(data.clone(), vec![0..2 * K64, 3 * K64..size + 5 * K64]);
    let source: Box<dyn BlockSource> = Box::new(memory);
    let map = Chunker::new(bs(), ChunkCodec::plain())
        .map(&source, Timestamp::UNIX_EPOCH)
        .expect("scan");
    let expected: Vec<ChunkId> = data
        .chunks(K64 as usize)
        .enumerate()
        .map(|(i, block)| {
            if i == 2 {
                ChunkId::ZERO
            } else {
                ChunkId::of(block)
            }
        })
        .collect();
    assert_eq!(map.iter().collect::<Vec<_>>(), expected);
    let dynamic: &dyn BlockSource = source.as_ref();
    let plan = Chunker::new(bs(), ChunkCodec::plain())
        .plan(
            dynamic,
            Some(&map),
            &ChangeHint::Dirty(vec![5 * K64..6 * K64 + 1]),
        )
        .expect("plan");
    assert_eq!(plan.blocks().iter().collect::<Vec<_>>(), vec![5, 6]);
    let again = plan
        .scan(dynamic, Timestamp::UNIX_EPOCH, |_| Ok::<(), Error>(()))
        .expect("scan");
    assert_eq!(again, map);
}

#[test]
fn a_source_that_ends_early_is_truncated_for_full_and_hinted_scans() {
    let size = 4 * K64;
    let mut memory = Memory::new(pattern(size as usize), vec![0..size]);
    let parent = Chunker::new(bs(), ChunkCodec::plain())
        .map(&memory, Timestamp::UNIX_EPOCH)
        .expect("scan");
    memory.ends_at = 3 * K64 + 123;
    let err = Chunker::new(bs(), ChunkCodec::plain())
        .map(&memory, Timestamp::UNIX_EPOCH)
        .expect_err("short");
    assert!(
        matches!(err, Error::Truncated { offset, size: s, .. } if offset == 3 * K64 + 123 && s == size),
        "{err}"
    );
    assert!(err.to_string().contains("memory"), "{err}");
    let plan = Chunker::new(bs(), ChunkCodec::plain())
        .plan(
            &memory,
            Some(&parent),
            &ChangeHint::Dirty(vec![3 * K64..3 * K64 + 1]),
        )
        .expect("plan");
    let err = plan
        .scan(&memory, Timestamp::UNIX_EPOCH, |_| Ok::<(), Error>(()))
        .expect_err("short");
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
}

#[test]
fn a_source_whose_size_changes_during_the_scan_yields_no_map() {
    let size = 4 * K64;
    let memory = Memory::new(pattern(size as usize), vec![0..size]);
    let parent = Chunker::new(bs(), ChunkCodec::plain())
        .map(&memory, Timestamp::UNIX_EPOCH)
        .expect("scan");
    for hint in [ChangeHint::Everything, ChangeHint::Dirty(vec![0..1])] {
        memory.size_now.store(size, Ordering::Relaxed);
        let plan = Chunker::new(bs(), ChunkCodec::plain())
            .plan(&memory, Some(&parent), &hint)
            .expect("plan");
        let err = plan
            .scan(&memory, Timestamp::UNIX_EPOCH, |block| {
                // The disk grows while block 0 is being read.
                if block.index == 0 {
                    memory.size_now.store(size + K64, Ordering::Relaxed);
                }
                Ok::<(), Error>(())
            })
            .expect_err("grown");
        assert!(
            matches!(err, Error::SizeChanged { before, after, .. } if before == size && after == size + K64),
            "{hint:?}: {err}"
        );
    }
}
