//! The commit of a replicated vault, cut at each of its steps: the point record goes to the
//! secondary, then to the primary. Whatever step a kill stops it at, garbage collection keeps
//! every point the secondary holds a record of, and the secondary alone restores each of them
//! once the primary is lost.

use std::fs;
use std::path::Path;

use crate::support::*;

const VM: &str = "web01";

fn record(store: &Path, id: &str) -> std::path::PathBuf {
    store.join("points").join(VM).join(id)
}

#[test]
fn a_commit_cut_at_any_step_loses_no_point_on_the_replica() {
    let sb = Sandbox::new();
    let (primary, secondary) = (sb.path("vault"), sb.path("replica"));
    blockvault([
        "vault",
        "init",
        "--vault",
        arg(&primary),
        "--redundancy",
        "replicated",
        "--secondary",
        arg(&secondary),
    ])
    .success();
    let mut disk = standard_disk(&sb.path("disk.img"));
    let mut points = Vec::new();
    for round in 0..3u64 {
        disk.write((10 + round) * MIB, &noise(64 * KIB, 100 + round));
        let point = backup(&primary, VM, &[&disk.path], Some("64KiB"));
        points.push((str_of(&point, "/id").to_owned(), disk.snapshot()));
    }
    let [(done, done_content), (never, _), (cut, cut_content)] = &points[..] else {
        unreachable!("three rounds")
    };
    // Killed before either record was written: no record anywhere.
    fs::remove_file(record(&primary, never)).expect("record");
    fs::remove_file(record(&secondary, never)).expect("record");
    // Killed between the secondary's record and the primary's.
    fs::remove_file(record(&primary, cut)).expect("record");
    assert!(record(&secondary, cut).is_file());

    let run = blockvault(["gc", "--json", "--vault", arg(&primary), "--grace", "0s"]).success();
    let report = &run.json()["gc"];
    assert_eq!(report["commits_finished"], 1, "{run}");
    assert!(u64_of(report, "/orphan_maps_deleted") >= 1, "{run}");
    assert!(
        record(&primary, cut).is_file(),
        "the cut commit is finished on the primary"
    );
    assert!(!record(&secondary, never).exists());

    // The primary is lost: the secondary alone restores every point it has a record of.
    fs::rename(&primary, sb.path("lost")).expect("lose the primary");
    let fresh = sb.path("fresh-host");
    for (id, content) in [(done, done_content), (cut, cut_content)] {
        let to = sb.path(&format!("out-{id}"));
        let run = blockvault([
            "restore",
            "--vault",
            arg(&secondary),
            "--vm",
            VM,
            "--point",
            id,
            "--from",
            "vault",
            "--to",
            arg(&to),
            "--state-dir",
            arg(&fresh),
        ]);
        assert_eq!(run.code, 0, "point {id}\n{run}");
        assert_image(&to.join("disk.img"), content);
    }
}
