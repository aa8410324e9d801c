//! Policies and the protection lifecycle through the binary (SPEC "Policies" and "Protection
//! lifecycle"): `policy create/show/list/apply/delete`, `protect`, `items`, `backup-now`, and
//! the Standard -> Enhanced migration; `stop-protection` and `undelete` in `soft_delete`.
//!
//! `policy`, `items`, `backup-now` and `jobs` take no `--vault`, so every command here runs with
//! the test's host state directory given explicitly (`--state-dir` beats the
//! `BLOCKVAULT_STATE_DIR` that [`blockvault`] sets), and the one vault of a test has that same
//! state directory ([`host_state`]).

mod forget;
mod holder;
mod soft_delete;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::{
    Image, KIB, MIB, Run, Sandbox, arg, blockvault, host_state, noise, points, str_of, u64_of,
};

/// One test's host: a sandbox, its state directory and (when initialised) its vault.
#[derive(Debug)]
struct Host {
    sb: Sandbox,
    state: PathBuf,
    vault: PathBuf,
}

impl Host {
    /// A host with nothing in its state directory yet (no vault either).
    fn bare() -> Host {
        let sb = Sandbox::new();
        let state = sb.path("state");
        let vault = sb.path("vault");
        Host { sb, state, vault }
    }

    /// A host with a vault at `SANDBOX/vault`, whose state directory is the one [`blockvault`]
    /// gives runs on that vault.
    fn with_vault() -> Host {
        let sb = Sandbox::new();
        let vault = sb.init_vault();
        let state = host_state(&vault);
        Host { sb, state, vault }
    }

    /// `blockvault ARGS --state-dir STATE`.
    fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--state-dir", arg(&self.state)]);
        blockvault(&all)
    }

    /// A 4 MiB sparse raw disk with 256 KiB of noise tagged by `seed`.
    fn disk(&self, name: &str, seed: u64) -> PathBuf {
        let mut image = Image::create(&self.sb.path(name), 4 * MIB);
        image.write(MIB + 512, &noise(256 * KIB, seed));
        image.path
    }

    /// `policy list --json`: the entries.
    fn policies(&self) -> Vec<Value> {
        let run = self.run(&["policy", "list", "--json"]).success();
        run.json()["policies"]
            .as_array()
            .unwrap_or_else(|| panic!("no policies array\n{run}"))
            .clone()
    }

    fn policy_names(&self) -> Vec<String> {
        self.policies()
            .iter()
            .map(|e| str_of(e, "/policy/name").to_owned())
            .collect()
    }

    /// `policy show NAME --json`: the policy document.
    fn policy(&self, name: &str) -> Value {
        let run = self.run(&["policy", "show", name, "--json"]).success();
        run.json()["policy"].clone()
    }

    /// `items --json`: the protected items.
    fn items(&self) -> Vec<Value> {
        let run = self.run(&["items", "--json"]).success();
        let doc = run.json();
        assert_eq!(doc["warnings"], json!([]), "{run}");
        doc["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items array\n{run}"))
            .clone()
    }

    /// The one protected item of `vm`.
    fn item(&self, vm: &str) -> Value {
        let items = self.items();
        let found: Vec<&Value> = items.iter().filter(|i| i["vm"] == vm).collect();
        assert_eq!(found.len(), 1, "one item for {vm} in {items:?}");
        found[0].clone()
    }

    /// `jobs --json FILTERS`: the jobs, newest first.
    fn jobs(&self, filters: &[&str]) -> Vec<Value> {
        let mut args = vec!["jobs", "--json"];
        args.extend_from_slice(filters);
        let run = self.run(&args).success();
        run.json()["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("no jobs array\n{run}"))
            .clone()
    }

    /// `protect --vault VAULT --vm VM --disk DISK [EXTRA]`, checked to succeed.
    fn protect(&self, vm: &str, disk: &Path, extra: &[&str]) -> Value {
        let mut args = vec![
            "protect",
            "--json",
            "--vault",
            arg(&self.vault),
            "--vm",
            vm,
            "--disk",
            arg(disk),
        ];
        args.extend_from_slice(extra);
        let run = self.run(&args).success();
        let doc = run.json();
        assert_eq!(doc["job"]["status"], "completed", "{run}");
        doc
    }

    /// `backup-now --vm VM --json`, checked: a Completed job; returns the document.
    fn backup_now(&self, vm: &str) -> Value {
        let run = self.run(&["backup-now", "--vm", vm, "--json"]).success();
        let doc = run.json();
        assert_eq!(doc["job"]["status"], "completed", "{run}");
        doc
    }

    /// The ids of the points of `vm` that `points` lists.
    fn point_ids(&self, vm: &str) -> Vec<String> {
        points(&self.vault, vm)
            .iter()
            .map(|p| str_of(p, "/id").to_owned())
            .collect()
    }
}

