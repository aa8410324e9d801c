//! The bad input and faults of issue 4, each one a test: what the job records, which points
//! exist in which tier afterwards, and that every point reported complete still restores.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use blockvault_jobs::{JobStatus, SubtaskKind, SubtaskStatus};

use super::fixture::*;
use crate::support::*;

/// Files of a directory with their sizes: to show that a failed job changed nothing there.
fn files_with_sizes(dir: &Path) -> Vec<(String, u64)> {
    tree(dir)
        .into_iter()
        .map(|rel| {
            let len = fs::metadata(dir.join(&rel)).expect("stat").len();
            (rel, len)
        })
        .collect()
}

/// Restores `point` of `vm` from `from` (`snapshot` or `vault`) into a new directory `to`.
fn restore_from(vault: &Path, vm: &str, point: &str, from: &str, to: &Path) -> serde_json::Value {
    let report = restore(vault, vm, to, &["--point", point, "--from", from]);
    assert_eq!(report["tier"], from, "{report}");
    assert_eq!(report["point"], point, "{report}");
    report
}

/// Asserts that `jobs` (the next command after a kill) marks `job` Failed, says so on stderr,
/// and records the interruption on the job. Returns the job document.
fn next_start_marks_interrupted(vault: &Path, job: u64) -> serde_json::Value {
    let run = on_host(vault, &["jobs"]);
    assert_eq!(run.code, 0, "{run}");
    let warning = format!("warning: marked interrupted job(s) {job} as Failed");
    assert!(run.stderr.contains(&warning), "{run}");
    // Only once: the next command has nothing left to repair.
    let again = on_host(vault, &["jobs"]).success();
    assert!(again.stdout.contains("Failed"), "{again}");
    let shown = show_job(vault, job);
    assert_eq!(shown["status"], "failed", "{shown}");
    assert!(
        str_of(&shown, "/error").starts_with("interrupted"),
        "{shown}"
    );
    assert_eq!(shown["point"], serde_json::Value::Null, "{shown}");
    assert!(!shown["ended"].is_null(), "{shown}");
    shown
}

#[test]
fn one_missing_disk_of_several_fails_the_job_and_leaves_every_point_alone() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    // Another VM of the same vault and host, with a point in both tiers.
    let web = small_disk(&sb.path("web.img"), 3);
    let web_point = backup(&vault, "web", &[&web.path], Some("64KiB"));
    let mut root = small_disk(&sb.path("root.img"), 4);
    let data = small_disk(&sb.path("data.img"), 5);
    let db_point = backup(&vault, "db", &[&root.path, &data.path], Some("64KiB"));
    let (root0, data0) = (root.snapshot(), data.snapshot());
    // New data on the disk that is still there: stored if the job went ahead.
    root.write(3 * MIB, &noise(256 * KIB, 6));
    let vault_before = files_with_sizes(&vault);
    let db_tier_before = files_with_sizes(&tier_of(&vault, "db"));
    let web_tier_before = files_with_sizes(&tier_of(&vault, "web"));
    fs::remove_file(&data.path).expect("remove the data disk");

    let run = blockvault(backup_args(&vault, "db", &[&root.path, &data.path], &[]));
    // A missing disk is "not found" (exit 3, as the exit code table says for a missing disk).
    let line = run.failure(3);
    assert!(line.contains(arg(&data.path)), "{run}");
    assert!(line.contains("does not exist"), "{run}");
    assert!(!line.contains("root.img"), "{run}");

    let ids = job_ids(&vault, &["--vm", "db"]);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let job = show_job(&vault, ids[0]);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(str_of(&job, "/error").contains(arg(&data.path)), "{job}");
    assert_eq!(subtask(&job, "snapshot")["status"], "failed", "{job}");
    assert_eq!(subtask(&job, "transfer")["status"], "failed", "{job}");
    assert_eq!(job["point"], serde_json::Value::Null, "{job}");
    let listed = on_host(&vault, &["jobs", "--json", "--status", "failed"])
        .success()
        .json();
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["jobs"][0]["id"], ids[0]);

    // Nothing half committed, in either tier; the other VM untouched.
    assert_eq!(files_with_sizes(&vault), vault_before, "the vault changed");
    assert_eq!(
        files_with_sizes(&tier_of(&vault, "db")),
        db_tier_before,
        "the snapshot tier of db changed"
    );
    assert_eq!(
        files_with_sizes(&tier_of(&vault, "web")),
        web_tier_before,
        "the snapshot tier of web changed"
    );
    let both = names(&["snapshot", "vault"]);
    assert_eq!(
        tiers(&vault, "db", &[]),
        vec![(str_of(&db_point, "/id").to_owned(), both.clone())]
    );
    assert_eq!(
        tiers(&vault, "web", &[]),
        vec![(str_of(&web_point, "/id").to_owned(), both)]
    );
    for from in ["snapshot", "vault"] {
        let out = sb.path(&format!("web-{from}"));
        restore_from(&vault, "web", str_of(&web_point, "/id"), from, &out);
        assert_image(&out.join("web.img"), web.content());
        let out = sb.path(&format!("db-{from}"));
        restore_from(&vault, "db", str_of(&db_point, "/id"), from, &out);
        assert_image(&out.join("root.img"), &root0);
        assert_image(&out.join("data.img"), &data0);
    }
}

