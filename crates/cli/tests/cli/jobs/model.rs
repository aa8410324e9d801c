//! The job model when things go as planned (and one hook that does not): hooks and the
//! consistency they give, the two tiers and their expiry, a fresh host that rebuilds its view
//! from the vault, the `jobs` views and their filters, and in-place restore.

use std::fs;

use blockvault_core::VmName;
use blockvault_jobs::Engine;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::fixture::*;
use crate::support::*;

#[test]
fn a_failing_pre_hook_fails_the_job_naming_the_hook_and_still_runs_the_post_hook() {
    const VM: &str = "hooked";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 9);
    let thawed = sb.path("thawed");
    let pre = "echo 'fsfreeze: /data: device busy' >&2; exit 7";
    let post = format!("touch '{}'", arg(&thawed));
    let run = blockvault(backup_args(
        &vault,
        VM,
        &[&disk.path],
        &["--pre-hook", pre, "--post-hook", &post],
    ));
    let line = run.failure(1);
    assert!(line.contains("pre-snapshot hook"), "{run}");
    assert!(line.contains(pre), "the command: {run}");
    assert!(
        line.contains("fsfreeze: /data: device busy"),
        "its stderr: {run}"
    );
    // The pre-hook may have frozen part of the VM before it failed: it is thawed all the same.
    assert!(
        thawed.exists(),
        "the post-snapshot hook did not run after the pre-snapshot hook failed"
    );

    let ids = job_ids(&vault, &[]);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let job = show_job(&vault, ids[0]);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(str_of(&job, "/error").contains("device busy"), "{job}");
    assert_eq!(subtask(&job, "snapshot")["status"], "failed", "{job}");
    assert_eq!(subtask(&job, "transfer")["status"], "failed", "{job}");
    // No point anywhere.
    let run = blockvault(["points", "--vault", arg(&vault), "--vm", VM]);
    assert!(run.failure(3).contains("no recovery points"), "{run}");
    assert_eq!(committed(&vault, VM), Vec::<String>::new());
    assert_eq!(committed(&tier_of(&vault, VM), VM), Vec::<String>::new());
    assert_eq!(chunk_names(&tier_of(&vault, VM)).len(), 0);
}

#[test]
fn successful_hooks_make_the_point_application_consistent_and_see_the_vm_and_its_disks() {
    const VM: &str = "quiesced";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let root = small_disk(&sb.path("root.img"), 10);
    let data = small_disk(&sb.path("data.img"), 11);
    let seen = sb.path("seen");
    let pre = format!(
        "printf '%s|%s|%s' \"$BLOCKVAULT_HOOK\" \"$BLOCKVAULT_VM\" \"$BLOCKVAULT_DISKS\" > '{}'",
        arg(&seen)
    );
    let post = format!("printf '|%s' \"$BLOCKVAULT_HOOK\" >> '{}'", arg(&seen));
    let doc = backup_job(
        &vault,
        VM,
        &[&root.path, &data.path],
        &["--pre-hook", &pre, "--post-hook", &post],
    );
    assert_eq!(
        fs::read_to_string(&seen).expect("the hooks ran"),
        format!("pre|{VM}|{}\n{}|post", arg(&root.path), arg(&data.path))
    );
    assert_eq!(
        doc["point"]["consistency"], "application-consistent",
        "{doc}"
    );
    // Without hooks, crash-consistent.
    let plain = backup_job(&vault, VM, &[&root.path, &data.path], &[]);
    assert_eq!(plain["point"]["consistency"], "crash-consistent", "{plain}");
    let rows = points(&vault, VM);
    let consistency: Vec<&str> = rows.iter().map(|p| str_of(p, "/consistency")).collect();
    assert_eq!(consistency, ["application-consistent", "crash-consistent"]);
}

