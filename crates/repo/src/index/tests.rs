//! Tests of the chunk index.

use super::*;
use std::io::Write;

use blockvault_core::ForgottenChunks;

use super::saved::HEADER;

#[tokio::test]
async fn an_index_one_sweep_behind_drops_what_it_forgot_instead_of_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::in_memory();
    let [a, b, c, late] = ["a", "b", "c", "late"].map(|n| ChunkId::of(n.as_bytes()));
    for id in [a, b, c] {
        store
            .put_chunk(&id, b"x".to_vec().into())
            .await
            .expect("put");
    }
    let path = dir.path().join("v/chunks.idx");
    ChunkIndex::load_or_rebuild(&store, &path, None)
        .await
        .expect("built before any sweep");
    // A sweep elsewhere: it ships its candidates, moves the epoch, deletes b. Another host
    // then uploads `late`: a listing would find it, the forgotten list does not name it.
    let sweep = |epoch: &'static str, previous: Option<&'static str>| {
        let store = store.clone();
        async move {
            let forgotten = ForgottenChunks {
                previous: previous.map(str::to_owned),
                ids: ChunkSet::from_vec(vec![b]),
            };
            store
                .put_forgotten(epoch, forgotten.encode())
                .await
                .expect("ship");
            store
                .put_gc_epoch(&blockvault_core::GcEpoch {
                    id: epoch.to_owned(),
                    time: jiff::Timestamp::now(),
                })
                .await
                .expect("epoch");
        }
    };
    sweep("e1", None).await;
    store.delete_chunk(&b).await.expect("delete");
    store
        .put_chunk(&late, b"x".to_vec().into())
        .await
        .expect("put");

    let index = ChunkIndex::load_or_rebuild(&store, &path, Some("e1"))
        .await
        .expect("load");
    assert_eq!(index.all_ids(), ChunkSet::from_vec(vec![a, c]).as_slice());
    assert_eq!(
        read_epoch(&path).as_deref(),
        Some("e1"),
        "moved to the new epoch"
    );

    // Two sweeps behind (the list names another previous epoch): rebuilt from a listing.
    sweep("e3", Some("e2")).await;
    let index = ChunkIndex::load_or_rebuild(&store, &path, Some("e3"))
        .await
        .expect("load");
    assert_eq!(
        index.all_ids(),
        ChunkSet::from_vec(vec![a, c, late]).as_slice()
    );
}

#[tokio::test]
async fn a_journal_left_in_a_directory_vault_makes_writers_ask_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Store::local(dir.path()).expect("store");
    let path = dir.path().join("state/chunks.idx");
    let load = |store: Store| {
        let path = path.clone();
        async move {
            ChunkIndex::load_or_rebuild(&store, &path, None)
                .await
                .expect("load")
        }
    };
    let index = load(local.clone()).await;
    assert!(!index.may_lack_landed(), "a fresh index lacks nothing");
    // A writer opened the journal and was killed before its first sync recorded anything.
    let journal = index.journal().expect("journal");
    drop(journal);
    assert!(load(local.clone()).await.may_lack_landed());
    assert!(
        !load(Store::in_memory()).await.may_lack_landed(),
        "where every put is recorded as it lands, the journal is the whole story"
    );
    // A writer that finishes saves the index, which removes the journal.
    load(local.clone())
        .await
        .add_and_save(&ChunkSet::from_iter([ChunkId::of(b"a")]))
        .expect("save");
    assert!(!load(local).await.may_lack_landed());
}

#[tokio::test]
async fn the_index_rebuilds_from_the_store_and_survives_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::in_memory();
    let a = ChunkId::of(b"a");
    store
        .put_chunk(&a, b"x".to_vec().into())
        .await
        .expect("put");
    let path = dir.path().join("v/chunks.idx");
    let mut index = ChunkIndex::load_or_rebuild(&store, &path, None)
        .await
        .expect("rebuild");
    assert!(index.contains(&a) && index.len() == 1);
    let b = ChunkId::of(b"b");
    index.add_and_save(&ChunkSet::from_iter([b])).expect("save");
    let again = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, None)
        .await
        .expect("load");
    assert!(
        again.contains(&a) && again.contains(&b),
        "loaded from the file, not the store"
    );

    // Ids journaled by a backup that was killed are folded in at the next load.
    let c = ChunkId::of(b"c");
    index
        .journal()
        .expect("journal")
        .record(&c)
        .expect("record");
    drop(index);
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(path.with_extension("log"))
        .expect("log");
    Write::write_all(&mut torn, &[1, 2, 3]).expect("torn record");
    let loaded = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, None)
        .await
        .expect("load");
    assert!(
        loaded.contains(&c) && loaded.len() == 3,
        "journal folded in, torn tail ignored"
    );
    assert!(
        !path.with_extension("log").exists(),
        "journal emptied once saved"
    );

    // A damaged file is a cache miss: rebuilt from the store.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[30] ^= 1;
    std::fs::write(&path, bytes).expect("write");
    let rebuilt = ChunkIndex::load_or_rebuild(&store, &path, None)
        .await
        .expect("rebuild");
    assert!(rebuilt.contains(&a) && !rebuilt.contains(&b));

    // A sweep elsewhere (a new epoch) makes the saved index stale: rebuilt from the store.
    let mut index = rebuilt;
    index.add_and_save(&ChunkSet::from_iter([b])).expect("save");
    let after_gc = ChunkIndex::load_or_rebuild(&store, &path, Some("e1"))
        .await
        .expect("rebuild");
    assert!(
        !after_gc.contains(&b),
        "b is not in the store: the stale index was dropped"
    );
    let mut same = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, Some("e1"))
        .await
        .expect("load");
    assert!(same.contains(&a), "same epoch: loaded from the file");
    // A sweep on this host updates the index in place.
    same.forget([a], "e2").expect("forget");
    let swept = ChunkIndex::load_or_rebuild(&store, &path, Some("e2"))
        .await
        .expect("load");
    assert!(
        !swept.contains(&a),
        "loaded from the file, without the swept chunk"
    );
}