/// A 64 MiB disk whose first 4 MiB blocks hold noise, backed up at 1 MiB blocks: the point
/// the faults below must leave restorable. Returns the disk, its content then, and the point.
fn disk_with_a_point(sb: &Sandbox, vault: &Path, vm: &str) -> (Image, Vec<u8>, String) {
    let mut disk = Image::create(&sb.path("disk.img"), 64 * MIB);
    fill(&mut disk, 0..4, 100);
    let point = backup(vault, vm, &[&disk.path], Some("1MiB"));
    let gen0 = disk.snapshot();
    (disk, gen0, str_of(&point, "/id").to_owned())
}

#[test]
fn a_host_killed_during_snapshot_fails_the_job_and_leaves_no_snapshot_leftovers() {
    const VM: &str = "snapkill";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let (mut disk, gen0, first) = disk_with_a_point(&sb, &vault, VM);
    let tier = tier_of(&vault, VM);
    let live = chunk_names(&tier);
    assert_eq!(
        live,
        chunks_of(&[&gen0], MIB),
        "the tier holds the first point"
    );
    // 60 new incompressible 1 MiB blocks, written to the tier one at a time.
    fill(&mut disk, 4..64, 200);

    let args = backup_args(&vault, VM, &[&disk.path], &["-q", "--concurrency", "1"]);
    let mut child = spawn(&vault, &args);
    catch(&mut child, "the snapshot wrote 4 chunks", || {
        chunk_names(&tier).len() >= live.len() + 4
    });
    kill(child);

    // The kill caught the Snapshot subtask: the catalog still says it runs, nothing committed.
    let killed = catalog_jobs(&vault).remove(0);
    assert_eq!(killed.status, JobStatus::InProgress, "{killed:?}");
    let snapshot = killed.subtask(SubtaskKind::Snapshot).expect("snapshot");
    assert_eq!(
        snapshot.status,
        SubtaskStatus::InProgress,
        "the snapshot finished before the kill; the test needs a bigger disk"
    );
    assert_eq!(committed(&tier, VM), vec![first.clone()]);
    assert!(chunk_names(&tier).len() > live.len(), "leftovers to clean");
    // Chunks may have gone to the vault early, but nothing there is committed.
    assert_eq!(committed(&vault, VM), vec![first.clone()], "no vault point");
    assert_eq!(entries(&vault.join("maps").join(VM)), vec![first.clone()]);

    let job = next_start_marks_interrupted(&vault, killed.id.0 as u64);
    assert_eq!(subtask(&job, "snapshot")["status"], "failed", "{job}");
    assert_eq!(subtask(&job, "transfer")["status"], "failed", "{job}");
    // The killed snapshot left nothing: exactly the chunks and maps of the live point.
    assert_eq!(
        chunk_names(&tier),
        live,
        "chunks of the killed snapshot remain"
    );
    assert_eq!(staging_files(&tier), Vec::<PathBuf>::new());
    assert_eq!(entries(&tier.join("maps").join(VM)), vec![first.clone()]);
    assert_eq!(committed(&tier, VM), vec![first.clone()]);
    assert_eq!(
        tiers(&vault, VM, &[]),
        vec![(first.clone(), names(&["snapshot", "vault"]))]
    );
    for from in ["snapshot", "vault"] {
        let out = sb.path(from);
        restore_from(&vault, VM, &first, from, &out);
        assert_image(&out.join("disk.img"), &gen0);
    }
}