#[test]
fn a_point_lives_in_both_tiers_until_its_snapshot_expires_and_restores_from_either() {
    const VM: &str = "tiered";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = standard_disk(&sb.path("disk.img"));
    let doc = backup_job(&vault, VM, &[&disk.path], &[]);
    let id = str_of(&doc, "/point/id").to_owned();
    let rows = points(&vault, VM);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["tiers"], json!(["snapshot", "vault"]));
    let time: Timestamp = str_of(&rows[0], "/time").parse().expect("time");
    let until: Timestamp = str_of(&rows[0], "/snapshot_expires")
        .parse()
        .expect("snapshot_expires");
    let stay = until.duration_since(time) - SignedDuration::from_hours(48);
    assert!(
        stay.abs() < SignedDuration::from_secs(1),
        "two days: {until} for {time}"
    );
    let text_table = blockvault(["points", "--vault", arg(&vault), "--vm", VM]).success();
    assert!(text_table.stdout.contains("snapshot+vault"), "{text_table}");

    // Instant restore, from the snapshot tier.
    let out = sb.path("instant");
    let run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&out),
    ])
    .success();
    assert!(run.stdout.contains("from the snapshot tier"), "{run}");
    assert_image(&out.join("disk.img"), disk.content());

    // Without the vault, the snapshot tier alone restores, with a warning.
    let away = sb.path("vault.away");
    fs::rename(&vault, &away).expect("take the vault away");
    let out = sb.path("no-vault");
    let run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&out),
    ]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("from the snapshot tier"), "{run}");
    assert!(
        run.stderr.starts_with("warning: vault ")
            && run.stderr.contains("cannot be opened")
            && run
                .stderr
                .contains("showing this host's snapshot tier copies of vault"),
        "{run}"
    );
    assert_image(&out.join("disk.img"), disk.content());
    // ... and `--from vault` really needs the vault.
    let run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&sb.path("nothing")),
        "--from",
        "vault",
    ]);
    assert!(run.failure(3).contains("not a blockvault vault"), "{run}");
    fs::rename(&away, &vault).expect("bring the vault back");
    let out = sb.path("from-vault");
    let report = restore(&vault, VM, &out, &["--from", "vault"]);
    assert_eq!(report["tier"], "vault", "{report}");
    assert_eq!(report["point"], id.as_str(), "{report}");
    assert_image(&out.join("disk.img"), disk.content());

    // Expiry, through the engine as a later day would run it: before the instant-restore days
    // are over nothing goes; after them the snapshot copy goes and frees its space.
    let tier = tier_of(&vault, VM);
    let chunks = chunk_names(&tier);
    let used = size_of_tree(&tier);
    assert!(!chunks.is_empty());
    let vm: VmName = VM.parse().expect("vm name");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (engine, _) = Engine::open(state_of(&vault), None)
            .await
            .expect("open the engine");
        let now = Timestamp::now();
        engine
            .expire(&vm, now + SignedDuration::from_hours(24))
            .await
            .expect("expire after a day");
        assert_eq!(chunk_names(&tier), chunks, "expired a day early");
        engine
            .expire(&vm, now + SignedDuration::from_hours(72))
            .await
            .expect("expire after three days");
    });
    assert_eq!(committed(&tier, VM), Vec::<String>::new());
    assert_eq!(
        chunk_names(&tier).len(),
        0,
        "the snapshot's chunks are freed"
    );
    let left = size_of_tree(&tier);
    assert!(
        left < 64 * KIB && used - left > 3 * MIB / 2,
        "{left} of {used} bytes left in the snapshot tier"
    );
    let rows = points(&vault, VM);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["tiers"], json!(["vault"]));
    assert_eq!(rows[0]["snapshot_expires"], Value::Null);
    let out = sb.path("after-expiry");
    let report = restore(&vault, VM, &out, &[]);
    assert_eq!(report["tier"], "vault", "{report}");
    assert_image(&out.join("disk.img"), disk.content());
    let out = sb.path("after-expiry-vault");
    restore(&vault, VM, &out, &["--from", "vault"]);
    assert_image(&out.join("disk.img"), disk.content());
    let run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&sb.path("none")),
        "--from",
        "snapshot",
    ]);
    assert!(run.failure(3).contains("snapshot tier"), "{run}");
}

