//! The sweep on synthetic extent lists, against a byte-by-byte model.

use proptest::prelude::*;

use super::*;

const UNWRITTEN: u32 = ExtentFlags::UNWRITTEN;

fn ext(logical: u64, physical: u64, len: u64, flags: u32) -> Extent {
    Extent {
        logical,
        physical,
        len,
        flags: ExtentFlags(flags),
    }
}

fn dirty(parent: &[Extent], new: &[Extent], size: u64) -> Vec<Range<u64>> {
    compare_extents(parent, size, new, size).expect("a map to trust")
}

#[test]
fn the_same_places_cut_into_other_extents_are_clean() {
    let parent = [ext(0, 1000, 100, 0)];
    let new = [ext(0, 1000, 40, 0), ext(40, 1040, 60, 0)];
    assert_eq!(dirty(&parent, &new, 100), vec![]);
    assert_eq!(dirty(&new, &parent, 100), vec![]);
}

#[test]
fn a_part_moved_elsewhere_is_dirty_and_only_that_part() {
    let parent = [ext(0, 1000, 100, 0)];
    let new = [
        ext(0, 1000, 30, 0),
        ext(30, 5000, 20, 0),
        ext(50, 1050, 50, 0),
    ];
    assert_eq!(dirty(&parent, &new, 100), vec![30..50]);
}

#[test]
fn overlapping_extents_that_share_only_a_part_are_dirty_elsewhere() {
    // The parent's 20..80 at 2020 is the new clone's 20..60 (its extent 10..60 at 2010);
    // 60..80 lies elsewhere in the new clone.
    let parent = [ext(0, 700, 20, 0), ext(20, 2020, 60, 0)];
    let new = [ext(10, 2010, 50, 0), ext(60, 9000, 40, 0)];
    assert_eq!(dirty(&parent, &new, 100), vec![0..20, 60..100]);
}

#[test]
fn the_same_place_at_another_offset_is_dirty() {
    // Data moved within the file keeps its place but not its offset.
    let parent = [ext(0, 1000, 10, 0)];
    let new = [ext(10, 1000, 10, 0)];
    assert_eq!(dirty(&parent, &new, 30), vec![0..20]);
}

#[test]
fn holes_in_both_are_clean_and_a_hole_against_data_is_dirty() {
    let parent = [ext(0, 1000, 10, 0), ext(50, 1050, 10, 0)];
    let new = [ext(0, 1000, 10, 0), ext(20, 4000, 10, 0)];
    // 10..20 and 30..50: holes in both; 20..30 data against a hole; 50..60 a hole against data.
    assert_eq!(dirty(&parent, &new, 100), vec![20..30, 50..60]);
    assert_eq!(dirty(&[], &[], 100), vec![]);
    assert_eq!(dirty(&[], &new, 100), vec![0..10, 20..30]);
}

#[test]
fn unwritten_extents_are_data_by_their_place() {
    let shared = [ext(0, 1000, 10, UNWRITTEN)];
    assert_eq!(dirty(&shared, &shared, 10), vec![], "shared, same place");
    assert_eq!(dirty(&[], &shared, 10), vec![0..10], "against a hole");
    let written = [ext(0, 1000, 10, 0)];
    assert_eq!(
        dirty(&shared, &written, 10),
        vec![0..10],
        "same place, other state"
    );
}

#[test]
fn dirty_ranges_are_merged_and_cut_to_the_new_size() {
    let new = [ext(0, 1, 10, 0), ext(10, 500, 10, 0), ext(20, 900, 50, 0)];
    assert_eq!(dirty(&[], &new, 25), vec![0..25]);
}

#[test]
fn extents_past_the_end_are_ignored_even_with_meaningless_places() {
    // XFS keeps speculative preallocations past the end of a file.
    let parent = [ext(0, 1000, 10, 0), ext(10, 0, 4096, ExtentFlags::DELALLOC)];
    let new = [ext(0, 1000, 4096, 0)];
    assert_eq!(dirty(&parent, &new, 10), vec![]);
}

#[test]
fn a_size_difference_makes_the_tail_dirty() {
    let parent = [ext(0, 1000, 100, 0)];
    assert_eq!(
        compare_extents(&parent, 50, &parent, 100).expect("map"),
        vec![50..100],
        "past the parent's end, even where both map the same place"
    );
    assert_eq!(
        compare_extents(&[], 50, &[], 100).expect("map"),
        vec![50..100],
        "past the parent's end, even a hole"
    );
    assert_eq!(
        compare_extents(&parent, 100, &parent, 50).expect("map"),
        vec![],
        "nothing past the new end is reported"
    );
}

#[test]
fn a_flag_that_makes_the_place_meaningless_is_a_doubt() {
    for flag in [
        ExtentFlags::UNKNOWN,
        ExtentFlags::DELALLOC,
        ExtentFlags::ENCODED,
        ExtentFlags::DATA_ENCRYPTED,
        ExtentFlags::NOT_ALIGNED,
        ExtentFlags::DATA_INLINE,
        ExtentFlags::DATA_TAIL,
    ] {
        let odd = [ext(0, 1000, 10, 0), ext(10, 1010, 10, flag | UNWRITTEN)];
        let plain = [ext(0, 1000, 20, 0)];
        let doubt = compare_extents(&plain, 20, &odd, 20).expect_err("a doubt");
        assert_eq!(
            doubt,
            Doubt::PlacementUnknown {
                side: Side::New,
                logical: 10,
                flags: ExtentFlags(flag | UNWRITTEN)
            }
        );
        let text = compare_extents(&odd, 20, &plain, 20)
            .expect_err("a doubt")
            .to_string();
        assert!(
            text.contains("parent clone") && text.contains("byte 10"),
            "{text}"
        );
    }
    // The flags that say nothing about the place do not.
    let fine = ExtentFlags::LAST | ExtentFlags::MERGED | ExtentFlags::SHARED | UNWRITTEN;
    let map = [ext(0, 1000, 20, fine)];
    assert_eq!(dirty(&map, &map, 20), vec![]);
}

