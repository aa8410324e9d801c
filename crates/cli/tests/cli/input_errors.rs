//! Refused input: each failure exits with its documented code, says what was wrong in one line
//! on stderr, prints nothing on stdout, and changes nothing in the vault or the restore target.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

const VM: &str = "web01";

/// A vault with one committed point of a small disk.
struct OnePoint {
    sb: Sandbox,
    vault: PathBuf,
    point: Value,
}

fn one_point() -> OnePoint {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 7);
    let point = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    OnePoint { sb, vault, point }
}

/// Everything in the vault and in the VM's snapshot tier, with sizes: to show a failed command
/// wrote nothing in either.
fn vault_state(vault: &Path) -> Vec<(String, u64)> {
    let files = |dir: &Path, tier: &str| -> Vec<(String, u64)> {
        tree(dir)
            .into_iter()
            .map(|rel| {
                let len = fs::metadata(dir.join(&rel)).expect("stat").len();
                (format!("{tier}: {rel}"), len)
            })
            .collect()
    };
    let mut state = files(vault, "vault");
    state.extend(files(&snapshot_tier(vault, VM), "snapshot tier"));
    state
}

#[test]
fn a_missing_disk_is_not_found_and_commits_nothing() {
    let f = one_point();
    let before = vault_state(&f.vault);
    let missing = f.sb.path("gone.img");
    let run = blockvault([
        "backup",
        "--vault",
        arg(&f.vault),
        "--vm",
        VM,
        "--disk",
        arg(&missing),
    ]);
    let line = run.failure(3);
    assert!(line.contains(arg(&missing)), "{run}");
    assert!(line.contains("does not exist"), "{run}");
    assert_eq!(points(&f.vault, VM).len(), 1);
    assert_eq!(vault_state(&f.vault), before);
}

#[test]
fn one_missing_disk_of_two_commits_nothing() {
    let f = one_point();
    let before = vault_state(&f.vault);
    // A disk with new data, that would be stored if the backup went ahead.
    let data = small_disk(&f.sb.path("data.img"), 99);
    let missing = f.sb.path("logs.img");
    let run = blockvault([
        "backup",
        "--vault",
        arg(&f.vault),
        "--vm",
        VM,
        "--disk",
        arg(&data.path),
        "--disk",
        arg(&missing),
    ]);
    let line = run.failure(3);
    assert!(line.contains(arg(&missing)), "{run}");
    assert!(!line.contains("data.img"), "{run}");
    assert_eq!(points(&f.vault, VM).len(), 1);
    assert_eq!(
        vault_state(&f.vault),
        before,
        "no chunk, map or point written"
    );
}

#[test]
fn a_directory_is_not_a_disk() {
    let f = one_point();
    let before = vault_state(&f.vault);
    let dir = f.sb.path("images");
    fs::create_dir(&dir).expect("mkdir");
    let run = blockvault([
        "backup",
        "--vault",
        arg(&f.vault),
        "--vm",
        VM,
        "--disk",
        arg(&dir),
    ]);
    let line = run.failure(2);
    assert!(
        line.contains(arg(&dir)) && line.contains("directory"),
        "{run}"
    );
    assert_eq!(vault_state(&f.vault), before);
}

#[test]
fn two_disks_with_one_file_name_are_refused() {
    let f = one_point();
    let before = vault_state(&f.vault);
    let other = f.sb.path("other");
    fs::create_dir(&other).expect("mkdir");
    let twin = small_disk(&other.join("disk.img"), 8);
    let run = blockvault([
        "backup",
        "--vault",
        arg(&f.vault),
        "--vm",
        VM,
        "--disk",
        arg(&f.sb.path("disk.img")),
        "--disk",
        arg(&twin.path),
    ]);
    let line = run.failure(2);
    assert!(line.contains("share the name disk.img"), "{run}");
    assert_eq!(vault_state(&f.vault), before);
}

