//! `vault stats`: every figure against a vault built with known content, computed here from
//! first principles (the images' blocks and the vault's files), per VM, with `--vm`, as JSON;
//! and the same on S3.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::{
    Image, MIB, Sandbox, arg, backup, blockvault, chunk_file, distinct_blocks, noise, text, u64_of,
};

/// What the test knows of the content it backed up: the images of each point.
struct Known {
    /// web: two points of an 8 MiB disk.
    web: [Vec<u8>; 2],
    /// db: one point of a 2 MiB disk, sharing one block with web.
    db: Vec<u8>,
}

/// web's disk (8 MiB, 1 MiB blocks): block 0 noise, block 1 the same noise (a duplicate),
/// block 2 compressible text, block 3 a hole, block 4 written zeros, block 5 noise that the
/// second point changes, blocks 6-7 holes. db's (2 MiB): web's block 0, then text of its own.
/// Backs up web twice and db once into `vault`.
fn build(sb: &Sandbox, vault: &Path) -> Known {
    let mut web = Image::create(&sb.path("web.img"), 8 * MIB);
    web.write(0, &noise(MIB, 1));
    web.write(MIB, &noise(MIB, 1));
    web.write(2 * MIB, &text(MIB, 2));
    web.write(4 * MIB, &vec![0; MIB as usize]);
    web.write(5 * MIB, &noise(MIB, 3));
    backup(vault, "web", &[&web.path], Some("1MiB"));
    let first = web.snapshot();
    web.write(5 * MIB, &noise(MIB, 4));
    backup(vault, "web", &[&web.path], Some("1MiB"));
    let mut db = Image::create(&sb.path("db.img"), 2 * MIB);
    db.write(0, &noise(MIB, 1));
    db.write(MIB, &text(MIB, 7));
    backup(vault, "db", &[&db.path], Some("1MiB"));
    Known {
        web: [first, web.snapshot()],
        db: db.snapshot(),
    }
}

/// The distinct non-zero 1 MiB blocks of `images`.
fn blocks_of(images: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut blocks = Vec::new();
    for image in images {
        for block in image.chunks(MIB as usize) {
            if block.iter().any(|&b| b != 0) && seen.insert(blake3::hash(block)) {
                blocks.push(block.to_vec());
            }
        }
    }
    blocks
}

/// The bytes of every file under `dir` (0 when it does not exist).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.expect("read dir").path())
        .map(|p| match p.is_dir() {
            true => tree_bytes(&p),
            false => fs::metadata(&p).expect("stat").len(),
        })
        .sum()
}

/// The stored bytes of the chunks holding `blocks`.
fn chunk_files_bytes(vault: &Path, blocks: &[Vec<u8>]) -> u64 {
    blocks
        .iter()
        .map(|b| {
            fs::metadata(chunk_file(vault, b))
                .expect("chunk file")
                .len()
        })
        .sum()
}

fn vm_doc<'a>(doc: &'a Value, vm: &str) -> &'a Value {
    doc["vms"]
        .as_array()
        .and_then(|vms| vms.iter().find(|v| v["vm"] == vm))
        .unwrap_or_else(|| panic!("no VM {vm} in {doc}"))
}

