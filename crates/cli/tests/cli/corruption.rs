//! A damaged vault fails a restore from the vault (`--from vault`) with exit 4, naming what is
//! damaged, and leaves nothing in the restore target that looks like an image; the point still
//! restores from the snapshot tier (instant restore). A damaged snapshot tier falls back to the
//! vault with a warning.

use std::fs;
use std::path::PathBuf;

use serde_json::json;

use crate::support::*;

const VM: &str = "web01";
const BS: u64 = 64 * KIB;
/// A block of noise: its chunk is stored raw.
const RAW_BLOCK: u64 = 20 * MIB;
/// A block of text: its chunk is zstd-compressed.
const ZSTD_BLOCK: u64 = 63 * MIB + 512 * KIB;

/// A vault with two points of the standard disk (64 KiB blocks), both also in the snapshot
/// tier; the newest is `latest`.
struct Backed {
    sb: Sandbox,
    vault: PathBuf,
    content: Vec<u8>,
    latest: String,
}

fn backed() -> Backed {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    backup(&vault, VM, &[&disk.path], Some("64KiB"));
    disk.write(30 * MIB, &noise(10 * KIB, 50));
    let latest = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    Backed {
        content: disk.snapshot(),
        latest: str_of(&latest, "/id").to_owned(),
        sb,
        vault,
    }
}

impl Backed {
    /// The vault's chunk file of the block at `offset` (the block's content is unique in the
    /// disk).
    fn chunk_at(&self, offset: u64) -> PathBuf {
        self.chunk_in(&self.vault, offset)
    }

    /// The snapshot tier's chunk file of the block at `offset`.
    fn snapshot_chunk_at(&self, offset: u64) -> PathBuf {
        self.chunk_in(&snapshot_tier(&self.vault, VM), offset)
    }

    fn chunk_in(&self, store: &std::path::Path, offset: u64) -> PathBuf {
        let block = &self.content[offset as usize..(offset + BS) as usize];
        let path = chunk_file(store, block);
        assert!(path.is_file(), "{} is stored", path.display());
        path
    }

    /// The vault's block map of the latest point.
    fn map(&self) -> PathBuf {
        let path = map_file(&self.vault, VM, &self.latest, "disk.img");
        assert!(path.is_file(), "{} is stored", path.display());
        path
    }

    /// The snapshot tier's block map of the latest point.
    fn snapshot_map(&self) -> PathBuf {
        let path = map_file(
            &snapshot_tier(&self.vault, VM),
            VM,
            &self.latest,
            "disk.img",
        );
        assert!(path.is_file(), "{} is stored", path.display());
        path
    }

    fn restore(&self, to: &str, extra: &[&str]) -> Run {
        let to = self.sb.path(to);
        let mut args = vec![
            "restore",
            "--vault",
            arg(&self.vault),
            "--vm",
            VM,
            "--to",
            arg(&to),
        ];
        args.extend_from_slice(extra);
        blockvault(&args)
    }

    /// Restores the latest point from the vault (`--from vault`) into `to`: exit 4, one line
    /// containing `needles`, and no file left in `to` (neither an image nor a hidden partial
    /// one).
    fn assert_restore_fails(&self, to: &str, needles: &[&str]) {
        self.assert_fails_from("vault", to, needles);
    }

    /// Restores the latest point from the tier `from` into `to`, expecting an integrity failure
    /// as [`Backed::assert_restore_fails`] does.
    fn assert_fails_from(&self, from: &str, to: &str, needles: &[&str]) {
        let run = self.restore(to, &["--from", from]);
        let line = run.failure(4);
        for needle in needles {
            assert!(line.contains(needle), "expected {needle:?}\n{run}");
        }
        assert!(
            entries(&self.sb.path(to)).is_empty(),
            "left behind: {:?}",
            entries(&self.sb.path(to))
        );
    }

    /// The damage is the vault's alone: the default restore (`--from auto`) reads the latest
    /// point from the snapshot tier, byte for byte, without a warning.
    fn assert_instant_restore(&self, to: &str) {
        let to = self.sb.path(to);
        let report = restore(&self.vault, VM, &to, &[]);
        assert_eq!(report["tier"], json!("snapshot"), "{report}");
        assert_eq!(report["point"], json!(self.latest), "{report}");
        assert_image(&to.join("disk.img"), &self.content);
    }
}

