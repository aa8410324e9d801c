//! Disaster recovery of replicated vaults, with real directories and one host state (as one
//! host would run them): a lost secondary is replaced and every point then restores from the
//! new one alone; a replacement killed midway resumes; a lost primary is replaced by
//! promoting the secondary, which then lists, restores and takes backups; bad targets and
//! promotions are refused and change nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const VM: &str = "web01";

/// One host: every run uses the same state directory, whichever vault it names.
struct Host {
    state: PathBuf,
}

impl Host {
    fn new(sb: &Sandbox) -> Host {
        Host {
            state: sb.path("host-state"),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--state-dir", arg(&self.state)];
        all.extend_from_slice(args);
        blockvault(&all)
    }

    /// `vault init --redundancy replicated`, checked.
    fn replicated(&self, primary: &Path, secondary: &Path) {
        self.run(&[
            "vault",
            "init",
            "--vault",
            arg(primary),
            "--redundancy",
            "replicated",
            "--secondary",
            arg(secondary),
        ])
        .success();
    }

    /// A backup of `disk` into `vault`, checked: completed without warnings; the point id.
    fn backup(&self, vault: &Path, disk: &Path) -> String {
        let run = self
            .run(&[
                "backup",
                "--json",
                "--vault",
                arg(vault),
                "--vm",
                VM,
                "--disk",
                arg(disk),
                "--block-size",
                "64KiB",
            ])
            .success();
        let doc = run.json();
        assert_eq!(doc["job"]["status"], "completed", "{run}");
        assert_eq!(doc["warnings"], serde_json::json!([]), "{run}");
        str_of(&doc, "/point/id").to_owned()
    }

    /// Restores point `id` of `vault` from the vault tier into a new directory; checked
    /// byte for byte against `content`.
    fn assert_restores(&self, vault: &Path, id: &str, content: &[u8], to: &Path) {
        let run = self
            .run(&[
                "restore",
                "--json",
                "--vault",
                arg(vault),
                "--vm",
                VM,
                "--point",
                id,
                "--from",
                "vault",
                "--to",
                arg(to),
            ])
            .success();
        assert_eq!(run.json()["warnings"], serde_json::json!([]), "{run}");
        assert_image(&to.join("disk.img"), content);
    }

    /// The points of the VM in the vault tier of `vault` (the host's snapshot tier lists
    /// others beside them).
    fn point_ids(&self, vault: &Path) -> Vec<String> {
        let run = self
            .run(&["points", "--json", "--vault", arg(vault)])
            .success();
        run.json()["points"]
            .as_array()
            .expect("points")
            .iter()
            .filter(|p| p["vm"] == VM)
            .filter(|p| {
                p["tiers"]
                    .as_array()
                    .is_some_and(|t| t.contains(&"vault".into()))
            })
            .map(|p| p["id"].as_str().expect("id").to_owned())
            .collect()
    }

    fn show(&self, vault: &Path) -> Value {
        self.run(&["vault", "show", "--json", "--vault", arg(vault)])
            .success()
            .json()
    }
}

/// Every object but the config, relative to the vault, leaving out what lives on the primary
/// alone (leases, the GC epoch, damage marks).
fn replicated_objects(vault: &Path) -> Vec<String> {
    tree(vault)
        .into_iter()
        .filter(|f| f != "vault.config")
        .filter(|f| {
            !["leases/", "gc/", "damaged/"]
                .iter()
                .any(|p| f.starts_with(p))
        })
        .collect()
}

/// A disk of `mib` MiB of noise: one distinct chunk per 64 KiB block.
fn noisy_disk(path: &Path, mib: u64, seed: u64) -> Image {
    let mut image = Image::create(path, mib * MIB);
    image.write(0, &noise(mib * MIB, seed));
    image
}

#[test]
fn a_lost_secondary_is_replaced_and_every_point_restores_from_the_new_one_alone() {
    let sb = Sandbox::new();
    let host = Host::new(&sb);
    let (primary, secondary) = (sb.path("vault"), sb.path("replica"));
    host.replicated(&primary, &secondary);
    let mut disk = standard_disk(&sb.path("disk.img"));
    let mut points = vec![(host.backup(&primary, &disk.path), disk.snapshot())];
    disk.write(30 * MIB, &noise(200 * KIB, 7));
    points.push((host.backup(&primary, &disk.path), disk.snapshot()));

    let lost = fs::canonicalize(&secondary).expect("canonical");
    // Lost: every backup fails (exit 5), and the error says how to replace it, never to
    // `vault init` it (that would make an unrelated vault).
    fs::remove_dir_all(&secondary).expect("lose the secondary");
    let backup = [
        "backup",
        "--json",
        "--vault",
        arg(&primary),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ];
    let run = host.run(&backup);
    assert_eq!(run.code, 5, "{run}");
    let warned = run.json()["warnings"].to_string();
    assert!(
        warned.contains("vault replace-secondary --vault")
            && warned.contains("vault resync --vault")
            && !warned.contains("vault init"),
        "{run}"
    );

    let new = sb.path("replica2");
    let run = host
        .run(&[
            "vault",
            "replace-secondary",
            "--json",
            "--vault",
            arg(&primary),
            arg(&new),
        ])
        .success();
    let doc = run.json();
    let canonical = |p: &Path| fs::canonicalize(p).expect("canonical");
    assert_eq!(doc["secondary"], arg(&canonical(&new)), "{run}");
    assert_eq!(doc["previous"], arg(&lost), "{run}");
    assert_eq!(doc["resumed"], false, "{run}");
    assert_eq!(doc["copied"]["records"], 2, "{run}");
    assert_eq!(doc["copied"], doc["on_primary"], "{run}");
    assert_eq!(doc["bad"], serde_json::json!([]), "{run}");
    assert_eq!(host.show(&primary)["secondary_available"], true);

    // Backups replicate again, to the new secondary.
    disk.write(40 * MIB, &noise(100 * KIB, 8));
    points.push((host.backup(&primary, &disk.path), disk.snapshot()));
    assert_eq!(replicated_objects(&primary), replicated_objects(&new));

    // Every point restores from the new secondary alone.
    fs::rename(&primary, sb.path("vault-away")).expect("lose the primary");
    assert_eq!(
        host.point_ids(&new),
        points.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()
    );
    for (n, (id, content)) in points.iter().enumerate() {
        host.assert_restores(&new, id, content, &sb.path(&format!("out{n}")));
    }
}

#[test]
fn a_replacement_killed_midway_resumes_and_copies_only_what_is_missing() {
    let sb = Sandbox::new();
    let host = Host::new(&sb);
    let (primary, secondary) = (sb.path("vault"), sb.path("replica"));
    host.replicated(&primary, &secondary);
    let disk = noisy_disk(&sb.path("disk.img"), 48, 11);
    let id = host.backup(&primary, &disk.path);
    let config = fs::read(primary.join("vault.config")).expect("config");
    fs::remove_dir_all(&secondary).expect("lose the secondary");

    // SIGKILL the real binary once the copy has begun.
    let new = sb.path("replica2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args([
            "--state-dir",
            arg(&host.state),
            "vault",
            "replace-secondary",
        ])
        .args(["--concurrency", "1", "--vault", arg(&primary), arg(&new)])
        .env("TZ", "UTC")
        .spawn()
        .expect("start the resync");
    let started = Instant::now();
    while chunk_files(&new).len() < 8 {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the resync ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no chunk copied"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let landed = chunk_files(&new).len();
    let total = chunk_files(&primary).len();
    assert!(landed < total, "killed midway: {landed} of {total}");

    // Records go last: the half-done replica shows no point; the vault still names the old
    // secondary.
    assert!(!new.join("points").exists(), "{:?}", tree(&new));
    assert_eq!(host.point_ids(&new), Vec::<String>::new());
    assert_eq!(
        fs::read(primary.join("vault.config")).expect("config"),
        config
    );

    let run = host
        .run(&[
            "vault",
            "replace-secondary",
            "--json",
            "--vault",
            arg(&primary),
            arg(&new),
        ])
        .success();
    let doc = run.json();
    assert_eq!(doc["resumed"], true, "{run}");
    let already = u64_of(&doc, "/already/chunks");
    assert!(already >= landed as u64 - 1 && already > 0, "{run}");
    assert_eq!(
        u64_of(&doc, "/copied/chunks") + already,
        total as u64,
        "{run}"
    );
    assert_eq!(doc["copied"]["records"], 1, "{run}");

    // Run again: nothing left to copy.
    let again = host
        .run(&["vault", "resync", "--json", "--vault", arg(&primary)])
        .success();
    assert_eq!(u64_of(&again.json(), "/copied/chunks"), 0, "{again}");

    fs::rename(&primary, sb.path("vault-away")).expect("lose the primary");
    host.assert_restores(&new, &id, &disk.snapshot(), &sb.path("out"));
}

#[test]
fn a_secondary_that_lost_objects_is_resynced_and_a_lost_one_rebuilt_where_it_was() {
    let sb = Sandbox::new();
    let host = Host::new(&sb);
    let (primary, secondary) = (sb.path("vault"), sb.path("replica"));
    host.replicated(&primary, &secondary);
    let mut disk = standard_disk(&sb.path("disk.img"));
    host.backup(&primary, &disk.path);
    disk.write(30 * MIB, &noise(200 * KIB, 9));
    host.backup(&primary, &disk.path);
    let before = replicated_objects(&primary);

    // The secondary loses chunks and a map.
    let lost: Vec<PathBuf> = chunk_files(&secondary).into_iter().take(3).collect();
    for chunk in &lost {
        fs::remove_file(chunk).expect("lose a chunk");
    }
    let run = host
        .run(&["vault", "resync", "--json", "--vault", arg(&primary)])
        .success();
    let doc = run.json();
    assert_eq!(doc["resumed"], true, "{run}");
    assert_eq!(doc["copied"]["chunks"], 3, "{run}");
    assert_eq!(u64_of(&doc, "/copied/records"), 0, "{run}");
    assert_eq!(replicated_objects(&secondary), before);

    // A directory gone entirely is rebuilt where it was.
    fs::remove_dir_all(&secondary).expect("lose the secondary");
    let run = host
        .run(&["vault", "resync", "--json", "--vault", arg(&primary)])
        .success();
    assert_eq!(run.json()["copied"]["records"], 2, "{run}");
    assert_eq!(replicated_objects(&secondary), before);
}

#[test]
fn promote_after_the_primary_is_lost_lists_restores_and_backs_up() {
    let sb = Sandbox::new();
    let host = Host::new(&sb);
    let (primary, secondary) = (sb.path("vault"), sb.path("replica"));
    host.replicated(&primary, &secondary);
    let mut disk = standard_disk(&sb.path("disk.img"));
    host.run(&[
        "protect",
        "--vault",
        arg(&primary),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ])
    .success();
    let mut points = vec![(host.backup(&primary, &disk.path), disk.snapshot())];
    disk.write(30 * MIB, &noise(200 * KIB, 5));
    points.push((host.backup(&primary, &disk.path), disk.snapshot()));
    let id = host.show(&primary)["id"].clone();

    // While the primary is there, promotion is refused and changes nothing.
    let config = fs::read(secondary.join("vault.config")).expect("config");
    let run = host.run(&["vault", "promote", "--vault", arg(&secondary)]);
    assert!(run.failure(6).contains("still there"), "{run}");
    assert_eq!(
        fs::read(secondary.join("vault.config")).expect("config"),
        config
    );

    let away = sb.path("vault-away");
    fs::rename(&primary, &away).expect("lose the primary");
    let run = host
        .run(&["vault", "promote", "--json", "--vault", arg(&secondary)])
        .success();
    let doc = run.json();
    assert_eq!(doc["id"], id, "the same vault id\n{run}");
    assert_eq!(doc["moved_items"], serde_json::json!([VM]), "{run}");
    let show = host.show(&secondary);
    assert_eq!(show["redundancy"], "single", "{show}");
    assert_eq!(show["replica_of"], Value::Null, "{show}");
    assert_eq!(show["id"], id, "{show}");

    // Points list and restore byte for byte; the snapshot tier still counts them as this
    // vault's.
    let run = host
        .run(&["points", "--json", "--vault", arg(&secondary), "--vm", VM])
        .success();
    let listed = run.json()["points"].as_array().expect("points").clone();
    assert_eq!(listed.len(), 2, "{run}");
    for (point, (id, _)) in listed.iter().zip(&points) {
        assert_eq!(point["id"], id.as_str());
        assert_eq!(
            point["tiers"],
            serde_json::json!(["snapshot", "vault"]),
            "{run}"
        );
    }
    for (n, (id, content)) in points.iter().enumerate() {
        host.assert_restores(&secondary, id, content, &sb.path(&format!("out{n}")));
    }

    // Backups go on (the VM's protection moved with the vault), incremental.
    disk.write(40 * MIB, &noise(64 * KIB, 6));
    let third = host.backup(&secondary, &disk.path);
    host.assert_restores(&secondary, &third, &disk.snapshot(), &sb.path("out-third"));
    let items = host.run(&["items", "--json"]).success();
    assert!(
        items
            .stdout
            .contains(arg(&fs::canonicalize(&secondary).expect("canonical"))),
        "{items}"
    );

    // And it can be given a new secondary.
    let new = sb.path("replica2");
    let run = host
        .run(&[
            "vault",
            "replace-secondary",
            "--json",
            "--vault",
            arg(&secondary),
            arg(&new),
        ])
        .success();
    assert_eq!(run.json()["redundancy"], "replicated", "{run}");
    assert_eq!(replicated_objects(&secondary), replicated_objects(&new));

    // The old primary comes back: it cannot write any more, and says why.
    fs::rename(&away, &primary).expect("the primary is back");
    let run = host.run(&[
        "backup",
        "--json",
        "--vault",
        arg(&primary),
        "--vm",
        "db01",
        "--disk",
        arg(&disk.path),
    ]);
    assert_eq!(run.code, 5, "{run}");
    assert!(run.stdout.contains("was promoted"), "{run}");
    assert_eq!(
        host.point_ids(&primary).len(),
        2,
        "no new point on the old primary"
    );
    // Nor can it take the promoted vault back as its secondary.
    let run = host.run(&["vault", "resync", "--vault", arg(&primary)]);
    assert!(run.failure(2).contains("itself"), "{run}");
}

#[test]
fn bad_targets_and_promotions_are_refused_and_change_nothing() {
    let sb = Sandbox::new();
    let host = Host::new(&sb);
    let (primary, secondary) = (sb.path("vault"), sb.path("replica"));
    host.replicated(&primary, &secondary);
    let disk = small_disk(&sb.path("disk.img"), 4);
    host.backup(&primary, &disk.path);
    let config = fs::read(primary.join("vault.config")).expect("config");
    let replace = |target: &Path| {
        host.run(&[
            "vault",
            "replace-secondary",
            "--vault",
            arg(&primary),
            arg(target),
        ])
    };

    // A non-empty directory that holds no vault.
    let unrelated = sb.path("unrelated");
    fs::create_dir(&unrelated).expect("dir");
    fs::write(unrelated.join("notes.txt"), b"keep me").expect("file");
    let run = replace(&unrelated);
    assert!(run.failure(2).contains("not empty"), "{run}");
    assert_eq!(tree(&unrelated), ["notes.txt"]);

    // The primary itself, or inside it.
    let run = replace(&primary);
    assert!(run.failure(2).contains("another place"), "{run}");
    let run = replace(&primary.join("inner"));
    assert!(run.failure(2).contains("another place"), "{run}");
    assert!(!primary.join("inner").exists());

    // Another vault, and another vault's replica.
    let other = sb.path("other");
    host.run(&["vault", "init", arg(&other)]).success();
    let other_config = fs::read(other.join("vault.config")).expect("config");
    let run = replace(&other);
    assert!(run.failure(2).contains("of its own"), "{run}");
    assert_eq!(
        fs::read(other.join("vault.config")).expect("same"),
        other_config
    );
    let (third, third_replica) = (sb.path("third"), sb.path("third-replica"));
    host.replicated(&third, &third_replica);
    let run = replace(&third_replica);
    assert!(run.failure(2).contains("replica of another vault"), "{run}");

    assert_eq!(
        fs::read(primary.join("vault.config")).expect("config"),
        config
    );

    // Promote: a replicated primary and a single vault are no replicas.
    for vault in [&primary, &other] {
        let run = host.run(&["vault", "promote", "--vault", arg(vault)]);
        assert!(run.failure(6).contains("nothing to promote"), "{run}");
    }
    assert_eq!(
        fs::read(primary.join("vault.config")).expect("config"),
        config
    );
    // Resync of a single vault: it has no secondary.
    let run = host.run(&["vault", "resync", "--vault", arg(&other)]);
    assert!(run.failure(2).contains("no secondary"), "{run}");
    assert_eq!(
        fs::read(other.join("vault.config")).expect("same"),
        other_config
    );
}

/// A fresh `s3://BUCKET/PREFIX` location on the test Garage (as in `s3.rs`: the test that
/// needs it is `#[ignore]`d and fails without it).
fn s3_location(name: &str) -> Option<String> {
    match std::env::var("BLOCKVAULT_TEST_S3_BUCKET") {
        Ok(bucket) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos();
            Some(format!("s3://{bucket}/cli/{name}-{nanos}"))
        }
        Err(_) => panic!("the S3 tests need the Garage server that scripts/test.sh starts"),
    }
}

