//! The ranges of a disk that may have changed between two reflink clones of its image, found
//! by comparing where the file system keeps their data (FIEMAP), without reading it.
//!
//! When a backup clones an image, the clone shares every extent of the image; a later write
//! to the image goes to a new place (copy on write), leaving the clone's extents where they
//! were. So when the previous snapshot's clone (`parent`) and the new clone (`new`) keep the
//! same byte of the disk at the same physical address, nothing has written it in between: the
//! parent clone holds a reference to that place the whole time, so it can be neither freed
//! nor rewritten in place.
//!
//! # The guarantee
//!
//! [`changed_extents`] returns [`Changes::Dirty`] only when it can prove everything outside the
//! ranges it lists reads the same in both files. A range is clean when, for every byte:
//! - both files map it to the same physical address (the same place for the same logical
//!   offset, compared piece by piece: the two files' extents may start and end anywhere), in
//!   the same written or unwritten state; an unwritten (preallocated) extent is data for this
//!   purpose, so one shared by both files is clean and one against a hole is dirty; or
//! - both files have a hole there (both read zeros).
//!
//! Everything else is dirty: data against a hole (even an unwritten extent, which reads as
//! zeros), data at different places (a write, but also a defragmentation or anything else that
//! moved the data: those only cost reads). The ranges are ascending, merged, and within `new`'s
//! size. Seen on the loop-mounted file systems of the tests: btrfs shares a preallocated
//! extent with a clone (clean in the next comparison), XFS leaves a hole in the clone instead
//! (clean too); a defragmentation makes everything it moved dirty.
//!
//! Whenever the proof cannot be made the answer is [`Changes::Unknown`], with a [`Doubt`] that
//! says why, and the caller scans the whole disk: a file system without reflinks (where two
//! files never share a place, so the comparison would only say "everything"), files on two
//! devices (their addresses are not comparable; on btrfs two subvolumes count as two),
//! different sizes (the parent's block map describes a disk of another size, so the caller
//! could not use ranges anyway), an extent whose flags make its address meaningless
//! ([`ExtentFlags::placement_unknown`]: delalloc, encoded, inline...), an extent map that
//! cannot be read or is not in order.
//!
//! The comparison is as true as its inputs: neither file may be written between the parent's
//! point and the call (the snapshot tier's clones are never written), and `parent` must be the
//! very file whose content the parent point recorded. Two unrelated images of the same size are
//! compared correctly too: unrelated files share no place, so every data range is dirty.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use blockvault_source::ChangeHint;

use crate::{Error, Extent, ExtentFlags, FsKind, Result, extents_of};

/// What changed between two clones of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changes {
    /// The byte ranges of the new clone that may differ from the parent clone: ascending,
    /// merged, within the new clone's size. Everything else is identical.
    Dirty(Vec<Range<u64>>),
    /// Nothing can be proven: scan everything, and record why.
    Unknown(Doubt),
}

impl Changes {
    /// The bytes the dirty ranges cover (`None` when unknown).
    pub fn dirty_bytes(&self) -> Option<u64> {
        match self {
            Changes::Dirty(ranges) => Some(ranges.iter().map(|r| r.end - r.start).sum()),
            Changes::Unknown(_) => None,
        }
    }

    /// The hint for the scan of the new clone: its dirty ranges, or everything when unknown
    /// (the [`Doubt`] is then the caller's to record as the reason for the full scan).
    pub fn hint(&self) -> ChangeHint {
        match self {
            Changes::Dirty(ranges) => ChangeHint::Dirty(ranges.clone()),
            Changes::Unknown(_) => ChangeHint::Everything,
        }
    }
}

/// Which of the two clones an extent or an error belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Parent,
    New,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Parent => "the parent clone",
            Side::New => "the new clone",
        })
    }
}