/// `policy create NAME ARGS` refused with exit 2: the error line.
fn refused_policy(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["policy", "create", "bad"];
    all.extend_from_slice(args);
    host.run(&all).failure(2).to_owned()
}

/// The status of the subtask `kind` of a job document.
fn subtask_status<'a>(job: &'a Value, kind: &str) -> &'a str {
    job["subtasks"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["kind"] == kind))
        .and_then(|s| s["status"].as_str())
        .unwrap_or_else(|| panic!("no {kind} subtask in {job}"))
}

/// A time `days` days from now (whole seconds), as RFC 3339.
fn days_from_now(days: i64) -> String {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now + days * 86_400)
        .expect("a representable time")
        .to_string()
}

// ---- policies -----------------------------------------------------------------------------

#[test]
fn out_of_range_policy_values_are_refused_naming_field_value_and_range() {
    let host = Host::bare();
    // (flags, the field, its value as the message spells it, the allowed range)
    let table: &[(&[&str], &str, &str, &str)] = &[
        (
            &["--instant-restore-days", "6"],
            "instant-restore-days",
            "6",
            "1-5",
        ),
        (
            &["--type", "enhanced", "--instant-restore-days", "31"],
            "instant-restore-days",
            "31",
            "1-30",
        ),
        (
            &["--type", "enhanced", "--hourly", "5"],
            "every-hours",
            "5",
            "4, 6, 8 or 12",
        ),
        (&["--hourly", "4"], "frequency", "\"hourly\"", "Enhanced"),
        (
            &["--type", "enhanced", "--hourly", "4", "--window", "25"],
            "window-hours",
            "25",
            "1-24",
        ),
        (&["--daily-retention", "6"], "daily-days", "6", "7-9999"),
        (&["--weekly-retention", "0"], "weekly.weeks", "0", "1-5163"),
        (
            &["--timezone", "Mars/Base"],
            "timezone",
            "\"Mars/Base\"",
            "IANA",
        ),
        (&["--at", "25:00"], "at", "\"25:00\"", "23:59"),
    ];
    for (flags, field, value, allowed) in table {
        let message = refused_policy(&host, flags);
        assert!(
            message.contains(&format!("{field} = {value} ")),
            "{flags:?}: field and value in {message:?}"
        );
        assert!(
            message.contains(allowed),
            "{flags:?}: allowed range {allowed:?} in {message:?}"
        );
    }
    assert_eq!(host.policy_names(), ["DefaultPolicy"]);
    host.run(&["policy", "show", "bad"]).failure(3);
}

