//! Malformed S3 settings through the binary, no server needed: each panicked `object_store`
//! on the first request (exit 101 and a backtrace). Now they are usage errors (exit 2) in one
//! line that names the setting, the value and the expected form, and nothing runs: no job, no
//! snapshot.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;

const EXPECTED: &str = "expected http://HOST:PORT or https://HOST[:PORT]";

/// A backup of a small disk to an S3 vault, with `env` and the state directory `state`.
fn backup_to_s3(sb: &Sandbox, state: &Path, env: &[(&str, &OsStr)]) -> Run {
    let disk = small_disk(&sb.path("disk.img"), 3);
    let mut env = env.to_vec();
    env.push(("BLOCKVAULT_STATE_DIR", state.as_os_str()));
    env.push(("AWS_ACCESS_KEY_ID", OsStr::new("GK1")));
    env.push(("AWS_SECRET_ACCESS_KEY", OsStr::new("s3cr3t")));
    env.push(("AWS_ALLOW_HTTP", OsStr::new("true")));
    blockvault_with_env(
        [
            "backup",
            "--vault",
            "s3://bucket/p",
            "--vm",
            "vm1",
            "--disk",
            arg(&disk.path),
        ],
        &env,
    )
}

/// Nothing ran: no job in the catalog, no snapshot tier.
fn assert_nothing_ran(state: &Path) {
    assert!(!state.join("snapshots").exists(), "{:?}", tree(state));
    let run = blockvault_with_env(
        ["jobs", "--json"],
        &[("BLOCKVAULT_STATE_DIR", state.as_os_str())],
    )
    .success();
    let jobs: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{run}");
}

#[test]
fn malformed_endpoints_in_the_environment_are_usage_errors_not_panics() {
    for bad in [
        "127.0.0.1:3900",
        "http://127.0.0.1:99999",
        "http://[::1",
        "ftp://host",
        "http://127.0.0.1:3900/path?x=1",
        " http://127.0.0.1:3900",
    ] {
        let sb = Sandbox::new();
        let state = sb.path("state");
        let run = backup_to_s3(&sb, &state, &[("AWS_ENDPOINT_URL", OsStr::new(bad))]);
        let line = run.failure(2);
        assert!(
            line.contains("AWS_ENDPOINT_URL")
                && line.contains(&format!("{bad:?}"))
                && line.contains(EXPECTED),
            "{run}"
        );
        assert!(!run.stderr.contains("panicked"), "{run}");
        assert_nothing_ran(&state);
    }
}

#[test]
fn a_malformed_endpoint_in_s3_toml_is_named_with_the_file() {
    for bad in ["", "http://127.0.0.1:99999", "127.0.0.1:3900"] {
        let sb = Sandbox::new();
        let state = sb.path("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let file = state.join("s3.toml");
        std::fs::write(&file, format!("endpoint = {bad:?}\n")).expect("s3.toml");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let run = backup_to_s3(&sb, &state, &[]);
        let line = run.failure(2);
        assert!(
            line.contains(arg(&file)) && line.contains("endpoint") && line.contains(EXPECTED),
            "{run}"
        );
        assert_nothing_ran(&state);
        // The same through `points`, as JSON: the usage kind and code.
        let run = blockvault_with_env(
            ["points", "--vault", "s3://bucket/p", "--json"],
            &[("BLOCKVAULT_STATE_DIR", state.as_os_str())],
        );
        assert_eq!(run.code, 2, "{run}");
        let error: serde_json::Value = serde_json::from_str(run.stderr.trim()).expect("json");
        assert_eq!(error["error"]["kind"], "usage", "{run}");
    }
}

/// Checks an S3 failure's message: one line, short, no XML, and no repeats of its cause.
pub fn assert_one_short_line(run: &Run, must: &[&str]) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run}");
    let line = lines[0];
    assert!(line.len() < 300, "{} characters: {run}", line.len());
    assert!(
        !line.contains("<?xml") && !line.contains("Error performing"),
        "{run}"
    );
    for word in must {
        assert!(line.contains(word), "{word:?} missing: {run}");
    }
}

/// Nothing listens on the endpoint: one line that says which request could not connect, how
/// long it was retried, and what to check (it repeated its cause chain three times).
#[test]
fn a_dead_endpoint_is_one_short_line() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let sb = Sandbox::new();
    let state = sb.path("state");
    let endpoint = format!("http://127.0.0.1:{port}");
    let run = blockvault_with_env(
        ["points", "--vault", "s3://bucket/p"],
        &[
            ("BLOCKVAULT_STATE_DIR", state.as_os_str()),
            ("AWS_ENDPOINT_URL", OsStr::new(&endpoint)),
            ("AWS_ACCESS_KEY_ID", OsStr::new("GK1")),
            ("AWS_SECRET_ACCESS_KEY", OsStr::new("s3cr3t")),
            ("AWS_ALLOW_HTTP", OsStr::new("true")),
            ("BLOCKVAULT_S3_RETRY_BUDGET_SECS", OsStr::new("1")),
        ],
    );
    assert_eq!(run.code, 1, "{run}");
    assert_one_short_line(
        &run,
        &[
            "bucket/p/vault.config",
            &endpoint,
            "could not connect",
            "check the endpoint",
        ],
    );
    assert_eq!(run.stderr.matches("Connection refused").count(), 1, "{run}");
}
