//! QEMU dirty bitmaps as changed-block tracking: what blockvault names them, and when one is
//! trusted to say what changed since a point.
//!
//! Each disk carries one bitmap per snapshot point it follows, named
//! `blockvault-<point id>` ([`bitmap_name`]): the backup that makes point P adds
//! `blockvault-P` at P's instant, and the next backup reads only the blocks it marks, then
//! removes it once the next point is recorded. A bitmap is trusted ([`trust`]) only if it
//! exists under that name, is recording, is not inconsistent (a QEMU killed while it was open
//! leaves it so), and the disk's size and the bitmap's granularity are what they were.
//! Anything else is a full scan, with the [`Distrust`] as the reason.
//!
//! A qcow2 disk stores its bitmaps (persistent: they survive QEMU restarts and are read with
//! `qemu-img info` while the VM is stopped). A running VM's disk in another format (raw) can
//! only hold one in QEMU's memory: it is as true while that QEMU runs, and gone after a
//! restart, which makes it [`Distrust::Missing`] and the next backup a full scan. Over-reporting is harmless (every dirty block is re-read and
//! re-hashed); a bitmap that misses a write is not, hence the checks.
//!
//! Where the states come from is the caller's: `qemu-img info` for an image no QEMU has
//! open, QMP `query-named-block-nodes` for a running VM.

use blockvault_core::PointId;

/// The prefix of every bitmap blockvault adds; other bitmaps on a disk are never touched.
pub const BITMAP_PREFIX: &str = "blockvault-";

/// The granularity blockvault's bitmaps are made with: 64 KiB (qcow2's default cluster, and
/// the smallest block size a point uses).
pub const BITMAP_GRANULARITY: u32 = 64 << 10;

/// The name of the bitmap that follows `point`: `blockvault-<point id>`.
pub fn bitmap_name(point: &PointId) -> String {
    format!("{BITMAP_PREFIX}{point}")
}

/// The point a blockvault bitmap follows, from its name; `None` for any other bitmap.
pub fn point_of(bitmap: &str) -> Option<PointId> {
    bitmap.strip_prefix(BITMAP_PREFIX)?.parse().ok()
}

/// What QEMU says of one dirty bitmap of a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitmapState {
    pub name: String,
    /// Bytes per bit.
    pub granularity: u32,
    /// Whether it records writes (qcow2's `auto` flag; QMP's `recording`).
    pub recording: bool,
    /// Whether it is stored in the image (survives QEMU restarts).
    pub persistent: bool,
    /// Whether QEMU marks it inconsistent: left `in-use` in a qcow2 no QEMU has open (the
    /// QEMU that had it open died), or QMP's `inconsistent`.
    pub inconsistent: bool,
}

/// Why a bitmap is not trusted to say what changed since a point: the disk is scanned in full.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Distrust {
    #[error("the disk has no dirty bitmap {name} (removed, renamed, or never added)")]
    Missing { name: String },
    #[error("dirty bitmap {name} is not recording writes (disabled)")]
    NotRecording { name: String },
    #[error(
        "dirty bitmap {name} is inconsistent (the QEMU that had the disk open did not close it \
         cleanly)"
    )]
    Inconsistent { name: String },
    #[error("dirty bitmap {name} has granularity {found} bytes, not {expected}")]
    Granularity {
        name: String,
        found: u32,
        expected: u32,
    },
    #[error("the disk's size changed from {then} to {now} bytes since the parent point")]
    Resized { then: u64, now: u64 },
    #[error(
        "the disk is a block device, which others than this QEMU may write (a shared LUN, an \
         LVM merge): no dirty bitmap of it is trusted"
    )]
    Device,
}

/// The bitmap of `bitmaps` (a disk's) that says what changed since `parent`, if it is
/// trusted: named after `parent`, recording, consistent, at
/// [`BITMAP_GRANULARITY`], on a disk whose size is still `size_then` (the parent point's).
pub fn trust<'b>(
    bitmaps: &'b [BitmapState],
    parent: &PointId,
    size_then: u64,
    size_now: u64,
) -> Result<&'b BitmapState, Distrust> {
    let name = bitmap_name(parent);
    let bitmap = bitmaps
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| Distrust::Missing { name: name.clone() })?;
    if bitmap.inconsistent {
        return Err(Distrust::Inconsistent { name });
    }
    if !bitmap.recording {
        return Err(Distrust::NotRecording { name });
    }
    if bitmap.granularity != BITMAP_GRANULARITY {
        return Err(Distrust::Granularity {
            name,
            found: bitmap.granularity,
            expected: BITMAP_GRANULARITY,
        });
    }
    if size_then != size_now {
        return Err(Distrust::Resized {
            then: size_then,
            now: size_now,
        });
    }
    Ok(bitmap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(s: &str) -> PointId {
        s.parse().expect("point id")
    }

    fn good(name: &str) -> BitmapState {
        BitmapState {
            name: name.to_owned(),
            granularity: BITMAP_GRANULARITY,
            recording: true,
            persistent: true,
            inconsistent: false,
        }
    }

    #[test]
    fn names_round_trip_and_foreign_bitmaps_are_not_ours() {
        let p = point("20261207-165200-1a2b");
        assert_eq!(bitmap_name(&p), "blockvault-20261207-165200-1a2b");
        assert_eq!(point_of(&bitmap_name(&p)), Some(p));
        assert_eq!(point_of("backup-20261207"), None);
        assert_eq!(point_of("blockvault-not-a-point"), None);
    }

    #[test]
    fn only_the_parents_sound_bitmap_is_trusted() {
        let p = point("20261207-165200-1a2b");
        let other = point("20261206-165200-1a2b");
        let name = bitmap_name(&p);
        let ok = [good(&bitmap_name(&other)), good(&name)];
        assert_eq!(trust(&ok, &p, 1 << 30, 1 << 30).map(|b| &b.name), Ok(&name));
        // Held in a running QEMU's memory only (a raw disk's): as true while it runs.
        let in_memory = BitmapState {
            persistent: false,
            ..good(&name)
        };
        let trusted = trust(std::slice::from_ref(&in_memory), &p, 1, 1);
        assert_eq!(trusted.map(|b| &b.name), Ok(&name));

        type Expect = fn(&Distrust) -> bool;
        let cases: Vec<(BitmapState, Expect)> = vec![
            (
                BitmapState {
                    inconsistent: true,
                    ..good(&name)
                },
                |d| matches!(d, Distrust::Inconsistent { .. }),
            ),
            (
                BitmapState {
                    recording: false,
                    ..good(&name)
                },
                |d| matches!(d, Distrust::NotRecording { .. }),
            ),
            (
                BitmapState {
                    granularity: 4096,
                    ..good(&name)
                },
                |d| matches!(d, Distrust::Granularity { found: 4096, .. }),
            ),
        ];
        for (state, expected) in cases {
            let got =
                trust(std::slice::from_ref(&state), &p, 1 << 30, 1 << 30).expect_err("distrusted");
            assert!(expected(&got), "{state:?}: {got:?}");
            assert!(got.to_string().contains(&name), "{got}");
        }
        let missing = trust(&[good(&bitmap_name(&other))], &p, 1, 1).expect_err("missing");
        assert!(matches!(missing, Distrust::Missing { .. }), "{missing:?}");
        let resized = trust(&ok, &p, 1 << 30, 2 << 30).expect_err("resized");
        assert_eq!(
            resized,
            Distrust::Resized {
                then: 1 << 30,
                now: 2 << 30
            }
        );
    }
}
