//! A damaged object damages only itself: one corrupt point record, in the vault or in the
//! snapshot tier, or a corrupt snapshot-tier config, never hides or blocks the VM's other
//! points, the other VMs, garbage collection or the next backup.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

const VM: &str = "web01";
const OTHER: &str = "db01";

/// A vault with two points of `VM` (`first`, `latest`) and one of `OTHER`.
struct Damaged {
    sb: Sandbox,
    vault: PathBuf,
    first: String,
    latest: String,
    gen0: Vec<u8>,
    gen1: Vec<u8>,
}

fn two_points() -> Damaged {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    let gen0 = disk.snapshot();
    let first = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    // A new block only the latest point names: its chunk is the latest's alone.
    disk.write(30 * MIB, &noise(10 * KIB, 77));
    let latest = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let other = small_disk(&sb.path("other.img"), 5);
    backup(&vault, OTHER, &[&other.path], None);
    Damaged {
        first: str_of(&first, "/id").to_owned(),
        latest: str_of(&latest, "/id").to_owned(),
        gen0,
        gen1: disk.snapshot(),
        sb,
        vault,
    }
}

impl Damaged {
    fn record(&self, id: &str) -> PathBuf {
        let path = self.vault.join("points").join(VM).join(id);
        assert!(path.is_file(), "{}", path.display());
        path
    }

    /// `blockvault ARGS --vault VAULT --state-dir STATE` with `STATE` a host that never saw
    /// the VM: it has only the vault to go by.
    fn fresh(&self, state: &str, args: &[&str]) -> Run {
        let state = self.sb.path(state);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--vault", arg(&self.vault), "--state-dir", arg(&state)]);
        blockvault(&all)
    }
}

fn ids(points: &Value) -> Vec<&str> {
    points
        .as_array()
        .expect("an array")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect()
}

#[test]
fn a_damaged_vault_record_hides_only_its_own_point() {
    let d = two_points();
    let record = d.record(&d.latest);
    let good = fs::read(&record).expect("read record");
    flip_middle(&record, 1);
    let corrupt = format!("recovery point {} of VM {VM} is corrupt", d.latest);

    // Listed from the vault alone: the healthy point, the other VM, and the damaged record
    // as damaged.
    let run = d.fresh("host-a", &["points", "--json"]).success();
    let doc = run.json();
    let listed: Vec<&str> = ids(&doc["points"]);
    assert!(listed.contains(&d.first.as_str()), "{run}");
    assert!(!listed.contains(&d.latest.as_str()), "{run}");
    assert_eq!(
        doc["points"]
            .as_array()
            .expect("points")
            .iter()
            .filter(|p| p["vm"] == OTHER)
            .count(),
        1,
        "{run}"
    );
    assert_eq!(ids(&doc["damaged"]), vec![d.latest.as_str()], "{run}");
    assert!(
        doc["damaged"][0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains(&corrupt)),
        "{run}"
    );
    let run = d.fresh("host-a", &["points", "--vm", VM]);
    assert!(run.success_with_warning().contains(&corrupt), "{run}");
    assert!(run.stdout.contains("DAMAGED"), "{run}");

    // The healthy point restores by id; the damaged one fails by name (exit 4).
    let to = d.sb.path("first");
    d.fresh(
        "host-a",
        &["restore", "--vm", VM, "--point", &d.first, "--to", arg(&to)],
    )
    .success();
    assert_image(&to.join("disk.img"), &d.gen0);
    let to = d.sb.path("latest");
    let run = d.fresh(
        "host-a",
        &[
            "restore",
            "--vm",
            VM,
            "--point",
            &d.latest,
            "--to",
            arg(&to),
        ],
    );
    assert!(run.failure(4).contains(&corrupt), "{run}");
    assert!(entries(&to).is_empty(), "{:?}", entries(&to));
    // The newest restorable point, with a warning that names the newer damaged one.
    let to = d.sb.path("newest");
    let run = d.fresh("host-a", &["restore", "--vm", VM, "--to", arg(&to)]);
    assert!(run.success_with_warning().contains(&d.latest), "{run}");
    assert_image(&to.join("disk.img"), &d.gen0);

    // verify names the record as damage (exit 4); the other VM verifies clean.
    let run = d.fresh("host-a", &["verify", "--json", "--vm", VM]);
    assert_eq!(run.code, 4, "{run}");
    let doc: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(ids(&doc["report"]["bad_records"]), vec![d.latest.as_str()]);
    d.fresh("host-a", &["verify", "--vm", OTHER]).success();

    // gc goes on, and deletes nothing the damaged record may name: once the record is
    // repaired, its point restores byte for byte.
    let run = d
        .fresh("host-a", &["gc", "--json", "--grace", "0s"])
        .success();
    assert_eq!(run.json()["gc"]["chunks_deleted"], 0, "{run}");
    fs::write(&record, &good).expect("repair the record");
    let to = d.sb.path("repaired");
    d.fresh(
        "host-b",
        &[
            "restore",
            "--vm",
            VM,
            "--point",
            &d.latest,
            "--to",
            arg(&to),
        ],
    )
    .success();
    assert_image(&to.join("disk.img"), &d.gen1);
}

