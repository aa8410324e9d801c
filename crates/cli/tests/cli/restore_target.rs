//! What a restore does to the files already in its target directory.

use std::fs;

use crate::support::*;

const VM: &str = "web01";

#[test]
fn an_existing_image_is_kept_without_force_and_replaced_with_it() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = small_disk(&sb.path("disk.img"), 11);
    backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let to = sb.path("out");
    let image = to.join("disk.img");
    fs::create_dir(&to).expect("mkdir");
    fs::write(&image, b"precious").expect("write");

    let restore_args = [
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&to),
    ];
    let run = blockvault(restore_args);
    let line = run.failure(1);
    assert!(line.contains(arg(&image)), "{run}");
    assert!(
        line.contains("already exists") && line.contains("--force"),
        "{run}"
    );
    assert_eq!(fs::read(&image).expect("read"), b"precious");
    assert_eq!(entries(&to), ["disk.img"], "no partial file");

    let mut forced = restore_args.to_vec();
    forced.push("--force");
    let run = blockvault(&forced).success();
    assert!(run.stdout.starts_with("restored point "), "{run}");
    assert_eq!(run.stdout.lines().count(), 1, "{run}");
    assert_image(&image, disk.content());
    assert_sparse(&image, 512 * KIB);
    assert_eq!(entries(&to), ["disk.img"], "no partial file");
}

#[test]
fn one_existing_image_of_two_stops_the_restore_before_anything_is_written() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let a = small_disk(&sb.path("a.img"), 12);
    let b = small_disk(&sb.path("b.img"), 13);
    backup(&vault, VM, &[&a.path, &b.path], Some("64KiB"));
    let to = sb.path("out");
    fs::create_dir(&to).expect("mkdir");
    fs::write(to.join("b.img"), b"keep").expect("write");
    let run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&to),
    ]);
    assert!(run.failure(1).contains("b.img"), "{run}");
    assert_eq!(entries(&to), ["b.img"], "a.img not restored alone");
    assert_eq!(fs::read(to.join("b.img")).expect("read"), b"keep");
}

/// Regression: a directory named like a disk used to fail only at the final rename, after
/// earlier disks had replaced their old images (a mix of two points) and with the partial file
/// left behind. Targets are now checked before anything is written.
#[test]
fn a_directory_in_the_way_stops_the_restore_before_anything_is_written() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut a = small_disk(&sb.path("a.img"), 14);
    let b = small_disk(&sb.path("b.img"), 15);
    let gen1 = a.snapshot();
    backup(&vault, VM, &[&a.path, &b.path], Some("64KiB"));
    let to = sb.path("out");
    restore(&vault, VM, &to, &[]);
    a.write(2 * MIB, &noise(64 * KIB, 16));
    backup(&vault, VM, &[&a.path, &b.path], None);
    fs::remove_file(to.join("b.img")).expect("rm");
    fs::create_dir_all(to.join("b.img").join("sub")).expect("mkdir");
    let run = blockvault([
        "restore",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--to",
        arg(&to),
        "--force",
    ]);
    assert!(run.failure(1).contains("b.img"), "{run}");
    assert_eq!(entries(&to), ["a.img", "b.img"], "partial file left behind");
    assert_image(&to.join("a.img"), &gen1);
}

/// One host backs up a VM named `app` to two vaults (a VM moved, or two sites with the same
/// names): the host's snapshot tier holds both points, yet each vault lists and restores only
/// its own.
#[test]
fn each_vault_sees_only_its_own_points_of_a_shared_snapshot_tier() {
    let sb = Sandbox::new();
    let state = sb.path("host-state");
    let bv = |args: &[&str]| {
        let mut all = vec!["--state-dir", arg(&state)];
        all.extend_from_slice(args);
        blockvault(&all).success()
    };
    let (site_a, site_b) = (sb.path("site-a"), sb.path("site-b"));
    bv(&["vault", "init", arg(&site_a)]);
    bv(&["vault", "init", arg(&site_b)]);
    let web = small_disk(&sb.path("web.raw"), 21);
    let db = small_disk(&sb.path("db.raw"), 22);
    let backup_to = |vault: &std::path::Path, disk: &std::path::Path| {
        let run = bv(&[
            "backup",
            "--json",
            "--vault",
            arg(vault),
            "--vm",
            "app",
            "--disk",
            arg(disk),
        ]);
        str_of(&run.json(), "/point/id").to_owned()
    };
    let in_a = backup_to(&site_a, &web.path);
    let in_b = backup_to(&site_b, &db.path);

    for (vault, own, disk, other) in [(&site_a, &in_a, &web, &in_b), (&site_b, &in_b, &db, &in_a)] {
        let listed = bv(&["points", "--json", "--vault", arg(vault), "--vm", "app"]).json();
        let ids: Vec<&str> = listed["points"]
            .as_array()
            .expect("points")
            .iter()
            .filter_map(|p| p["id"].as_str())
            .collect();
        assert_eq!(ids, [own.as_str()], "{listed}");
        assert_eq!(
            listed["points"][0]["tiers"],
            serde_json::json!(["snapshot", "vault"]),
            "{listed}"
        );

        // The newest point, by default from the snapshot tier, is this vault's.
        let to = sb.path(&format!("out-{own}"));
        let run = bv(&[
            "restore",
            "--json",
            "--vault",
            arg(vault),
            "--vm",
            "app",
            "--to",
            arg(&to),
        ]);
        assert_eq!(str_of(&run.json(), "/point"), own.as_str(), "{run}");
        let name = disk.path.file_name().expect("name");
        assert_image(&to.join(name), &disk.snapshot());
        let asked = blockvault([
            "--state-dir",
            arg(&state),
            "restore",
            "--vault",
            arg(vault),
            "--vm",
            "app",
            "--point",
            other,
            "--to",
            arg(&sb.path("never")),
        ]);
        assert_eq!(
            asked.code, 3,
            "the other vault's point is not this vault's: {asked}"
        );
    }
}