#[test]
fn a_flipped_raw_chunk_fails_naming_disk_and_offset() {
    let b = backed();
    flip_middle(&b.chunk_at(RAW_BLOCK), 16);
    let offset = format!("byte offset {RAW_BLOCK}");
    b.assert_restore_fails("out", &["disk disk.img", &offset, "corrupt"]);
    b.assert_instant_restore("instant");
}

#[test]
fn a_flipped_compressed_chunk_fails_naming_disk_and_offset() {
    let b = backed();
    flip_middle(&b.chunk_at(ZSTD_BLOCK), 16);
    let offset = format!("byte offset {ZSTD_BLOCK}");
    b.assert_restore_fails("out", &["disk disk.img", &offset, "corrupt"]);
    b.assert_instant_restore("instant");
}

#[test]
fn a_truncated_chunk_fails() {
    let b = backed();
    truncate_half(&b.chunk_at(RAW_BLOCK));
    let offset = format!("byte offset {RAW_BLOCK}");
    b.assert_restore_fails("raw", &["disk disk.img", &offset, "truncated"]);
    truncate_half(&b.chunk_at(ZSTD_BLOCK));
    b.assert_restore_fails("zstd", &["disk disk.img", "offset"]);
    b.assert_instant_restore("instant");
}

#[test]
fn a_deleted_chunk_fails() {
    let b = backed();
    fs::remove_file(b.chunk_at(RAW_BLOCK)).expect("delete chunk");
    let offset = format!("byte offset {RAW_BLOCK}");
    b.assert_restore_fails("out", &["disk disk.img", &offset, "missing"]);
    b.assert_instant_restore("instant");
}

#[test]
fn a_flipped_block_map_fails() {
    let b = backed();
    flip_middle(&b.map(), 1);
    b.assert_restore_fails("out", &["block map of disk disk.img", &b.latest, "corrupt"]);
    b.assert_instant_restore("instant");
}

#[test]
fn a_truncated_or_deleted_block_map_fails() {
    let b = backed();
    truncate_half(&b.map());
    b.assert_restore_fails("truncated", &["block map of disk disk.img", "corrupt"]);
    fs::remove_file(b.map()).expect("delete map");
    b.assert_restore_fails("deleted", &["block map of disk disk.img", "missing"]);
    b.assert_instant_restore("instant");
}

/// A damaged vault record hides only its own point (see `damage.rs` for a host that has only
/// the vault): this host lists the point from its snapshot tier, restores it from there, and
/// asked for the vault, restores the newest point the vault can, naming the damaged one.
#[test]
fn a_flipped_point_record_leaves_the_point_in_the_tier_and_the_rest_of_the_vault() {
    let b = backed();
    let record = b.vault.join("points").join(VM).join(&b.latest);
    assert!(record.is_file(), "{}", record.display());
    flip_middle(&record, 1);
    let corrupt = format!("recovery point {} of VM {VM} is corrupt", b.latest);

    let run = blockvault(["points", "--json", "--vault", arg(&b.vault), "--vm", VM]).success();
    let doc = run.json();
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{run}");
    assert!(
        warnings[0].as_str().is_some_and(|w| w.contains(&corrupt)),
        "{run}"
    );
    assert_eq!(doc["damaged"][0]["id"], json!(b.latest), "{run}");
    let listed = doc["points"].as_array().expect("points");
    assert_eq!(listed.len(), 2, "{run}");
    assert_eq!(listed[0]["tiers"], json!(["snapshot", "vault"]), "{run}");
    assert_eq!(listed[1]["id"], json!(b.latest), "{run}");
    assert_eq!(listed[1]["tiers"], json!(["snapshot"]), "{run}");

    b.assert_instant_restore("instant");

    let run = b.restore("vault", &["--from", "vault"]);
    let warning = run.success_with_warning();
    assert!(
        warning.contains(&b.latest) && warning.contains(&corrupt),
        "{run}"
    );
    let first = str_of(&listed[0], "/id");
    assert!(
        run.stdout
            .starts_with(&format!("restored point {first} of {VM}")),
        "{run}"
    );

    let run = b.restore("asked", &["--from", "vault", "--point", &b.latest]);
    assert!(run.failure(4).contains(&corrupt), "{run}");
    assert!(entries(&b.sb.path("asked")).is_empty());
}