#[tokio::test]
async fn writers_saving_one_index_at_once_never_fail_and_leave_a_whole_file() {
    // Two backup jobs of one host save the same index: each write has its own temp file,
    // so no rename finds its temp file taken by the other.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v/chunks.idx");
    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                let mut index = rt
                    .block_on(ChunkIndex::load_or_rebuild(
                        &Store::in_memory(),
                        &path,
                        None,
                    ))
                    .expect("load");
                for n in 0..40u8 {
                    index.add_and_save(&ChunkSet::from_iter([ChunkId::of(&[w, n])]))?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer").expect("every save succeeds");
    }
    let last = ChunkIndex::load_current(&path, None).expect("a whole, sound file");
    assert!(last.len() >= 40, "one writer's whole index: {}", last.len());
    let strays: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(strays.is_empty(), "no temp file left: {strays:?}");
}

#[tokio::test]
async fn ids_sharing_their_first_bytes_are_told_apart_from_the_file_this_index_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v/chunks.idx");
    // Three ids with one 8-byte prefix, and a probe with the same prefix that is absent.
    let twin = |last: u8| {
        let mut bytes = [7u8; 32];
        bytes[31] = last;
        ChunkId::from_bytes(bytes)
    };
    let (a, b, c, absent) = (twin(1), twin(2), twin(4), twin(3));
    let mut index = ChunkIndex::load_or_rebuild(&Store::in_memory(), &path, None)
        .await
        .expect("empty");
    index
        .add_and_save(&ChunkSet::from_iter([c, a, ChunkId::of(b"other"), b]))
        .expect("save");
    assert!([a, b, c].iter().all(|id| index.contains(id)));
    assert!(!index.contains(&absent) && !index.contains(&twin(0)) && !index.contains(&twin(9)));

    // Another process saves a different index over the path: this one still answers from
    // the file it wrote, and saves on top of it.
    let mut other = ChunkIndex::load_current(&path, None).expect("load");
    other.remove([a, b]).expect("save");
    assert!(
        index.contains(&a) && index.contains(&b),
        "its own file, still open"
    );
    index
        .add_and_save(&ChunkSet::from_iter([absent]))
        .expect("save");
    let last = ChunkIndex::load_current(&path, None).expect("load");
    assert_eq!(last.all_ids().len(), 5);
    assert!([a, b, c, absent].iter().all(|id| last.contains(id)));

    // A journal folded in without a save is answered from memory.
    last.journal()
        .expect("journal")
        .record(&twin(0))
        .expect("record");
    let loaded = ChunkIndex::load_current(&path, None).expect("load");
    assert!(loaded.contains(&twin(0)) && loaded.len() == 6);
}

#[tokio::test]
async fn a_large_index_keeps_every_id_sorted_on_file_and_refuses_a_file_out_of_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v/chunks.idx");
    let store = Store::in_memory();
    let mut index = ChunkIndex::load_or_rebuild(&store, &path, None)
        .await
        .expect("empty");
    assert!(index.is_empty());
    // Ids in no order, with duplicates, added in two batches.
    let all: Vec<ChunkId> = (0u32..20_000)
        .map(|n| ChunkId::of(&n.to_le_bytes()))
        .collect();
    index
        .add_and_save(&all[..12_000].iter().rev().copied().collect())
        .expect("save");
    index
        .add_and_save(&all[8_000..].iter().chain(&all[..100]).copied().collect())
        .expect("save");
    assert_eq!(index.len(), all.len(), "duplicates dropped");
    let on_file = std::fs::read(&path).expect("read");
    assert_eq!(on_file.len(), HEADER + 32 * all.len() + 32);
    let loaded = ChunkIndex::load_current(&path, None).expect("loaded from the file");
    let listed = loaded.all_ids();
    let mut expected = all.clone();
    expected.sort_unstable();
    assert_eq!(listed, expected, "ascending, one each");
    assert!(all.iter().all(|id| loaded.contains(id)));
    assert!(!loaded.contains(&ChunkId::of(b"absent")));

    // GC forgets some, in any order.
    let mut loaded = loaded;
    loaded
        .forget(all[..5_000].iter().rev().copied(), "e1")
        .expect("forget");
    let after = ChunkIndex::load_current(&path, Some("e1")).expect("load");
    assert_eq!(after.len(), all.len() - 5_000);
    assert!(!after.contains(&all[0]) && after.contains(&all[5_000]));

    // A file whose ids are out of order (with a valid checksum) is not trusted: the store
    // (empty here) is listed instead.
    let mut bytes = std::fs::read(&path).expect("read");
    let body = bytes.len() - 32;
    bytes.copy_within(HEADER..HEADER + 32, HEADER + 32 * 10);
    let digest = blake3::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(digest.as_bytes());
    std::fs::write(&path, &bytes).expect("write");
    assert!(ChunkIndex::load_current(&path, Some("e1")).is_none());
    let rebuilt = ChunkIndex::load_or_rebuild(&store, &path, Some("e1"))
        .await
        .expect("rebuild");
    assert!(rebuilt.is_empty(), "rebuilt from the store");

    // A file cut short is a miss too, not an allocation of the count it claims.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    assert!(ChunkIndex::load_current(&path, Some("e1")).is_none());
}
