//! Protection held by the vault: one host protects a VM at a time (a second state directory
//! is refused naming the first), a new host sees what a vault protects (`items --vault`),
//! `--take-over` moves a VM deliberately, and `protect` says which existing points the policy's
//! retention removes (points made with `backup --retain-until` are not among them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Background, Host, days_from_now};
use crate::support::{arg, points, str_of};

/// Another host (its own state directory) on `host`'s vault.
fn other(host: &Host, name: &str) -> Host {
    Host {
        sb: crate::support::Sandbox::new(),
        state: host.sb.path(name),
        vault: host.vault.clone(),
    }
}

/// `items --vault VAULT --json` on `host`: what the vault records.
fn vault_items(host: &Host) -> Vec<Value> {
    let run = host
        .run(&["items", "--vault", arg(&host.vault), "--json"])
        .success();
    run.json()["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items\n{run}"))
        .clone()
}

fn host_id(state: &Path) -> String {
    let text = std::fs::read_to_string(state.join("host.json")).expect("host.json");
    let doc: Value = serde_json::from_str(&text).expect("json");
    str_of(&doc, "/id").to_owned()
}

#[test]
fn a_second_host_is_refused_naming_the_first_and_a_third_sees_the_item_and_its_policy() {
    let a = Host::with_vault();
    let disk = a.disk("web01.raw", 1);
    a.protect("web01", &disk, &[]);
    let a_id = host_id(&a.state);

    let b = other(&a, "state-b");
    let run = b.run(&[
        "protect",
        "--vault",
        arg(&b.vault),
        "--vm",
        "web01",
        "--disk",
        arg(&disk),
    ]);
    let error = run.failure(6);
    assert!(error.contains("protected in this vault by host"), "{run}");
    assert!(error.contains(&a_id), "{run}");
    assert!(error.contains(arg(&a.state)), "{run}");
    assert!(error.contains("--take-over"), "{run}");
    // Nothing recorded on the refused host.
    let listed = b.run(&["items", "--json"]).success().json();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );

    // The same host protecting again (a policy change) updates its record.
    a.run(&["policy", "create", "nightly", "--at", "02:30"])
        .success();
    a.protect("web01", &disk, &["--policy", "nightly"]);

    let c = other(&a, "state-c");
    let seen = vault_items(&c);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["vm"], "web01");
    assert_eq!(seen[0]["policy"], "nightly");
    assert_eq!(seen[0]["state"], "protected");
    assert_eq!(seen[0]["held_by_this_host"], false);
    assert_eq!(seen[0]["host"]["id"], a_id.as_str());
    assert!(
        str_of(&seen[0], "/policy_settings").contains("nightly"),
        "{}",
        seen[0]
    );
    let text = c.run(&["items", "--vault", arg(&c.vault)]).success();
    assert!(text.stdout.contains("another host"), "{text}");
    let mine = vault_items(&a);
    assert_eq!(mine[0]["held_by_this_host"], true, "{mine:?}");

    // Another host's keep rules do not override the holder's policy either.
    let first = backup(&a, &disk, &[]);
    let run = c.run(&[
        "forget",
        "--vault",
        arg(&c.vault),
        "--vm",
        "web01",
        "--keep-last",
        "1",
    ]);
    let error = run.failure(6);
    assert!(error.contains("policy nightly"), "{run}");
    assert!(error.contains(&a_id), "{run}");
    let run = c.run(&[
        "forget",
        "--vault",
        arg(&c.vault),
        "--vm",
        "web01",
        "--point",
        &first,
    ]);
    assert!(run.failure(6).contains("--force"), "{run}");
    assert!(
        points(&a.vault, "web01")
            .iter()
            .any(|p| p["id"] == first.as_str())
    );
}