#[test]
fn a_fresh_host_rebuilds_its_catalog_from_the_vault() {
    const VM: &str = "moved";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = small_disk(&sb.path("disk.img"), 12);
    let first = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let gen0 = disk.snapshot();
    disk.write(3 * MIB, b"second day");
    let second = backup(&vault, VM, &[&disk.path], None);
    let fresh = sb.path("fresh-host");
    let on_fresh = ["--state-dir", arg(&fresh)];

    let vault_only = names(&["vault"]);
    assert_eq!(
        tiers(&vault, VM, &on_fresh),
        vec![
            (str_of(&first, "/id").to_owned(), vault_only.clone()),
            (str_of(&second, "/id").to_owned(), vault_only),
        ]
    );
    // The fresh host's catalog now knows them.
    let catalog = blockvault_jobs::Catalog::open(fresh.join("catalog.sqlite")).expect("catalog");
    let known = catalog.points(&VM.parse().expect("vm")).expect("points");
    assert_eq!(known.len(), 2, "{known:?}");
    assert!(
        known.iter().all(|p| p.tiers.vault && !p.tiers.snapshot),
        "{known:?}"
    );
    drop(catalog);
    for (point, content) in [(&first, &gen0[..]), (&second, disk.content())] {
        let id = str_of(point, "/id");
        let out = sb.path(&format!("out-{id}"));
        let mut args = vec!["--point", id];
        args.extend(on_fresh);
        let report = restore(&vault, VM, &out, &args);
        assert_eq!(report["tier"], "vault", "{report}");
        assert_image(&out.join("disk.img"), content);
    }
    // The original host still has both tiers.
    assert_eq!(tiers(&vault, VM, &[])[1].1, names(&["snapshot", "vault"]));
}

