//! `blockvault gc` and `blockvault prune`: what they free and what they refuse.

use std::fs;

use crate::support::*;

const VM: &str = "web01";

/// A vault with two points of the standard disk at 64 KiB blocks; the second rewrote 1 MiB.
fn two_points(sb: &Sandbox) -> (std::path::PathBuf, Image, String, String) {
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    let first = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    disk.write(40 << 20, &noise(1 << 20, 99));
    let second = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    (
        vault,
        disk,
        str_of(&first, "/id").to_owned(),
        str_of(&second, "/id").to_owned(),
    )
}

fn gc(vault: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["gc", "--json", "--vault", arg(vault)];
    args.extend_from_slice(extra);
    blockvault(&args).success().json()["gc"].clone()
}

#[test]
fn gc_frees_the_chunks_of_a_deleted_point_and_nothing_else() {
    let sb = Sandbox::new();
    let (vault, disk, first, _) = two_points(&sb);
    let before = chunk_files(&vault).len() as u64;

    // Nothing is garbage; with the default grace, even a dry run keeps fresh chunks.
    let report = gc(&vault, &["--grace", "0s"]);
    assert_eq!(report["chunks_deleted"], 0, "{report}");
    assert_eq!(report["chunks_live"], before, "{report}");

    // The first point goes (as retention would delete it): its blocks that the second point
    // rewrote are garbage.
    fs::remove_file(vault.join("points").join(VM).join(&first)).expect("delete record");
    let garbage = before - distinct_blocks(&disk.snapshot(), 64 << 10).len() as u64;
    assert!(garbage > 0);
    let young = gc(&vault, &[]);
    assert_eq!(
        young["chunks_young"], garbage,
        "kept by the 1 h grace: {young}"
    );
    assert_eq!(young["chunks_deleted"], 0);
    assert_eq!(
        young["orphan_maps_deleted"], 1,
        "the deleted point's maps: {young}"
    );
    let dry = gc(&vault, &["--grace", "0s", "--dry-run"]);
    assert_eq!(dry["chunks_deleted"], garbage, "{dry}");
    assert_eq!(
        chunk_files(&vault).len() as u64,
        before,
        "a dry run deletes nothing"
    );

    let run = blockvault(["gc", "--vault", arg(&vault), "--grace", "0s"]).success();
    assert!(
        run.stdout.contains(&format!("deleted {garbage} chunk(s)")),
        "{run}"
    );
    assert_eq!(chunk_files(&vault).len() as u64, before - garbage);
    assert!(!vault.join("maps").join(VM).join(&first).exists());
    restore(&vault, VM, &sb.path("out"), &["--from", "vault"]);
    assert_image(&sb.path("out").join("disk.img"), &disk.snapshot());
}

/// Writes `bytes` at `path` (parents created) as a staging file last written `age` ago.
fn leftover(path: &std::path::Path, bytes: &[u8], age: std::time::Duration) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, bytes).expect("write leftover");
    let file = fs::File::options().write(true).open(path).expect("open");
    file.set_modified(std::time::SystemTime::now() - age)
        .expect("set mtime");
}

