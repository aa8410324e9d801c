//! With `--json`, a failure is one JSON object on stderr whose code is the exit code.

use std::fs;

use crate::support::*;

const VM: &str = "web01";

#[test]
fn every_kind_of_failure_is_one_json_object_on_stderr() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let taken = sb.path("taken");
    fs::create_dir(&taken).expect("mkdir");
    fs::write(taken.join("disk.img"), b"x").expect("write");
    let busy = sb.path("busy");
    fs::create_dir(&busy).expect("mkdir");
    fs::write(busy.join("f"), b"x").expect("write");
    let v = arg(&vault);
    let o1 = arg(&sb.path("o1")).to_owned();

    let mut cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (restore_args(v, arg(&taken)), 1, "--force"),
        (vec!["vault", "init", "--json", arg(&busy)], 2, "not empty"),
        (
            [restore_args(v, &o1), vec!["--at", "soon"]].concat(),
            2,
            "soon",
        ),
        (
            vec!["points", "--json", "--vault", v, "--vm", "nosuchvm"],
            3,
            "nosuchvm",
        ),
        (
            vec![
                "backup",
                "--json",
                "--vault",
                v,
                "--vm",
                VM,
                "--disk",
                "/nonexistent/d.img",
            ],
            3,
            "/nonexistent/d.img",
        ),
        (
            vec!["points", "--json", "--vault", arg(&busy)],
            3,
            "blockvault vault init",
        ),
    ];
    // An integrity failure: a chunk of the point is damaged in the vault, and the restore is
    // asked to read the vault (by default it reads the intact snapshot tier).
    let block = &disk.content()[20 * MIB as usize..(20 * MIB + 64 * KIB) as usize];
    flip_middle(&chunk_file(&vault, block), 8);
    let out = sb.path("o2");
    cases.push((
        [restore_args(v, arg(&out)), vec!["--from", "vault"]].concat(),
        4,
        "offset",
    ));
    // A tier that does not have the point is "not found".
    let o3 = sb.path("o3");
    let no_snapshots = sb.path("no-snapshots");
    cases.push((
        vec![
            "restore",
            "--json",
            "--vault",
            v,
            "--vm",
            VM,
            "--to",
            arg(&o3),
            "--from",
            "snapshot",
            "--snapshot-dir",
            arg(&no_snapshots),
        ],
        3,
        "snapshot",
    ));

    for (args, code, needle) in cases {
        let run = blockvault(&args);
        let message = run.json_failure(code);
        assert!(message.contains(needle), "{needle:?}\n{run}");
    }
    assert!(entries(&out).is_empty());
    assert!(entries(&o3).is_empty());

    // Success with --json is one document on stdout and nothing on stderr: the job with both
    // subtasks, and the point.
    disk.write(0, &noise(4 * KIB, 60));
    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        v,
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ])
    .success();
    let doc = run.json();
    assert!(doc["point"]["id"].is_string(), "{run}");
    assert_eq!(doc["warnings"], serde_json::json!([]), "{run}");
    let job = &doc["job"];
    assert!(job["id"].is_u64(), "{run}");
    assert_eq!(job["vm"], VM, "{run}");
    assert_eq!(job["operation"], "backup", "{run}");
    assert_eq!(job["status"], "completed", "{run}");
    assert_eq!(job["point"], doc["point"]["id"], "{run}");
    assert_eq!(job["error"], serde_json::Value::Null, "{run}");
    for field in ["started", "ended"] {
        let time = job[field].as_str().unwrap_or_default();
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{field}\n{run}");
    }
    let subtasks = job["subtasks"].as_array().expect("subtasks");
    assert_eq!(subtasks.len(), 2, "{run}");
    for (subtask, kind) in subtasks.iter().zip(["snapshot", "transfer"]) {
        assert_eq!(subtask["kind"], kind, "{run}");
        assert_eq!(subtask["status"], "completed", "{run}");
        assert_eq!(subtask["error"], serde_json::Value::Null, "{run}");
        for field in ["bytes_scanned", "bytes_changed", "bytes_uploaded"] {
            assert!(subtask[field].is_u64(), "{kind} {field}\n{run}");
        }
    }
}

#[test]
fn argument_errors_are_json_too() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 1);
    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
        "--block-size",
        "3MiB",
    ]);
    let message = run.json_failure(2);
    assert!(
        message.contains("3MiB") && message.contains("power of two"),
        "{run}"
    );

    // What is missing is named, not left after a colon.
    let run = blockvault(["backup", "--json", "--vault", arg(&vault), "--vm", VM]);
    let message = run.json_failure(2);
    assert!(
        message.contains("not provided") && message.contains("--disk <PATH>"),
        "{run}"
    );
    assert!(!message.contains("Usage"), "{run}");
}

/// `restore --json` of `VM` from `vault` into `to`.
fn restore_args<'a>(vault: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "restore", "--json", "--vault", vault, "--vm", VM, "--to", to,
    ]
}
