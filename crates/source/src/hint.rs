use std::fmt;
use std::ops::Range;

use blockvault_core::BlockSize;

/// What the caller knows about where a disk changed since its parent point, the point whose
/// block map the new one is built on.
///
/// A hint can only cost extra reads, never a wrong map: every block that overlaps a dirty
/// extent is read and hashed again, so an extent that reports more than what changed costs its
/// reads and nothing else. An extent that misses a write is what it must never do; where the
/// hint comes from (the parent's reflink clone, the QEMU dirty bitmap recorded for this disk) is
/// for its producer to prove before it hands the hint over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeHint {
    /// Nothing is known: read every allocated block.
    Everything,
    /// Only these byte ranges may differ from the parent point. They may come in any order,
    /// overlap, and start or end anywhere (each is rounded out to whole blocks); empty ranges
    /// add nothing and what lies past the disk's end is cut off. An empty list says nothing
    /// changed.
    Dirty(Vec<Range<u64>>),
}

/// Why a [`ChangeHint::Dirty`] hint was not applied and the disk was scanned in full: the
/// reason a job records next to its point, so a slow incremental can be explained.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullScanReason {
    /// There is no parent map to build on (a new disk, or a first backup).
    NoParent,
    /// The disk is scanned at another block size than its parent map's, so the parent's ids
    /// describe other blocks.
    BlockSizeChanged { parent: BlockSize, now: BlockSize },
    /// The disk was resized since its parent point.
    SizeChanged { parent: u64, now: u64 },
    /// The hint was given without naming the point it is relative to, so nothing proves it
    /// describes the changes since the parent the write chose.
    ParentNotNamed,
}

impl fmt::Display for FullScanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullScanReason::NoParent => {
                write!(f, "no parent map for this disk to apply changed extents to")
            }
            FullScanReason::BlockSizeChanged { parent, now } => write!(
                f,
                "block size is {now}, the parent map's was {parent}: changed extents do not apply"
            ),
            FullScanReason::SizeChanged { parent, now } => write!(
                f,
                "disk is {now} bytes, {parent} at the parent point: changed extents do not apply"
            ),
            FullScanReason::ParentNotNamed => write!(
                f,
                "changed extents were given without the parent point they follow"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_say_what_differs() {
        let bs = |b| BlockSize::new(b).expect("bs");
        let reason = FullScanReason::BlockSizeChanged {
            parent: bs(1 << 20),
            now: bs(4 << 20),
        };
        let text = reason.to_string();
        assert!(
            text.contains(&bs(1 << 20).to_string()) && text.contains(&bs(4 << 20).to_string()),
            "{text}"
        );
        let text = FullScanReason::SizeChanged {
            parent: 100,
            now: 200,
        }
        .to_string();
        assert!(text.contains("100") && text.contains("200"), "{text}");
        assert!(FullScanReason::NoParent.to_string().contains("no parent"));
    }
}
