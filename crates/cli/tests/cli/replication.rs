//! Replicated vaults: two real directories. A chunk missing or corrupt on the primary restores
//! from the secondary and is healed; verify repairs one bad copy and reports damage only when
//! both are bad; a secondary that is gone or unwritable fails the backup by name and commits
//! nothing; the secondary opens alone; redundancy changes only while the vault is empty.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

const VM: &str = "web01";
const BS: u64 = 64 * KIB;
/// A block of noise in the standard disk: its chunk is unique.
const RAW_BLOCK: u64 = 20 * MIB;

/// A sandbox with a replicated vault: `vault` (primary) and `replica` (secondary).
fn replicated(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let (primary, secondary) = (sb.path("vault"), sb.path("replica"));
    let run = blockvault([
        "vault",
        "init",
        "--json",
        "--vault",
        arg(&primary),
        "--redundancy",
        "replicated",
        "--secondary",
        arg(&secondary),
    ])
    .success();
    let doc = run.json();
    assert_eq!(doc["redundancy"], "replicated", "{run}");
    let canonical = fs::canonicalize(&secondary).expect("secondary exists");
    assert_eq!(doc["secondary"], arg(&canonical), "{run}");
    (primary, secondary)
}

fn block_of(content: &[u8], at: u64) -> &[u8] {
    &content[at as usize..(at + BS) as usize]
}

fn restore_from_vault(vault: &Path, to: &Path) -> Run {
    blockvault([
        "restore",
        "--json",
        "--vault",
        arg(vault),
        "--vm",
        VM,
        "--from",
        "vault",
        "--to",
        arg(to),
    ])
}

