//! An in-place rollback of a disk image to a reflink clone of it: only the ranges whose
//! extents differ from the clone's are cloned back (`FICLONERANGE`), found by comparing both
//! files' extent maps (`FIEMAP`): a range is the same where both files have it at the same
//! physical place, or both have a hole. A disk rolled back to its newest clone shares most of
//! its extents with it, so the rollback costs what the VM wrote since, in milliseconds.

use std::fs::OpenOptions;
use std::ops::Range;
use std::path::Path;

use blockvault_capture::{Extent, clone_range, compare_extents, extents, extents_of, same_fs};

/// Rolls the file at `target` back to `clone` in place: sets it to the clone's size, then
/// clones back each range whose extents are not the clone's (block aligned; the last one to
/// the end of the file). Returns the ranges cloned. Both files must be on one file system.
pub(super) fn rollback(clone: &Path, target: &Path) -> blockvault_capture::Result<Vec<Range<u64>>> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| blockvault_capture::Error::Io { path, source }
    };
    if !same_fs(clone, target)? {
        // Physical addresses of two devices say nothing of each other.
        return Err(blockvault_capture::Error::Unsupported {
            src: clone.to_owned(),
            dst: target.to_owned(),
            why: "they are on different file systems".to_owned(),
        });
    }
    let size = std::fs::metadata(clone).map_err(io(clone))?.len();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(io(target))?;
    if file.metadata().map_err(io(target))?.len() != size {
        file.set_len(size).map_err(io(target))?;
    }
    let block = rustix::fs::fstatvfs(&file)
        .map(|s| s.f_bsize)
        .unwrap_or(4096)
        .max(512);
    let ranges = differing(&extents(clone)?, &extents_of(&file, target)?, size, block);
    for range in &ranges {
        clone_range(clone, target, range.start, range.end - range.start)?;
    }
    file.sync_data().map_err(io(target))?;
    Ok(ranges)
}

/// The byte ranges of a file of `size` bytes where the extents `ours` and `theirs` (both
/// files' maps) do not lie at the same place, as `capture::compare_extents` finds them (the
/// whole file when it cannot tell), aligned out to `block`, merged, the last one ending at
/// `size`.
fn differing(ours: &[Extent], theirs: &[Extent], size: u64, block: u64) -> Vec<Range<u64>> {
    let found = compare_extents(ours, size, theirs, size)
        .unwrap_or_else(|_| std::iter::once(0..size).collect());
    let mut ranges: Vec<Range<u64>> = Vec::with_capacity(found.len());
    for range in found {
        let start = range.start / block * block;
        let end = range.end.div_ceil(block).saturating_mul(block).min(size);
        match ranges.last_mut() {
            Some(last) if last.end >= start => last.end = last.end.max(end),
            _ => ranges.push(start..end),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use blockvault_capture::ExtentFlags;

    use super::*;

    fn at(logical: u64, physical: u64, len: u64) -> Extent {
        Extent {
            logical,
            physical,
            len,
            flags: ExtentFlags::default(),
        }
    }

    type Case<'a> = (&'a [Extent], &'a [Extent], u64, &'a [(u64, u64)]);

    #[test]
    fn the_differing_ranges_are_those_not_at_the_same_place() {
        let k = 4096;
        let unknown = Extent {
            flags: ExtentFlags(ExtentFlags::DELALLOC),
            ..at(0, 0, 4 * k)
        };
        // (clone's extents, target's extents, size, expected ranges as (start, end))
        let cases: &[Case] = &[
            // Identical: nothing.
            (
                &[at(0, 100 * k, 8 * k)],
                &[at(0, 100 * k, 8 * k)],
                8 * k,
                &[],
            ),
            // Both holes: nothing.
            (&[], &[], 8 * k, &[]),
            // One block rewritten elsewhere (copy on write), cut from a larger extent.
            (
                &[at(0, 100 * k, 8 * k)],
                &[
                    at(0, 100 * k, 3 * k),
                    at(3 * k, 500 * k, k),
                    at(4 * k, 104 * k, 4 * k),
                ],
                8 * k,
                &[(3 * k, 4 * k)],
            ),
            // Data in the target where the clone has a hole, and the reverse.
            (
                &[at(0, 100 * k, 2 * k)],
                &[at(0, 100 * k, k), at(4 * k, 7 * k, k)],
                6 * k,
                &[(k, 2 * k), (4 * k, 5 * k)],
            ),
            // An unknown placement differs even from itself; an unaligned tail is kept whole.
            (&[unknown], &[unknown], 4 * k - 100, &[(0, 4 * k - 100)]),
            // The same place at another offset is not the same.
            (&[at(0, 100 * k, k)], &[at(0, 101 * k, k)], k, &[(0, k)]),
            // Adjacent differing pieces merge; a partial block is aligned out.
            (
                &[at(0, 100 * k, 4 * k)],
                &[at(0, 9 * k, k), at(k, 50 * k, k), at(2 * k, 102 * k, 2 * k)],
                4 * k,
                &[(0, 2 * k)],
            ),
            (
                &[at(0, 100 * k, 4 * k)],
                &[
                    at(0, 100 * k, 2 * k),
                    at(2 * k, 7 * k, 100),
                    at(2 * k + 100, 102 * k + 100, 2 * k - 100),
                ],
                4 * k,
                &[(2 * k, 3 * k)],
            ),
        ];
        for (ours, theirs, size, expected) in cases {
            let got: Vec<(u64, u64)> = differing(ours, theirs, *size, k)
                .iter()
                .map(|r| (r.start, r.end))
                .collect();
            assert_eq!(&got, expected, "{ours:?} vs {theirs:?}");
        }
    }
}