/// Why the changed extents between two clones cannot be known: the caller scans the whole disk
/// and records this as the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Doubt {
    /// The file system has no reflinks: no two files share a place.
    NoReflinks { fs: FsKind },
    /// The two files are on different devices, whose addresses cannot be compared.
    DifferentDevices { parent: u64, new: u64 },
    /// The disk was resized between the two clones.
    SizeChanged { parent: u64, new: u64 },
    /// An extent's physical address does not say where its data is.
    PlacementUnknown {
        side: Side,
        logical: u64,
        flags: ExtentFlags,
    },
    /// Extents that overlap, are out of order or run past the last address: not a map to trust.
    BadMap { side: Side, logical: u64 },
    /// A file could not be opened, or its extent map read.
    Unreadable { side: Side, error: String },
}

impl fmt::Display for Doubt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Doubt::NoReflinks { fs } => write!(
                f,
                "{fs} has no reflinks (files never share extents), so extents say nothing about \
                 what changed"
            ),
            Doubt::DifferentDevices { parent, new } => write!(
                f,
                "the parent clone is on device {parent:#x} and the new clone on {new:#x}: \
                 physical addresses on different devices cannot be compared"
            ),
            Doubt::SizeChanged { parent, new } => write!(
                f,
                "the disk is {new} bytes, {parent} at the parent clone: a resized disk is \
                 scanned in full"
            ),
            Doubt::PlacementUnknown {
                side,
                logical,
                flags,
            } => write!(
                f,
                "{side}'s extent at byte {logical} has flags {:#x} (unknown, delalloc, encoded, \
                 inline, tail or not aligned): its physical address does not say where the data is",
                flags.0
            ),
            Doubt::BadMap { side, logical } => write!(
                f,
                "{side}'s extent map is out of order, overlaps itself or runs past the last \
                 address at byte {logical}"
            ),
            Doubt::Unreadable { side, error } => {
                write!(f, "cannot read {side}'s extent map: {error}")
            }
        }
    }
}

/// The ranges of `new` that may differ from `parent`, two reflink clones of one disk image on
/// the same file system (see the module docs for what is proven and when it is
/// [`Changes::Unknown`]).
///
/// An `Err` only when `new` itself cannot be opened or examined (the scan would fail too);
/// anything about `parent`, or that makes the comparison unprovable, is a [`Doubt`].
pub fn changed_extents(parent: &Path, new: &Path) -> Result<Changes> {
    let new_file = File::open(new).map_err(|e| Error::io(new, e))?;
    let new_meta = new_file.metadata().map_err(|e| Error::io(new, e))?;
    let unknown = |d| Ok(Changes::Unknown(d));
    let (parent_file, parent_meta) = match File::open(parent).and_then(|f| {
        let meta = f.metadata()?;
        Ok((f, meta))
    }) {
        Ok(opened) => opened,
        Err(e) => {
            return unknown(Doubt::Unreadable {
                side: Side::Parent,
                error: format!("{}: {e}", parent.display()),
            });
        }
    };
    if parent_meta.dev() != new_meta.dev() {
        return unknown(Doubt::DifferentDevices {
            parent: parent_meta.dev(),
            new: new_meta.dev(),
        });
    }
    let fs = FsKind::of(new)?;
    if !fs.may_reflink() {
        return unknown(Doubt::NoReflinks { fs });
    }
    if parent_meta.len() != new_meta.len() {
        return unknown(Doubt::SizeChanged {
            parent: parent_meta.len(),
            new: new_meta.len(),
        });
    }
    let map = |file: &File, path: &Path, side| {
        extents_of(file, path).map_err(|e| Doubt::Unreadable {
            side,
            error: e.to_string(),
        })
    };
    let compared = map(&parent_file, parent, Side::Parent).and_then(|theirs| {
        let ours = map(&new_file, new, Side::New)?;
        compare_extents(&theirs, parent_meta.len(), &ours, new_meta.len())
    });
    Ok(match compared {
        Ok(dirty) => Changes::Dirty(dirty),
        Err(doubt) => Changes::Unknown(doubt),
    })
}

