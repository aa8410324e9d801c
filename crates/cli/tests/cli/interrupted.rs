//! A backup killed in the middle of its transfer: no point appears, the earlier state of the
//! vault stays usable, and the next backup sends only the chunks that had not landed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Image, Sandbox, arg, blockvault, chunk_files, noise, points, restore};

const VM: &str = "killed";
const BLOCKS: u64 = 96;

/// Chunk objects in the vault (not staging files of a write in progress).
fn landed(vault: &std::path::Path) -> usize {
    chunk_files(vault)
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n.len() == 64))
        .count()
}

#[test]
fn a_backup_killed_mid_transfer_commits_nothing_and_the_next_sends_only_the_rest() {
    let sb = Sandbox::new();
    let vault = sb.init_vault();
    let state = sb.path("state");
    // 96 incompressible 1 MiB blocks: 96 chunks, sent one at a time, each fsynced.
    let mut disk = Image::create(&sb.path("disk.img"), BLOCKS << 20);
    for i in 0..BLOCKS {
        disk.write(i << 20, &noise(1 << 20, i + 1));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_blockvault"))
        .args([
            "backup",
            "-q",
            "--vault",
            arg(&vault),
            "--vm",
            VM,
            "--disk",
            arg(&disk.path),
        ])
        .args([
            "--block-size",
            "1MiB",
            "--concurrency",
            "1",
            "--state-dir",
            arg(&state),
        ])
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the backup");
    let deadline = Instant::now() + Duration::from_secs(60);
    while landed(&vault) < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL the backup");
    child.wait().expect("reap");
    let before = landed(&vault);
    assert!(before >= 8, "the backup never got going");
    assert!(
        (before as u64) < BLOCKS,
        "the backup finished before it could be killed; the test needs a bigger disk"
    );
    assert!(
        points(&vault, VM).is_empty(),
        "a killed backup must not leave a point"
    );

    let run = blockvault([
        "backup",
        "--json",
        "--vault",
        arg(&vault),
        "--vm",
        VM,
        "--disk",
        arg(&disk.path),
        "--state-dir",
        arg(&state),
        "--block-size",
        "1MiB",
    ])
    .success();
    let stored = run.json()["point"]["stats"]["chunks_stored"]
        .as_u64()
        .expect("chunks_stored");
    // One upload was in flight at the kill: it may have landed after its journal entry was
    // due, so at most one chunk is sent twice.
    let missing = BLOCKS - before as u64;
    assert!(
        stored == missing || stored == missing + 1,
        "{before} chunks had landed, yet the retry stored {stored} of {BLOCKS}"
    );
    assert_eq!(landed(&vault) as u64, BLOCKS);
    let out = sb.path("out");
    restore(&vault, VM, &out, &[]);
    assert!(std::fs::read(out.join("disk.img")).expect("read") == disk.content());
}