fn warnings(doc: &Value) -> Vec<String> {
    doc["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Every object but the config, relative to the vault.
fn objects(vault: &Path) -> Vec<String> {
    tree(vault)
        .into_iter()
        .filter(|f| f != "vault.config")
        .collect()
}

#[test]
fn a_chunk_missing_on_the_primary_restores_from_the_replica_and_is_put_back() {
    let sb = Sandbox::new();
    let (primary, secondary) = replicated(&sb);
    let disk = standard_disk(&sb.path("disk.img"));
    backup(&primary, VM, &[&disk.path], Some("64KiB"));
    // Every object landed in both stores; each holds its own config.
    assert!(!objects(&primary).is_empty());
    assert_eq!(objects(&primary), objects(&secondary));
    assert_ne!(
        fs::read(primary.join("vault.config")).expect("primary config"),
        fs::read(secondary.join("vault.config")).expect("secondary config")
    );

    let content = disk.snapshot();
    let lost = chunk_file(&primary, block_of(&content, RAW_BLOCK));
    let good = fs::read(chunk_file(&secondary, block_of(&content, RAW_BLOCK))).expect("copy");
    fs::remove_file(&lost).expect("lose a chunk on the primary");

    let to = sb.path("out");
    let run = restore_from_vault(&primary, &to);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    assert_eq!(
        warnings(&doc),
        ["1 chunk was read from the replica and repaired on the primary"],
        "{run}"
    );
    assert_eq!(doc["repaired"]["chunks"], 1, "{run}");
    assert_image(&to.join("disk.img"), &content);
    assert_eq!(
        fs::read(&lost).expect("healed"),
        good,
        "the primary has it back"
    );

    // Healed: the next restore reads everything from the primary.
    let again = restore(&primary, VM, &sb.path("again"), &["--from", "vault"]);
    assert_eq!(again["repaired"]["chunks"], 0);
}

#[test]
fn a_corrupt_chunk_on_one_store_is_repaired_by_verify_and_never_reaches_a_restore() {
    let sb = Sandbox::new();
    let (primary, secondary) = replicated(&sb);
    let disk = standard_disk(&sb.path("disk.img"));
    backup(&primary, VM, &[&disk.path], Some("64KiB"));
    let content = disk.snapshot();
    let on_primary = chunk_file(&primary, block_of(&content, RAW_BLOCK));
    let on_secondary = chunk_file(&secondary, block_of(&content, RAW_BLOCK));
    let good = fs::read(&on_secondary).expect("good copy");

    flip_middle(&on_primary, 16);
    let run = blockvault(["verify", "--json", "--vault", arg(&primary), "--vm", VM]);
    assert_eq!(run.code, 0, "repaired is not damage\n{run}");
    let doc = run.json();
    let report = &doc["report"];
    assert_eq!(report["bad_chunks"], serde_json::json!([]), "{run}");
    let repaired = report["repaired"].as_array().expect("repaired");
    assert_eq!(repaired.len(), 1, "{run}");
    assert_eq!(repaired[0]["object"], "chunk");
    assert_eq!(repaired[0]["store"], "primary");
    assert_eq!(
        repaired[0]["name"],
        block_hash(block_of(&content, RAW_BLOCK)).to_hex().as_str()
    );
    assert!(
        warnings(&doc).iter().any(|w| w.contains("repaired")),
        "{run}"
    );
    assert_eq!(doc["jobs"][0]["status"], "completed", "{run}");
    assert_eq!(fs::read(&on_primary).expect("rewritten"), good);

    // The text form says so too, and a clean vault verifies clean.
    flip_middle(&on_secondary, 16);
    let text = blockvault(["verify", "--vault", arg(&primary), "--vm", VM]);
    assert_eq!(text.code, 0, "{text}");
    assert!(
        text.stdout.contains("repaired chunk") && text.stdout.contains("secondary store"),
        "{text}"
    );
    assert!(text.stderr.starts_with("warning: "), "{text}");
    assert_eq!(fs::read(&on_secondary).expect("rewritten"), good);
    let clean = blockvault(["verify", "--json", "--vault", arg(&primary), "--vm", VM]).success();
    assert_eq!(clean.json()["report"]["repaired"], serde_json::json!([]));

    // A restore over a corrupt primary copy reads the replica's, byte for byte.
    flip_middle(&on_primary, 16);
    let to = sb.path("out");
    let run = restore_from_vault(&primary, &to);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        warnings(&run.json()),
        ["1 chunk was read from the replica and repaired on the primary"],
        "{run}"
    );
    assert_image(&to.join("disk.img"), &content);
    assert_eq!(fs::read(&on_primary).expect("healed"), good);
}

#[test]
fn a_chunk_bad_in_both_stores_fails_the_restore_by_name_and_is_damage_to_verify() {
    let sb = Sandbox::new();
    let (primary, secondary) = replicated(&sb);
    let disk = standard_disk(&sb.path("disk.img"));
    backup(&primary, VM, &[&disk.path], Some("64KiB"));
    let content = disk.snapshot();
    let id = block_hash(block_of(&content, RAW_BLOCK)).to_hex();
    flip_middle(&chunk_file(&primary, block_of(&content, RAW_BLOCK)), 16);
    fs::remove_file(chunk_file(&secondary, block_of(&content, RAW_BLOCK))).expect("drop");

    let to = sb.path("out");
    let run = blockvault([
        "restore",
        "--vault",
        arg(&primary),
        "--vm",
        VM,
        "--from",
        "vault",
        "--to",
        arg(&to),
    ]);
    let line = run.failure(4);
    assert!(
        line.contains("disk.img")
            && line.contains(&format!("offset {RAW_BLOCK}"))
            && line.contains(&id[..16])
            && line.contains("secondary store"),
        "{run}"
    );
    assert!(
        !entries(&to).iter().any(|e| e.contains("disk.img")),
        "no image, partial or not: {:?}",
        entries(&to)
    );

    let run = blockvault(["verify", "--json", "--vault", arg(&primary), "--vm", VM]);
    assert_eq!(run.code, 4, "{run}");
    let doc: Value = serde_json::from_str(&run.stdout).expect("json");
    let bad = doc["report"]["bad_chunks"].as_array().expect("bad");
    assert_eq!(bad.len(), 1, "{run}");
    let problem = bad[0]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("secondary store") && problem.contains("missing"),
        "{problem}"
    );
    assert_eq!(doc["report"]["repaired"], serde_json::json!([]), "{run}");
}

