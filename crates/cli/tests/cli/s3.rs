//! The same commands with the vault on a real S3 server: the Garage that `scripts/test.sh`
//! starts and describes in `AWS_*` and `BLOCKVAULT_TEST_S3_BUCKET`. Never skipped in CI.

use std::ffi::OsStr;
use std::path::Path;

use serde_json::json;

use crate::support::{
    Sandbox, backup, blockvault, blockvault_with_env, points, restore, standard_disk,
};

const VM: &str = "s3vm";

/// A fresh `s3://BUCKET/PREFIX` location, or None (outside CI) when no server is configured.
fn s3_vault(name: &str) -> Option<String> {
    match std::env::var("BLOCKVAULT_TEST_S3_BUCKET") {
        Ok(bucket) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos();
            Some(format!("s3://{bucket}/cli/{name}-{nanos}"))
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("the S3 tests need the Garage server that scripts/test.sh starts")
        }
        Err(_) => {
            eprintln!("skipped: no S3 server in the environment; run scripts/test.sh");
            None
        }
    }
}

#[test]
fn init_backup_list_and_restore_on_s3() {
    let Some(location) = s3_vault("roundtrip") else {
        return;
    };
    let sb = Sandbox::new();
    let run = blockvault(["vault", "init", &location]).success();
    assert!(run.stdout.contains(&location), "{run}");
    let vault = Path::new(&location);
    let mut disk = standard_disk(&sb.path("disk.img"));
    let gen0 = disk.snapshot();
    let first = backup(vault, VM, &[&disk.path], Some("256KiB"));
    disk.write(3 << 20, b"changed on the second day");
    let second = backup(vault, VM, &[&disk.path], None);
    assert_eq!(second["stats"]["chunks_stored"], 1, "{second}");
    let listed = points(vault, VM);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], second["id"]);
    for point in &listed {
        assert_eq!(point["tiers"], json!(["snapshot", "vault"]), "{point}");
    }
    // The vault's record: the transfer to S3 also stored only the changed block.
    assert_eq!(listed[1]["stats"]["chunks_stored"], 1, "{}", listed[1]);

    // Both points from the S3 vault, and the latest from the snapshot tier as well.
    let latest = sb.path("latest");
    let report = restore(vault, VM, &latest, &["--from", "vault"]);
    assert_eq!(report["tier"], json!("vault"), "{report}");
    assert!(std::fs::read(latest.join("disk.img")).expect("read") == disk.content());
    let older = sb.path("older");
    let id = first["id"].as_str().expect("id");
    let report = restore(vault, VM, &older, &["--point", id, "--from", "vault"]);
    assert_eq!(report["tier"], json!("vault"), "{report}");
    assert!(std::fs::read(older.join("disk.img")).expect("read") == gen0);
    let instant = sb.path("instant");
    let report = restore(vault, VM, &instant, &[]);
    assert_eq!(report["tier"], json!("snapshot"), "{report}");
    assert!(std::fs::read(instant.join("disk.img")).expect("read") == disk.content());
    // The second init of the same location is refused.
    let run = blockvault(["vault", "init", &location]);
    assert_eq!(run.code, 2, "{run}");
}

#[test]
fn s3_failures_are_one_clear_line_without_secrets() {
    let Some(location) = s3_vault("errors") else {
        return;
    };
    blockvault(["vault", "init", &location]).success();
    let secret = "not-the-secret-7f3e9a";
    let run = blockvault_with_env(
        ["points", "--vault", &location],
        &[("AWS_SECRET_ACCESS_KEY", OsStr::new(secret))],
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(!run.stderr.contains(secret), "{run}");
    if let Ok(real) = std::env::var("AWS_SECRET_ACCESS_KEY") {
        assert!(!run.stderr.contains(&real), "{run}");
    }
    assert_eq!(run.stderr.lines().count(), 1, "{run}");

    let run = blockvault(["points", "--vault", "s3://no-such-bucket-blockvault/x"]);
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("bucket does not exist"), "{run}");

    let run = blockvault_with_env(
        ["points", "--vault", &location],
        &[("AWS_ALLOW_HTTP", OsStr::new("false"))],
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("plain HTTP"), "{run}");

    let sb = Sandbox::new();
    let run = blockvault_with_env(
        ["points", "--vault", &location],
        &[
            ("AWS_SECRET_ACCESS_KEY", OsStr::new("")),
            ("BLOCKVAULT_STATE_DIR", sb.path("state").as_os_str()),
        ],
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("AWS_SECRET_ACCESS_KEY"), "{run}");
}