#[test]
fn gc_removes_the_staging_files_of_killed_writers_once_they_are_old() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = standard_disk(&sb.path("disk.img"));
    let point = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let point = str_of(&point, "/id");
    let chunks = chunk_files(&vault).len();
    let hours = std::time::Duration::from_secs(2 * 3600);

    // What writers killed mid-put leave: a map of a backup that never got further (alone in
    // its point's directory), a point record, a chunk (in a fan-out directory no chunk of the
    // disk uses); and one still young (a put under way).
    let killed = vault
        .join("maps")
        .join(VM)
        .join("20260101-000000-0000")
        .join("disk.map#1");
    leftover(&killed, &[1; 3000], hours);
    let record = vault.join("points").join(VM).join(format!("{point}#4"));
    leftover(&record, &[2; 200], hours);
    let used: std::collections::HashSet<std::ffi::OsString> = chunk_files(&vault)
        .iter()
        .filter_map(|f| f.parent().and_then(|p| p.file_name()).map(|n| n.to_owned()))
        .collect();
    let fan = (0..=255u8)
        .map(|b| format!("{b:02x}"))
        .find(|f| !used.contains(std::ffi::OsStr::new(f)))
        .expect("a free fan-out directory");
    let chunk = vault
        .join("chunks")
        .join(&fan)
        .join(format!("{}#2", fan.repeat(32)));
    leftover(&chunk, &[3; 100], hours);
    let young = vault.join("maps").join(VM).join(point).join("disk.map#9");
    leftover(&young, &[4; 50], std::time::Duration::from_secs(600));

    let dry = gc(&vault, &["--dry-run"]);
    assert_eq!(dry["leftovers_deleted"], 3, "{dry}");
    assert_eq!(dry["leftover_bytes"], 3300, "{dry}");
    for path in [&killed, &record, &chunk, &young] {
        assert!(
            path.exists(),
            "a dry run deletes nothing: {}",
            path.display()
        );
    }
    // Staging files stay at least an hour whatever the grace: a running put may own them.
    let no_grace = gc(&vault, &["--grace", "0s", "--dry-run"]);
    assert_eq!(no_grace["leftovers_deleted"], 3, "{no_grace}");

    let run = blockvault(["gc", "--vault", arg(&vault)]).success();
    assert!(run.stdout.contains("deleted 3 staging file(s)"), "{run}");
    assert!(
        run.stdout.contains("and 0 orphan block map(s)"),
        "the killed backup's directory is not taken for a point's maps: {run}"
    );
    for path in [&killed, &record, &chunk] {
        assert!(!path.exists(), "{} is deleted", path.display());
    }
    assert!(young.exists(), "a young staging file stays");
    assert!(
        !killed.parent().expect("dir").exists(),
        "the point directory it was alone in goes too"
    );
    assert!(
        chunk.parent().expect("fan").exists(),
        "fan-out directories stay, even empty"
    );
    let again = gc(&vault, &[]);
    assert_eq!(again["leftovers_deleted"], 0, "{again}");
    assert_eq!(again["orphan_maps_deleted"], 0, "{again}");
    assert_eq!(chunk_files(&vault).len(), chunks, "no chunk was touched");
    restore(&vault, VM, &sb.path("out"), &["--from", "vault"]);
    assert_image(&sb.path("out").join("disk.img"), &disk.snapshot());
}

#[test]
fn gc_refuses_bad_durations_and_missing_vaults() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let bad = blockvault(["gc", "--vault", arg(&vault), "--grace", "soon"]);
    assert!(bad.parse_failure().contains("not a duration"), "{bad}");
    let missing = sb.path("nowhere");
    let run = blockvault(["gc", "--vault", arg(&missing)]);
    assert!(run.failure(3).contains("not a blockvault vault"), "{run}");
}

#[test]
fn gc_stops_before_deleting_anything_when_a_map_is_unreadable() {
    let sb = Sandbox::new();
    let (vault, _, first, second) = two_points(&sb);
    fs::remove_file(vault.join("points").join(VM).join(&first)).expect("delete record");
    let before = chunk_files(&vault).len();
    flip_middle(&map_file(&vault, VM, &second, "disk.img"), 64);
    let run = blockvault(["gc", "--vault", arg(&vault), "--grace", "0s"]);
    let line = run.failure(4);
    assert!(line.contains("stopped before deleting anything"), "{run}");
    assert!(line.contains(&second), "names the point: {run}");
    assert_eq!(chunk_files(&vault).len(), before, "nothing deleted");
}

#[test]
fn prune_needs_a_protected_vm_and_keeps_the_last_point_of_each_day() {
    let sb = Sandbox::new();
    let (vault, disk, first, second) = two_points(&sb);
    let run = blockvault(["prune", "--vault", arg(&vault), "--vm", VM]);
    assert!(run.failure(3).contains("not protected"), "{run}");

    blockvault([
        "protect",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ])
    .success();
    // Both points were taken today: the daily rule keeps the day's last one.
    let run = blockvault(["prune", "--json", "--vault", arg(&vault), "--dry-run"]).success();
    let doc = run.json();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["vms"][0]["vm"], VM, "{run}");
    assert_eq!(doc["vms"][0]["kept"], 1, "{run}");
    assert_eq!(doc["vms"][0]["expired"][0]["id"], first.as_str(), "{run}");
    assert_eq!(points(&vault, VM).len(), 2, "a dry run deletes nothing");

    let run = blockvault(["prune", "--vault", arg(&vault)]).success();
    assert!(run.stdout.contains(&format!("deleted {first}")), "{run}");
    let left: Vec<String> = points(&vault, VM)
        .iter()
        .filter(|p| {
            p["tiers"]
                .as_array()
                .is_some_and(|t| t.contains(&"vault".into()))
        })
        .map(|p| str_of(p, "/id").to_owned())
        .collect();
    assert_eq!(
        left,
        vec![second],
        "only the day's last point is left in the vault"
    );
    assert!(!vault.join("points").join(VM).join(&first).exists());
}