#[test]
fn a_secondary_that_is_gone_or_unwritable_fails_the_backup_by_name_and_commits_nothing() {
    let sb = Sandbox::new();
    let (primary, secondary) = replicated(&sb);
    let mut disk = standard_disk(&sb.path("disk.img"));
    let first = backup(&primary, VM, &[&disk.path], Some("64KiB"));
    let gen0 = disk.snapshot();
    let secondary_name = arg(&fs::canonicalize(&secondary).expect("canonical")).to_owned();

    // Unwritable: the secondary opens, but its chunks/ is a file now.
    let chunks = secondary.join("chunks");
    let away = sb.path("replica-chunks");
    fs::rename(&chunks, &away).expect("move chunks away");
    fs::write(&chunks, b"not a directory").expect("a file in its place");
    disk.write(30 * MIB, &noise(100 * KIB, 60));
    let backup_args = [
        "backup",
        "--json",
        "--vault",
        arg(&primary),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
        "--block-size",
        "64KiB",
    ];
    let run = blockvault(backup_args);
    assert_eq!(run.code, 5, "the transfer failed\n{run}");
    let warned = warnings(&run.json()).join("\n");
    assert!(
        warned.contains(&format!("secondary store {secondary_name}")),
        "{run}"
    );
    let committed = |vault: &Path| entries(&vault.join("points").join(VM));
    assert_eq!(
        committed(&primary),
        [str_of(&first, "/id")],
        "nothing committed"
    );
    assert_eq!(
        committed(&secondary),
        [str_of(&first, "/id")],
        "nothing committed"
    );

    // Gone: the whole secondary directory.
    fs::remove_file(&chunks).expect("unblock");
    fs::rename(&away, &chunks).expect("chunks back");
    let gone = sb.path("replica-gone");
    fs::rename(&secondary, &gone).expect("lose the secondary");
    let run = blockvault(backup_args);
    assert_eq!(run.code, 5, "the transfer failed\n{run}");
    let warned = warnings(&run.json()).join("\n");
    assert!(
        warned.contains(&format!("secondary store {secondary_name} is unavailable")),
        "{run}"
    );
    assert_eq!(
        committed(&primary),
        [str_of(&first, "/id")],
        "nothing committed"
    );

    // Earlier points still restore from the primary, with a warning about the secondary.
    let to = sb.path("out");
    let run = blockvault([
        "restore",
        "--json",
        "--vault",
        arg(&primary),
        "--vm",
        VM,
        "--point",
        str_of(&first, "/id"),
        "--from",
        "vault",
        "--to",
        arg(&to),
    ]);
    assert_eq!(run.code, 0, "{run}");
    let warned = warnings(&run.json());
    assert!(
        warned.len() == 1 && warned[0].contains(&secondary_name),
        "{run}"
    );
    assert_image(&to.join("disk.img"), &gen0);
    let show = blockvault(["vault", "show", "--json", "--vault", arg(&primary)]).success();
    assert_eq!(show.json()["secondary_available"], false, "{show}");
}

#[test]
fn the_secondary_opens_alone_and_restores_when_the_primary_is_lost() {
    let sb = Sandbox::new();
    let (primary, secondary) = replicated(&sb);
    let disk = standard_disk(&sb.path("disk.img"));
    let point = backup(&primary, VM, &[&disk.path], Some("64KiB"));
    let id = blockvault(["vault", "show", "--json", "--vault", arg(&primary)])
        .success()
        .json()["id"]
        .clone();
    fs::remove_dir_all(&primary).expect("lose the primary");

    let show = blockvault(["vault", "show", "--json", "--vault", arg(&secondary)]).success();
    let doc = show.json();
    assert_eq!(doc["redundancy"], "single", "{show}");
    assert_eq!(doc["replica_of"]["vault"], id, "{show}");
    assert_eq!(doc["vms"], serde_json::json!([VM]), "{show}");
    let listed = points(&secondary, VM);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], point["id"]);
    let to = sb.path("out");
    restore(&secondary, VM, &to, &["--from", "vault"]);
    assert_image(&to.join("disk.img"), &disk.snapshot());
}

