//! `blockvault verify`: an intact vault verifies clean; a flipped or missing chunk is reported
//! with every point, disk and offset it damages, exits 4 and fails the VM's Verify job; a
//! damaged block map is reported too. Verification writes nothing.

use std::fs;

use crate::jobs::fixture::on_host;
use crate::support::*;

const VM: &str = "web01";
const BS: u64 = 64 * KIB;
/// A block of noise in the standard disk: its chunk is unique.
const RAW_BLOCK: u64 = 20 * MIB;

fn verify(vault: &std::path::Path, extra: &[&str]) -> Run {
    let mut args = vec!["verify", "--vault", arg(vault), "--json"];
    args.extend_from_slice(extra);
    blockvault(&args)
}

#[test]
fn verify_reports_each_damaged_chunk_with_the_points_and_offsets_it_affects() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let mut disk = standard_disk(&sb.path("disk.img"));
    let first = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    disk.write(30 * MIB, &noise(10 * KIB, 50));
    let second = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let ids = [str_of(&first, "/id"), str_of(&second, "/id")];

    let clean = verify(&vault, &["--vm", VM]).success();
    let doc = clean.json();
    assert_eq!(doc["report"]["points"], 2, "{clean}");
    assert!(u64_of(&doc, "/report/chunks_checked") > 0, "{clean}");
    assert_eq!(
        doc["report"]["bad_chunks"],
        serde_json::json!([]),
        "{clean}"
    );
    assert_eq!(doc["jobs"][0]["status"], "completed", "{clean}");
    assert_eq!(doc["jobs"][0]["operation"], "verify", "{clean}");

    // Damage the chunk of a block both points share, and drop another one.
    let content = disk.snapshot();
    let shared = chunk_file(
        &vault,
        &content[RAW_BLOCK as usize..(RAW_BLOCK + BS) as usize],
    );
    flip_middle(&shared, 16);
    let dropped_at = RAW_BLOCK + BS;
    let dropped = chunk_file(
        &vault,
        &content[dropped_at as usize..(dropped_at + BS) as usize],
    );
    fs::remove_file(&dropped).expect("remove chunk");
    let before = tree(&vault);

    let run = verify(&vault, &["--all"]);
    assert_eq!(run.code, 4, "{run}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let bad = doc["report"]["bad_chunks"].as_array().expect("bad chunks");
    assert_eq!(bad.len(), 2, "{run}");
    let problems: Vec<&str> = bad
        .iter()
        .map(|b| b["problem"].as_str().unwrap_or(""))
        .collect();
    assert!(problems.contains(&"missing"), "{problems:?}");
    for b in bad {
        let affects = b["affects"].as_array().expect("affects");
        // Both points hold both blocks, at the same offsets.
        let points: Vec<&str> = affects
            .iter()
            .map(|a| a["point"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(points, ids, "{b}");
        let offset = u64_of(&affects[0], "/offset");
        assert!(offset == RAW_BLOCK || offset == dropped_at, "{b}");
        assert_eq!(affects[0]["disk"], "disk.img");
    }
    assert_eq!(doc["jobs"][0]["status"], "failed", "{run}");
    // Verify writes nothing but a damage mark per bad chunk, for the next backup to repair.
    let (marks, rest): (Vec<String>, Vec<String>) = tree(&vault)
        .into_iter()
        .partition(|p| p.starts_with("damaged/"));
    assert_eq!(rest, before, "verify changes nothing else");
    let mut marked: Vec<String> = marks
        .iter()
        .map(|m| m["damaged/".len()..].to_owned())
        .collect();
    let mut expected: Vec<String> = bad
        .iter()
        .map(|b| b["id"].as_str().unwrap_or("").to_owned())
        .collect();
    marked.sort();
    expected.sort();
    assert_eq!(marked, expected, "each bad chunk is marked");

    // One point only: the same damage, one affected block per bad chunk.
    let one = verify(&vault, &["--vm", VM, "--point", ids[0]]);
    assert_eq!(one.code, 4, "{one}");
    let doc: serde_json::Value = serde_json::from_str(&one.stdout).expect("json");
    assert_eq!(doc["report"]["points"], 1);
    for b in doc["report"]["bad_chunks"].as_array().expect("bad") {
        assert_eq!(b["affects"].as_array().map(Vec::len), Some(1), "{b}");
    }
    let jobs = on_host(&vault, &["jobs", "--operation", "verify", "--json"]).success();
    let statuses: Vec<String> = jobs.json()["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "completed"], "{jobs}");
}

#[test]
fn a_damaged_block_map_is_reported_and_unknown_targets_are_not_found() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let disk = standard_disk(&sb.path("disk.img"));
    let point = backup(&vault, VM, &[&disk.path], Some("64KiB"));
    let id = str_of(&point, "/id");
    flip_middle(&map_file(&vault, VM, id, "disk.img"), 8);
    let run = verify(&vault, &["--vm", VM]);
    assert_eq!(run.code, 4, "{run}");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let maps = doc["report"]["bad_maps"].as_array().expect("bad maps");
    assert_eq!(maps.len(), 1, "{run}");
    assert_eq!(maps[0]["point"], id);
    assert_eq!(maps[0]["disk"], "disk.img");

    let plain = |extra: &[&str]| {
        let mut args = vec!["verify", "--vault", arg(&vault)];
        args.extend_from_slice(extra);
        blockvault(&args)
    };
    assert!(plain(&["--vm", "nope"]).failure(3).contains("nope"));
    plain(&["--vm", VM, "--point", "19990101"]).failure(3);
    // Neither --vm nor --all: a usage error.
    let none = plain(&[]);
    assert_eq!(none.code, 2, "{none}");
    assert!(
        none.stderr.contains("--vm") && none.stderr.contains("--all"),
        "{none}"
    );
}
