//! Back up a disk twice, list the points, and restore each of them every way a point can be
//! named.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::*;

const VM: &str = "web01";
const BS: u64 = 64 * KIB;

#[test]
fn every_point_restores_byte_identical_by_latest_id_prefix_and_time() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    let gen1 = disk.snapshot();
    let p1 = backup(&vault, VM, &[&disk.path], Some("64KiB"));

    disk.write(20 * MIB + 10 * KIB, &noise(100 * KIB, 6));
    disk.write(30 * MIB, &text(64 * KIB, 7));
    disk.write(63 * MIB + 700 * KIB, &noise(4 * KIB, 8));
    let gen2 = disk.snapshot();
    assert!(gen1 != gen2, "the second generation must differ");
    let p2 = backup(&vault, VM, &[&disk.path], Some("64KiB"));

    // `points --json`: both points, oldest first, with what the backups reported.
    let listed = points(&vault, VM);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["id"], p1["id"]);
    assert_eq!(listed[1]["id"], p2["id"]);
    let t1: Timestamp = str_of(&listed[0], "/time").parse().expect("point 1 time");
    let t2: Timestamp = str_of(&listed[1], "/time").parse().expect("point 2 time");
    assert!(t1 < t2, "newest last: {t1} then {t2}");
    for (point, reported) in listed.iter().zip([&p1, &p2]) {
        assert_eq!(point["vm"], json!(VM));
        assert_eq!(point["time"], reported["time"]);
        assert_eq!(point["disks"][0]["name"], json!("disk.img"));
        assert_eq!(point["disks"][0]["size"], json!(64 * MIB));
        assert_eq!(point["disks"][0]["block_size"], json!(BS));
        assert_eq!(point["stats"], reported["stats"]);
        assert_eq!(point["tiers"], json!(["snapshot", "vault"]));
        // The default two instant-restore days, as the catalog keeps it (to the microsecond).
        let time: Timestamp = str_of(point, "/time").parse().expect("point time");
        let until: Timestamp = str_of(point, "/snapshot_expires")
            .parse()
            .expect("snapshot expiry");
        let due = time + jiff::SignedDuration::from_hours(48);
        assert!(
            until <= due && due.duration_since(until) < jiff::SignedDuration::from_micros(1),
            "{until} is two days after {time}"
        );
    }
    assert_eq!(listed[0]["parent"], Value::Null);
    assert_eq!(listed[1]["parent"], p1["id"]);
    assert_eq!(
        u64_of(&listed[0], "/stats/bytes_changed"),
        nonzero_bytes(&gen1, BS)
    );
    let changed2 = u64_of(&listed[1], "/stats/bytes_changed");
    assert!(
        changed2 > 0 && changed2 < u64_of(&listed[0], "/stats/bytes_changed"),
        "{changed2}"
    );
    assert!(u64_of(&listed[0], "/stats/bytes_stored") > 0);
    assert!(u64_of(&listed[1], "/stats/bytes_stored") > 0);

    // The newest point by default, from the snapshot tier (instant restore); and the same
    // from the vault when asked.
    for (name, from) in [("latest", "auto"), ("latest-vault", "vault")] {
        let to = sb.path(name);
        let report = restore(&vault, VM, &to, &["--from", from]);
        assert_eq!(report["point"], p2["id"]);
        assert_eq!(report["vm"], json!(VM));
        let tier = if from == "auto" { "snapshot" } else { from };
        assert_eq!(report["tier"], json!(tier), "{name}");
        assert_eq!(report["in_place"], json!(false), "{name}");
        assert!(report["job"].is_u64(), "{name}: {report}");
        assert_eq!(report["disks"][0]["name"], json!("disk.img"));
        assert_eq!(report["disks"][0]["size"], json!(64 * MIB));
        assert!(u64_of(&report, "/disks/0/bytes_written") <= nonzero_bytes(&gen2, BS));
        assert_eq!(entries(&to), ["disk.img"]);
        assert_image(&to.join("disk.img"), &gen2);
        assert_sparse(&to.join("disk.img"), nonzero_bytes(&gen2, BS));
    }

    // The first point, named every way.
    let id1 = str_of(&p1, "/id");
    let id2 = str_of(&p2, "/id");
    let differ = id1
        .bytes()
        .zip(id2.bytes())
        .position(|(a, b)| a != b)
        .expect("point ids differ");
    let prefix = &id1[..=differ];
    assert!(prefix.len() < id1.len(), "{prefix} is a prefix");
    let mid = Timestamp::from_nanosecond((t1.as_nanosecond() + t2.as_nanosecond()) / 2)
        .expect("midpoint");
    assert!(t1 < mid && mid < t2);
    let mid_utc = mid.to_string();
    let mid_plus_two = mid.display_with_offset(jiff::tz::offset(2)).to_string();
    assert!(mid_plus_two.ends_with("+02:00"), "{mid_plus_two}");
    let ways: [(&str, [&str; 2]); 4] = [
        ("by-id", ["--point", id1]),
        ("by-prefix", ["--point", prefix]),
        ("at-utc", ["--at", &mid_utc]),
        ("at-offset", ["--at", &mid_plus_two]),
    ];
    for (name, selector) in ways {
        // Each selector chooses among the points of either tier.
        for from in ["snapshot", "vault"] {
            let to = sb.path(&format!("{name}-{from}"));
            let report = restore(
                &vault,
                VM,
                &to,
                &[&selector[..], &["--from", from]].concat(),
            );
            assert_eq!(report["point"], p1["id"], "{name} {from}");
            assert_eq!(report["tier"], json!(from), "{name}");
            assert_eq!(entries(&to), ["disk.img"], "{name} {from}");
            assert_image(&to.join("disk.img"), &gen1);
            assert_sparse(&to.join("disk.img"), nonzero_bytes(&gen1, BS));
        }
    }

    // --at the second point's exact time, or a local time far ahead, is the second point.
    let t2_text = t2.to_string();
    for (name, at) in [
        ("at-exact", t2_text.as_str()),
        ("at-local", "2999-01-01 00:00"),
    ] {
        let to = sb.path(name);
        let report = restore(&vault, VM, &to, &["--at", at]);
        assert_eq!(report["point"], p2["id"], "{name}");
        assert_image(&to.join("disk.img"), &gen2);
    }
}