/// The bytes of the file at `path` that the file system has allocated (written or unwritten
/// extents within its size): what the disk holds, to set against the bytes its changed extents
/// made a scan read.
pub fn allocated_bytes(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    Ok(extents_of(&file, path)?
        .iter()
        .map(|e| {
            e.logical
                .saturating_add(e.len)
                .min(size)
                .saturating_sub(e.logical)
        })
        .sum())
}

/// One extent, cut to the file's size: `start..end` of the file at `physical` (of `start`).
#[derive(Clone, Copy, Debug)]
struct Piece {
    start: u64,
    end: u64,
    physical: u64,
    unwritten: bool,
}

/// What one file holds at an offset: beyond its end, a hole, or data at a place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Beyond,
    Hole,
    Data { physical: u64, unwritten: bool },
}

/// The sweep behind [`changed_extents`], pure: the ranges of a file of `new_size` bytes with
/// the extents `new` that may differ from one of `parent_size` bytes with the extents `parent`
/// (both as FIEMAP gives them: ascending, not overlapping). What lies past `parent_size` is
/// dirty; extents past a file's size are ignored.
pub fn compare_extents(
    parent: &[Extent],
    parent_size: u64,
    new: &[Extent],
    new_size: u64,
) -> Result<Vec<Range<u64>>, Doubt> {
    let theirs = pieces(parent, parent_size, Side::Parent)?;
    let ours = pieces(new, new_size, Side::New)?;
    let (mut i, mut j) = (0, 0);
    let mut dirty: Vec<Range<u64>> = Vec::new();
    let mut pos = 0;
    while pos < new_size {
        let (a, a_next) = state_at(&theirs, &mut i, pos, parent_size);
        let (b, b_next) = state_at(&ours, &mut j, pos, new_size);
        let next = a_next.min(b_next).min(new_size);
        let clean = a != State::Beyond && a == b;
        if !clean {
            match dirty.last_mut() {
                Some(last) if last.end == pos => last.end = next,
                _ => dirty.push(pos..next),
            }
        }
        pos = next;
    }
    Ok(dirty)
}

/// `extents` cut to `size`, checked: in order, not overlapping, every place meaningful.
fn pieces(extents: &[Extent], size: u64, side: Side) -> Result<Vec<Piece>, Doubt> {
    let mut out: Vec<Piece> = Vec::with_capacity(extents.len());
    for e in extents {
        let end = e.logical.saturating_add(e.len).min(size);
        if e.logical >= end {
            continue; // empty, or past the end of the file: it holds nothing of the disk
        }
        if e.flags.placement_unknown() {
            return Err(Doubt::PlacementUnknown {
                side,
                logical: e.logical,
                flags: e.flags,
            });
        }
        let overflows = e.physical.checked_add(end - e.logical).is_none();
        if overflows || out.last().is_some_and(|last| e.logical < last.end) {
            return Err(Doubt::BadMap {
                side,
                logical: e.logical,
            });
        }
        out.push(Piece {
            start: e.logical,
            end,
            physical: e.physical,
            unwritten: e.flags.contains(ExtentFlags::UNWRITTEN),
        });
    }
    Ok(out)
}

/// What `pieces` hold at `pos` and where that ends, `*at` being the first piece that may
/// hold `pos` (moved on as `pos` grows).
fn state_at(pieces: &[Piece], at: &mut usize, pos: u64, size: u64) -> (State, u64) {
    if pos >= size {
        return (State::Beyond, u64::MAX);
    }
    while pieces.get(*at).is_some_and(|p| p.end <= pos) {
        *at += 1;
    }
    match pieces.get(*at) {
        Some(p) if p.start <= pos => (
            State::Data {
                physical: p.physical + (pos - p.start), // checked in `pieces`
                unwritten: p.unwritten,
            },
            p.end,
        ),
        Some(p) => (State::Hole, p.start),
        None => (State::Hole, size),
    }
}

#[cfg(test)]
mod tests;
