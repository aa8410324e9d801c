//! `stop-protection`, `undelete` and what `items`, `points`, `restore`, `protect` and
//! `backup-now` make of a stopped or soft-deleted VM, through the binary. The 14 days cannot
//! pass here (the binary runs on the system clock): undelete on day 13 and the purge on day 14
//! are tested on a simulated clock in `tests/e2e/soft_delete.rs`.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::Host;
use crate::support::{arg, points, str_of};

/// `stop-protection --vm VM FLAG --json`, checked to succeed: the document.
fn stop(host: &Host, vm: &str, flag: &str) -> Value {
    let run = host
        .run(&["stop-protection", "--vm", vm, flag, "--json"])
        .success();
    run.json()
}

fn timestamp(value: &Value, field: &str) -> Timestamp {
    str_of(value, field)
        .parse()
        .unwrap_or_else(|e| panic!("{field} is not a time ({e}) in {value}"))
}

#[test]
fn stop_protection_takes_exactly_one_of_retain_or_delete_data_and_teaches_both() {
    let host = Host::with_vault();
    let neither = host.run(&["stop-protection", "--vm", "web01"]);
    assert_eq!(neither.code, 2, "{neither}");
    assert!(
        neither.stderr.contains("--retain-data|--delete-data"),
        "names the choice: {neither}"
    );
    let both = host.run(&[
        "stop-protection",
        "--vm",
        "web01",
        "--retain-data",
        "--delete-data",
    ]);
    let line = both.parse_failure();
    assert!(line.contains("cannot be used with"), "{both}");
    let message = host
        .run(&["stop-protection", "--vm", "web01", "--retain-data"])
        .failure(3)
        .to_owned();
    assert!(
        message.contains("web01") && message.contains("not protected"),
        "{message}"
    );

    let help = host.run(&["stop-protection", "--help"]).success().stdout;
    for needle in [
        "--retain-data",
        "--delete-data",
        "14 days",
        "blockvault undelete --vm NAME",
        "soft-deleted",
        "snapshot tier",
        "Exit codes:",
    ] {
        assert!(
            help.contains(needle),
            "stop-protection --help lacks {needle:?}:\n{help}"
        );
    }
    let help = host.run(&["undelete", "--help"]).success().stdout;
    assert!(
        help.contains("14 days") && help.contains("stopped"),
        "{help}"
    );
}

#[test]
fn delete_data_soft_deletes_the_points_and_undelete_brings_them_back_stopped() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 1);
    host.protect("web01", &disk, &[]);
    let point = str_of(&host.backup_now("web01"), "/point/id").to_owned();

    let before = Timestamp::now();
    let doc = stop(&host, "web01", "--delete-data");
    let after = Timestamp::now();
    assert_eq!(doc["mode"], "delete-data", "{doc}");
    assert_eq!(doc["job"]["operation"], "delete-backup-data", "{doc}");
    assert_eq!(doc["job"]["status"], "completed", "{doc}");
    assert_eq!(doc["snapshot_points_removed"], json!([point]), "{doc}");
    assert_eq!(doc["item"]["state"], "soft-deleted", "{doc}");
    let deleted = timestamp(&doc, "/item/deleted");
    assert!(before <= deleted && deleted <= after, "{doc}");
    let purge_after = timestamp(&doc, "/item/purge_after");
    assert_eq!(purge_after, deleted + SignedDuration::from_hours(14 * 24));
    let purge_date = purge_after.strftime("%Y-%m-%d").to_string();
    assert!(host.vault.join("deleted/web01").is_file());

    // items: the state, and no next backup.
    let item = host.item("web01");
    assert_eq!(item["state"], "soft-deleted", "{item}");
    assert_eq!(item["purge_after"], doc["item"]["purge_after"], "{item}");
    assert_eq!(item["next_backup"], Value::Null, "{item}");
    let text = host.run(&["items"]).success().stdout;
    assert!(
        text.contains(&format!("Soft-deleted (purged {purge_date})")),
        "{text}"
    );

    // points: still listed, as soft-deleted, from the vault only.
    let listed = points(&host.vault, "web01");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], point.as_str());
    assert_eq!(listed[0]["tiers"], json!(["vault"]), "{}", listed[0]);
    assert_eq!(
        listed[0]["soft_deleted"]["purge_after"], doc["item"]["purge_after"],
        "{}",
        listed[0]
    );
    let text = host
        .run(&["points", "--vault", arg(&host.vault), "--vm", "web01"])
        .success()
        .stdout;
    assert!(
        text.contains(&format!(
            "SOFT-DELETED (purged {purge_date}; undelete to restore)"
        )),
        "{text}"
    );

    // restore, backup-now, protect here and elsewhere: refused, saying why.
    let target = host.sb.path("restored");
    let message = host
        .run(&[
            "restore",
            "--vault",
            arg(&host.vault),
            "--vm",
            "web01",
            "--to",
            arg(&target),
        ])
        .failure(6)
        .to_owned();
    assert!(
        message.contains("soft-deleted") && message.contains("blockvault undelete --vm web01"),
        "{message}"
    );
    assert!(!target.exists());
    let message = host
        .run(&["backup-now", "--vm", "web01"])
        .failure(6)
        .to_owned();
    assert!(message.contains("undelete"), "{message}");
    let message = host
        .run(&["protect", "--vault", arg(&host.vault), "--vm", "web01"])
        .failure(6)
        .to_owned();
    assert!(message.contains("undelete it first"), "{message}");
    let other = host.sb.path("vault2");
    host.run(&["vault", "init", arg(&other)]).success();
    let message = host
        .run(&[
            "protect",
            "--vault",
            arg(&other),
            "--vm",
            "web01",
            "--disk",
            arg(&disk),
        ])
        .failure(6)
        .to_owned();
    assert!(
        message.contains(arg(&host.vault)) && message.contains(&purge_date),
        "names the vault and the purge date: {message}"
    );
    let message = host
        .run(&["stop-protection", "--vm", "web01", "--delete-data"])
        .failure(6)
        .to_owned();
    assert!(message.contains("soft-deleted"), "{message}");
    assert_eq!(host.jobs(&["--operation", "delete-backup-data"]).len(), 1);
    assert_eq!(host.jobs(&["--operation", "restore"]).len(), 0);

    // undelete: every point back, protection stopped with the data retained.
    let run = host.run(&["undelete", "--vm", "web01", "--json"]).success();
    assert_eq!(run.json()["item"]["state"], "stopped", "{run}");
    assert!(!host.vault.join("deleted/web01").exists());
    let item = host.item("web01");
    assert_eq!(item["state"], "stopped", "{item}");
    let text = host.run(&["items"]).success().stdout;
    assert!(text.contains("Stopped (data retained)"), "{text}");
    let listed = points(&host.vault, "web01");
    assert_eq!(listed[0]["soft_deleted"], Value::Null, "{}", listed[0]);
    assert_eq!(listed[0]["protection_stopped"], true, "{}", listed[0]);
    let restored = crate::support::restore(&host.vault, "web01", &target, &[]);
    assert_eq!(restored["point"], point.as_str(), "{restored}");
    assert_eq!(
        std::fs::read(target.join("web01.raw")).expect("restored"),
        std::fs::read(&disk).expect("disk"),
        "the undeleted point restores byte for byte"
    );
    let message = host
        .run(&["undelete", "--vm", "web01"])
        .failure(3)
        .to_owned();
    assert!(message.contains("no soft-deleted backup data"), "{message}");
}