#[test]
fn points_text_lists_each_point_in_local_time() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let a = small_disk(&sb.path("a.img"), 1);
    let b = small_disk(&sb.path("b.img"), 2);
    let pa = backup(&vault, "alpha", &[&a.path], Some("64KiB"));
    let pb = backup(&vault, "beta", &[&b.path], Some("64KiB"));

    let run = blockvault(["points", "--vault", arg(&vault)]).success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header and two rows\n{run}");
    for header in [
        "VM",
        "POINT",
        "TIME",
        "CONSISTENCY",
        "STORED",
        "TIERS",
        "SNAPSHOT UNTIL",
    ] {
        assert!(lines[0].contains(header), "{header}\n{run}");
    }
    for (line, vm, point) in [(lines[1], "alpha", &pa), (lines[2], "beta", &pb)] {
        assert!(line.starts_with(vm), "{run}");
        assert!(line.contains(str_of(point, "/id")), "{run}");
        // TZ=UTC: local times are printed with their +00:00 offset.
        let time: Timestamp = str_of(point, "/time").parse().expect("point time");
        assert!(line.contains(&local(time)), "{run}");
        let listed = &points(&vault, vm)[0];
        let until: Timestamp = str_of(listed, "/snapshot_expires")
            .parse()
            .expect("snapshot expiry");
        assert!(
            line.contains("crash-consistent")
                && line.ends_with(&format!("snapshot+vault  {}", local(until))),
            "{run}"
        );
    }

    let run = blockvault(["points", "--vault", arg(&vault), "--vm", "beta"]).success();
    assert_eq!(run.stdout.lines().count(), 2, "{run}");
    assert!(run.stdout.contains(str_of(&pb, "/id")), "{run}");
    assert!(!run.stdout.contains(str_of(&pa, "/id")), "{run}");
}

#[test]
fn the_vault_can_come_from_blockvault_vault() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 3);
    let point = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let run = blockvault_with_env(
        ["points", "--json", "--vm", VM],
        &[("BLOCKVAULT_VAULT", vault.as_os_str())],
    )
    .success();
    assert_eq!(run.json()["points"][0]["id"], point["id"], "{run}");
}

#[test]
fn an_empty_vault_lists_no_points() {
    let sb = Sandbox::new();
    let vault = sb.path("vault");
    let run = blockvault(["vault", "init", "--json", arg(&vault)]).success();
    let doc = run.json();
    assert_eq!(doc["default_block_size"], json!(MIB), "{run}");
    assert_eq!(str_of(&doc, "/id").len(), 16, "{run}");
    assert_eq!(entries(&vault), ["vault.config"]);
    let run = blockvault(["points", "--vault", arg(&vault)]).success();
    assert_eq!(run.stdout.trim(), "no recovery points", "{run}");
    let run = blockvault(["points", "--json", "--vault", arg(&vault)]).success();
    assert_eq!(
        run.json(),
        json!({ "points": [], "damaged": [], "warnings": [] }),
        "{run}"
    );
}

/// A time as the text output prints it (here TZ=UTC).
fn local(time: Timestamp) -> String {
    time.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}