#[test]
fn a_fresh_host_has_the_default_policy_and_new_policies_take_their_types_defaults() {
    let host = Host::bare();
    let listed = host.policies();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["protects"], json!([]));
    let default = &listed[0]["policy"];
    assert_eq!(default["name"], "DefaultPolicy");
    assert_eq!(default["type"], "standard");
    assert_eq!(default["schedule"]["frequency"], "daily");
    assert_eq!(default["schedule"]["at"], "23:00");
    assert_eq!(default["timezone"], "UTC");
    assert_eq!(default["instant-restore-days"], 2);
    assert_eq!(default["retention"]["daily-days"], 30);
    for longer in ["weekly", "monthly", "yearly"] {
        assert_eq!(default["retention"][longer], Value::Null, "{default}");
    }

    let run = host
        .run(&["policy", "create", "x", "--type", "enhanced", "--json"])
        .success();
    assert_eq!(run.json()["result"], "created", "{run}");
    let x = host.policy("x");
    assert_eq!(x["type"], "enhanced");
    assert_eq!(x["instant-restore-days"], 7);
    assert_eq!(x["retention"]["daily-days"], 180);
    assert_eq!(x["schedule"]["frequency"], "hourly");
    assert_eq!(x["schedule"]["every-hours"], 4);
    assert_eq!(x["schedule"]["start"], "08:00");
    assert_eq!(x["schedule"]["window-hours"], 24);
    // The host's zone (TZ=UTC).
    assert_eq!(x["timezone"], "UTC");

    let run = host.run(&["policy", "create", "s", "--json"]).success();
    let s = &run.json()["policy"];
    assert_eq!(s["type"], "standard", "{run}");
    assert_eq!(s["instant-restore-days"], 2, "{run}");
    assert_eq!(s["retention"]["daily-days"], 30, "{run}");
    assert_eq!(host.policy_names(), ["DefaultPolicy", "s", "x"]);

    // A name is taken once.
    host.run(&["policy", "create", "x", "--type", "enhanced"])
        .failure(6);
}

#[test]
fn policies_round_trip_through_toml_files() {
    let host = Host::bare();
    host.run(&["policy", "create", "x", "--type", "enhanced"])
        .success();
    let toml = host
        .run(&["policy", "show", "x", "--toml"])
        .success()
        .stdout;
    assert!(toml.contains("name = \"x\"\n"), "{toml}");
    assert!(toml.contains("instant-restore-days = 7\n"), "{toml}");
    let y_text = toml
        .replace("name = \"x\"", "name = \"y\"")
        .replace("instant-restore-days = 7", "instant-restore-days = 12");
    assert_ne!(y_text, toml);
    let y_file = host.sb.path("y.toml");
    std::fs::write(&y_file, &y_text).expect("write y.toml");

    let run = host.run(&["policy", "apply", arg(&y_file)]).success();
    assert_eq!(run.stdout.trim(), "created policy y", "{run}");
    let y = host.policy("y");
    assert_eq!(y["type"], "enhanced");
    assert_eq!(y["instant-restore-days"], 12);
    assert_eq!(y["retention"]["daily-days"], 180);
    assert_eq!(y["schedule"], host.policy("x")["schedule"]);
    // What `show --toml` prints of the applied policy is the file applied.
    let shown = host
        .run(&["policy", "show", "y", "--toml"])
        .success()
        .stdout;
    assert_eq!(shown.trim_end(), y_text.trim_end());

    let run = host
        .run(&["policy", "apply", arg(&y_file), "--json"])
        .success();
    assert_eq!(
        run.json()["applied"],
        json!([{ "name": "y", "result": "updated" }]),
        "{run}"
    );
    let run = host.run(&["policy", "apply", arg(&y_file)]).success();
    assert_eq!(run.stdout.trim(), "updated policy y", "{run}");

    // y as a Standard policy: a type change of an existing policy.
    let default_toml = host
        .run(&["policy", "show", "DefaultPolicy", "--toml"])
        .success()
        .stdout;
    let standard_y = default_toml.replace("name = \"DefaultPolicy\"", "name = \"y\"");
    assert_ne!(standard_y, default_toml);
    let standard_file = host.sb.path("y-standard.toml");
    std::fs::write(&standard_file, standard_y).expect("write y-standard.toml");
    let message = host
        .run(&["policy", "apply", arg(&standard_file)])
        .failure(6)
        .to_owned();
    assert!(message.contains("policy y "), "{message}");
    assert!(message.contains("type"), "{message}");
    assert_eq!(host.policy("y"), y);

    // Out of range in a file: exit 2, nothing changes (not even a valid file beside it).
    let bad_text = y_text.replace("instant-restore-days = 12", "instant-restore-days = 31");
    assert_ne!(bad_text, y_text);
    let bad_file = host.sb.path("y-bad.toml");
    std::fs::write(&bad_file, bad_text).expect("write y-bad.toml");
    let z_file = host.sb.path("z.toml");
    std::fs::write(&z_file, y_text.replace("name = \"y\"", "name = \"z\"")).expect("write z");
    let message = host
        .run(&["policy", "apply", arg(&z_file), arg(&bad_file)])
        .failure(2)
        .to_owned();
    assert!(message.contains("y-bad.toml"), "names the file: {message}");
    assert_eq!(host.policy("y"), y);
    assert_eq!(host.policy_names(), ["DefaultPolicy", "x", "y"]);
}