#[test]
fn retain_data_keeps_the_points_protect_resumes_and_another_vault_may_protect_it() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 1);
    host.protect("web01", &disk, &[]);
    let point = str_of(&host.backup_now("web01"), "/point/id").to_owned();

    let doc = stop(&host, "web01", "--retain-data");
    assert_eq!(doc["mode"], "retain-data", "{doc}");
    assert_eq!(doc["job"], Value::Null, "no job: {doc}");
    assert_eq!(doc["item"]["state"], "stopped", "{doc}");
    assert_eq!(doc["snapshot_points_removed"], json!([]), "{doc}");
    let item = host.item("web01");
    assert_eq!(item["next_backup"], Value::Null, "{item}");
    let listed = points(&host.vault, "web01");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["tiers"],
        json!(["snapshot", "vault"]),
        "{}",
        listed[0]
    );
    assert_eq!(
        listed[0]["retention"],
        Value::Null,
        "not the policy's: {}",
        listed[0]
    );
    let text = host
        .run(&["points", "--vault", arg(&host.vault), "--vm", "web01"])
        .success()
        .stdout;
    assert!(text.contains("retained (protection stopped)"), "{text}");
    let message = host
        .run(&["backup-now", "--vm", "web01"])
        .failure(6)
        .to_owned();
    assert!(
        message.contains("stopped") && message.contains("resumes"),
        "{message}"
    );

    // protect (same vault, its disks and policy as they were): resumed.
    let run = host
        .run(&[
            "protect",
            "--json",
            "--vault",
            arg(&host.vault),
            "--vm",
            "web01",
        ])
        .success();
    assert_eq!(run.json()["item"]["state"], "protected", "{run}");
    let item = host.item("web01");
    assert_eq!(item["state"], "protected", "{item}");
    assert_ne!(item["next_backup"], Value::Null, "{item}");

    // Stopped again, another vault may protect it; the points stay in the first one.
    stop(&host, "web01", "--retain-data");
    let other = host.sb.path("vault2");
    host.run(&["vault", "init", arg(&other)]).success();
    let run = host
        .run(&[
            "protect",
            "--json",
            "--vault",
            arg(&other),
            "--vm",
            "web01",
            "--disk",
            arg(&disk),
        ])
        .success();
    assert_eq!(run.json()["job"]["status"], "completed", "{run}");
    let item = host.item("web01");
    assert_eq!(item["vault"], arg(&other), "{item}");
    assert_eq!(item["state"], "protected", "{item}");
    let listed = points(&host.vault, "web01");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], point.as_str());
}
