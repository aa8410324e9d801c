//! Disk layouts: several disks in one point, images with no data, sizes that are not a whole
//! number of blocks.

use serde_json::json;

use crate::support::*;

#[test]
fn a_vm_with_two_disks_restores_both_at_the_default_block_size() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let root = standard_disk(&sb.path("root.img"));
    let mut data = Image::create(&sb.path("data.img"), 48 * MIB);
    data.write(8 * MIB, &noise(3 * MIB, 31));
    data.write(30 * MIB + 333, &text(MIB, 32));

    let point = backup(&vault, "db01", &[&root.path, &data.path], None);
    assert_eq!(point["disks"][0]["name"], json!("root.img"));
    assert_eq!(point["disks"][1]["name"], json!("data.img"));
    for (i, image) in [&root, &data].into_iter().enumerate() {
        let disk = &point["disks"][i];
        assert_eq!(disk["block_size"], json!(MIB), "the default");
        assert_eq!(u64_of(disk, "/size"), image.content().len() as u64);
    }
    assert_eq!(
        u64_of(&point, "/stats/bytes_changed"),
        nonzero_bytes(root.content(), MIB) + nonzero_bytes(data.content(), MIB)
    );

    // From each tier: the transfer carried both disks' maps to the vault.
    for from in ["snapshot", "vault"] {
        let to = sb.path(&format!("restored-from-{from}"));
        let report = restore(&vault, "db01", &to, &["--from", from]);
        assert_eq!(report["tier"], json!(from));
        assert_eq!(report["disks"][0]["name"], json!("root.img"));
        assert_eq!(report["disks"][1]["name"], json!("data.img"));
        assert_eq!(entries(&to), ["data.img", "root.img"]);
        assert_image(&to.join("root.img"), root.content());
        assert_image(&to.join("data.img"), data.content());
        assert_sparse(&to.join("root.img"), nonzero_bytes(root.content(), MIB));
        assert_sparse(&to.join("data.img"), nonzero_bytes(data.content(), MIB));
    }
}

#[test]
fn an_image_of_holes_stores_nothing_and_restores_all_zero() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = Image::create(&sb.path("empty.img"), 64 * MIB);
    let point = backup(&vault, "vm", &[&disk.path], Some("64KiB"));
    for stat in [
        "bytes_scanned",
        "bytes_changed",
        "bytes_stored",
        "chunks_stored",
    ] {
        assert_eq!(u64_of(&point, &format!("/stats/{stat}")), 0, "{stat}");
    }
    assert_eq!(u64_of(&point, "/disks/0/blocks"), 1024);
    assert_eq!(u64_of(&point, "/disks/0/data_blocks"), 0);
    assert!(chunk_files(&vault).is_empty(), "{:?}", chunk_files(&vault));

    let to = sb.path("out");
    restore(&vault, "vm", &to, &[]);
    let restored = to.join("empty.img");
    assert_image(&restored, disk.content());
    assert!(allocated(&restored) <= 64 * KIB, "{}", allocated(&restored));
}

#[test]
fn written_zeros_are_read_but_not_stored_and_restore_as_holes() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = Image::create(&sb.path("zeros.img"), 16 * MIB);
    disk.write(4 * MIB, &vec![0; (8 * MIB) as usize]);
    assert!(allocated(&disk.path) >= 8 * MIB, "the zeros are allocated");
    let point = backup(&vault, "vm", &[&disk.path], Some("64KiB"));
    assert_eq!(u64_of(&point, "/stats/bytes_scanned"), 8 * MIB);
    assert_eq!(u64_of(&point, "/stats/bytes_changed"), 0);
    assert_eq!(u64_of(&point, "/stats/chunks_stored"), 0);
    assert_eq!(u64_of(&point, "/disks/0/data_blocks"), 0);
    assert!(chunk_files(&vault).is_empty());

    let to = sb.path("out");
    restore(&vault, "vm", &to, &[]);
    assert_image(&to.join("zeros.img"), disk.content());
    assert!(allocated(&to.join("zeros.img")) <= 64 * KIB);
}