fn ratio(doc: &Value, field: &str) -> f64 {
    doc[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {doc}"))
}

/// The figures that need no vault files: points, logical, referenced, unique, dedup.
fn assert_content_figures(doc: &Value, known: &Known) {
    let web = vm_doc(doc, "web");
    assert_eq!(u64_of(web, "/points"), 2, "{web}");
    assert_eq!(u64_of(web, "/logical_bytes"), 16 * MIB, "{web}");
    assert_eq!(u64_of(web, "/latest_logical_bytes"), 8 * MIB, "{web}");
    // Blocks 0, 1, 2 and 5 hold data in both points; the hole and the zeros do not count.
    assert_eq!(u64_of(web, "/referenced_bytes"), 8 * MIB, "{web}");
    // noise 1 (twice in each point), text 2, noise 3, noise 4.
    let web_blocks = blocks_of(&[&known.web[0], &known.web[1]]);
    assert_eq!(web_blocks.len(), 4);
    assert_eq!(u64_of(web, "/unique_chunks"), 4, "{web}");
    assert_eq!(u64_of(web, "/unique_bytes"), 4 * MIB, "{web}");
    assert_eq!(ratio(web, "dedup_ratio"), 2.0, "{web}");
    let db = vm_doc(doc, "db");
    assert_eq!(u64_of(db, "/points"), 1, "{db}");
    assert_eq!(u64_of(db, "/logical_bytes"), 2 * MIB, "{db}");
    assert_eq!(u64_of(db, "/referenced_bytes"), 2 * MIB, "{db}");
    assert_eq!(u64_of(db, "/unique_bytes"), 2 * MIB, "{db}");
    assert_eq!(ratio(db, "dedup_ratio"), 1.0, "{db}");
    let total = &doc["total"];
    assert_eq!(u64_of(total, "/points"), 3, "{total}");
    assert_eq!(u64_of(total, "/logical_bytes"), 18 * MIB, "{total}");
    assert_eq!(u64_of(total, "/latest_logical_bytes"), 10 * MIB, "{total}");
    assert_eq!(u64_of(total, "/referenced_bytes"), 10 * MIB, "{total}");
    // db's first block is web's: five distinct chunks in the vault.
    let all = distinct_blocks(&known.web[0], MIB)
        .union(&distinct_blocks(&known.web[1], MIB))
        .copied()
        .collect::<HashSet<_>>()
        .union(&distinct_blocks(&known.db, MIB))
        .count();
    assert_eq!(all, 5);
    assert_eq!(u64_of(total, "/unique_chunks"), 5, "{total}");
    assert_eq!(u64_of(total, "/unique_bytes"), 5 * MIB, "{total}");
    assert_eq!(ratio(total, "dedup_ratio"), 2.0, "{total}");
    for figures in [web, db, total] {
        assert_eq!(u64_of(figures, "/missing_chunks"), 0, "{figures}");
        assert_eq!(u64_of(figures, "/damaged_points"), 0, "{figures}");
        // Stored is what its parts add up to.
        let stored = u64_of(figures, "/map_bytes") + u64_of(figures, "/record_bytes");
        assert!(u64_of(figures, "/stored_bytes") > stored, "{figures}");
    }
}

#[test]
fn stats_count_points_sizes_dedup_and_compression_from_first_principles() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let known = build(&sb, &vault);
    let run = blockvault(["vault", "stats", "--json", "--vault", arg(&vault)]).success();
    let doc = run.json();
    assert_content_figures(&doc, &known);

    // Stored bytes against the files on disk.
    let web_blocks = blocks_of(&[&known.web[0], &known.web[1]]);
    let web = vm_doc(&doc, "web");
    let web_chunks = chunk_files_bytes(&vault, &web_blocks);
    assert_eq!(u64_of(web, "/unique_stored_bytes"), web_chunks, "{web}");
    let web_maps = tree_bytes(&vault.join("maps/web"));
    let web_records = tree_bytes(&vault.join("points/web"));
    assert_eq!(u64_of(web, "/map_bytes"), web_maps, "{web}");
    assert_eq!(u64_of(web, "/record_bytes"), web_records, "{web}");
    assert_eq!(
        u64_of(web, "/stored_bytes"),
        web_chunks + web_maps + web_records,
        "{web}"
    );
    let compression = ratio(web, "compression_ratio");
    assert_eq!(compression, (4 * MIB) as f64 / web_chunks as f64, "{web}");
    // Three blocks of noise do not compress; a block of text does.
    assert!(compression > 1.0 && compression < 4.0 / 3.0 + 0.01, "{web}");

    let total = &doc["total"];
    let chunks = tree_bytes(&vault.join("chunks"));
    let maps = tree_bytes(&vault.join("maps"));
    let records = tree_bytes(&vault.join("points"));
    assert_eq!(u64_of(total, "/chunks"), 5, "{total}");
    assert_eq!(u64_of(total, "/chunk_bytes"), chunks, "{total}");
    assert_eq!(u64_of(total, "/unique_stored_bytes"), chunks, "{total}");
    assert_eq!(
        u64_of(total, "/stored_bytes"),
        chunks + maps + records,
        "{total}"
    );
    assert_eq!(
        ratio(total, "compression_ratio"),
        (5 * MIB) as f64 / chunks as f64,
        "{total}"
    );
    assert_eq!(u64_of(total, "/garbage_chunks"), 0, "{total}");
    assert_eq!(u64_of(total, "/damaged_chunks"), 0, "{total}");
    assert_eq!(doc["warnings"], serde_json::json!([]), "{run}");

    // A chunk no point names (garbage) and a damage mark.
    let stray = "ab".repeat(32);
    let stray_file = vault.join("chunks/ab").join(&stray);
    fs::create_dir_all(stray_file.parent().expect("parent")).expect("mkdir");
    fs::write(&stray_file, vec![7u8; 1234]).expect("stray chunk");
    let damaged = vault.join("damaged");
    fs::create_dir_all(&damaged).expect("mkdir");
    fs::write(damaged.join("cd".repeat(32)), b"").expect("damage mark");
    let run = blockvault(["vault", "stats", "--json", "--vault", arg(&vault)]);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    let total = &doc["total"];
    assert_eq!(u64_of(total, "/garbage_chunks"), 1, "{total}");
    assert_eq!(u64_of(total, "/garbage_bytes"), 1234, "{total}");
    assert_eq!(u64_of(total, "/damaged_chunks"), 1, "{total}");
    assert_eq!(u64_of(total, "/chunk_bytes"), chunks + 1234, "{total}");
    assert_eq!(
        u64_of(total, "/stored_bytes"),
        chunks + 1234 + maps + records,
        "{total}"
    );
    // Garbage is stored, not unique data: the ratio stays.
    assert_eq!(u64_of(total, "/unique_stored_bytes"), chunks, "{total}");
    assert!(
        doc["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("marked damaged")))),
        "{doc}"
    );

    // The text names each VM and the vault's line.
    let run = blockvault(["vault", "stats", "--vault", arg(&vault)]);
    assert_eq!(run.code, 0, "{run}");
    for needle in [
        "web",
        "db",
        "(vault)",
        "2.00x",
        "garbage awaiting gc: 1 chunk(s)",
    ] {
        assert!(run.stdout.contains(needle), "{needle} missing\n{run}");
    }
}

#[test]
fn stats_of_one_vm_count_that_vm_only() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let known = build(&sb, &vault);
    let run = blockvault([
        "vault",
        "stats",
        "--json",
        "--vault",
        arg(&vault),
        "--vm",
        "db",
    ])
    .success();
    let doc = run.json();
    let vms = doc["vms"].as_array().expect("vms");
    assert_eq!(vms.len(), 1, "{doc}");
    let db = vm_doc(&doc, "db");
    assert_eq!(u64_of(db, "/points"), 1, "{db}");
    assert_eq!(u64_of(db, "/unique_chunks"), 2, "{db}");
    let blocks = blocks_of(&[&known.db]);
    let chunks = chunk_files_bytes(&vault, &blocks);
    assert_eq!(u64_of(db, "/unique_stored_bytes"), chunks, "{db}");
    assert_eq!(
        u64_of(db, "/stored_bytes"),
        chunks + tree_bytes(&vault.join("maps/db")) + tree_bytes(&vault.join("points/db")),
        "{db}"
    );
    // The vault's own figures need every map: none for one VM.
    assert_eq!(doc["total"], Value::Null, "{doc}");

    // A VM without a point in the vault: not found, nothing printed.
    let run = blockvault(["vault", "stats", "--vault", arg(&vault), "--vm", "nope"]);
    run.failure(3);
    // Not a vault: not found.
    let run = blockvault(["vault", "stats", "--vault", arg(&sb.path("elsewhere"))]);
    run.failure(3);
}

