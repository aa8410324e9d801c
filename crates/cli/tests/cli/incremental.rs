//! Incremental backups store exactly the blocks that changed, and nothing when nothing did.

use serde_json::json;

use crate::support::*;

const VM: &str = "db01";
const BS: u64 = 256 * KIB;

#[test]
fn incremental_backups_count_and_store_exactly_the_changed_blocks() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    let gen1 = disk.snapshot();

    // The first backup: every non-zero block is new, each distinct content stored once.
    let p1 = backup(&vault, VM, &[&disk.path], Some("256KiB"));
    let data_blocks1 = gen1
        .chunks(BS as usize)
        .filter(|b| b.iter().any(|&x| x != 0))
        .count() as u64;
    assert_eq!(u64_of(&p1, "/disks/0/blocks"), 64 * MIB / BS);
    assert_eq!(u64_of(&p1, "/disks/0/data_blocks"), data_blocks1);
    assert_eq!(u64_of(&p1, "/stats/bytes_changed"), data_blocks1 * BS);
    assert_eq!(
        u64_of(&p1, "/stats/chunks_stored"),
        distinct_blocks(&gen1, BS).len() as u64
    );
    assert_eq!(
        chunk_files(&vault).len() as u64,
        u64_of(&p1, "/stats/chunks_stored")
    );
    assert_eq!(u64_of(&p1, "/stats/bytes_stored"), chunk_bytes(&vault));
    let scanned = u64_of(&p1, "/stats/bytes_scanned");
    assert!(
        scanned >= data_blocks1 * BS && scanned < 16 * MIB,
        "holes are skipped: scanned {scanned}"
    );

    // Touch five blocks (two of them with the same new content) and zero a sixth.
    disk.write(BS + 100, &noise(1000, 21)); // block 1
    disk.write(20 * MIB + 200 * KIB, &noise(300 * KIB, 22)); // blocks 80 and 81
    let twin = noise(BS, 23);
    disk.write(200 * BS, &twin); // block 200, a hole until now
    disk.write(201 * BS, &twin); // block 201, the same bytes
    disk.write(0, &vec![0; BS as usize]); // block 0 becomes all-zero: nothing to store
    let gen2 = disk.snapshot();
    let touched = [1usize, 80, 81, 200, 201];
    assert_eq!(
        changed_blocks(&gen1, &gen2, BS),
        touched,
        "the model agrees"
    );

    let stored_before = chunk_bytes(&vault);
    let p2 = backup(&vault, VM, &[&disk.path], Some("256KiB"));
    assert_eq!(p2["parent"], p1["id"]);
    assert_eq!(
        u64_of(&p2, "/stats/bytes_changed"),
        touched.len() as u64 * BS
    );
    assert_eq!(
        u64_of(&p2, "/stats/chunks_stored"),
        4,
        "blocks 200 and 201 share a chunk"
    );
    assert_eq!(
        u64_of(&p2, "/stats/bytes_stored"),
        chunk_bytes(&vault) - stored_before
    );
    assert_eq!(u64_of(&p2, "/disks/0/data_blocks"), data_blocks1 + 2 - 1);

    // Unchanged, and without --block-size: the disk keeps 256KiB and nothing is stored.
    let stored_before = chunk_bytes(&vault);
    let p3 = backup(&vault, VM, &[&disk.path], None);
    assert_eq!(p3["parent"], p2["id"]);
    assert_eq!(p3["disks"][0]["block_size"], json!(BS));
    assert_eq!(u64_of(&p3, "/stats/bytes_changed"), 0);
    assert_eq!(u64_of(&p3, "/stats/bytes_stored"), 0);
    assert_eq!(u64_of(&p3, "/stats/chunks_stored"), 0);
    assert_eq!(chunk_bytes(&vault), stored_before);
    assert_eq!(p3["disks"][0]["data_blocks"], p2["disks"][0]["data_blocks"]);

    // The zeroed block restores as zeros, the twins as themselves.
    let to = sb.path("out");
    let report = restore(&vault, VM, &to, &[]);
    assert_eq!(report["point"], p3["id"]);
    assert_image(&to.join("disk.img"), &gen2);

    // A new block size makes the next backup a full one.
    let p4 = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    assert_eq!(p4["disks"][0]["block_size"], json!(64 * KIB));
    assert_eq!(
        u64_of(&p4, "/stats/bytes_changed"),
        nonzero_bytes(&gen2, 64 * KIB)
    );
    assert_eq!(
        u64_of(&p4, "/stats/chunks_stored"),
        distinct_blocks(&gen2, 64 * KIB).len() as u64
    );
    assert_eq!(points(&vault, VM).len(), 4);
}
