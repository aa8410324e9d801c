//! `forget`: one point or ad-hoc keep rules, soft-deleted (listed, refused by restore, brought
//! back by `undelete --point`), through the binary. The purge after 14 days and the `gc` that
//! follows it are tested on a simulated clock in `tests/e2e/forget.rs`.

use std::path::Path;

use serde_json::Value;

use super::Host;
use crate::support::{Image, KIB, MIB, arg, backup, noise, points, str_of};

/// A 4 MiB disk of `vm`, backed up `n` times with new noise each time: the images' contents
/// and the point ids, oldest first.
fn backed_up(host: &Host, vm: &str, n: u64) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut image = Image::create(&host.sb.path(&format!("{vm}.raw")), 4 * MIB);
    let (mut contents, mut ids) = (Vec::new(), Vec::new());
    for seed in 0..n {
        image.write(MIB + seed * 64 * KIB, &noise(64 * KIB, seed + 1));
        let point = backup(&host.vault, vm, &[&image.path], None);
        contents.push(image.snapshot());
        ids.push(str_of(&point, "/id").to_owned());
    }
    (contents, ids)
}

fn forget(host: &Host, vm: &str, args: &[&str]) -> Value {
    let mut all = vec!["forget", "--json", "--vault", arg(&host.vault), "--vm", vm];
    all.extend_from_slice(args);
    host.run(&all).success().json()
}

/// The ids in a list of markers (`forgotten`) or points (`kept`).
fn ids_in(doc: &Value, field: &str, key: &str) -> Vec<String> {
    doc[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {doc}"))
        .iter()
        .map(|m| str_of(m, key).to_owned())
        .collect()
}

/// The ids `points` lists as forgotten, and those it lists as live.
fn split(host: &Host, vm: &str) -> (Vec<String>, Vec<String>) {
    let (mut gone, mut live) = (Vec::new(), Vec::new());
    for p in points(&host.vault, vm) {
        let id = str_of(&p, "/id").to_owned();
        match p["soft_deleted"]["forgotten"] == true {
            true => gone.push(id),
            false => live.push(id),
        }
    }
    (gone, live)
}

fn restore_to(host: &Host, vm: &str, to: &Path, point: &str) -> crate::support::Run {
    host.run(&[
        "restore",
        "--vault",
        arg(&host.vault),
        "--vm",
        vm,
        "--to",
        arg(to),
        "--point",
        point,
    ])
}

#[test]
fn a_forgotten_point_is_listed_refused_by_restore_and_undeleted_byte_for_byte() {
    let host = Host::with_vault();
    let (contents, ids) = backed_up(&host, "web01", 2);
    let doc = forget(&host, "web01", &["--point", &ids[0]]);
    assert_eq!(doc["job"]["status"], "completed", "{doc}");
    assert_eq!(doc["job"]["operation"], "forget-points", "{doc}");
    assert_eq!(ids_of(&doc), [ids[0].clone()]);
    assert_eq!(doc["snapshot_points_removed"][0], ids[0].as_str(), "{doc}");
    let purge_after = str_of(&doc, "/forgotten/0/purge_after").to_owned();

    // Listed as soft-deleted with its purge date, in JSON and in the table.
    let listed = points(&host.vault, "web01");
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0]["soft_deleted"]["purge_after"],
        purge_after.as_str()
    );
    assert!(listed[1].get("soft_deleted").is_none(), "{}", listed[1]);
    let table = host
        .run(&["points", "--vault", arg(&host.vault), "--vm", "web01"])
        .success()
        .stdout;
    assert!(
        table.contains(&format!(
            "SOFT-DELETED (forgotten; purged {}",
            &purge_after[..10]
        )),
        "{table}"
    );
    // The vault holds the marker for every host; the snapshot tier lost its copy.
    assert!(
        host.vault
            .join("deleted-points/web01")
            .join(&ids[0])
            .is_file()
    );

    let target = host.sb.path("restored");
    let message = restore_to(&host, "web01", &target, &ids[0])
        .failure(6)
        .to_owned();
    assert!(
        message.contains(&ids[0]) && message.contains("undelete --vm web01 --point"),
        "{message}"
    );
    assert!(!target.exists(), "a refused restore writes nothing");
    // Forgetting it again is refused; an unknown point is not found.
    let again = host.run(&[
        "forget",
        "--vault",
        arg(&host.vault),
        "--vm",
        "web01",
        "--point",
        &ids[0],
    ]);
    assert!(again.failure(6).contains("forgotten"), "{again}");
    let unknown = host.run(&[
        "forget",
        "--vault",
        arg(&host.vault),
        "--vm",
        "web01",
        "--point",
        "29991231",
    ]);
    unknown.failure(3);
    let no_vm = host.run(&[
        "forget",
        "--vault",
        arg(&host.vault),
        "--vm",
        "db99",
        "--keep-last",
        "1",
    ]);
    no_vm.failure(3);

    let back = host
        .run(&[
            "undelete",
            "--vault",
            arg(&host.vault),
            "--vm",
            "web01",
            "--point",
            &ids[0],
            "--json",
        ])
        .success()
        .json();
    assert_eq!(back["undeleted"][0]["point"], ids[0].as_str(), "{back}");
    assert_eq!(split(&host, "web01"), (vec![], ids.clone()));
    restore_to(&host, "web01", &target, &ids[0]).success();
    assert_eq!(
        std::fs::read(target.join("web01.raw")).expect("restored"),
        contents[0],
        "the undeleted point restores byte for byte from the vault"
    );
    let nothing = host.run(&[
        "undelete",
        "--vault",
        arg(&host.vault),
        "--vm",
        "web01",
        "--point",
        &ids[0],
    ]);
    assert!(
        nothing.failure(3).contains("no forgotten point"),
        "{nothing}"
    );
}