#[test]
fn block_sizes_must_be_powers_of_two_from_64kib_to_16mib() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 1);
    for (size, why) in [
        ("3MiB", "power of two"),
        ("100000", "power of two"),
        ("32KiB", "between 64KiB and 16MiB"),
        ("32MiB", "between 64KiB and 16MiB"),
        ("4GiB", "unknown unit"),
    ] {
        let run = blockvault([
            "backup",
            "--vault",
            arg(&vault),
            "--vm",
            VM,
            "--disk",
            arg(&disk.path),
            "--block-size",
            size,
        ]);
        let line = run.parse_failure();
        assert!(line.contains(size) && line.contains(why), "{size}: {run}");
        assert!(line.contains("--block-size"), "{run}");
    }
    assert_eq!(tree(&vault), ["vault.config"], "nothing written");
}

#[test]
fn a_directory_that_is_not_a_vault_is_not_found_for_every_command() {
    let sb = Sandbox::new();
    let disk = small_disk(&sb.path("disk.img"), 2);
    let empty = sb.path("empty");
    fs::create_dir(&empty).expect("mkdir");
    let missing = sb.path("missing");
    let file = sb.path("file");
    fs::write(&file, b"not a vault").expect("write");
    let to = sb.path("out");
    for (dir, reason) in [
        (&empty, "no vault.config"),
        (&missing, "does not exist"),
        (&file, "not a directory"),
    ] {
        let commands: [Vec<&str>; 4] = [
            vec!["backup", "--vm", VM, "--disk", arg(&disk.path)],
            vec!["points"],
            vec!["points", "--vm", VM],
            vec!["restore", "--vm", VM, "--to", arg(&to)],
        ];
        for command in commands {
            let mut args = command.clone();
            args.extend(["--vault", arg(dir)]);
            let run = blockvault(&args);
            let line = run.failure(3);
            assert!(
                line.contains(&format!("{} is not a blockvault vault", arg(dir))),
                "{run}"
            );
            assert!(line.contains(reason), "{run}");
            assert!(line.contains("blockvault vault init"), "{run}");
        }
    }
    assert!(
        entries(&empty).is_empty(),
        "nothing written into a non-vault"
    );
    assert!(!missing.exists(), "a missing vault is not created");
    assert!(!to.exists(), "no restore target created");
}

#[test]
fn vault_init_refuses_a_non_empty_directory_and_an_existing_vault() {
    let sb = Sandbox::new();
    let busy = sb.path("busy");
    fs::create_dir(&busy).expect("mkdir");
    fs::write(busy.join("notes.txt"), b"keep me").expect("write");
    let run = blockvault(["vault", "init", arg(&busy)]);
    let line = run.failure(2);
    assert!(
        line.contains(arg(&busy)) && line.contains("not empty"),
        "{run}"
    );
    assert_eq!(entries(&busy), ["notes.txt"]);
    assert_eq!(fs::read(busy.join("notes.txt")).expect("read"), b"keep me");

    let vault = sb.init_vault();
    let config = fs::read(vault.join("vault.config")).expect("read config");
    let run = blockvault(["vault", "init", arg(&vault)]);
    let line = run.failure(2);
    assert!(
        line.contains(arg(&vault)) && line.contains("already holds a vault"),
        "{run}"
    );
    assert_eq!(fs::read(vault.join("vault.config")).expect("read"), config);

    // An existing empty directory is fine.
    let fresh = sb.path("fresh");
    fs::create_dir(&fresh).expect("mkdir");
    blockvault(["vault", "init", arg(&fresh)]).success();
    assert_eq!(entries(&fresh), ["vault.config"]);
}

#[test]
fn an_unknown_vm_is_not_found() {
    let f = one_point();
    let to = f.sb.path("out");
    let run = blockvault(["points", "--vault", arg(&f.vault), "--vm", "nosuchvm"]);
    assert!(
        run.failure(3)
            .contains("VM nosuchvm has no recovery points"),
        "{run}"
    );
    let selectors: [&[&str]; 3] = [&[], &["--at", "2999-01-01T00:00:00Z"], &["--point", "2"]];
    for selector in selectors {
        let mut args = vec![
            "restore",
            "--vault",
            arg(&f.vault),
            "--vm",
            "nosuchvm",
            "--to",
            arg(&to),
        ];
        args.extend_from_slice(selector);
        let run = blockvault(&args);
        assert!(run.failure(3).contains("nosuchvm"), "{run}");
    }
    assert!(entries(&to).is_empty());
}