#[test]
fn a_map_out_of_order_or_overlapping_is_a_doubt() {
    let plain = [ext(0, 1000, 20, 0)];
    let overlapping = [ext(0, 1000, 10, 0), ext(5, 3000, 10, 0)];
    let backwards = [ext(10, 1010, 10, 0), ext(0, 1000, 10, 0)];
    let overflowing = [ext(0, u64::MAX - 5, 10, 0)];
    for (bad, at) in [
        (&overlapping[..], 5),
        (&backwards[..], 0),
        (&overflowing, 0),
    ] {
        assert_eq!(
            compare_extents(&plain, 20, bad, 20),
            Err(Doubt::BadMap {
                side: Side::New,
                logical: at
            })
        );
    }
}

#[test]
fn doubts_say_why() {
    let text = Doubt::SizeChanged {
        parent: 1 << 20,
        new: 2 << 20,
    }
    .to_string();
    assert!(
        text.contains("1048576") && text.contains("2097152"),
        "{text}"
    );
    let text = Doubt::NoReflinks { fs: FsKind::Ext4 }.to_string();
    assert!(
        text.contains("ext4") && text.contains("no reflinks"),
        "{text}"
    );
    let changes = Changes::Dirty(vec![0..4, 10..16]);
    assert_eq!(changes.dirty_bytes(), Some(10));
    assert_eq!(changes.hint(), ChangeHint::Dirty(vec![0..4, 10..16]));
    let unknown = Changes::Unknown(Doubt::NoReflinks { fs: FsKind::Tmpfs });
    assert_eq!(unknown.dirty_bytes(), None);
    assert_eq!(unknown.hint(), ChangeHint::Everything);
}

/// A file byte by byte: a hole, or data at a place, written or not.
type Model = Vec<Option<(u64, bool)>>;

/// The extents of `model`, each run of consecutive places cut where `cuts` says.
fn to_extents(model: &Model, cuts: &[bool]) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    for (i, byte) in model.iter().enumerate() {
        let Some((place, unwritten)) = *byte else {
            continue;
        };
        let i = i as u64;
        let flags = if unwritten { UNWRITTEN } else { 0 };
        let cut = cuts.get(i as usize).copied().unwrap_or(false);
        match out.last_mut() {
            Some(e)
                if !cut
                    && e.logical + e.len == i
                    && e.physical + e.len == place
                    && e.flags.0 == flags =>
            {
                e.len += 1
            }
            _ => out.push(ext(i, place, 1, flags)),
        }
    }
    out
}

/// A parent file, and a new one made from it by overwrites (new places), punched holes and
/// preallocations, and a resize.
fn parent_and_new() -> impl Strategy<Value = (Model, Model)> {
    let parent =
        prop::collection::vec(prop::option::weighted(0.8, (0u64..4, any::<bool>())), 0..60)
            .prop_map(|bytes| {
                // Runs of consecutive places, starting from a few bases.
                let mut place = 0;
                bytes
                    .into_iter()
                    .map(|b| {
                        b.map(|(jump, unwritten)| {
                            place += 1 + jump * 100;
                            (place, unwritten)
                        })
                    })
                    .collect::<Model>()
            });
    let edits = prop::collection::vec((0usize..70, 0usize..20, 0u8..3), 0..6);
    (parent, edits, 0usize..70).prop_map(|(parent, edits, size)| {
        let mut new = parent.clone();
        for (n, (at, len, kind)) in edits.into_iter().enumerate() {
            for i in at..(at + len).min(new.len()) {
                new[i] = match kind {
                    0 => None,
                    1 => Some((100_000 * (n as u64 + 1) + i as u64, false)),
                    _ => Some((200_000 * (n as u64 + 1) + i as u64, true)),
                };
            }
        }
        new.resize(size, None);
        (parent, new)
    })
}

proptest! {
    #[test]
    fn the_sweep_finds_exactly_the_bytes_whose_place_differs(
        (parent, new) in parent_and_new(),
        parent_cuts in prop::collection::vec(any::<bool>(), 70),
        new_cuts in prop::collection::vec(any::<bool>(), 70),
    ) {
        let got = compare_extents(
            &to_extents(&parent, &parent_cuts),
            parent.len() as u64,
            &to_extents(&new, &new_cuts),
            new.len() as u64,
        ).expect("a map to trust");
        let expected: Vec<bool> = (0..new.len())
            .map(|i| i >= parent.len() || parent[i] != new[i])
            .collect();
        let mut marked = vec![false; new.len()];
        for r in &got {
            for i in r.clone() {
                marked[i as usize] = true;
            }
        }
        prop_assert_eq!(marked, expected);
        // Ascending and merged: each range starts after the previous one's end.
        prop_assert!(got.windows(2).all(|w| w[0].end < w[1].start));
        prop_assert!(got.iter().all(|r| r.start < r.end && r.end <= new.len() as u64));
    }
}