#[test]
fn jobs_lists_and_filters_backups_and_restores_and_shows_one_in_detail() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let a = small_disk(&sb.path("a.img"), 13);
    let b = small_disk(&sb.path("b.img"), 14);
    let first = backup_job(&vault, "alpha", &[&a.path], &[]);
    let (ok_a, ok_a_point) = (u64_of(&first, "/job/id"), str_of(&first, "/point/id"));
    let ok_b = u64_of(&backup_job(&vault, "beta", &[&b.path], &[]), "/job/id");
    let missing = sb.path("gone.img");
    blockvault(backup_args(&vault, "alpha", &[&missing], &[])).failure(3);
    let failed = job_ids(&vault, &["--limit", "1"])[0];
    let restored = u64_of(&restore(&vault, "alpha", &sb.path("out"), &[]), "/job");
    assert!(ok_a < ok_b && ok_b < failed && failed < restored);

    assert_eq!(job_ids(&vault, &[]), [restored, failed, ok_b, ok_a]);
    assert_eq!(job_ids(&vault, &["--status", "failed"]), [failed]);
    assert_eq!(
        job_ids(&vault, &["--status", "completed"]),
        [restored, ok_b, ok_a]
    );
    assert_eq!(
        job_ids(&vault, &["--status", "in-progress"]),
        Vec::<u64>::new()
    );
    assert_eq!(job_ids(&vault, &["--vm", "beta"]), [ok_b]);
    assert_eq!(
        job_ids(&vault, &["--vm", "alpha"]),
        [restored, failed, ok_a]
    );
    assert_eq!(job_ids(&vault, &["--operation", "restore"]), [restored]);
    assert_eq!(
        job_ids(&vault, &["--operation", "backup"]),
        [failed, ok_b, ok_a]
    );
    assert_eq!(
        job_ids(
            &vault,
            &[
                "--vm",
                "alpha",
                "--operation",
                "backup",
                "--status",
                "completed"
            ]
        ),
        [ok_a]
    );
    assert_eq!(job_ids(&vault, &["--limit", "2"]), [restored, failed]);
    let started = |id: u64| str_of(&show_job(&vault, id), "/started").to_owned();
    let (from, to) = (started(ok_b), started(restored));
    assert_eq!(
        job_ids(&vault, &["--since", &from]),
        [restored, failed, ok_b]
    );
    assert_eq!(job_ids(&vault, &["--until", &to]), [failed, ok_b, ok_a]);
    assert_eq!(
        job_ids(&vault, &["--since", &from, "--until", &to]),
        [failed, ok_b]
    );
    let run = on_host(&vault, &["jobs", "--since", "last week"]);
    assert!(run.failure(2).contains("--since"), "{run}");

    // The table: a header and one row per job, with the phases of backups.
    let table = on_host(&vault, &["jobs"]).success();
    let rows: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(rows.len(), 5, "{table}");
    assert!(rows[0].starts_with("ID"), "{table}");
    assert!(
        rows[1].contains("Restore") && rows[1].ends_with('-'),
        "{table}"
    );
    assert!(
        rows[2].contains("Failed") && rows[2].ends_with("failed/failed"),
        "{table}"
    );
    assert!(
        rows[4].contains("Completed") && rows[4].ends_with("done/done"),
        "{table}"
    );

    // One job in detail: both subtasks with bytes and throughput.
    let id = ok_a.to_string();
    let shown = on_host(&vault, &["jobs", "show", &id]).success();
    let out = &shown.stdout;
    assert!(
        out.starts_with(&format!("job {ok_a}: Backup of alpha")),
        "{shown}"
    );
    // Each subtask in its own section, with its bytes and its throughput.
    let (snapshot, transfer) = out
        .split_once("\n\nTransfer data to vault: Completed\n")
        .unwrap_or_else(|| panic!("no transfer section\n{shown}"));
    let snapshot = snapshot
        .split_once("\n\nSnapshot: Completed\n")
        .map(|(_, section)| section)
        .unwrap_or_else(|| panic!("no snapshot section\n{shown}"));
    for (section, bytes) in [(snapshot, "scanned"), (transfer, "uploaded")] {
        for field in ["started", "ended", "duration", bytes, "throughput"] {
            assert!(
                section.lines().any(|l| l.trim_start().starts_with(field)),
                "no {field} in\n{section}\n{shown}"
            );
        }
    }
    let job = show_job(&vault, ok_a);
    assert_eq!(job["operation"], "backup");
    assert_eq!(job["vm"], "alpha");
    assert_eq!(job["point"], json!(ok_a_point), "{job}");
    let snapshot = subtask(&job, "snapshot");
    assert!(u64_of(snapshot, "/bytes_scanned") >= 320 * KIB, "{job}");
    for kind in ["snapshot", "transfer"] {
        let task = subtask(&job, kind);
        assert_eq!(task["status"], "completed", "{job}");
        assert!(u64_of(task, "/bytes_changed") > 0, "{job}");
        assert!(u64_of(task, "/bytes_uploaded") > 0, "{job}");
        assert!(
            !task["started"].is_null() && !task["ended"].is_null(),
            "{job}"
        );
    }
    let job = show_job(&vault, restored);
    assert_eq!(job["operation"], "restore", "{job}");
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["subtasks"], json!([]), "{job}");

    let run = on_host(&vault, &["jobs", "show", "9999"]);
    assert!(run.failure(3).contains("9999"), "{run}");
    let run = on_host(&vault, &["jobs", "show", "9999", "--json"]);
    assert!(run.json_failure(3).contains("9999"), "{run}");
}

