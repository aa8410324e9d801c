//! `points` and `restore` when the vault cannot be opened: this host's snapshot tier answers
//! only for a vault the host knows at that location (by its id), with that vault's points
//! only and a warning; a location it does not know lists nothing and fails with the
//! documented code.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Run, Sandbox, arg, blockvault, standard_disk, text};

/// One host (one state directory) backing up to two vaults: `web` to A, `db` to B.
struct TwoVaults {
    sb: Sandbox,
    state: PathBuf,
    a: PathBuf,
    b: PathBuf,
    a_id: String,
    web: Vec<u8>,
}

impl TwoVaults {
    fn new() -> TwoVaults {
        let sb = Sandbox::new();
        let state = sb.path("state");
        let (a, b) = (sb.path("vault-a"), sb.path("vault-b"));
        let host = |args: &[&str]| run(&state, args);
        host(&["vault", "init", arg(&a)]).success();
        host(&["vault", "init", arg(&b)]).success();
        let a_id = host(&["vault", "show", "--json", "--vault", arg(&a)])
            .success()
            .json()["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let web = standard_disk(&sb.path("web.img"));
        let mut db = crate::support::Image::create(&sb.path("db.img"), 4 << 20);
        db.write(0, &text(100 << 10, 9));
        for (vault, vm, disk) in [(&a, "web", &web.path), (&b, "db", &db.path)] {
            let doc = host(&[
                "backup",
                "--json",
                "--vault",
                arg(vault),
                "--vm",
                vm,
                "--disk",
                arg(disk),
            ])
            .success()
            .json();
            assert_eq!(doc["job"]["status"], "completed", "{doc}");
        }
        TwoVaults {
            web: web.snapshot(),
            sb,
            state,
            a,
            b,
            a_id,
        }
    }

    fn host(&self, args: &[&str]) -> Run {
        run(&self.state, args)
    }
}

/// `blockvault --state-dir STATE ARGS`.
fn run(state: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--state-dir", arg(state)];
    all.extend_from_slice(args);
    blockvault(&all)
}

fn vms_listed(doc: &Value) -> Vec<String> {
    let mut vms: Vec<String> = doc["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["vm"].as_str().expect("vm").to_owned())
        .collect();
    vms.dedup();
    vms
}

#[test]
fn a_mistyped_vault_lists_nothing_and_exits_3() {
    let t = TwoVaults::new();
    let typo = t.sb.path("vault-x");
    let run = t.host(&["points", "--vault", arg(&typo)]);
    let line = run.failure(3);
    assert!(line.contains("vault-x"), "{run}");
    let run = t.host(&["points", "--vault", arg(&typo), "--vm", "web"]);
    run.failure(3);
    // A directory that exists but is no vault: the same.
    let run = t.host(&["points", "--vault", arg(&t.sb.path("state"))]);
    run.failure(3);
    let to = t.sb.path("restored");
    let run = t.host(&[
        "restore",
        "--vault",
        arg(&typo),
        "--vm",
        "web",
        "--to",
        arg(&to),
    ]);
    run.failure(3);
    assert!(!to.join("web.img").exists(), "{run}");
}

#[test]
fn another_vault_sees_none_of_this_vaults_tier_points() {
    let t = TwoVaults::new();
    let doc = t
        .host(&["points", "--json", "--vault", arg(&t.b)])
        .success()
        .json();
    assert_eq!(vms_listed(&doc), ["db"], "{doc}");
    let run = t.host(&["points", "--vault", arg(&t.b), "--vm", "web"]);
    run.failure(3);
}

#[test]
fn a_known_vault_that_cannot_be_opened_answers_from_the_tier_with_a_warning() {
    let t = TwoVaults::new();
    let moved = t.sb.path("vault-a-moved");
    fs::rename(&t.a, &moved).expect("move vault A away");

    let run = t.host(&["points", "--json", "--vault", arg(&t.a)]);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    // Vault A's points only: db's (taken for B) stay out.
    assert_eq!(vms_listed(&doc), ["web"], "{doc}");
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("cannot be opened")
            && warnings.contains(&format!(
                "showing this host's snapshot tier copies of vault {}",
                t.a_id
            )),
        "{doc}"
    );
    // In text, the warning goes to stderr.
    let run = t.host(&["points", "--vault", arg(&t.a), "--vm", "web"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains("snapshot tier copies of vault"),
        "{run}"
    );
    // db has no point of vault A.
    let run = t.host(&["points", "--vault", arg(&t.a), "--vm", "db"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(run.stdout.is_empty(), "{run}");

    // Restore from the tier works, byte for byte, saying so.
    let to = t.sb.path("restored");
    let run = t.host(&[
        "restore",
        "--json",
        "--vault",
        arg(&t.a),
        "--vm",
        "web",
        "--to",
        arg(&to),
    ]);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    assert_eq!(doc["tier"], "snapshot", "{doc}");
    assert!(
        doc["warnings"]
            .to_string()
            .contains("snapshot tier copies of vault"),
        "{doc}"
    );
    let restored = fs::read(to.join("web.img")).expect("restored image");
    assert!(restored == t.web, "the restored image differs");
    // db's points (vault B's) do not restore through vault A's name.
    let run = t.host(&[
        "restore",
        "--vault",
        arg(&t.a),
        "--vm",
        "db",
        "--to",
        arg(&t.sb.path("db-restored")),
    ]);
    assert_ne!(run.code, 0, "{run}");
    assert!(!t.sb.path("db-restored").join("db.img").exists(), "{run}");
    // Asked for the vault's copy: the vault's error.
    let run = t.host(&[
        "restore",
        "--vault",
        arg(&t.a),
        "--vm",
        "web",
        "--from",
        "vault",
        "--to",
        arg(&t.sb.path("from-vault")),
    ]);
    run.failure(3);
}

#[test]
fn an_unreachable_vault_this_host_does_not_know_lists_nothing_and_exits_1() {
    let t = TwoVaults::new();
    // A port nothing listens on: the connection is refused at once.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("AWS_ENDPOINT_URL", std::ffi::OsStr::new(&endpoint)),
        ("AWS_ACCESS_KEY_ID", std::ffi::OsStr::new("GK1")),
        ("AWS_SECRET_ACCESS_KEY", std::ffi::OsStr::new("s3cr3t")),
        ("AWS_ALLOW_HTTP", std::ffi::OsStr::new("true")),
        ("BLOCKVAULT_S3_RETRY_BUDGET_SECS", std::ffi::OsStr::new("1")),
    ];
    let args = [
        "--state-dir",
        arg(&t.state),
        "points",
        "--vault",
        "s3://elsewhere/p",
    ];
    // This host's snapshot tier holds points (of A and B), none for this location.
    let run = crate::support::blockvault_with_env(args, &env);
    let line = run.failure(1);
    assert!(line.contains("could not connect"), "{run}");
}