#[test]
fn a_host_killed_during_transfer_keeps_the_snapshot_point_and_the_next_transfer_catches_up() {
    const VM: &str = "xferkill";
    const NEW: u64 = 60;
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let (mut disk, gen0, first) = disk_with_a_point(&sb, &vault, VM);
    fill(&mut disk, 4..4 + NEW, 300);
    let gen1 = disk.snapshot();
    let base = chunk_names(&vault).len();

    // Without the early send, chunks reach the vault only in the Transfer: the kill lands in it.
    let args = backup_args(
        &vault,
        VM,
        &[&disk.path],
        &["-q", "--concurrency", "1", "--no-early-send"],
    );
    let mut child = spawn(&vault, &args);
    catch(&mut child, "the transfer sent 4 chunks", || {
        chunk_names(&vault).len() >= base + 4
    });
    kill(child);

    let landed = chunk_names(&vault).len();
    assert!(
        landed < base + NEW as usize,
        "the transfer finished before the kill; the test needs a bigger disk"
    );
    let killed = catalog_jobs(&vault).remove(0);
    assert_eq!(killed.status, JobStatus::InProgress, "{killed:?}");
    let status = |kind| killed.subtask(kind).map(|s| s.status);
    assert_eq!(
        status(SubtaskKind::Snapshot),
        Some(SubtaskStatus::Completed)
    );
    assert_eq!(
        status(SubtaskKind::Transfer),
        Some(SubtaskStatus::InProgress)
    );
    assert_eq!(committed(&vault, VM), vec![first.clone()], "no vault point");
    let tier = tier_of(&vault, VM);
    let snapped: Vec<String> = committed(&tier, VM)
        .into_iter()
        .filter(|id| *id != first)
        .collect();
    assert_eq!(snapped.len(), 1, "the snapshot committed one point");
    let second = snapped[0].clone();

    let job = next_start_marks_interrupted(&vault, killed.id.0 as u64);
    assert_eq!(subtask(&job, "snapshot")["status"], "completed", "{job}");
    assert_eq!(subtask(&job, "transfer")["status"], "failed", "{job}");
    // The recovery's sweep keeps what the committed snapshot point needs.
    assert_eq!(chunk_names(&tier), chunks_of(&[&gen0, &gen1], MIB));
    assert_eq!(
        tiers(&vault, VM, &[]),
        vec![
            (first.clone(), names(&["snapshot", "vault"])),
            (second.clone(), names(&["snapshot"])),
        ]
    );
    let out = sb.path("killed-point");
    restore_from(&vault, VM, &second, "snapshot", &out);
    assert_image(&out.join("disk.img"), &gen1);
    let out = sb.path("vault-before");
    let report = restore(&vault, VM, &out, &["--from", "vault"]);
    assert_eq!(report["point"], first.as_str(), "{report}");
    assert_image(&out.join("disk.img"), &gen0);

    // The next backup's transfer completes and carries all the churn since the first point.
    disk.write(2 * MIB + 5, b"after the crash");
    let gen2 = disk.snapshot();
    let doc = backup_job(&vault, VM, &[&disk.path], &[]);
    assert_eq!(subtask(&doc["job"], "transfer")["status"], "completed");
    let third = str_of(&doc, "/point/id").to_owned();
    assert_eq!(chunk_names(&vault), chunks_of(&[&gen0, &gen1, &gen2], MIB));
    let out = sb.path("vault-after");
    let report = restore(&vault, VM, &out, &["--from", "vault"]);
    assert_eq!(report["point"], third.as_str(), "{report}");
    assert_image(&out.join("disk.img"), &gen2);
}

