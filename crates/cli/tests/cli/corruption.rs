//! A damaged vault fails a restore with exit 4, naming what is damaged, and leaves nothing in
//! the restore target that looks like an image.

use std::fs;
use std::path::PathBuf;

use crate::support::*;

const VM: &str = "web01";
const BS: u64 = 64 * KIB;
/// A block of noise: its chunk is stored raw.
const RAW_BLOCK: u64 = 20 * MIB;
/// A block of text: its chunk is zstd-compressed.
const ZSTD_BLOCK: u64 = 63 * MIB + 512 * KIB;

/// A vault with two points of the standard disk (64 KiB blocks); the newest is `latest`.
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
    /// The chunk file of the block at `offset` (the block's content is unique in the disk).
    fn chunk_at(&self, offset: u64) -> PathBuf {
        let block = &self.content[offset as usize..(offset + BS) as usize];
        let path = chunk_file(&self.vault, block);
        assert!(path.is_file(), "{} is stored", path.display());
        path
    }

    fn map(&self) -> PathBuf {
        let path = map_file(&self.vault, VM, &self.latest, "disk.img");
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

    /// Restores the latest point into `to`: exit 4, one line containing `needles`, and no
    /// file left in `to` (neither an image nor a hidden partial one).
    fn assert_restore_fails(&self, to: &str, needles: &[&str]) {
        let run = self.restore(to, &[]);
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
}

#[test]
fn a_flipped_raw_chunk_fails_naming_disk_and_offset() {
    let b = backed();
    flip_middle(&b.chunk_at(RAW_BLOCK), 16);
    let offset = format!("byte offset {RAW_BLOCK}");
    b.assert_restore_fails("out", &["disk disk.img", &offset, "corrupt"]);
}

#[test]
fn a_flipped_compressed_chunk_fails_naming_disk_and_offset() {
    let b = backed();
    flip_middle(&b.chunk_at(ZSTD_BLOCK), 16);
    let offset = format!("byte offset {ZSTD_BLOCK}");
    b.assert_restore_fails("out", &["disk disk.img", &offset, "corrupt"]);
}

#[test]
fn a_truncated_chunk_fails() {
    let b = backed();
    truncate_half(&b.chunk_at(RAW_BLOCK));
    let offset = format!("byte offset {RAW_BLOCK}");
    b.assert_restore_fails("raw", &["disk disk.img", &offset, "truncated"]);
    truncate_half(&b.chunk_at(ZSTD_BLOCK));
    b.assert_restore_fails("zstd", &["disk disk.img", "offset"]);
}

#[test]
fn a_deleted_chunk_fails() {
    let b = backed();
    fs::remove_file(b.chunk_at(RAW_BLOCK)).expect("delete chunk");
    let offset = format!("byte offset {RAW_BLOCK}");
    b.assert_restore_fails("out", &["disk disk.img", &offset, "missing"]);
}

#[test]
fn a_flipped_block_map_fails() {
    let b = backed();
    flip_middle(&b.map(), 1);
    b.assert_restore_fails("out", &["block map of disk disk.img", &b.latest, "corrupt"]);
}

#[test]
fn a_truncated_or_deleted_block_map_fails() {
    let b = backed();
    truncate_half(&b.map());
    b.assert_restore_fails("truncated", &["block map of disk disk.img", "corrupt"]);
    fs::remove_file(b.map()).expect("delete map");
    b.assert_restore_fails("deleted", &["block map of disk disk.img", "missing"]);
}

#[test]
fn a_flipped_point_record_fails_listing_and_restore() {
    let b = backed();
    let record = b.vault.join("points").join(VM).join(&b.latest);
    assert!(record.is_file(), "{}", record.display());
    flip_middle(&record, 1);
    let run = blockvault(["points", "--vault", arg(&b.vault), "--vm", VM]);
    let line = run.failure(4);
    assert!(
        line.contains(&format!(
            "recovery point {} of VM {VM} is corrupt",
            b.latest
        )),
        "{run}"
    );
    b.assert_restore_fails("out", &["recovery point", &b.latest, "corrupt"]);
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
    let report = restore(&b.vault, VM, &to, &["--point", first]);
    assert_eq!(report["point"], listed[0]["id"]);
    let mut expected = b.content.clone();
    expected[30 * MIB as usize..(30 * MIB + 10 * KIB) as usize].fill(0);
    assert_image(&to.join("disk.img"), &expected);
}

#[test]
fn a_failed_forced_restore_keeps_the_existing_image() {
    let b = backed();
    let to = b.sb.path("out");
    restore(&b.vault, VM, &to, &[]);
    let image = to.join("disk.img");
    fs::write(&image, b"an older image").expect("write");
    flip_middle(&b.chunk_at(RAW_BLOCK), 16);
    let run = b.restore("out", &["--force"]);
    assert!(run.failure(4).contains("disk disk.img"), "{run}");
    assert_eq!(entries(&to), ["disk.img"], "no partial file left");
    assert_eq!(fs::read(&image).expect("read"), b"an older image");
}

#[test]
fn a_damaged_previous_map_costs_a_full_backup_and_a_warning() {
    let b = backed();
    flip_middle(&b.map(), 1);
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
        "--block-size",
        "64KiB",
    ])
    .success();
    let doc = run.json();
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{run}");
    let warning = warnings[0].as_str().unwrap_or_default();
    assert!(
        warning.contains("disk.img") && warning.contains("backed up in full"),
        "{run}"
    );
    let point = &doc["point"];
    assert_eq!(
        u64_of(point, "/stats/bytes_changed"),
        nonzero_bytes(&b.content, BS)
    );
    assert_eq!(
        u64_of(point, "/stats/chunks_stored"),
        0,
        "the chunks are all there"
    );
    assert_eq!(point["parent"], serde_json::json!(b.latest));
    let to = b.sb.path("out");
    restore(&b.vault, VM, &to, &[]);
    assert_image(&to.join("disk.img"), &b.content);
}

/// Regression: a disk backed up without `--block-size` keeps its previous block size, which the
/// point record holds; only the map is damaged, yet the disk falls back to the vault default.
#[test]
fn a_damaged_previous_map_keeps_the_block_size() {
    let b = backed();
    flip_middle(&b.map(), 1);
    let disk = b.sb.path("disk.img");
    let point = backup_with_warnings(&b, &disk);
    assert_eq!(point["disks"][0]["block_size"], serde_json::json!(BS));
}

/// Regression: an unchanged disk's blocks are skipped because the parent's map names them, so a
/// chunk lost from the vault is never stored again and every later point is unrestorable too.
#[test]
#[ignore = "limitation: backups trust the parent map that a chunk exists; verify and repair come with the retention and verification issue"]
fn a_backup_after_chunk_loss_stores_the_chunk_again() {
    let b = backed();
    fs::remove_file(b.chunk_at(RAW_BLOCK)).expect("delete chunk");
    let disk = b.sb.path("disk.img");
    backup(&b.vault, VM, &[&disk], None);
    let to = b.sb.path("out");
    let run = b.restore("out", &[]);
    assert_eq!(run.code, 0, "{run}");
    assert_image(&to.join("disk.img"), &b.content);
}

/// `backup --json` of `disk` without `--block-size`, allowing warnings; returns the point.
fn backup_with_warnings(b: &Backed, disk: &std::path::Path) -> serde_json::Value {
    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        arg(&b.vault),
        "--vm",
        VM,
        "--disk",
        arg(disk),
    ])
    .success();
    run.json()["point"].clone()
}