#[test]
fn redundancy_changes_only_while_the_vault_holds_no_backup_items() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let secondary = sb.path("replica");
    let set = |args: &[&str]| {
        let mut all = vec!["vault", "set-redundancy", "--vault", arg(&vault)];
        all.extend_from_slice(args);
        blockvault(&all)
    };

    // Empty: allowed both ways; going replicated writes the secondary's config.
    let run = set(&["replicated", "--secondary", arg(&secondary)]).success();
    assert!(run.stdout.contains("is now replicated to"), "{run}");
    assert!(secondary.join("vault.config").is_file());
    let show = blockvault(["vault", "show", "--json", "--vault", arg(&vault)]).success();
    assert_eq!(show.json()["redundancy"], "replicated", "{show}");
    assert_eq!(show.json()["secondary_available"], true, "{show}");
    set(&["single"]).success();
    let show = blockvault(["vault", "show", "--json", "--vault", arg(&vault)]).success();
    assert_eq!(show.json()["redundancy"], "single", "{show}");
    assert_eq!(show.json()["secondary"], Value::Null, "{show}");

    // Back to replicated (a new secondary), then backups replicate.
    let second = sb.path("replica2");
    set(&["replicated", "--secondary", arg(&second)]).success();
    let web = small_disk(&sb.path("web.img"), 1);
    let db = small_disk(&sb.path("db.img"), 2);
    backup(&vault, "web01", &[&web.path], Some("64KiB"));
    backup(&vault, "db01", &[&db.path], Some("64KiB"));
    assert_eq!(objects(&vault), objects(&second));

    // With items: refused, exit 6, naming the VMs; nothing changed.
    let config = fs::read(vault.join("vault.config")).expect("config");
    let run = set(&["single"]);
    let line = run.failure(6);
    assert!(
        line.contains("redundancy is chosen before the first backup")
            && line.contains("db01, web01")
            && line.contains(arg(&vault)),
        "{run}"
    );
    let third = sb.path("replica3");
    let run = blockvault([
        "vault",
        "set-redundancy",
        "--json",
        "--vault",
        arg(&vault),
        "replicated",
        "--secondary",
        arg(&third),
    ]);
    assert_eq!(run.code, 6, "{run}");
    let doc: Value = serde_json::from_str(run.stderr.trim()).expect("json error");
    assert_eq!(doc["error"]["kind"], "refused", "{run}");
    assert_eq!(
        fs::read(vault.join("vault.config")).expect("config"),
        config
    );
    assert!(!third.exists() || entries(&third).is_empty());
}

#[test]
fn a_protected_vm_counts_as_a_backup_item() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 3);
    blockvault([
        "protect",
        "--vault",
        arg(&vault),
        "--vm",
        "db01",
        "--disk",
        arg(&disk.path),
    ])
    .success();
    let run = blockvault([
        "vault",
        "set-redundancy",
        "--vault",
        arg(&vault),
        "replicated",
        "--secondary",
        arg(&sb.path("replica")),
    ]);
    assert!(run.failure(6).contains("db01"), "{run}");
}

#[test]
fn redundancy_flags_are_checked() {
    let sb = Sandbox::new();
    let (vault, replica) = (sb.path("vault"), sb.path("replica"));
    let init = |args: &[&str]| {
        let mut all = vec!["vault", "init", "--vault", arg(&vault)];
        all.extend_from_slice(args);
        blockvault(&all)
    };
    let line = init(&["--redundancy", "replicated"]).failure(2).to_owned();
    assert!(line.contains("--secondary"), "{line}");
    let line = init(&["--secondary", arg(&replica)]).failure(2).to_owned();
    assert!(line.contains("--redundancy replicated"), "{line}");
    let line = init(&[
        "--redundancy",
        "replicated",
        "--secondary",
        arg(&vault.join("r")),
    ])
    .failure(2)
    .to_owned();
    assert!(line.contains("another place"), "{line}");
    assert!(!vault.exists(), "nothing created");
    let bogus = init(&["--redundancy", "bogus"]);
    assert_eq!(bogus.code, 2, "{bogus}");
    assert!(bogus.stderr.contains("bogus"), "{bogus}");

    sb.init_vault();
    let run = blockvault([
        "vault",
        "set-redundancy",
        "--vault",
        arg(&vault),
        "replicated",
    ]);
    assert!(run.failure(2).contains("--secondary"), "{run}");
}