#[test]
fn a_vault_failing_during_transfer_completes_with_warning_and_the_next_transfer_catches_up() {
    const VM: &str = "vaultdown";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = small_disk(&sb.path("disk.img"), 8);
    let first = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let first = str_of(&first, "/id").to_owned();
    let gen0 = disk.snapshot();
    disk.write(2 * MIB, &noise(200 * KIB, 81));
    let gen1 = disk.snapshot();
    // The vault cannot take chunks: its chunks/ directory is a file now.
    let chunks = vault.join("chunks");
    let away = sb.path("chunks.away");
    fs::rename(&chunks, &away).expect("move chunks away");
    fs::write(&chunks, b"not a directory").expect("a file in its place");

    let mut args = backup_args(&vault, VM, &[&disk.path], &[]);
    args.push("--json".to_owned());
    let run = blockvault(&args);
    assert_eq!(run.code, 5, "completed with warning\n{run}");
    let doc = run.json();
    let job = &doc["job"];
    assert_eq!(job["status"], "completed-with-warning", "{run}");
    assert_eq!(subtask(job, "snapshot")["status"], "completed", "{run}");
    let transfer = subtask(job, "transfer");
    assert_eq!(transfer["status"], "failed", "{run}");
    let error = str_of(transfer, "/error");
    assert!(
        error.contains("chunks") && error.contains("Not a directory"),
        "{run}"
    );
    let warned = doc["warnings"].as_array().expect("warnings");
    assert!(
        warned.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("transfer to the vault failed"))),
        "{run}"
    );
    let second = str_of(&doc, "/point/id").to_owned();
    assert_eq!(
        show_job(&vault, u64_of(job, "/id"))["status"],
        "completed-with-warning"
    );
    assert_eq!(
        tiers(&vault, VM, &[]),
        vec![
            (first.clone(), names(&["snapshot", "vault"])),
            (second.clone(), names(&["snapshot"])),
        ]
    );
    // The point restores: by default from the snapshot tier, where it lives.
    let out = sb.path("snapshot-only");
    let report = restore(&vault, VM, &out, &[]);
    assert_eq!(report["point"], second.as_str(), "{report}");
    assert_eq!(report["tier"], "snapshot", "{report}");
    assert_image(&out.join("disk.img"), &gen1);

    // Repaired, the vault takes the next transfer: all churn since its newest point.
    fs::remove_file(&chunks).expect("remove the file");
    fs::rename(&away, &chunks).expect("chunks back");
    disk.write(6 * MIB, &noise(100 * KIB, 82));
    let gen2 = disk.snapshot();
    let doc = backup_job(&vault, VM, &[&disk.path], &[]);
    let third = str_of(&doc, "/point/id").to_owned();
    assert_eq!(subtask(&doc["job"], "transfer")["status"], "completed");
    let listed = points(&vault, VM);
    let record = listed
        .iter()
        .find(|p| p["id"] == third.as_str())
        .expect("the third point");
    let churn = changed_blocks(&gen0, &gen2, 64 * KIB).len() as u64 * 64 * KIB;
    assert_eq!(
        u64_of(record, "/stats/bytes_changed"),
        churn,
        "the vault point carries the churn of both backups: {record}"
    );
    let out = sb.path("vault-after");
    let report = restore(&vault, VM, &out, &["--from", "vault"]);
    assert_eq!(report["point"], third.as_str(), "{report}");
    assert_image(&out.join("disk.img"), &gen2);
    let out = sb.path("vault-first");
    restore_from(&vault, VM, &first, "vault", &out);
    assert_image(&out.join("disk.img"), &gen0);
}