#[test]
fn an_in_place_restore_rewrites_only_the_changed_blocks() {
    const VM: &str = "rollback";
    const BS: u64 = 64 * KIB;
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let live = sb.path("live");
    fs::create_dir(&live).expect("mkdir");
    let mut disk = standard_disk(&live.join("disk.img"));
    let gen0 = disk.snapshot();
    backup_job(&vault, VM, &[&disk.path], &["--block-size", "64KiB"]);

    for from in ["snapshot", "vault"] {
        // Three blocks change (one of them a hole that gets data).
        disk.write(0, b"overwritten boot sector");
        disk.write(20 * MIB + 3 * BS, &noise(BS, 90));
        disk.write(50 * MIB, b"new file in a hole");
        assert_eq!(changed_blocks(&gen0, disk.content(), BS).len(), 3);
        let report = restore(&vault, VM, &live, &["--in-place", "--from", from]);
        assert_eq!(report["in_place"], true, "{report}");
        assert_eq!(report["tier"], from, "{report}");
        let restored = &report["disks"][0];
        assert_eq!(u64_of(restored, "/blocks"), 64 * MIB / BS, "{report}");
        assert_eq!(u64_of(restored, "/blocks_changed"), 3, "{report}");
        // No kept clones on this file system: read from the chunks.
        assert_eq!(restored["restored_by"], "chunks", "{report}");
        assert_eq!(u64_of(restored, "/ranges_cloned"), 0, "{report}");
        assert_image(&disk.path, &gen0);
        // The model follows the file back.
        disk.write(0, &gen0[..64]);
        disk.write(
            20 * MIB + 3 * BS,
            &gen0[(20 * MIB + 3 * BS) as usize..][..BS as usize],
        );
        disk.write(50 * MIB, &[0; 18]);
        assert!(disk.content() == gen0.as_slice());
    }
    let text_run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&live),
        "--in-place",
    ])
    .success();
    assert!(
        text_run
            .stdout
            .contains("rolled back in place (0 of 1024 blocks rewritten;"),
        "{text_run}"
    );
}

/// Regression: a VM whose first backup failed keeps an empty snapshot directory, and `points`
/// without `--vm` then failed for every VM ("VM X has no recovery points in this vault").
#[test]
fn points_of_all_vms_still_list_after_a_vms_first_backup_failed() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 15);
    let good = backup(&vault, "good", &[&disk.path], None);
    blockvault(backup_args(
        &vault,
        "bad",
        &[&disk.path],
        &["--pre-hook", "exit 7"],
    ))
    .failure(1);
    let run = blockvault(["points", "--json", "--vault", arg(&vault)]);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    assert_eq!(doc["points"].as_array().map(Vec::len), Some(1), "{run}");
    assert_eq!(doc["points"][0]["id"], good["id"], "{run}");
}

/// Waits until a file written just now is old enough for its timestamps to vouch for it
/// (blockvault trusts a disk's recorded content only once its change time is 50 ms old).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(120));
}