#[test]
fn a_policy_file_with_an_out_of_range_value_is_refused_naming_field_value_and_range() {
    let host = Host::bare();
    let toml = host
        .run(&["policy", "show", "DefaultPolicy", "--toml"])
        .success()
        .stdout;
    let bad_text = toml
        .replace("name = \"DefaultPolicy\"", "name = \"w\"")
        .replace("instant-restore-days = 2", "instant-restore-days = 6");
    assert!(bad_text.contains("instant-restore-days = 6"), "{bad_text}");
    let bad_file = host.sb.path("w.toml");
    std::fs::write(&bad_file, bad_text).expect("write w.toml");
    let message = host
        .run(&["policy", "apply", arg(&bad_file)])
        .failure(2)
        .to_owned();
    assert!(message.contains("w.toml"), "names the file: {message}");
    assert!(
        message.contains("instant-restore-days = 6") && message.contains("1-5"),
        "names field, value and range: {message}"
    );
    assert_eq!(host.policy_names(), ["DefaultPolicy"]);
}

#[test]
fn policy_apply_is_all_or_nothing_when_a_later_file_changes_a_policys_type() {
    let host = Host::bare();
    host.run(&["policy", "create", "y", "--type", "enhanced"])
        .success();
    let default_toml = host
        .run(&["policy", "show", "DefaultPolicy", "--toml"])
        .success()
        .stdout;
    let z_file = host.sb.path("z.toml");
    std::fs::write(
        &z_file,
        default_toml.replace("name = \"DefaultPolicy\"", "name = \"z\""),
    )
    .expect("write z.toml");
    let y_file = host.sb.path("y.toml");
    std::fs::write(
        &y_file,
        default_toml.replace("name = \"DefaultPolicy\"", "name = \"y\""),
    )
    .expect("write y.toml");
    host.run(&["policy", "apply", arg(&z_file), arg(&y_file)])
        .failure(6);
    assert_eq!(host.policy_names(), ["DefaultPolicy", "y"]);
}

#[test]
fn a_policy_that_protects_a_vm_cannot_be_deleted_and_an_unknown_one_is_not_found() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 1);
    host.run(&["policy", "create", "nightly", "--at", "02:30"])
        .success();
    host.protect("web01", &disk, &["--policy", "nightly"]);

    let message = host
        .run(&["policy", "delete", "nightly"])
        .failure(6)
        .to_owned();
    assert!(
        message.contains("nightly") && message.contains("web01"),
        "{message}"
    );
    let nightly = host
        .policies()
        .into_iter()
        .find(|e| e["policy"]["name"] == "nightly")
        .expect("nightly still listed");
    assert_eq!(nightly["protects"], json!(["web01"]));
    assert_eq!(host.item("web01")["policy"], "nightly");

    let message = host
        .run(&["policy", "delete", "nope"])
        .failure(3)
        .to_owned();
    assert!(message.contains("nope"), "{message}");

    // An unused policy goes, but for the default, which `protect` without --policy needs.
    host.run(&["policy", "create", "spare"]).success();
    let run = host.run(&["policy", "delete", "spare"]).success();
    assert_eq!(run.stdout.trim(), "deleted policy spare", "{run}");
    let message = host
        .run(&["policy", "delete", "DefaultPolicy"])
        .failure(6)
        .to_owned();
    assert!(message.contains("policy edit DefaultPolicy"), "{message}");
    assert_eq!(host.policy_names(), ["DefaultPolicy", "nightly"]);
}