#[test]
fn stats_json_has_every_figure_for_each_vm_and_the_vault() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    build(&sb, &vault);
    let doc = blockvault(["vault", "stats", "--json", "--vault", arg(&vault)])
        .success()
        .json();
    let figures = [
        "points",
        "damaged_points",
        "logical_bytes",
        "latest_logical_bytes",
        "referenced_bytes",
        "unique_chunks",
        "unique_bytes",
        "unique_stored_bytes",
        "map_bytes",
        "record_bytes",
        "stored_bytes",
        "dedup_ratio",
        "compression_ratio",
        "missing_chunks",
    ];
    for vm in doc["vms"].as_array().expect("vms") {
        for f in figures {
            assert!(vm.get(f).is_some(), "{f} missing in {vm}");
        }
    }
    let vault_only = [
        "chunks",
        "chunk_bytes",
        "garbage_chunks",
        "garbage_bytes",
        "damaged_chunks",
    ];
    for f in figures.iter().chain(&vault_only) {
        assert!(doc["total"].get(f).is_some(), "{f} missing in {doc}");
    }
    assert_eq!(doc["vault"], arg(&vault), "{doc}");
    assert!(doc["id"].as_str().is_some_and(|id| !id.is_empty()), "{doc}");
    assert!(doc["warnings"].is_array(), "{doc}");
}

