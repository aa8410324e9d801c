//! Every feature on an encrypted vault (issue 26), through the binary: backup (full and
//! incremental), restore (new files, in place, from the snapshot tier with the vault away),
//! verify, gc, forget, soft delete and undelete, a replicated vault (read-heal, promote), the
//! daemon; a wrong passphrase (exit 7, nothing written); a tier under another key started
//! fresh; and the passphrase found in no output and no file.

mod daemon;
mod ids;
mod s3;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::crypt_support::*;
use crate::support::*;

const VM: &str = "web01";
/// Written into the disks: no object of the vault or the tier may hold it in clear.
const MARKER: &[u8] = b"GUEST-SECRET-MARKER-4f1c9e-/etc/shadow";

/// One test's host and encrypted vault, the passphrase in a file.
struct Enc {
    sb: Sandbox,
    vault: PathBuf,
    state: PathBuf,
    pass: PathBuf,
    /// Every run, to search their outputs for the passphrase.
    runs: std::cell::RefCell<Vec<String>>,
}

impl Enc {
    fn new() -> Enc {
        let sb = Sandbox::new();
        let vault = init_encrypted(&sb.path("vault"));
        let state = host_state(&vault);
        let pass = passphrase_file(&sb.path(""), "passphrase", PASSPHRASE);
        Enc {
            sb,
            vault,
            state,
            pass,
            runs: Default::default(),
        }
    }

    /// `blockvault ARGS --state-dir STATE` with the passphrase file.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(&self.pass, args)
    }

    fn run_with(&self, pass: &Path, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--state-dir", arg(&self.state)]);
        let run = with_passphrase(pass, &all);
        self.runs
            .borrow_mut()
            .push(format!("{}\n{}", run.stdout, run.stderr));
        run
    }

    /// A 4 MiB disk with noise and the marker.
    fn disk(&self, name: &str, seed: u64) -> Image {
        let mut image = Image::create(&self.sb.path(name), 4 * MIB);
        image.write(MIB, &noise(256 * KIB, seed));
        image.write(2 * MIB + 100, MARKER);
        image
    }

    /// `backup --json`, checked: Completed, no warning; the point.
    fn backup(&self, disk: &Path) -> Value {
        let run = self
            .run(&[
                "backup",
                "--json",
                "--vault",
                arg(&self.vault),
                "--vm",
                VM,
                "--disk",
                arg(disk),
            ])
            .success();
        let doc = run.json();
        assert_eq!(doc["job"]["status"], "completed", "{run}");
        assert_eq!(doc["warnings"], json!([]), "{run}");
        doc["point"].clone()
    }

    /// `restore --from vault` of the newest point from the vault at `vault` (another
    /// location of this test's vault: its replica, a promoted one) into `to`.
    fn restore_from_vault(&self, vault: &Path, to: &Path) -> Run {
        self.run(&[
            "restore",
            "--vault",
            arg(vault),
            "--vm",
            VM,
            "--from",
            "vault",
            "--to",
            arg(to),
        ])
    }

    fn restore(&self, to: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "restore",
            "--json",
            "--vault",
            arg(&self.vault),
            "--vm",
            VM,
            "--to",
            arg(to),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The passphrase is in no output of this test's runs and in no file of the state
    /// directory (catalog included) or the vault.
    fn assert_passphrase_nowhere(&self) {
        for output in self.runs.borrow().iter() {
            assert!(!output.contains(PASSPHRASE), "the passphrase in {output}");
        }
        for dir in [&self.state, &self.vault] {
            let found = files_containing(dir, PASSPHRASE.as_bytes());
            assert!(found.is_empty(), "the passphrase in {found:?}");
        }
        let catalog = self.state.join("catalog.sqlite");
        assert!(catalog.is_file(), "{}", catalog.display());
    }

    /// No object of the vault (every file of it: chunks, maps, records, markers), nor of the
    /// VM's snapshot tier, holds the marker in clear (a chunk is stored compressed only when
    /// that is smaller: the marker sits in noise).
    fn assert_marker_sealed(&self) {
        for dir in [self.vault.clone(), self.state.join("snapshots")] {
            assert!(dir.is_dir(), "{}", dir.display());
            let found = files_containing(&dir, MARKER);
            assert!(found.is_empty(), "the disk's marker in clear in {found:?}");
        }
    }
}