// ---- protection ---------------------------------------------------------------------------

#[test]
fn protect_checks_the_disks_and_a_vm_is_protected_by_one_vault_only() {
    let host = Host::with_vault();
    let missing = host.sb.path("gone.raw");
    let message = host
        .run(&[
            "protect",
            "--vault",
            arg(&host.vault),
            "--vm",
            "web01",
            "--disk",
            arg(&missing),
        ])
        .failure(3)
        .to_owned();
    assert!(message.contains(arg(&missing)), "{message}");
    let jobs = host.jobs(&[]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["operation"], "configure-backup");
    assert_eq!(jobs[0]["status"], "failed");
    assert_eq!(jobs[0]["vm"], "web01");
    assert!(
        str_of(&jobs[0], "/error").contains(arg(&missing)),
        "{}",
        jobs[0]
    );
    let failed = u64_of(&jobs[0], "/id");
    assert!(
        message.contains(&format!("job {failed} ")),
        "names the job: {message}"
    );
    assert_eq!(host.items(), Vec::<Value>::new());

    let disk = host.disk("web01.raw", 1);
    let doc = host.protect("web01", &disk, &[]);
    assert_eq!(doc["job"]["operation"], "configure-backup");
    let item = host.item("web01");
    assert_eq!(item["policy"], "DefaultPolicy");
    assert_eq!(item["vault"], arg(&host.vault));
    assert_eq!(item["disks"], json!([arg(&disk)]));
    assert_eq!(item["last_backup"], Value::Null, "{item}");
    assert_eq!(item["latest_point"], Value::Null, "{item}");
    assert_eq!(
        host.policies()[0]["protects"],
        json!(["web01"]),
        "DefaultPolicy protects web01"
    );

    // A second vault on the same host.
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
        message.contains(arg(&host.vault)) && !message.contains(arg(&other)),
        "names the first vault: {message}"
    );
    assert_eq!(host.item("web01")["vault"], arg(&host.vault));
}

#[test]
fn a_protected_vm_is_backed_up_with_its_vault_however_the_path_is_spelled() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 1);
    host.protect("web01", &disk, &[]);

    // `backup --vault vault` from the sandbox: the same directory.
    let output = Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args(["backup", "--vault", "vault", "--vm", "web01", "--disk"])
        .arg(&disk)
        .args(["--state-dir", arg(&host.state)])
        .current_dir(host.sb.path(""))
        .env("TZ", "UTC")
        .env_remove("BLOCKVAULT_VAULT")
        .env_remove("BLOCKVAULT_SNAPSHOT_DIR")
        .output()
        .expect("run blockvault");
    let relative = (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );

    // `protect --vault VAULT/`: the same directory again.
    let with_slash = format!("{}/", arg(&host.vault));
    let slash = host.run(&["protect", "--vault", &with_slash, "--vm", "web01"]);
    assert!(
        relative.0 == Some(0) && slash.code == 0,
        "relative path: {relative:?}\ntrailing slash:\n{slash}"
    );
}