#[test]
fn a_size_that_is_not_a_whole_number_of_blocks_round_trips() {
    const TAIL: u64 = 12_345;
    let size = 5 * MIB + TAIL;
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = Image::create(&sb.path("odd.img"), size);
    disk.write(0, &noise(100 * KIB, 41));
    disk.write(3 * MIB, &text(10 * KIB, 42));
    disk.write(size - TAIL - 5000, &noise(TAIL + 5000, 43));
    let gen1 = disk.snapshot();
    let p1 = backup(&vault, "vm", &[&disk.path], Some("64KiB"));
    assert_eq!(u64_of(&p1, "/disks/0/size"), size);
    assert_eq!(u64_of(&p1, "/disks/0/blocks"), size.div_ceil(64 * KIB));

    // Only the short last block changes: the change is its length, not a whole block.
    disk.write(size - 1, &[0xA5]);
    let gen2 = disk.snapshot();
    let p2 = backup(&vault, "vm", &[&disk.path], Some("64KiB"));
    assert_eq!(u64_of(&p2, "/stats/bytes_changed"), TAIL);
    assert_eq!(u64_of(&p2, "/stats/chunks_stored"), 1);

    for (name, point, content) in [("first", &p1, &gen1), ("second", &p2, &gen2)] {
        let to = sb.path(name);
        restore(&vault, "vm", &to, &["--point", str_of(point, "/id")]);
        assert_image(&to.join("odd.img"), content);
    }
}

/// `backup --json` of `vm`'s one disk, whose size changed: completed, with the one warning
/// that says how (see `disk_size`). Returns the point.
fn backup_resized(vault: &std::path::Path, disk: &std::path::Path, how: &str) -> serde_json::Value {
    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        arg(vault),
        "--vm",
        "vm",
        "--disk",
        arg(disk),
    ]);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{run}");
    let warning = warnings[0].as_str().expect("text");
    assert!(
        warning.starts_with(&format!("disk disk.img of vm {how} from ")),
        "{run}"
    );
    doc["point"].clone()
}

#[test]
fn a_disk_that_grows_then_shrinks_restores_each_size() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = small_disk(&sb.path("disk.img"), 70);
    let gen1 = disk.snapshot();
    let p1 = backup(&vault, "vm", &[&disk.path], Some("64KiB"));

    // Grow by 100 KiB: a full new block and a short 36 KiB one, both with data.
    disk.set_len(8 * MIB + 100 * KIB);
    disk.write(8 * MIB + 20 * KIB, &noise(50 * KIB, 71));
    let gen2 = disk.snapshot();
    let p2 = backup_resized(&vault, &disk.path, "grew");
    assert_eq!(u64_of(&p2, "/disks/0/size"), 8 * MIB + 100 * KIB);
    assert_eq!(u64_of(&p2, "/disks/0/blocks"), 130);
    assert_eq!(u64_of(&p2, "/stats/bytes_changed"), 100 * KIB);
    assert_eq!(u64_of(&p2, "/stats/chunks_stored"), 2);

    // Shrink to 6 MiB: what is left is unchanged.
    disk.set_len(6 * MIB);
    let gen3 = disk.snapshot();
    let p3 = backup_resized(&vault, &disk.path, "shrank");
    assert_eq!(u64_of(&p3, "/disks/0/size"), 6 * MIB);
    assert_eq!(u64_of(&p3, "/stats/bytes_changed"), 0);
    assert_eq!(u64_of(&p3, "/stats/chunks_stored"), 0);

    for (name, point, content) in [("g1", &p1, &gen1), ("g2", &p2, &gen2), ("g3", &p3, &gen3)] {
        let to = sb.path(name);
        restore(&vault, "vm", &to, &["--point", str_of(point, "/id")]);
        assert_image(&to.join("disk.img"), content);
    }
}