#[test]
#[ignore = "needs the S3 server that scripts/test.sh starts"]
fn a_lost_secondary_of_an_s3_vault_is_replaced_on_s3_and_restores_alone() {
    let (Some(primary), Some(new)) = (s3_location("dr-primary"), s3_location("dr-replica")) else {
        return;
    };
    let sb = Sandbox::new();
    let host = Host::new(&sb);
    let secondary = sb.path("replica");
    let primary = Path::new(&primary);
    host.replicated(primary, &secondary);
    let mut disk = standard_disk(&sb.path("disk.img"));
    let mut points = vec![(host.backup(primary, &disk.path), disk.snapshot())];
    disk.write(30 * MIB, &noise(200 * KIB, 3));
    points.push((host.backup(primary, &disk.path), disk.snapshot()));
    fs::remove_dir_all(&secondary).expect("lose the secondary");

    let new = Path::new(&new);
    let run = host
        .run(&[
            "vault",
            "replace-secondary",
            "--json",
            "--vault",
            arg(primary),
            arg(new),
        ])
        .success();
    let doc = run.json();
    assert_eq!(doc["secondary"], arg(new), "{run}");
    assert_eq!(doc["copied"], doc["on_primary"], "{run}");
    assert_eq!(doc["copied"]["records"], 2, "{run}");
    // A second run finds everything there (sizes as S3 lists them).
    let again = host
        .run(&["vault", "resync", "--json", "--vault", arg(primary)])
        .success();
    assert_eq!(again.json()["copied"]["chunks"], 0, "{again}");
    assert_eq!(again.json()["already"], doc["on_primary"], "{again}");

    // The S3 replica alone restores every point, byte for byte.
    let show = host.show(new);
    assert_eq!(
        show["replica_of"]["vault"],
        host.show(primary)["id"],
        "{show}"
    );
    for (n, (id, content)) in points.iter().enumerate() {
        host.assert_restores(new, id, content, &sb.path(&format!("out{n}")));
    }
}
