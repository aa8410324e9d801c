//! Chunk ids and objects of encrypted vaults: a chunk moved over another of the same vault is
//! refused (its id is bound into it), and the same data gets other ids under another key.

use std::collections::BTreeSet;
use std::fs;

use super::*;

/// The file names (ids) of a vault's chunks.
fn ids(vault: &Path) -> BTreeSet<String> {
    chunk_files(vault)
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_chunk_swapped_for_another_valid_chunk_of_the_vault_is_refused() {
    let e = Enc::new();
    let disk = e.disk("web01.img", 11);
    e.backup(&disk.path);
    let chunks = chunk_files(&e.vault);
    assert!(chunks.len() >= 2, "two data blocks: {chunks:?}");
    let (a, b) = (&chunks[0], &chunks[1]);
    // B's object replaced by A's: a valid object of this vault, under the wrong id.
    fs::copy(a, b).expect("swap");
    let run = e.run(&["verify", "--json", "--vault", arg(&e.vault), "--vm", VM]);
    assert_eq!(run.code, 4, "{run}");
    let doc = run.json();
    let bad = doc["report"]["bad_chunks"].as_array().expect("bad chunks");
    assert_eq!(bad.len(), 1, "only the swapped one: {run}");
    assert!(
        b.ends_with(str_of(&bad[0], "/id")),
        "names the swapped chunk: {run}"
    );
    assert!(
        str_of(&bad[0], "/problem").contains("failed authentication"),
        "{run}"
    );
    let run = e.restore(&e.sb.path("out"), &["--from", "vault"]);
    assert_eq!(run.code, 4, "{run}");
    // The tier still holds the right bytes.
    let run = e.restore(&e.sb.path("out-tier"), &[]).success();
    let restored = fs::read(e.sb.path("out-tier").join("web01.img")).expect("restored");
    assert_eq!(restored, fs::read(&disk.path).expect("disk"), "{run}");
}

#[test]
fn the_same_data_gets_other_ids_under_another_key_and_in_a_plain_vault() {
    let one = Enc::new();
    let other = Enc::new();
    let disk = one.disk("web01.img", 21);
    one.backup(&disk.path);
    other.backup(&disk.path);
    let plain = one.sb.path("plain-vault");
    blockvault(["vault", "init", arg(&plain)]).success();
    blockvault([
        "backup",
        "--vault",
        arg(&plain),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ])
    .success();
    let (a, b, p) = (ids(&one.vault), ids(&other.vault), ids(&plain));
    assert_eq!(a.len(), p.len(), "the same blocks stored");
    assert!(!a.is_empty());
    assert!(a.is_disjoint(&b), "two keys, no id in common: {a:?} {b:?}");
    assert!(a.is_disjoint(&p), "keyed ids are not the plain BLAKE3 ids");
}