#[test]
fn an_older_point_still_restores_when_only_the_newest_is_damaged() {
    let b = backed();
    // The block changed by the second backup: only the newest point uses its chunk.
    flip_middle(&b.chunk_at(30 * MIB), 16);
    b.assert_restore_fails("newest", &["byte offset 31457280"]);
    let listed = points(&b.vault, VM);
    let first = str_of(&listed[0], "/id");
    let to = b.sb.path("first");
    let report = restore(&b.vault, VM, &to, &["--point", first, "--from", "vault"]);
    assert_eq!(report["point"], listed[0]["id"]);
    assert_eq!(report["tier"], json!("vault"));
    let mut expected = b.content.clone();
    expected[30 * MIB as usize..(30 * MIB + 10 * KIB) as usize].fill(0);
    assert_image(&to.join("disk.img"), &expected);
    b.assert_instant_restore("instant");
}

#[test]
fn a_failed_forced_restore_keeps_the_existing_image() {
    let b = backed();
    let to = b.sb.path("out");
    restore(&b.vault, VM, &to, &[]);
    let image = to.join("disk.img");
    fs::write(&image, b"an older image").expect("write");
    flip_middle(&b.chunk_at(RAW_BLOCK), 16);
    let run = b.restore("out", &["--force", "--from", "vault"]);
    assert!(run.failure(4).contains("disk disk.img"), "{run}");
    assert_eq!(entries(&to), ["disk.img"], "no partial file left");
    assert_eq!(fs::read(&image).expect("read"), b"an older image");
}

/// A damaged chunk of the snapshot tier: the default restore falls back to the vault, which
/// has the point too, and says so; a restore from the snapshot tier alone fails.
#[test]
fn a_flipped_snapshot_chunk_falls_back_to_the_vault_with_a_warning() {
    let b = backed();
    flip_middle(&b.snapshot_chunk_at(RAW_BLOCK), 16);
    let offset = format!("byte offset {RAW_BLOCK}");

    let run = b.restore("auto", &[]);
    let warning = run.success_with_warning();
    for needle in [
        &format!("the snapshot tier could not restore point {}", b.latest),
        "disk disk.img",
        &offset,
        "corrupt",
        "restored from the vault instead",
    ] {
        assert!(warning.contains(needle), "expected {needle:?}\n{run}");
    }
    assert!(
        run.stdout
            .starts_with(&format!("restored point {} of {VM}", b.latest))
            && run.stdout.contains(" from the vault tier "),
        "{run}"
    );
    assert_eq!(entries(&b.sb.path("auto")), ["disk.img"]);
    assert_image(&b.sb.path("auto").join("disk.img"), &b.content);

    let to = b.sb.path("json");
    let run = blockvault([
        "restore",
        "--json",
        "--vault",
        arg(&b.vault),
        "--vm",
        VM,
        "--to",
        arg(&to),
    ])
    .success();
    let doc = run.json();
    assert_eq!(doc["tier"], json!("vault"), "{run}");
    assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(1), "{run}");
    assert_image(&to.join("disk.img"), &b.content);

    b.assert_fails_from(
        "snapshot",
        "snapshot",
        &["disk disk.img", &offset, "corrupt"],
    );
}

#[test]
fn a_damaged_previous_map_costs_a_full_backup_and_a_warning() {
    let b = backed();
    flip_middle(&b.map(), 1);
    let (doc, run) = backup_with_warnings(&b, &["--block-size", "64KiB"]);
    // The snapshot tier's map is intact: the Snapshot is incremental (nothing changed) and
    // only the transfer, which compares with the vault's newest point, pays.
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{run}");
    let warning = warnings[0].as_str().unwrap_or_default();
    assert!(
        warning.contains("disk.img") && warning.contains("backed up in full"),
        "{run}"
    );
    let point = &doc["point"];
    assert_eq!(u64_of(point, "/stats/bytes_changed"), 0, "{run}");
    assert_eq!(u64_of(&doc, "/job/subtasks/0/bytes_changed"), 0, "{run}");
    let full = nonzero_bytes(&b.content, BS);
    assert_eq!(u64_of(&doc, "/job/subtasks/1/bytes_changed"), full, "{run}");
    assert_eq!(u64_of(&doc, "/job/subtasks/1/bytes_uploaded"), 0, "{run}");

    // The vault's record of the point: every block counted as changed, none stored again.
    let vaulted = vault_record(&b, str_of(point, "/id"));
    assert_eq!(u64_of(&vaulted, "/stats/bytes_changed"), full);
    assert_eq!(
        u64_of(&vaulted, "/stats/chunks_stored"),
        0,
        "the chunks are all there"
    );
    assert_eq!(vaulted["parent"], json!(b.latest));
    let to = b.sb.path("out");
    restore(&b.vault, VM, &to, &["--from", "vault"]);
    assert_image(&to.join("disk.img"), &b.content);
}