#[test]
fn backup_incremental_restore_verify_and_gc_work_on_an_encrypted_vault() {
    let e = Enc::new();
    let mut disk = e.disk("web01.img", 1);
    let first = e.backup(&disk.path);
    e.assert_marker_sealed();
    let tier_config =
        fs::read(e.state.join("snapshots").join(VM).join("vault.config")).expect("tier config");
    assert!(
        tier_config.windows(11).any(|w| w == b"aes-256-gcm"),
        "the tier is encrypted under the vault's key"
    );

    // Incremental: only the changed block is stored.
    disk.write(3 * MIB, &noise(64 * KIB, 2));
    let second = e.backup(&disk.path);
    assert!(
        u64_of(&second, "/stats/bytes_changed") < u64_of(&first, "/stats/bytes_changed"),
        "{first}\n{second}"
    );

    // Restore into new files, from the vault and from the tier.
    for from in ["vault", "snapshot"] {
        let out = e.sb.path(&format!("out-{from}"));
        let run = e.restore(&out, &["--from", from]).success();
        assert_eq!(run.json()["warnings"], json!([]), "{run}");
        assert_image(&out.join("web01.img"), disk.content());
    }

    // In place: a scribbled copy of the disk comes back to the newest point.
    let live = e.sb.path("live");
    fs::create_dir_all(&live).expect("live dir");
    fs::copy(&disk.path, live.join("web01.img")).expect("copy");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(live.join("web01.img"))
        .expect("open");
    std::os::unix::fs::FileExt::write_all_at(&f, &noise(128 * KIB, 9), 0).expect("scribble");
    drop(f);
    e.restore(&live, &["--in-place", "--from", "vault"])
        .success();
    assert_image(&live.join("web01.img"), disk.content());

    e.run(&["verify", "--vault", arg(&e.vault), "--vm", VM])
        .success();
    let gc = e
        .run(&["gc", "--json", "--vault", arg(&e.vault), "--grace", "0s"])
        .success();
    assert_eq!(gc.json()["gc"]["chunks_deleted"], 0, "{gc}");
    let out = e.sb.path("after-gc");
    e.restore(&out, &["--from", "vault"]).success();
    assert_image(&out.join("web01.img"), disk.content());
    e.assert_passphrase_nowhere();
}

#[test]
fn a_wrong_passphrase_or_none_exits_7_and_writes_nothing() {
    let e = Enc::new();
    let disk = e.disk("web01.img", 3);
    let before = tree(&e.vault);
    let wrong = passphrase_file(&e.sb.path(""), "wrong", "not the passphrase");
    let backup = [
        "backup",
        "--vault",
        arg(&e.vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
    ];
    let run = e.run_with(&wrong, &backup);
    let message = run.failure(7);
    assert!(message.contains("passphrase"), "{run}");
    assert!(!run.stderr.contains("not the passphrase"), "{run}");
    // No passphrase at all (no terminal here): the same code, saying how to give one.
    let mut all = backup.to_vec();
    all.extend(["--state-dir", arg(&e.state)]);
    let none = blockvault(&all);
    assert!(
        none.failure(7).contains("BLOCKVAULT_PASSWORD_FILE"),
        "{none}"
    );
    for run in [
        e.run_with(&wrong, &["points", "--vault", arg(&e.vault)]),
        e.run_with(&wrong, &["verify", "--vault", arg(&e.vault), "--all"]),
        e.run_with(&wrong, &["gc", "--vault", arg(&e.vault)]),
    ] {
        run.failure(7);
    }
    assert_eq!(tree(&e.vault), before, "nothing written in the vault");
    assert!(
        !snapshot_tier(&e.vault, VM).exists(),
        "no snapshot tier was made"
    );
    let jobs = e.run(&["jobs", "--json"]).success().json();
    let completed: Vec<&Value> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["status"] == "completed")
        .collect();
    assert!(completed.is_empty(), "{jobs}");
    e.assert_passphrase_nowhere();
}