#[test]
fn an_unknown_or_ambiguous_point_is_refused() {
    let f = one_point();
    let disk = f.sb.path("disk.img");
    let second = backup(&f.vault, VM, &[&disk], None);
    let to = f.sb.path("out");
    let restore_point = |id: &str| {
        blockvault([
            "restore",
            "--vault",
            arg(&f.vault),
            "--vm",
            VM,
            "--to",
            arg(&to),
            "--point",
            id,
        ])
    };
    for id in ["20000101-000000-0000", "zz", "2026-nope"] {
        let run = restore_point(id);
        let line = run.failure(3);
        assert!(
            line.contains(&format!("VM {VM} has no point {id}")),
            "{run}"
        );
    }
    // Both points start with the century.
    let run = restore_point("20");
    let line = run.failure(2);
    assert!(
        line.contains("ambiguous") && line.contains("2 points"),
        "{run}"
    );
    assert!(entries(&to).is_empty());
    assert_eq!(
        points(&f.vault, VM)
            .iter()
            .map(|p| p["id"].clone())
            .collect::<Vec<_>>(),
        [f.point["id"].clone(), second["id"].clone()]
    );
}

#[test]
fn at_before_the_first_point_is_not_found_and_names_the_first_point() {
    let f = one_point();
    let to = f.sb.path("out");
    let run = blockvault([
        "restore",
        "--vault",
        arg(&f.vault),
        "--vm",
        VM,
        "--to",
        arg(&to),
        "--at",
        "2000-01-01T00:00:00Z",
    ]);
    let line = run.failure(3);
    assert!(line.contains("2000-01-01T00:00:00Z"), "{run}");
    assert!(
        line.contains(&format!("first point is at {}", str_of(&f.point, "/time"))),
        "{run}"
    );
    assert!(entries(&to).is_empty());
}

#[test]
fn an_unreadable_time_or_two_selectors_are_usage_errors() {
    let f = one_point();
    let to = f.sb.path("out");
    let base = [
        "restore",
        "--vault",
        arg(&f.vault),
        "--vm",
        VM,
        "--to",
        arg(&to),
    ];
    for at in ["yesterday", "2026-13-01T00:00:00Z", ""] {
        let mut args = base.to_vec();
        args.extend(["--at", at]);
        let run = blockvault(&args);
        let line = run.failure(2);
        assert!(line.contains(&format!("--at {at:?}")), "{run}");
        assert!(line.contains("RFC 3339"), "{run}");
    }
    let mut args = base.to_vec();
    args.extend(["--at", "2999-01-01T00:00:00Z", "--point", "2"]);
    let run = blockvault(&args);
    let line = run.parse_failure();
    assert!(line.contains("--at") && line.contains("--point"), "{run}");
    assert!(entries(&to).is_empty());
}

#[test]
fn bad_vm_names_are_usage_errors() {
    let f = one_point();
    for name in ["web/01", ".hidden", "has space"] {
        let run = blockvault(["points", "--vault", arg(&f.vault), "--vm", name]);
        let line = run.parse_failure();
        assert!(line.contains(name) && line.contains("VM name"), "{run}");
    }
}

#[test]
fn a_disk_file_name_that_is_not_a_disk_name_is_a_usage_error() {
    let f = one_point();
    let before = vault_state(&f.vault);
    let hidden = small_disk(&f.sb.path(".hidden.img"), 5);
    let run = blockvault([
        "backup",
        "--vault",
        arg(&f.vault),
        "--vm",
        VM,
        "--disk",
        arg(&hidden.path),
    ]);
    let line = run.failure(2);
    assert!(
        line.contains(".hidden.img") && line.contains("disk name"),
        "{run}"
    );
    assert_eq!(vault_state(&f.vault), before);
}
