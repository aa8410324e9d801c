//! The source stage: the disks of a write session, opened before anything is written, and
//! each one's scan planned from its change hint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{BlockMap, BlockSize, ChunkCodec, DiskFormat, DiskName, RecoveryPoint};
use blockvault_source::{BlockSource, ChangeHint, Chunker, FullScanReason, RawFile, ScanPlan};

use crate::{Error, Result};

/// One disk of a write session, as the caller hands it over.
#[derive(Clone)]
pub struct DiskInput {
    /// The disk's image as the user names it: its file name names the disk, and its absolute
    /// path is recorded on the point.
    pub path: PathBuf,
    /// Where the blocks are read from: the image itself (`None`), or a capture of it taken at
    /// the point's instant (a reflink clone, an NBD export of a fleecing node).
    pub capture: Option<Arc<dyn BlockSource>>,
    /// Where the disk may have changed since the parent point. A [`ChangeHint::Dirty`] hint is
    /// used only when the write names its parent ([`ParentChoice::Point`](super::ParentChoice)):
    /// the hint's producer proved it against that point, and no other.
    pub hint: ChangeHint,
    /// Scan the whole disk even so, and count the blocks that changed where the hint said
    /// nothing did ([`DiskScan::hint_missed`]): the periodic check of change tracking. The
    /// point's map is the full scan's.
    pub check_hint: bool,
    /// The image's format, recorded on the point (a restore writes it by default). A format
    /// other than raw is read through its `capture` (QEMU's view of the guest's disk).
    pub format: DiskFormat,
}

impl DiskInput {
    /// The image at `path`, read as it is, every allocated block.
    pub fn file(path: impl AsRef<Path>) -> DiskInput {
        DiskInput {
            path: path.as_ref().to_owned(),
            capture: None,
            hint: ChangeHint::Everything,
            check_hint: false,
            format: DiskFormat::Raw,
        }
    }
}

impl From<PathBuf> for DiskInput {
    fn from(path: PathBuf) -> DiskInput {
        DiskInput::file(path)
    }
}

impl From<&Path> for DiskInput {
    fn from(path: &Path) -> DiskInput {
        DiskInput::file(path)
    }
}

impl fmt::Debug for DiskInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskInput")
            .field("path", &self.path)
            .field("capture", &self.capture.as_ref().map(|c| c.path()))
            .field("hint", &self.hint)
            .field("check_hint", &self.check_hint)
            .finish()
    }
}

/// How one disk of a point was read: the record a job keeps of where the changes came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskScan {
    pub disk: DiskName,
    /// Whether the map was built on the parent's map from the change hint (only the dirty
    /// blocks read), rather than from a read of every allocated block.
    pub incremental: bool,
    /// Why a dirty-extent hint was refused, when it was.
    pub fallback: Option<FullScanReason>,
    /// Bytes read and hashed.
    pub bytes_read: u64,
    /// Bytes of the allocated blocks: what a full scan reads.
    pub bytes_allocated: u64,
    /// How long the scan of this disk took: reading, hashing and encoding its new blocks
    /// (the Snapshot's work on the data, without its fixed costs).
    pub scan_time: std::time::Duration,
    /// For a disk whose hint was checked ([`DiskInput::check_hint`]): the blocks that changed
    /// where the hint said nothing did (0: the hint was sound).
    pub hint_missed: Option<u64>,
}

/// One disk being backed up.
pub(super) struct Source {
    pub(super) name: DiskName,
    /// The path as the user gave it (for messages) and made absolute (for the record).
    pub(super) given: PathBuf,
    pub(super) path: PathBuf,
    /// What is read: the image, or its capture.
    pub(super) image: Arc<dyn BlockSource>,
    /// Its block size, and the repository's codec for the ids.
    pub(super) chunker: Chunker,
    pub(super) hint: ChangeHint,
    pub(super) check_hint: bool,
    pub(super) format: DiskFormat,
}

/// The name a disk gets from its path: its file name.
pub fn disk_name(path: &Path) -> Result<DiskName> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    DiskName::new(file_name).map_err(|source| Error::DiskName {
        path: path.to_owned(),
        source,
    })
}

/// Opens every disk before anything is written, so a missing disk fails the backup up front.
/// A disk keeps the block size its parent point recorded unless `block_size` is given; its ids
/// are `codec`'s.
pub(super) fn open_sources(
    disks: &[DiskInput],
    block_size: Option<BlockSize>,
    parent: Option<&RecoveryPoint>,
    default_block_size: BlockSize,
    codec: &ChunkCodec,
) -> Result<Vec<Source>> {
    if disks.is_empty() {
        return Err(Error::NoDisks);
    }
    let mut sources: Vec<Source> = Vec::with_capacity(disks.len());
    for disk in disks {
        let path = &disk.path;
        let image: Arc<dyn BlockSource> = match &disk.capture {
            Some(capture) => Arc::clone(capture),
            None => Arc::new(RawFile::open(path)?),
        };
        let name = disk_name(path)?;
        if let Some(first) = sources.iter().find(|s| s.name == name) {
            return Err(Error::DuplicateDiskName {
                name,
                first: first.given.clone(),
                second: path.clone(),
            });
        }
        let block_size = block_size
            .or_else(|| {
                parent
                    .and_then(|p| p.disks.iter().find(|d| d.name == name))
                    .map(|d| d.block_size)
            })
            .unwrap_or(default_block_size);
        sources.push(Source {
            given: path.clone(),
            path: std::path::absolute(path).unwrap_or_else(|_| path.clone()),
            name,
            image,
            chunker: Chunker::new(block_size, codec.clone()),
            hint: disk.hint.clone(),
            check_hint: disk.check_hint,
            format: disk.format,
        });
    }
    Ok(sources)
}

impl Source {
    /// The scan of this disk: on `parent` (the parent point's map of it) when the hint applies.
    /// `parent_named` is whether the write named its parent point; a dirty hint given against
    /// no named parent is refused.
    pub(super) fn plan<'p>(
        &self,
        parent: Option<&'p BlockMap>,
        parent_named: bool,
    ) -> Result<(ScanPlan<'p>, Option<FullScanReason>)> {
        if self.checks_hint(parent_named) {
            let plan = self
                .chunker
                .plan(self.image.as_ref(), parent, &ChangeHint::Everything)?;
            return Ok((plan, None));
        }
        if !parent_named && matches!(self.hint, ChangeHint::Dirty(_)) {
            let plan = self
                .chunker
                .plan(self.image.as_ref(), parent, &ChangeHint::Everything)?;
            return Ok((plan, Some(FullScanReason::ParentNotNamed)));
        }
        let plan = self.chunker.plan(self.image.as_ref(), parent, &self.hint)?;
        let fallback = plan.fallback().cloned();
        Ok((plan, fallback))
    }

    /// Whether this disk is scanned in full to check its hint against the named parent.
    pub(super) fn checks_hint(&self, parent_named: bool) -> bool {
        self.check_hint && parent_named && matches!(self.hint, ChangeHint::Dirty(_))
    }

    /// What the scan of this disk did, by its plan.
    pub(super) fn record(&self, plan: &ScanPlan<'_>, fallback: Option<FullScanReason>) -> DiskScan {
        DiskScan {
            disk: self.name.clone(),
            incremental: plan.is_incremental(),
            fallback,
            bytes_read: plan.bytes(),
            bytes_allocated: plan.allocated_bytes(),
            scan_time: std::time::Duration::ZERO,
            hint_missed: None,
        }
    }
}