#[test]
fn the_snapshot_tier_restores_with_the_vault_away_given_the_passphrase() {
    let e = Enc::new();
    let disk = e.disk("web01.img", 4);
    e.backup(&disk.path);
    let away = e.sb.path("vault-away");
    fs::rename(&e.vault, &away).expect("move the vault away");
    let out = e.sb.path("instant");
    let run = e.restore(&out, &[]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.json()["warnings"]
            .to_string()
            .contains("cannot be opened"),
        "{run}"
    );
    assert_image(&out.join("web01.img"), disk.content());
    // The tier is encrypted: without the passphrase it does not restore.
    let wrong = passphrase_file(&e.sb.path(""), "wrong", "not the passphrase");
    let run = e.run_with(
        &wrong,
        &[
            "restore",
            "--vault",
            arg(&e.vault),
            "--vm",
            VM,
            "--to",
            arg(&e.sb.path("refused")),
        ],
    );
    run.failure(7);
    assert!(!e.sb.path("refused").join("web01.img").exists());
    e.assert_passphrase_nowhere();
}

#[test]
fn a_flipped_bit_in_an_encrypted_chunk_is_damage_exit_4() {
    let e = Enc::new();
    let disk = e.disk("web01.img", 5);
    e.backup(&disk.path);
    let chunks = chunk_files(&e.vault);
    assert!(!chunks.is_empty());
    for chunk in &chunks {
        flip_middle(chunk, 1);
    }
    let run = e.run(&["verify", "--json", "--vault", arg(&e.vault), "--vm", VM]);
    assert_eq!(run.code, 4, "{run}");
    let doc = run.json();
    let bad = doc["report"]["bad_chunks"].as_array().expect("bad chunks");
    assert_eq!(bad.len(), chunks.len(), "{run}");
    // Reported as a plain vault's bad hash is: the chunk, its problem, what it affects.
    for b in bad {
        let problem = str_of(b, "/problem");
        assert!(problem.contains("failed authentication"), "{b}");
        assert_eq!(b["affects"][0]["disk"], "web01.img", "{b}");
        let id = str_of(b, "/id");
        assert!(
            chunks.iter().any(|c| c.ends_with(id)),
            "names a chunk object: {b}"
        );
    }
    let out = e.sb.path("out");
    let run = e.restore(&out, &["--from", "vault"]);
    assert_eq!(run.code, 4, "{run}");
}

#[test]
fn forget_soft_delete_and_undelete_work_on_an_encrypted_vault() {
    let e = Enc::new();
    let disk = e.disk("web01.img", 6);
    let run = e
        .run(&[
            "protect",
            "--json",
            "--vault",
            arg(&e.vault),
            "--vm",
            VM,
            "--disk",
            arg(&disk.path),
        ])
        .success();
    assert_eq!(run.json()["job"]["status"], "completed", "{run}");
    for _ in 0..2 {
        let run = e.run(&["backup-now", "--vm", VM, "--json"]).success();
        assert_eq!(run.json()["job"]["status"], "completed", "{run}");
    }
    let listed = |e: &Enc| -> Vec<Value> {
        let run = e
            .run(&["points", "--json", "--vault", arg(&e.vault)])
            .success();
        run.json()["points"].as_array().expect("points").clone()
    };
    let points = listed(&e);
    assert_eq!(points.len(), 2, "{points:?}");
    let oldest = str_of(&points[0], "/id").to_owned();
    e.run(&[
        "forget",
        "--vault",
        arg(&e.vault),
        "--vm",
        VM,
        "--point",
        &oldest,
        "--force",
    ])
    .success();
    // Forgotten (kept soft-deleted for its days, then purged).
    let after = listed(&e);
    let forgotten = after
        .iter()
        .find(|p| p["id"] == oldest.as_str())
        .expect("listed as forgotten");
    assert_eq!(forgotten["soft_deleted"]["forgotten"], true, "{forgotten}");

    let run = e
        .run(&["stop-protection", "--vm", VM, "--delete-data", "--json"])
        .success();
    assert_eq!(run.json()["item"]["state"], "soft-deleted", "{run}");
    assert!(e.vault.join("deleted").join(VM).is_file());
    e.run(&["undelete", "--vm", VM]).success();
    assert!(!e.vault.join("deleted").join(VM).exists());
    let out = e.sb.path("out");
    e.restore(&out, &["--from", "vault"]).success();
    assert_image(&out.join("web01.img"), disk.content());
    e.assert_passphrase_nowhere();
}