/// A tmpfs mounted for one test, unmounted (lazily, so nothing can keep it busy) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        fs::create_dir_all(&dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a small tmpfs as a full disk (run it as root, with \
             CAP_SYS_ADMIN); mount said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    /// Bytes in use, as `df` says.
    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.dir)
            .output()
            .expect("run df");
        assert!(out.status.success(), "df failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the bytes used")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_full_snapshot_disk_fails_the_job_and_frees_what_the_snapshot_wrote() {
    const VM: &str = "full";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    // Dropped before the sandbox (declared after it).
    let small = Tmpfs::mount(sb.path("snapshots"), "6m");
    let on_small = ["--snapshot-dir", arg(&small.dir)];
    let mut disk = Image::create(&sb.path("disk.img"), 16 * MIB);
    fill(&mut disk, 0..1, 400);
    let gen0 = disk.snapshot();
    let first = backup_job(
        &vault,
        VM,
        &[&disk.path],
        &["--block-size", "1MiB", "--snapshot-dir", arg(&small.dir)],
    );
    let first = str_of(&first, "/point/id").to_owned();
    let used = small.used();
    assert!(
        used >= MIB,
        "the first point is on the tmpfs ({used} bytes used)"
    );
    // 12 MiB of incompressible data for a 6 MiB file system.
    fill(&mut disk, 2..14, 500);

    let run = blockvault(backup_args(&vault, VM, &[&disk.path], &on_small));
    let line = run.failure(1);
    assert!(line.contains("No space left"), "{run}");
    let ids = job_ids(&vault, &[]);
    let job = show_job(&vault, ids[0]);
    assert_eq!(job["status"], "failed", "{job}");
    let snapshot = subtask(&job, "snapshot");
    assert_eq!(snapshot["status"], "failed", "{job}");
    assert!(
        str_of(snapshot, "/error").contains("No space left"),
        "{job}"
    );
    assert_eq!(subtask(&job, "transfer")["status"], "failed", "{job}");

    // What the failed snapshot wrote is freed; the first point is intact in both tiers.
    let after = small.used();
    assert!(
        after <= used + 64 * KIB,
        "the failed snapshot's leftovers still use the disk: {used} bytes before, {after} after"
    );
    let tier = small.dir.join(VM);
    assert_eq!(chunk_names(&tier), chunks_of(&[&gen0], MIB));
    assert_eq!(staging_files(&tier), Vec::<PathBuf>::new());
    assert_eq!(
        tiers(&vault, VM, &on_small),
        vec![(first.clone(), names(&["snapshot", "vault"]))]
    );
    for from in ["snapshot", "vault"] {
        let out = sb.path(from);
        let mut args = vec!["--point", first.as_str(), "--from", from];
        args.extend(on_small);
        let report = restore(&vault, VM, &out, &args);
        assert_eq!(report["tier"], from, "{report}");
        assert_image(&out.join("disk.img"), &gen0);
    }
    drop(small);
}