#[test]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
fn stats_on_s3_count_as_on_a_directory() {
    let _server = crate::s3::server();
    let location = crate::s3::s3_vault("stats");
    let sb = Sandbox::new();
    blockvault(["vault", "init", &location]).success();
    let vault = Path::new(&location);
    let known = build(&sb, vault);
    let doc = blockvault(["vault", "stats", "--json", "--vault", &location])
        .success()
        .json();
    assert_content_figures(&doc, &known);
    let total = &doc["total"];
    assert_eq!(u64_of(total, "/chunks"), 5, "{total}");
    assert_eq!(
        u64_of(total, "/stored_bytes"),
        u64_of(total, "/chunk_bytes")
            + u64_of(total, "/map_bytes")
            + u64_of(total, "/record_bytes"),
        "{total}"
    );
    assert_eq!(u64_of(total, "/garbage_chunks"), 0, "{total}");

    // The same content in a directory vault stores the same chunk bytes (the encoding is the
    // same wherever the vault is).
    let dir = sb.init_vault();
    build(&sb, &dir);
    let local = blockvault(["vault", "stats", "--json", "--vault", arg(&dir)])
        .success()
        .json();
    for field in ["/unique_stored_bytes", "/chunk_bytes"] {
        assert_eq!(
            u64_of(total, field),
            u64_of(&local["total"], field),
            "{field}"
        );
    }
}

#[test]
fn stats_help_defines_each_figure() {
    let run = blockvault(["vault", "stats", "--help"]).success();
    for needle in [
        "logical:",
        "referenced:",
        "all-zero blocks are left out",
        "unique:",
        "stored:",
        "dedup ratio: referenced / unique",
        "compression ratio: unique /",
        "garbage (vault)",
        "damaged (vault)",
        "Examples:",
        "blockvault vault stats --vault /srv/vault",
    ] {
        assert!(run.stdout.contains(needle), "{needle:?} missing\n{run}");
    }
}

/// A damaged point record is counted apart, and the chunks only its maps name are not
/// garbage: `gc` keeps them, so `stats` must not promise them freed.
#[test]
fn chunks_only_a_damaged_record_names_are_not_garbage() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let known = build(&sb, &vault);
    // web's first point is the only one naming its block 5 (noise 3).
    let mut records: Vec<_> = fs::read_dir(vault.join("points/web"))
        .expect("web's records")
        .map(|e| e.expect("entry").path())
        .collect();
    records.sort();
    crate::support::flip_middle(&records[0], 8);
    let run = blockvault(["vault", "stats", "--json", "--vault", arg(&vault)]);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    let web = vm_doc(&doc, "web");
    assert_eq!(u64_of(web, "/points"), 1, "{web}");
    assert_eq!(u64_of(web, "/damaged_points"), 1, "{web}");
    assert_eq!(u64_of(web, "/referenced_bytes"), 4 * MIB, "{web}");
    assert_eq!(
        u64_of(web, "/unique_chunks"),
        blocks_of(&[&known.web[1]]).len() as u64,
        "{web}"
    );
    let total = &doc["total"];
    assert_eq!(u64_of(total, "/garbage_chunks"), 0, "{total}");
    assert_eq!(u64_of(total, "/chunks"), 5, "{total}");
    assert!(
        doc["warnings"].to_string().contains("damaged point record"),
        "{doc}"
    );
}
