//! A disk grown and then shrunk between backups: each backup's job records the disk's old and
//! new size (`backup`'s output, `jobs show`, their `--json`), and every point restores byte for
//! byte at its own size.

use serde_json::{Value, json};

use crate::support::*;

const VM: &str = "web01";

/// `backup --json` of the disk, expected to succeed with one warning; returns the document.
fn backup_warned(vault: &std::path::Path, disk: &std::path::Path) -> Value {
    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        arg(vault),
        "--vm",
        VM,
        "--disk",
        arg(disk),
    ]);
    assert_eq!(run.code, 0, "{run}");
    let doc = run.json();
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    doc
}

fn resized_of(doc: &Value) -> Value {
    doc["job"]["subtasks"][0]["capture"]["disks"][0]["resized"].clone()
}

#[test]
fn a_disk_grown_then_shrunk_is_recorded_on_its_jobs_and_each_point_restores_at_its_size() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    let gen1 = disk.snapshot();
    let p1 = backup(&vault, VM, &[&disk.path], None);
    let id1 = str_of(&p1, "/id").to_owned();

    // Grown by 16 MiB, with data in the new part.
    disk.set_len(80 * MIB);
    disk.write(70 * MIB, &noise(MIB, 9));
    let gen2 = disk.snapshot();
    let grown = backup_warned(&vault, &disk.path);
    let id2 = str_of(&grown, "/point/id").to_owned();
    assert_eq!(
        resized_of(&grown),
        json!({"from": 64 * MIB, "to": 80 * MIB, "since": id1}),
        "{grown}"
    );
    let warnings = grown["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{grown}");
    let warning = warnings[0].as_str().expect("text");
    assert!(
        warning.contains("disk disk.img of web01 grew from 64.00 MiB")
            && warning.contains("to 80.00 MiB"),
        "{warning}"
    );

    // Shrunk below the first size, in text: the job line says it, and the warning.
    disk.set_len(48 * MIB);
    let gen3 = disk.snapshot();
    let run = blockvault([
        "backup",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout
            .contains("disk disk.img shrank from 80.00 MiB (83886080 bytes) to 48.00 MiB"),
        "{run}"
    );
    assert!(
        run.stderr
            .starts_with("warning: disk disk.img of web01 shrank from 80.00 MiB"),
        "{run}"
    );
    let job3 = run
        .stdout
        .strip_prefix("job ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no job id in {run}"));

    // `jobs show`: the sizes, in text and JSON.
    let state = crate::jobs::fixture::state_of(&vault);
    let shown = blockvault(["--state-dir", arg(&state), "jobs", "show", &job3]).success();
    assert!(
        shown.stdout.contains(
            "size shrank from 80.00 MiB (83886080 bytes) to 48.00 MiB (50331648 bytes) since point"
        ),
        "{shown}"
    );
    let shown = blockvault(["--state-dir", arg(&state), "jobs", "show", &job3, "--json"])
        .success()
        .json();
    assert_eq!(
        shown["subtasks"][0]["capture"]["disks"][0]["resized"],
        json!({"from": 80 * MIB, "to": 48 * MIB, "since": id2}),
        "{shown}"
    );
    // An unchanged size says nothing.
    let p4 = backup(&vault, VM, &[&disk.path], None);

    // Every point restores at its own size, byte for byte, from the vault.
    for (name, id, content) in [
        ("p1", id1.as_str(), &gen1),
        ("p2", id2.as_str(), &gen2),
        ("p4", str_of(&p4, "/id"), &gen3),
    ] {
        let to = sb.path(name);
        let report = restore(&vault, VM, &to, &["--point", id, "--from", "vault"]);
        assert_eq!(report["disks"][0]["size"], json!(content.len()), "{name}");
        assert_image(&to.join("disk.img"), content);
    }
}