#[test]
fn two_backups_of_one_vm_started_together_never_run_two_transfers_at_once() {
    const VM: &str = "twice";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    // 40 MiB of noise: long transfers, so the second job's is likely to find the first's.
    let mut disk = Image::create(&sb.path("disk.img"), 40 * MIB);
    fill(&mut disk, 0..40, 600);
    let args = backup_args(
        &vault,
        VM,
        &[&disk.path],
        &["--json", "-q", "--block-size", "1MiB", "--concurrency", "1"],
    );
    let children = [spawn(&vault, &args), spawn(&vault, &args)];
    let runs: Vec<Run> = children.into_iter().map(|c| finish(c, &args)).collect();
    let docs: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            assert_eq!(run.code, 0, "{run}");
            run.json()
        })
        .collect();

    let mut transfers = Vec::new();
    for (doc, other) in [(&docs[0], &docs[1]), (&docs[1], &docs[0])] {
        let job = &doc["job"];
        // Every row of the table these two can reach ends Completed.
        assert_eq!(job["status"], "completed", "{doc}");
        assert_eq!(subtask(job, "snapshot")["status"], "completed", "{doc}");
        let transfer = subtask(job, "transfer");
        let status = str_of(transfer, "/status").to_owned();
        if status == "skipped" {
            let reason = str_of(transfer, "/error");
            let other = format!("job {}", u64_of(&other["job"], "/id"));
            assert!(reason.contains(&other), "the reason names {other}: {doc}");
        }
        transfers.push(status);
    }
    transfers.sort();
    assert!(
        transfers == ["completed", "completed"] || transfers == ["completed", "skipped"],
        "transfers {transfers:?}"
    );
    eprintln!("two backups at once: transfers {transfers:?}");

    // From the catalog: the intervals of the subtasks of each kind that ran never overlap.
    let jobs = catalog_jobs(&vault);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for kind in [SubtaskKind::Snapshot, SubtaskKind::Transfer] {
        let mut ran: Vec<_> = jobs
            .iter()
            .filter_map(|j| j.subtask(kind))
            // A skipped transfer did not run (its start and end are the moment it was skipped).
            .filter(|s| s.status != SubtaskStatus::Skipped)
            .filter_map(|s| Some((s.started?, s.ended.expect("ended"))))
            .collect();
        ran.sort();
        let ran_expected = match kind {
            SubtaskKind::Snapshot => 2,
            SubtaskKind::Transfer => transfers.iter().filter(|&s| s == "completed").count(),
        };
        assert_eq!(ran.len(), ran_expected, "{kind}: {jobs:?}");
        for pair in ran.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "two {kind} subtasks of {VM} overlapped: {pair:?}"
            );
        }
    }
    // Both points restore; the vault's newest is the disk as it is.
    let listed = tiers(&vault, VM, &[]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (id, _) in &listed {
        let out = sb.path(id);
        restore(&vault, VM, &out, &["--point", id]);
        assert_image(&out.join("disk.img"), disk.content());
    }
    let out = sb.path("from-vault");
    restore(&vault, VM, &out, &["--from", "vault"]);
    assert_image(&out.join("disk.img"), disk.content());
}

/// A transfer copies chunks as the snapshot tier stored them, but one that sat there since an
/// earlier snapshot is decoded and checked first: local damage fails the transfer (the job
/// completes with warning) and never reaches the vault.
#[test]
fn a_damaged_older_snapshot_chunk_is_not_uploaded() {
    const VM: &str = "rotten";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = small_disk(&sb.path("disk.img"), 12);
    backup(&vault, VM, &[&disk.path], Some("64KiB"));
    disk.write(2 * MIB, &noise(128 * KIB, 83));
    let churned = disk.snapshot();

    // The churn reaches only the snapshot tier: the vault cannot take chunks.
    let chunks = vault.join("chunks");
    let away = sb.path("chunks.away");
    fs::rename(&chunks, &away).expect("move chunks away");
    fs::write(&chunks, b"not a directory").expect("a file in its place");
    let mut args = backup_args(&vault, VM, &[&disk.path], &[]);
    args.push("--json".to_owned());
    assert_eq!(blockvault(&args).code, 5);
    fs::remove_file(&chunks).expect("remove the file");
    fs::rename(&away, &chunks).expect("chunks back");

    // One of the churned blocks rots in the snapshot tier.
    let block = &churned[(2 * MIB) as usize..(2 * MIB + 64 * KIB) as usize];
    let rotten = chunk_file(&snapshot_tier(&vault, VM), block);
    flip_middle(&rotten, 16);

    // The next backup sees no change (its snapshot writes nothing new), so its transfer must
    // copy the older snapshot's chunks, and finds the damage.
    let run = blockvault(&args);
    assert_eq!(run.code, 5, "completed with warning\n{run}");
    let doc = run.json();
    let transfer = subtask(&doc["job"], "transfer");
    assert_eq!(transfer["status"], "failed", "{run}");
    assert!(str_of(transfer, "/error").contains("corrupt"), "{run}");
    assert!(
        !vault_holds(&vault, block),
        "the damaged chunk must not reach the vault"
    );
}

fn vault_holds(vault: &Path, block: &[u8]) -> bool {
    chunk_file(vault, block).exists()
}