#[test]
fn quarantine_sets_a_damaged_record_aside_and_gc_frees_what_only_it_named() {
    let d = two_points();
    let record = d.record(&d.latest);
    flip_middle(&record, 1);
    let run = d.fresh(
        "host",
        &["verify", "--json", "--all", "--quarantine-damaged"],
    );
    assert_eq!(run.code, 4, "{run}");
    let doc: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(ids(&doc["quarantined"]), vec![d.latest.as_str()], "{run}");
    assert!(!record.exists());
    let aside = d
        .vault
        .join("quarantine")
        .join("points")
        .join(VM)
        .join(&d.latest);
    assert!(aside.is_file(), "{}", aside.display());
    // A healthy record is never set aside: nothing else went.
    assert!(d.record(&d.first).is_file());

    let run = d.fresh("host", &["points", "--json"]).success();
    assert_eq!(run.json()["damaged"], json!([]), "{run}");
    d.fresh("host", &["verify", "--all"]).success();
    // Its maps are orphans now, its own chunk garbage.
    let run = d
        .fresh("host", &["gc", "--json", "--grace", "0s"])
        .success();
    let report = &run.json()["gc"];
    assert_eq!(report["orphan_maps_deleted"], 1, "{run}");
    assert!(u64_of(report, "/chunks_deleted") >= 1, "{run}");
    let to = d.sb.path("first");
    d.fresh("host", &["restore", "--vm", VM, "--to", arg(&to)])
        .success();
    assert_image(&to.join("disk.img"), &d.gen0);
}

/// The tier of this host: `STATE/snapshots/VM`.
fn tier(d: &Damaged) -> PathBuf {
    snapshot_tier(&d.vault, VM)
}

fn restore_from_snapshot(d: &Damaged, point: Option<&str>, to: &Path) -> Value {
    let mut args = vec!["--from", "snapshot"];
    if let Some(point) = point {
        args.extend(["--point", point]);
    }
    let report = restore(&d.vault, VM, to, &args);
    assert_eq!(report["tier"], "snapshot", "{report}");
    report
}

#[test]
fn a_damaged_snapshot_record_is_set_aside_and_the_tier_goes_on() {
    let d = two_points();
    let record = tier(&d).join("points").join(VM).join(&d.latest);
    assert!(record.is_file(), "{}", record.display());
    flip_middle(&record, 1);

    // The other snapshot point still restores from the tier.
    restore_from_snapshot(&d, Some(&d.first), &d.sb.path("first"));
    assert_image(&d.sb.path("first").join("disk.img"), &d.gen0);
    let aside = tier(&d)
        .join("quarantine")
        .join("points")
        .join(VM)
        .join(&d.latest);
    assert!(aside.is_file(), "set aside: {}", aside.display());
    // Its vault copy is intact.
    let listed = points(&d.vault, VM);
    let latest = listed
        .iter()
        .find(|p| p["id"] == d.latest.as_str())
        .expect("listed from the vault");
    assert_eq!(latest["tiers"], json!(["vault"]), "{latest}");

    // Later snapshots are seen and restore from the tier.
    let disk = d.sb.path("disk.img");
    let next = backup(&d.vault, VM, &[&disk], None);
    let next = str_of(&next, "/id");
    restore_from_snapshot(&d, None, &d.sb.path("next"));
    assert_image(&d.sb.path("next").join("disk.img"), &d.gen1);
    let listed = points(&d.vault, VM);
    assert_eq!(
        listed.last().expect("points")["tiers"],
        json!(["snapshot", "vault"]),
        "{next}"
    );
}

#[test]
fn a_damaged_snapshot_config_is_rebuilt_and_backups_go_on() {
    let d = two_points();
    let config = tier(&d).join("vault.config");
    flip_middle(&config, 1);

    // The points already in the tier still restore from it.
    restore_from_snapshot(&d, Some(&d.first), &d.sb.path("first"));
    assert_image(&d.sb.path("first").join("disk.img"), &d.gen0);
    let quarantine = tier(&d).join("quarantine");
    assert!(
        entries(&quarantine)
            .iter()
            .any(|e| e.starts_with("vault.config.")),
        "{:?}",
        entries(&quarantine)
    );

    // The next backup works and restores from the tier.
    flip_middle(&config, 1);
    let disk = d.sb.path("disk.img");
    backup(&d.vault, VM, &[&disk], None);
    restore_from_snapshot(&d, None, &d.sb.path("next"));
    assert_image(&d.sb.path("next").join("disk.img"), &d.gen1);
}