#[test]
fn a_tier_under_another_key_is_started_fresh_naming_what_it_dropped() {
    // A plain vault's tier, then the vault made again encrypted at the same place.
    let e = Enc::new();
    fs::remove_dir_all(&e.vault).expect("remove");
    blockvault(["vault", "init", arg(&e.vault)]).success();
    let disk = e.disk("web01.img", 7);
    let plain = e.backup(&disk.path);
    let plain_id = str_of(&plain, "/id").to_owned();
    fs::remove_dir_all(&e.vault).expect("remove");
    init_encrypted(&e.vault);

    let run = e
        .run(&[
            "backup",
            "--json",
            "--vault",
            arg(&e.vault),
            "--vm",
            VM,
            "--disk",
            arg(&disk.path),
        ])
        .success();
    let doc = run.json();
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("started fresh") && warnings.contains(&plain_id),
        "{run}"
    );
    e.assert_marker_sealed();
    let out = e.sb.path("out");
    e.restore(&out, &["--from", "vault"]).success();
    assert_image(&out.join("web01.img"), disk.content());
    // The dropped point is gone from this host's listing.
    let run = e
        .run(&["points", "--json", "--vault", arg(&e.vault)])
        .success();
    assert!(!run.stdout.contains(&plain_id), "{run}");
}

#[test]
fn a_replicated_encrypted_vault_backs_up_heals_reads_and_promotes() {
    let sb = Sandbox::new();
    let (primary, secondary) = (sb.path("primary"), sb.path("secondary"));
    init_encrypted_at(
        arg(&primary),
        PASSPHRASE,
        &["--redundancy", "replicated", "--secondary", arg(&secondary)],
    );
    let e = Enc {
        vault: primary.clone(),
        state: host_state(&primary),
        pass: passphrase_file(&sb.path(""), "passphrase", PASSPHRASE),
        runs: Default::default(),
        sb,
    };
    let disk = e.disk("web01.img", 8);
    e.backup(&disk.path);
    for dir in [&primary, &secondary] {
        let found = files_containing(&dir.join("chunks"), MARKER);
        assert!(found.is_empty(), "{found:?}");
    }
    // A damaged chunk in the primary is read from the secondary (and healed).
    let chunk = chunk_files(&primary).into_iter().next().expect("a chunk");
    flip_middle(&chunk, 1);
    let out = e.sb.path("healed");
    e.restore(&out, &["--from", "vault"]).success();
    assert_image(&out.join("web01.img"), disk.content());

    // The primary lost: the replica is promoted, and opens with the same passphrase.
    fs::rename(&primary, e.sb.path("primary-away")).expect("lose the primary");
    e.run(&["vault", "promote", "--vault", arg(&secondary)])
        .success();
    let out = e.sb.path("promoted");
    e.restore_from_vault(&secondary, &out).success();
    assert_image(&out.join("web01.img"), disk.content());

    // Replicated again to a new secondary: the copy is the same vault, under the same key.
    let third = e.sb.path("third");
    e.run(&[
        "vault",
        "replace-secondary",
        "--vault",
        arg(&secondary),
        arg(&third),
    ])
    .success();
    let found = files_containing(&third.join("chunks"), MARKER);
    assert!(found.is_empty(), "{found:?}");
    assert!(!chunk_files(&third).is_empty());
    fs::rename(&secondary, e.sb.path("promoted-away")).expect("lose the promoted vault");
    let out = e.sb.path("from-third");
    e.restore_from_vault(&third, &out).success();
    assert_image(&out.join("web01.img"), disk.content());
    e.assert_passphrase_nowhere();
}
