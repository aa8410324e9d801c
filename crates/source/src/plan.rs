use std::iter::Peekable;
use std::ops::Range;

use blockvault_core::{BlockMap, ChunkId};
use jiff::Timestamp;

use crate::{Block, BlockSource, ChangeHint, Chunker, DataBlocks, Error, FullScanReason, Result};

/// What the scan of one disk will read, decided before it reads anything: every allocated
/// block (a full scan), or only the allocated blocks a [`ChangeHint`] marks dirty, the rest of
/// the new map coming from the parent's map as it is.
///
/// Made by [`Chunker::plan`] for one source and used with that source: a plan knows how many
/// bytes its scan will read before it starts (for progress), and says why a hint was refused.
#[derive(Clone, Debug)]
pub struct ScanPlan<'p> {
    chunker: Chunker,
    size: u64,
    /// The blocks to read: the data blocks, or the data blocks that are dirty.
    read: DataBlocks,
    /// Bytes of all the data blocks, read or not: what a full scan would read.
    allocated: u64,
    /// For a plan that uses a hint: the map it builds on and its dirty blocks.
    base: Option<Base<'p>>,
    fallback: Option<FullScanReason>,
}

#[derive(Clone, Debug)]
struct Base<'p> {
    parent: &'p BlockMap,
    dirty: DataBlocks,
}

impl Chunker {
    /// Plans the scan of `source` given the map of its parent point and a change hint.
    ///
    /// A [`ChangeHint::Dirty`] hint is used only when it provably applies: there is a parent
    /// map, of this chunker's block size and of the source's size. Otherwise the plan is a full
    /// scan and [`ScanPlan::fallback`] says why. [`ChangeHint::Everything`] is a full scan and
    /// no fallback.
    pub fn plan<'p, S>(
        &self,
        source: &S,
        parent: Option<&'p BlockMap>,
        hint: &ChangeHint,
    ) -> Result<ScanPlan<'p>>
    where
        S: BlockSource + ?Sized,
    {
        let size = source.size();
        let data = self.data_blocks(source)?;
        let allocated = self.bytes_of(source, &data);
        let full = |fallback| ScanPlan {
            chunker: self.clone(),
            size,
            read: data.clone(),
            allocated,
            base: None,
            fallback,
        };
        let ChangeHint::Dirty(extents) = hint else {
            return Ok(full(None));
        };
        let Some(parent) = parent else {
            return Ok(full(Some(FullScanReason::NoParent)));
        };
        if parent.block_size() != self.block_size() {
            return Ok(full(Some(FullScanReason::BlockSizeChanged {
                parent: parent.block_size(),
                now: self.block_size(),
            })));
        }
        if parent.disk_size() != size {
            return Ok(full(Some(FullScanReason::SizeChanged {
                parent: parent.disk_size(),
                now: size,
            })));
        }
        let dirty = DataBlocks::covering(extents.iter().cloned(), self.block_size(), size);
        Ok(ScanPlan {
            chunker: self.clone(),
            size,
            read: data.intersection(&dirty),
            allocated,
            base: Some(Base { parent, dirty }),
            fallback: None,
        })
    }
}

impl ScanPlan<'_> {
    /// The blocks the scan reads, ascending.
    pub fn blocks(&self) -> &DataBlocks {
        &self.read
    }

    /// Bytes the scan reads: the blocks' lengths, the last one of the disk possibly short.
    pub fn bytes(&self) -> u64 {
        let bs = self.chunker.block_size().bytes();
        self.read
            .iter()
            .map(|i| (self.size.saturating_sub(i as u64 * bs)).min(bs))
            .sum()
    }

    /// Bytes of every data block of the source, read or not: what a full scan reads.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated
    }

    /// Whether the scan builds on the parent's map (reads only dirty blocks).
    pub fn is_incremental(&self) -> bool {
        self.base.is_some()
    }

    /// Why a dirty-extent hint was refused, if it was.
    pub fn fallback(&self) -> Option<&FullScanReason> {
        self.fallback.as_ref()
    }

    /// Reads the planned blocks of `source` (the source the plan was made for), calls `visit`
    /// with each one as [`Chunker::scan`] does, and returns the disk's new map stamped
    /// `created`.
    ///
    /// A full plan maps every block it did not read as zero. An incremental plan takes every
    /// block outside the dirty extents from the parent's map as it is, and every dirty block
    /// from what was read now: hashed if it holds data, zero if it now lies in a hole. The same
    /// consistency rules hold as for any scan (a short read or a size that changed is an
    /// error), and a source of another size than the plan's is
    /// [`Error::SizeChanged`].
    pub fn scan<S, E, F>(&self, source: &S, created: Timestamp, visit: F) -> Result<BlockMap, E>
    where
        S: BlockSource + ?Sized,
        E: From<Error> + Send,
        F: Fn(Block<'_>) -> Result<(), E> + Sync,
    {
        if source.size() != self.size {
            return Err(Error::SizeChanged {
                path: source.path().to_owned(),
                before: self.size,
                after: source.size(),
            }
            .into());
        }
        let Some(base) = &self.base else {
            return self.chunker.scan_blocks(source, &self.read, created, visit);
        };
        let mut merge = merge(base.parent, base.dirty.runs(), created);
        merge
            .map
            .reserve(base.parent.data_blocks() + self.read.len());
        self.chunker
            .read_blocks(source, &self.read, visit, |index, id| merge.put(index, id))?;
        Ok(merge.finish())
    }
}

/// Builds a new map in one ascending pass: fresh ids for the blocks read, zero for the other
/// dirty blocks, the parent's ids for every block outside the dirty runs. Each block is set
/// once and in order, so the map's lists only grow at their ends.
struct Merge<'p, I: Iterator<Item = (usize, ChunkId)>> {
    map: BlockMap,
    /// The parent's data blocks not yet passed.
    parent: Peekable<I>,
    /// The dirty runs not yet passed.
    dirty: &'p [Range<usize>],
}

/// A merge onto `parent`'s data blocks with the dirty runs `dirty`.
fn merge<'p>(
    parent: &'p BlockMap,
    dirty: &'p [Range<usize>],
    created: Timestamp,
) -> Merge<'p, impl Iterator<Item = (usize, ChunkId)> + 'p> {
    Merge {
        map: BlockMap::zeroed(parent.disk_size(), parent.block_size(), created),
        parent: parent.data().peekable(),
        dirty,
    }
}

impl<I: Iterator<Item = (usize, ChunkId)>> Merge<'_, I> {
    /// Block `index` (a dirty one, after every block put so far) is `id`.
    fn put(&mut self, index: usize, id: ChunkId) {
        self.keep_parent_before(index);
        self.map.set(index, id);
    }

    /// Copies the parent's clean data blocks before `end`.
    fn keep_parent_before(&mut self, end: usize) {
        while let Some(&(index, id)) = self.parent.peek() {
            if index >= end {
                break;
            }
            self.parent.next();
            if !self.is_dirty(index) {
                self.map.set(index, id);
            }
        }
    }

    /// Whether `index` is dirty; asked in ascending order, so passed runs are dropped.
    fn is_dirty(&mut self, index: usize) -> bool {
        while let Some((run, rest)) = self.dirty.split_first() {
            if run.end > index {
                return run.start <= index;
            }
            self.dirty = rest;
        }
        false
    }

    fn finish(mut self) -> BlockMap {
        self.keep_parent_before(usize::MAX);
        self.map.shrink_to_fit();
        self.map
    }
}