/// The same for the snapshot tier's map: the Snapshot reads every block again and stores
/// nothing new; the vault, whose map is intact, records no change.
#[test]
fn a_damaged_previous_snapshot_map_costs_a_full_snapshot_and_a_warning() {
    let b = backed();
    flip_middle(&b.snapshot_map(), 1);
    let (doc, run) = backup_with_warnings(&b, &["--block-size", "64KiB"]);
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{run}");
    let warning = warnings[0].as_str().unwrap_or_default();
    assert!(
        warning.contains("disk.img") && warning.contains("backed up in full"),
        "{run}"
    );
    let point = &doc["point"];
    let full = nonzero_bytes(&b.content, BS);
    assert_eq!(u64_of(point, "/stats/bytes_changed"), full, "{run}");
    assert_eq!(
        u64_of(point, "/stats/chunks_stored"),
        0,
        "the chunks are all in the snapshot tier\n{run}"
    );
    assert_eq!(point["parent"], json!(b.latest), "{run}");
    assert_eq!(u64_of(&doc, "/job/subtasks/1/bytes_changed"), 0, "{run}");

    let vaulted = vault_record(&b, str_of(point, "/id"));
    assert_eq!(u64_of(&vaulted, "/stats/bytes_changed"), 0);
    assert_eq!(u64_of(&vaulted, "/stats/chunks_stored"), 0);
    for from in ["snapshot", "vault"] {
        let to = b.sb.path(&format!("from-{from}"));
        let report = restore(&b.vault, VM, &to, &["--from", from]);
        assert_eq!(report["point"], point["id"]);
        assert_eq!(report["tier"], json!(from));
        assert_image(&to.join("disk.img"), &b.content);
    }
}

/// Regression: a disk backed up without `--block-size` keeps its previous block size, which the
/// point record holds; only the map is damaged, yet the disk falls back to the vault default.
/// The Snapshot reads the snapshot tier's map, the Transfer the vault's: both are damaged.
#[test]
fn a_damaged_previous_map_keeps_the_block_size() {
    let b = backed();
    flip_middle(&b.snapshot_map(), 1);
    flip_middle(&b.map(), 1);
    let (doc, run) = backup_with_warnings(&b, &[]);
    assert_eq!(
        doc["warnings"].as_array().map(Vec::len),
        Some(2),
        "one per damaged map\n{run}"
    );
    let point = &doc["point"];
    assert_eq!(point["disks"][0]["block_size"], json!(BS), "{run}");
    let vaulted = vault_record(&b, str_of(point, "/id"));
    assert_eq!(vaulted["disks"][0]["block_size"], json!(BS));
}

/// Regression: an unchanged disk's blocks are skipped because the parent's map names them, so a
/// chunk lost from the vault is never stored again and every later point is unrestorable from
/// the vault too.
#[test]
fn a_lost_chunk_found_by_verify_is_stored_again_by_the_next_backup() {
    let b = backed();
    fs::remove_file(b.chunk_at(RAW_BLOCK)).expect("delete chunk");
    assert_repaired_by_next_backup(&b, RAW_BLOCK);
}

#[test]
fn a_flipped_chunk_found_by_verify_is_stored_again_by_the_next_backup() {
    let b = backed();
    flip_middle(&b.chunk_at(ZSTD_BLOCK), 64);
    assert_repaired_by_next_backup(&b, ZSTD_BLOCK);
}