fn ids_of(doc: &Value) -> Vec<String> {
    ids_in(doc, "forgotten", "/point")
}

#[test]
fn keep_rules_on_an_unprotected_vm_dry_run_first_then_for_real() {
    let host = Host::with_vault();
    let (_, ids) = backed_up(&host, "web01", 4);
    let before = crate::support::tree(&host.vault);

    let dry = forget(&host, "web01", &["--keep-last", "2", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert!(dry["job"].is_null(), "{dry}");
    assert_eq!(ids_of(&dry), ids[..2]);
    assert_eq!(ids_in(&dry, "kept", "/id"), ids[2..]);
    assert_eq!(
        crate::support::tree(&host.vault),
        before,
        "a dry run writes nothing"
    );
    assert_eq!(split(&host, "web01"), (vec![], ids.clone()));

    let done = forget(&host, "web01", &["--keep-last", "2"]);
    assert_eq!(done["job"]["status"], "completed", "{done}");
    assert_eq!(ids_of(&done), ids[..2]);
    assert_eq!(
        split(&host, "web01"),
        (ids[..2].to_vec(), ids[2..].to_vec())
    );

    // Forgotten points do not count again: keeping 1 forgets only the third.
    let one = forget(&host, "web01", &["--keep-last", "1", "--keep-daily", "1"]);
    assert_eq!(ids_of(&one), ids[2..3]);
    assert_eq!(ids_in(&one, "already_forgotten", "/point"), ids[..2]);
    assert_eq!(
        split(&host, "web01"),
        (ids[..3].to_vec(), ids[3..].to_vec())
    );
    // The newest restores as ever.
    let target = host.sb.path("latest");
    let restored = crate::support::restore(&host.vault, "web01", &target, &[]);
    assert_eq!(restored["point"], ids[3].as_str(), "{restored}");
}

#[test]
fn a_protected_vm_refuses_keep_rules_and_its_newest_point_needs_force() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 1);
    host.protect("web01", &disk, &[]);
    host.backup_now("web01");
    host.backup_now("web01");
    let ids = host.point_ids("web01");
    assert_eq!(ids.len(), 2);
    let vault = arg(&host.vault);
    let rules = host.run(&[
        "forget",
        "--vault",
        vault,
        "--vm",
        "web01",
        "--keep-last",
        "1",
    ]);
    let message = rules.failure(6);
    assert!(
        message.contains("DefaultPolicy") && message.contains("--point"),
        "{message}"
    );
    let newest = host.run(&[
        "forget", "--vault", vault, "--vm", "web01", "--point", &ids[1],
    ]);
    assert!(newest.failure(6).contains("--force"), "{newest}");
    assert_eq!(
        split(&host, "web01"),
        (vec![], ids.clone()),
        "nothing forgotten"
    );
    // An older point, and the newest with --force.
    forget(&host, "web01", &["--point", &ids[0]]);
    forget(&host, "web01", &["--point", &ids[1], "--force"]);
    assert_eq!(split(&host, "web01"), (ids.clone(), vec![]));
}

#[test]
fn bad_keep_values_and_no_rule_are_usage_errors_that_change_nothing() {
    let host = Host::with_vault();
    let (_, ids) = backed_up(&host, "web01", 1);
    let vault = arg(&host.vault);
    for bad in [
        &["--keep-daily", "0"][..],
        &["--keep-daily", "-1"],
        &["--keep-weekly", "many"],
        &["--point", &ids[0], "--keep-last", "1"],
    ] {
        let mut args = vec!["forget", "--vault", vault, "--vm", "web01"];
        args.extend_from_slice(bad);
        host.run(&args).parse_failure();
    }
    let none = host.run(&["forget", "--vault", vault, "--vm", "web01"]);
    assert!(none.failure(2).contains("no keep rule"), "{none}");
    let at = host.run(&[
        "forget",
        "--vault",
        vault,
        "--vm",
        "web01",
        "--at",
        "yesterday",
    ]);
    at.failure(2);
    assert_eq!(split(&host, "web01"), (vec![], ids));
    let help = host.run(&["forget", "--help"]).success().stdout;
    for needle in [
        "--keep-daily",
        "--dry-run",
        "14 days",
        "undelete",
        "--force",
        "Exit codes",
    ] {
        assert!(help.contains(needle), "help teaches {needle}: {help}");
    }
}