#[test]
fn backup_now_backs_up_a_protected_vm_and_keeps_the_point_until_the_given_date() {
    let host = Host::with_vault();
    let message = host
        .run(&["backup-now", "--vm", "web01"])
        .failure(3)
        .to_owned();
    assert!(message.contains("web01"), "{message}");

    let disk = host.disk("web01.raw", 1);
    host.protect("web01", &disk, &[]);
    let past = days_from_now(-1);
    let message = host
        .run(&["backup-now", "--vm", "web01", "--retain-until", &past])
        .failure(2)
        .to_owned();
    assert!(message.contains("retain until"), "{message}");
    assert_eq!(
        host.jobs(&["--operation", "backup-on-demand"]),
        Vec::<Value>::new()
    );

    let until = days_from_now(400);
    let run = host
        .run(&[
            "backup-now",
            "--vm",
            "web01",
            "--retain-until",
            &until,
            "--json",
        ])
        .success();
    let doc = run.json();
    assert_eq!(doc["job"]["operation"], "backup-on-demand", "{run}");
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    assert_eq!(subtask_status(&doc["job"], "snapshot"), "completed");
    assert_eq!(subtask_status(&doc["job"], "transfer"), "completed");
    assert_eq!(doc["point"]["retain_until"], until.as_str(), "{run}");
    assert_eq!(doc["retain_until"], until.as_str(), "{run}");
    let point = str_of(&doc, "/point/id").to_owned();
    let job = u64_of(&doc, "/job/id");

    let jobs = host.jobs(&["--operation", "backup-on-demand"]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["id"], job);
    assert_eq!(jobs[0]["status"], "completed");
    assert_eq!(jobs[0]["point"], point.as_str());

    let listed = points(&host.vault, "web01");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], point.as_str());
    assert_eq!(listed[0]["retain_until"], until.as_str(), "{}", listed[0]);

    let item = host.item("web01");
    assert_eq!(item["last_backup"]["job"], job, "{item}");
    assert_eq!(item["last_backup"]["status"], "completed", "{item}");
    assert_eq!(
        item["last_backup"]["operation"], "backup-on-demand",
        "{item}"
    );
    assert_eq!(item["latest_point"]["id"], point.as_str(), "{item}");
    assert_eq!(
        item["latest_point"]["tiers"],
        json!(["snapshot", "vault"]),
        "{item}"
    );
}

// ---- migration ----------------------------------------------------------------------------