#[test]
fn take_over_moves_the_vm_and_the_first_host_stops_backing_it_up() {
    let a = Host::with_vault();
    let disk = a.disk("web01.raw", 2);
    a.protect("web01", &disk, &[]);
    // Stopped (data retained) still holds it: another host is refused.
    a.run(&["stop-protection", "--vm", "web01", "--retain-data"])
        .success();
    let b = other(&a, "state-b");
    let protect_b = |extra: &[&str]| {
        let mut args = vec![
            "protect",
            "--json",
            "--vault",
            arg(&b.vault),
            "--vm",
            "web01",
            "--disk",
            arg(&disk),
        ];
        args.extend_from_slice(extra);
        b.run(&args)
    };
    let refused = protect_b(&[]).json_failure(6);
    assert!(
        refused.contains("protected in this vault by host"),
        "{refused}"
    );
    assert_eq!(vault_items(&a)[0]["state"], "stopped");
    a.protect("web01", &disk, &[]);

    let run = protect_b(&["--take-over"]).success();
    let doc = run.json();
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    assert_eq!(
        doc["taken_over_from"]["host"]["id"],
        host_id(&a.state).as_str(),
        "{run}"
    );
    let seen = vault_items(&a);
    assert_eq!(seen[0]["host"]["id"], host_id(&b.state).as_str());

    // The first host may no longer back it up on demand...
    let refused = a.run(&["backup-now", "--vm", "web01"]);
    assert!(refused.failure(6).contains(&host_id(&b.state)), "{refused}");
    // ... and its daemon stops the protection there when it starts.
    let log = a.sb.path("daemon.log");
    let _daemon = Background(Some(
        Command::new(env!("CARGO_BIN_EXE_blockvault"))
            .args(["daemon", "--state-dir", arg(&a.state), "--poll", "1"])
            .args(["--log", arg(&log)])
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("taken over by") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no take-over in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.item("web01")["state"], "stopped");
    // The new holder's record is untouched.
    assert_eq!(vault_items(&b)[0]["host"]["id"], host_id(&b.state).as_str());
}

/// `backup --vault VAULT --vm VM --disk DISK [EXTRA] --json` on `host`: the point id.
fn backup(host: &Host, disk: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "backup",
        "--json",
        "--vault",
        arg(&host.vault),
        "--vm",
        "web01",
        "--disk",
        arg(disk),
    ];
    args.extend_from_slice(extra);
    let run = host.run(&args).success();
    str_of(&run.json(), "/point/id").to_owned()
}

#[test]
fn protect_warns_of_the_points_retention_removes_and_spares_those_retained_until() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 3);
    let until = days_from_now(10);
    let kept = backup(&host, &disk, &["--retain-until", &until]);
    let second = backup(&host, &disk, &[]);
    let third = backup(&host, &disk, &[]);
    let last = backup(&host, &disk, &[]);
    let listed = points(&host.vault, "web01");
    let record = listed
        .iter()
        .find(|p| p["id"] == kept.as_str())
        .unwrap_or_else(|| panic!("{kept} not in {listed:?}"));
    assert_eq!(record["retain_until"], until.as_str(), "{record}");

    let doc = host.protect("web01", &disk, &[]);
    let doomed: Vec<&str> = doc["doomed_points"]
        .as_array()
        .unwrap_or_else(|| panic!("no doomed_points in {doc}"))
        .iter()
        .map(|p| p["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(doomed, [second.as_str(), third.as_str()], "{doc}");
    assert!(
        str_of(&doc, "/doomed_points/0/why").contains("keeps the day's last"),
        "{doc}"
    );
    // The text says the same.
    let run = host
        .run(&["protect", "--vault", arg(&host.vault), "--vm", "web01"])
        .success();
    assert!(run.stdout.contains("removes 2 existing point(s)"), "{run}");
    assert!(
        run.stdout.contains(&second) && run.stdout.contains(&third),
        "{run}"
    );
    assert!(!run.stdout.contains(&kept), "{run}");

    host.run(&["prune", "--vault", arg(&host.vault), "--vm", "web01"])
        .success();
    // What the vault holds (the snapshot tier keeps its copies for their instant-restore days).
    let left: Vec<String> = points(&host.vault, "web01")
        .iter()
        .filter(|p| {
            p["tiers"]
                .as_array()
                .is_some_and(|t| t.contains(&"vault".into()))
        })
        .map(|p| str_of(p, "/id").to_owned())
        .collect();
    assert_eq!(left, [kept, last], "{left:?}");
}

#[test]
fn backup_retain_until_in_the_past_is_refused_and_records_nothing() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 4);
    let run = host.run(&[
        "backup",
        "--vault",
        arg(&host.vault),
        "--vm",
        "web01",
        "--disk",
        arg(&disk),
        "--retain-until",
        "2001-01-01T00:00:00Z",
    ]);
    assert!(run.failure(2).contains("retain until"), "{run}");
    assert!(points(&host.vault, "web01").is_empty());
}