/// Verify finds the damaged chunk at `offset` (exit 4) and marks it; the next backup of the
/// same, unchanged disk sends it again, so verify is clean and the vault restores again.
fn assert_repaired_by_next_backup(b: &Backed, offset: u64) {
    let verify =
        |b: &Backed| blockvault(["verify", "--vault", arg(&b.vault), "--vm", VM, "--json"]);
    let found = verify(b);
    let report = found.json();
    assert_eq!(found.code, 4, "{found}");
    assert_eq!(
        report["report"]["bad_chunks"].as_array().map(Vec::len),
        Some(1)
    );
    let marks = b.vault.join("damaged");
    assert_eq!(entries(&marks).len(), 1, "verify marked the chunk damaged");

    let disk = b.sb.path("disk.img");
    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        arg(&b.vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk),
    ]);
    assert_eq!(run.code, 0, "{run}");
    let again = run.json();
    assert_eq!(again["job"]["status"], "completed", "{run}");
    assert_eq!(again["job"]["subtasks"][1]["kind"], "transfer", "{run}");
    assert!(
        u64_of(&again["job"]["subtasks"][1], "/bytes_uploaded") > 0,
        "the transfer sent the chunk again: {run}"
    );
    let warnings = again["warnings"].to_string();
    assert!(warnings.contains("found damaged, was sent again"), "{run}");
    assert!(
        entries(&marks).is_empty(),
        "the mark is cleared once repaired"
    );
    let clean = verify(b);
    assert_eq!(clean.code, 0, "{clean}");
    assert!(b.chunk_at(offset).is_file());
    let run = b.restore("out", &["--from", "vault"]);
    assert_eq!(run.code, 0, "{run}");
    assert_image(&b.sb.path("out").join("disk.img"), &b.content);
}

/// `backup --json` of the disk with extra `args`, allowing warnings (still exit 0 and nothing on
/// stderr: `--json` puts them in the document); returns the document and the run.
fn backup_with_warnings(b: &Backed, args: &[&str]) -> (serde_json::Value, Run) {
    let disk = b.sb.path("disk.img");
    let mut all = vec![
        "backup",
        "--json",
        "--vault",
        arg(&b.vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk),
    ];
    all.extend_from_slice(args);
    let run = blockvault(&all).success();
    let doc = run.json();
    assert_eq!(doc["job"]["status"], json!("completed"), "{run}");
    (doc, run)
}

/// The vault's record of point `id` as `points` lists it (a point in both tiers is listed with
/// the vault's record).
fn vault_record(b: &Backed, id: &str) -> serde_json::Value {
    let listed = points(&b.vault, VM);
    let point = listed
        .iter()
        .find(|p| p["id"] == json!(id))
        .unwrap_or_else(|| panic!("{id} is not listed: {listed:?}"));
    assert_eq!(point["tiers"], json!(["snapshot", "vault"]), "{point}");
    point.clone()
}

/// A snapshot-tier chunk that a transfer finds corrupt (here a transfer to a new vault, which
/// lacks every chunk) is marked damaged in the tier: the next backup reads its block from the
/// disk again and writes it, and its transfer goes through. Unmarked, an unchanged block is
/// never read again, and every later transfer failed on the same chunk.
#[test]
fn a_corrupt_snapshot_chunk_a_transfer_meets_is_written_again_by_the_next_backup() {
    let b = backed();
    flip_middle(&b.snapshot_chunk_at(ZSTD_BLOCK), 64);
    let state = host_state(&b.vault);
    let new = b.sb.path("new-vault");
    blockvault(["--state-dir", arg(&state), "vault", "init", arg(&new)]).success();
    let disk = b.sb.path("disk.img");
    let backup = || {
        blockvault([
            "--state-dir",
            arg(&state),
            "backup",
            "--json",
            "--vault",
            arg(&new),
            "--vm",
            VM,
            "--disk",
            arg(&disk),
        ])
    };
    let failed = backup();
    assert_eq!(failed.code, 5, "the transfer meets the bad chunk: {failed}");
    assert!(failed.stdout.contains("corrupt"), "{failed}");

    let repaired = backup();
    assert_eq!(repaired.code, 0, "{repaired}");
    let doc = repaired.json();
    assert!(
        doc["warnings"]
            .to_string()
            .contains("found damaged, was sent again"),
        "{repaired}"
    );
    let to = b.sb.path("out");
    let restored = blockvault([
        "--state-dir",
        arg(&state),
        "restore",
        "--vault",
        arg(&new),
        "--vm",
        VM,
        "--from",
        "vault",
        "--to",
        arg(&to),
    ]);
    assert_eq!(restored.code, 0, "{restored}");
    assert_image(&to.join("disk.img"), &b.content);
    assert!(
        entries(&snapshot_tier(&b.vault, VM).join("damaged")).is_empty(),
        "the tier's mark is cleared once the chunk is written again"
    );
}