/// A `blockvault` child process, killed if the test fails while it runs.
#[derive(Debug)]
struct Background(Option<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn migrating_to_enhanced_waits_for_backups_keeps_every_point_and_cannot_be_undone() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 1);
    host.run(&["policy", "create", "enh", "--type", "enhanced"])
        .success();
    host.protect("web01", &disk, &[]);
    let first = str_of(&host.backup_now("web01"), "/point/id").to_owned();

    // (a) A backup of the VM in progress: the migration is refused, naming its job.
    // Run the way `blockvault()` runs it: on the vault's host state (`host.state`).
    let args: Vec<String> = [
        "backup",
        "--json",
        "--vault",
        arg(&host.vault),
        "--vm",
        "web01",
        "--disk",
        arg(&disk),
        "--pre-hook",
        "sleep 3",
    ]
    .map(str::to_owned)
    .to_vec();
    let child = crate::jobs::fixture::spawn(&host.vault, &args);
    let mut background = Background(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        let jobs = host.jobs(&["--status", "in-progress", "--vm", "web01"]);
        if let Some(job) = jobs.iter().find(|j| j["operation"] == "backup") {
            break u64_of(job, "/id");
        }
        if let Some(child) = background.0.as_mut() {
            let status = child.try_wait().expect("poll the background backup");
            assert!(status.is_none(), "the backup ended ({status:?}) too soon");
        }
        assert!(Instant::now() < deadline, "the backup job never showed");
        std::thread::sleep(Duration::from_millis(20));
    };
    let message = host
        .run(&[
            "protect",
            "--vault",
            arg(&host.vault),
            "--vm",
            "web01",
            "--policy",
            "enh",
        ])
        .failure(6)
        .to_owned();
    assert!(
        message.contains(&format!("job {running} ")),
        "names job {running}: {message}"
    );
    assert!(
        host.jobs(&["--status", "in-progress", "--vm", "web01"])
            .iter()
            .any(|j| j["id"] == running),
        "the refusal came while job {running} was still running"
    );
    assert_eq!(host.item("web01")["policy"], "DefaultPolicy");
    assert_eq!(
        host.jobs(&["--operation", "configure-backup-migrate"]),
        Vec::<Value>::new()
    );

    let output = background
        .0
        .take()
        .expect("the background backup")
        .wait_with_output()
        .expect("wait for the background backup");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "background backup: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).expect("backup --json document");
    assert_eq!(doc["job"]["id"], running, "{doc}");
    assert_eq!(doc["job"]["status"], "completed", "{doc}");
    let second = str_of(&doc, "/point/id").to_owned();
    assert_eq!(host.item("web01")["policy"], "DefaultPolicy");

    // (b) Nothing in progress: the migration runs as a backup job and keeps every point.
    let before = host.point_ids("web01");
    assert!(
        before.contains(&first) && before.contains(&second),
        "{before:?}"
    );
    let run = host
        .run(&[
            "protect",
            "--json",
            "--vault",
            arg(&host.vault),
            "--vm",
            "web01",
            "--policy",
            "enh",
        ])
        .success();
    let doc = run.json();
    assert_eq!(doc["job"]["operation"], "configure-backup-migrate", "{run}");
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    assert_eq!(doc["item"]["policy"], "enh", "{run}");
    let migration = u64_of(&doc, "/job/id");
    let jobs = host.jobs(&["--operation", "configure-backup-migrate"]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["id"], migration);
    assert_eq!(jobs[0]["status"], "completed");
    assert_eq!(subtask_status(&jobs[0], "snapshot"), "completed");
    assert_eq!(subtask_status(&jobs[0], "transfer"), "completed");
    let migrated_point = str_of(&jobs[0], "/point").to_owned();

    let item = host.item("web01");
    assert_eq!(item["policy"], "enh", "{item}");
    assert_eq!(item["last_backup"]["job"], migration, "{item}");
    assert_eq!(
        item["latest_point"]["id"],
        migrated_point.as_str(),
        "{item}"
    );
    let after = host.point_ids("web01");
    for id in &before {
        assert!(after.contains(id), "point {id} lost: {after:?}");
    }
    assert!(after.contains(&migrated_point), "{after:?}");
    assert_eq!(after.len(), before.len() + 1, "{after:?}");

    // (c) Back to Standard: refused (exit 6), irreversible.
    let message = host
        .run(&[
            "protect",
            "--vault",
            arg(&host.vault),
            "--vm",
            "web01",
            "--policy",
            "DefaultPolicy",
        ])
        .failure(6)
        .to_owned();
    assert!(message.contains("irreversible"), "{message}");
    assert_eq!(host.item("web01")["policy"], "enh");
    assert_eq!(host.point_ids("web01"), after);
}

#[test]
fn points_show_what_the_policy_keeps_each_vault_point_for() {
    let host = Host::with_vault();
    let disk = host.disk("web01.raw", 1);
    host.protect("web01", &disk, &[]);
    let until = days_from_now(400);
    let kept = host
        .run(&[
            "backup-now",
            "--vm",
            "web01",
            "--retain-until",
            &until,
            "--json",
        ])
        .success()
        .json();
    let older = str_of(&kept, "/point/id").to_owned();
    let newest = str_of(&host.backup_now("web01"), "/point/id").to_owned();

    let listed = points(&host.vault, "web01");
    let reasons = |id: &str| -> Vec<String> {
        let point = listed.iter().find(|p| p["id"] == id).expect("listed");
        point["retention"]["kept_by"]
            .as_array()
            .expect("retention of a protected VM's vault point")
            .iter()
            .map(|r| r["reason"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // Two points on one day: only the later is the day's daily point; the earlier stays for
    // its retain-until date alone.
    assert_eq!(reasons(&older), ["retain until"]);
    assert_eq!(reasons(&newest), ["newest", "daily", "retain until"]);
    let text = host
        .run(&["points", "--vault", arg(&host.vault), "--vm", "web01"])
        .success()
        .stdout;
    assert!(text.contains("VAULT RETENTION"), "{text}");
    assert!(
        text.contains("newest+daily+on-demand (while protected)"),
        "{text}"
    );
    assert!(text.contains("on-demand until "), "{text}");
}
