//! Random sparse images with random churn, backed up generation after generation at several
//! block sizes: every point restores byte for byte, and each incremental stores exactly the
//! blocks that changed.

use std::collections::HashSet;

use blockvault_core::{BlockSize, ChunkId};
use blockvault_vault::PointSelector;
use proptest::prelude::*;

use crate::support::{Image, Write, backup, block_size, new_vault, restore};

fn write_strategy() -> impl Strategy<Value = Write> {
    (any::<u64>(), 1usize..300_000, 0u8..6).prop_map(|(offset, len, kind)| Write {
        offset,
        len,
        kind,
    })
}

#[derive(Clone, Debug)]
struct Generation {
    writes: Vec<Write>,
    /// Grow or shrink the disk by this many bytes before the writes.
    resize: Option<i64>,
}

fn generation_strategy() -> impl Strategy<Value = Generation> {
    (
        proptest::collection::vec(write_strategy(), 0..6),
        proptest::option::weighted(0.2, -300_000i64..600_000),
    )
        .prop_map(|(writes, resize)| Generation { writes, resize })
}

/// Bytes and distinct non-zero contents of the blocks of `after` that differ from the block at
/// the same position of `before` (as the block map diff compares them). A block whose length
/// changed with a resize is a different block, even when it is a prefix of the old one.
fn churn(before: &[u8], after: &[u8], bs: BlockSize) -> (u64, HashSet<ChunkId>) {
    let old: Vec<&[u8]> = before.chunks(bs.as_usize()).collect();
    let mut bytes = 0;
    let mut ids = HashSet::new();
    for (i, block) in after.chunks(bs.as_usize()).enumerate() {
        let id = ChunkId::of(block);
        if !id.is_zero() && old.get(i).copied() != Some(block) {
            bytes += block.len() as u64;
            ids.insert(id);
        }
    }
    (bytes, ids)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_point_restores_byte_for_byte(
        shift in prop::sample::select(vec![16u32, 17, 18]),
        size in 1u64..(3 << 20),
        generations in proptest::collection::vec(generation_strategy(), 1..4),
    ) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let bs = block_size(1 << shift);
            let vault = new_vault(dir.path()).await;
            let mut image = Image::create(dir.path().join("disk.img"), size);
            let mut seen: HashSet<ChunkId> = HashSet::new();
            let mut taken = Vec::new();
            for generation in &generations {
                let before = image.content.clone();
                if let Some(delta) = generation.resize {
                    image.resize((image.size() as i64 + delta).max(0) as u64);
                }
                for w in &generation.writes {
                    image.apply(*w);
                }
                let report = backup(&vault, "vm1", &[&image], bs).await.expect("backup");
                let stats = &report.point.stats;
                let (changed, ids) = churn(&before, &image.content, bs);
                prop_assert_eq!(stats.bytes_changed, changed, "bytes changed");
                let new_ids: HashSet<ChunkId> = ids.difference(&seen).copied().collect();
                prop_assert_eq!(stats.chunks_stored, new_ids.len() as u64, "chunks stored");
                seen.extend(image.content.chunks(bs.as_usize()).map(ChunkId::of).filter(|id| !id.is_zero()));
                taken.push((report.point.id.clone(), image.content.clone()));
            }
            for (n, (id, content)) in taken.iter().enumerate() {
                let out = dir.path().join(format!("restore-{n}"));
                restore(&vault, "vm1", PointSelector::Id(id.to_string()), &out).await.expect("restore");
                let restored = std::fs::read(out.join("disk.img")).expect("read restored");
                prop_assert!(restored == *content, "point {} of {} differs", n, taken.len());
            }
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restored_images_stay_sparse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let mut image = Image::create(dir.path().join("big.img"), 256 << 20);
    image.apply(Write {
        offset: 1 << 20,
        len: 3 << 20,
        kind: 1,
    });
    image.apply(Write {
        offset: 200 << 20,
        len: 100_000,
        kind: 2,
    });
    backup(&vault, "vm1", &[&image], BlockSize::DEFAULT)
        .await
        .expect("backup");
    let out = dir.path().join("out");
    restore(&vault, "vm1", PointSelector::Latest, &out)
        .await
        .expect("restore");
    let restored = out.join("big.img");
    let meta = std::fs::metadata(&restored).expect("meta");
    assert_eq!(meta.len(), 256 << 20);
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(
        allocated < 8 << 20,
        "restored image allocates {allocated} bytes"
    );
    assert!(std::fs::read(&restored).expect("read") == image.content);
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_disk_points_restore_every_disk_and_dedupe_across_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let bs = block_size(64 << 10);
    let mut a = Image::create(dir.path().join("a.img"), 1 << 20);
    let mut b = Image::create(dir.path().join("b.img"), 2 << 20);
    // The same 64 KiB of text at block-aligned offsets of both disks: stored once.
    a.apply(Write {
        offset: 0,
        len: 64 << 10,
        kind: 3,
    });
    b.apply(Write {
        offset: 0,
        len: 64 << 10,
        kind: 3,
    });
    b.apply(Write {
        offset: 1 << 20,
        len: 64 << 10,
        kind: 4,
    });
    let report = backup(&vault, "vm2", &[&a, &b], bs).await.expect("backup");
    assert_eq!(report.point.disks.len(), 2);
    assert_eq!(
        report.point.stats.chunks_stored, 2,
        "shared block stored once"
    );
    let out = dir.path().join("out");
    restore(&vault, "vm2", PointSelector::Latest, &out)
        .await
        .expect("restore");
    assert!(std::fs::read(out.join("a.img")).expect("a") == a.content);
    assert!(std::fs::read(out.join("b.img")).expect("b") == b.content);
}

#[tokio::test(flavor = "multi_thread")]
async fn points_are_picked_by_time_id_and_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = new_vault(dir.path()).await;
    let bs = block_size(64 << 10);
    let mut image = Image::create(dir.path().join("d.img"), 1 << 20);
    image.apply(Write {
        offset: 0,
        len: 10,
        kind: 1,
    });
    let first = backup(&vault, "vm3", &[&image], bs)
        .await
        .expect("backup")
        .point;
    image.apply(Write {
        offset: 0,
        len: 10,
        kind: 2,
    });
    let second = backup(&vault, "vm3", &[&image], bs)
        .await
        .expect("backup")
        .point;

    let vm = crate::support::vm("vm3");
    assert_eq!(
        vault
            .resolve(&vm, &PointSelector::Latest)
            .await
            .expect("latest")
            .id,
        second.id
    );
    assert_eq!(
        vault
            .resolve(&vm, &PointSelector::At(first.time))
            .await
            .expect("at")
            .id,
        first.id
    );
    assert_eq!(
        vault
            .resolve(&vm, &PointSelector::At(second.time))
            .await
            .expect("at")
            .id,
        second.id
    );
    let prefix = &second.id.as_str()[..18];
    let by_prefix = vault
        .resolve(&vm, &PointSelector::Id(prefix.to_owned()))
        .await;
    // Both ids share their first 16 characters when taken in the same second; 18 may or may
    // not be unique, but the full id always is.
    match by_prefix {
        Ok(p) => assert_eq!(p.id, second.id),
        Err(e) => assert!(
            matches!(
                e,
                blockvault_vault::Error::Repo(blockvault_repo::Error::AmbiguousPoint { .. })
            ),
            "{e}"
        ),
    }
    let full = vault
        .resolve(&vm, &PointSelector::Id(second.id.to_string()))
        .await
        .expect("id");
    assert_eq!(full.id, second.id);
}