#[test]
fn rolling_back_between_points_skips_the_scan_only_while_the_disk_is_as_blockvault_left_it() {
    const VM: &str = "bisect";
    const BS: u64 = 64 * KIB;
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let live = sb.path("live");
    fs::create_dir(&live).expect("mkdir");
    let mut disk = standard_disk(&live.join("disk.img"));
    let gen0 = disk.snapshot();
    // A Snapshot vouches for a disk's content only when a pre-hook quiesced the VM.
    let quiesced = ["--block-size", "64KiB", "--pre-hook", "true"];
    settle();
    backup_job(&vault, VM, &[&disk.path], &quiesced);
    disk.write(20 * MIB + 3 * BS, &noise(BS, 91));
    disk.write(50 * MIB, b"new file in a hole");
    let gen1 = disk.snapshot();
    settle();
    backup_job(&vault, VM, &[&disk.path], &quiesced);
    let ids: Vec<String> = points(&vault, VM)
        .iter()
        .map(|p| str_of(p, "/id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let roll = |point: &str| {
        let report = restore(&vault, VM, &live, &["--in-place", "--point", point]);
        let disk = report["disks"][0].clone();
        (
            u64_of(&disk, "/bytes_scanned"),
            u64_of(&disk, "/blocks_changed"),
        )
    };

    // The snapshot read the disk while nothing wrote to it: it is on record as gen1, so the
    // rollback to gen0 reads nothing and writes the two blocks.
    assert_eq!(roll(&ids[0]), (0, 2));
    assert_image(&disk.path, &gen0);
    // The rollback recorded what it wrote: forward again, still no scan.
    assert_eq!(roll(&ids[1]), (0, 2));
    assert_image(&disk.path, &gen1);

    // A write that keeps the size and puts the mtime back still moves the change time: the
    // record no longer holds, the disk is scanned, and the stray block is repaired too.
    let mtime = fs::metadata(&disk.path)
        .expect("meta")
        .modified()
        .expect("mtime");
    {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&disk.path)
            .expect("open");
        std::os::unix::fs::FileExt::write_all_at(&file, b"stray", 30 * MIB).expect("write");
        file.set_modified(mtime).expect("mtime back");
    }
    settle();
    let (scanned, changed) = roll(&ids[0]);
    assert!(
        scanned > 0,
        "a disk changed behind blockvault's back must be scanned"
    );
    assert_eq!(changed, 3);
    assert_image(&disk.path, &gen0);

    // A record whose map cannot be read (snapshot and vault copies of that point gone) falls
    // back to a scan as well.
    let tier = snapshot_tier(&vault, VM);
    fs::remove_dir_all(tier.join("maps").join(VM).join(&ids[0])).expect("rm snapshot maps");
    fs::remove_dir_all(vault.join("maps").join(VM).join(&ids[0])).expect("rm vault maps");
    let (scanned, changed) = roll(&ids[1]);
    assert!(
        scanned > 0,
        "an unreadable record must cost a scan, not a guess"
    );
    assert_eq!(changed, 2);
    assert_image(&disk.path, &gen1);
}

#[test]
fn jobs_show_says_how_the_snapshot_captured_the_disks_and_reflink_is_refused_where_there_are_none()
{
    const VM: &str = "captured";
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 12);
    let doc = backup_job(
        &vault,
        VM,
        &[&disk.path],
        &["--pre-hook", "true", "--post-hook", "true"],
    );
    let snapshot = subtask(&doc["job"], "snapshot");
    let capture = &snapshot["capture"];
    let kind = str_of(capture, "/capture");
    // The sandbox's file system decides: clones where it has reflinks, else a read under
    // the hook, which says why.
    assert!(kind == "reflink" || kind == "read-under-hook", "{capture}");
    assert!(capture["freeze_us"].is_u64(), "{capture}");
    let disk0 = &capture["disks"][0];
    assert_eq!(disk0["disk"], "disk.img", "{capture}");
    assert!(disk0["bytes_allocated"].as_u64() > Some(0), "{capture}");
    assert_eq!(
        disk0["bytes_read"], disk0["bytes_allocated"],
        "a first backup reads it all"
    );
    let id = doc["job"]["id"].as_u64().expect("job id").to_string();
    let shown = on_host(&vault, &["jobs", "show", &id]).success();
    assert!(shown.stdout.contains("capture"), "{shown}");
    assert!(shown.stdout.contains(kind), "{shown}");

    if kind == "read-under-hook" {
        let marker = sb.path("pre-ran");
        let pre = format!("touch '{}'", arg(&marker));
        let run = blockvault(backup_args(
            &vault,
            VM,
            &[&disk.path],
            &[
                "--capture",
                "reflink",
                "--pre-hook",
                &pre,
                "--post-hook",
                "true",
            ],
        ));
        // Refused (exit 6): the file systems do not allow what was asked.
        let line = run.failure(6);
        assert!(
            line.contains("no reflinks") && line.contains("--snapshot-dir"),
            "{run}"
        );
        assert!(
            !marker.exists(),
            "no hook runs when reflink clones cannot be made"
        );
    }
}
