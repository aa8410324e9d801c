//! What a killed blockvault leaves in a running QEMU (a process killed mid-read), removed by
//! `cleanup_leftovers`: no job, node or export, its NBD server stopped, its scratch files and
//! socket directories gone, and every write since the parent in a recording bitmap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use blockvault_qemu::testing::{GuestNbd, TestVm};
use blockvault_qemu::{FleeceDisk, Fleecing, FleecingOptions, Qmp, bitmap_name, cleanup_leftovers};
use blockvault_source::{BlockSource, NbdOptions};

use crate::fleece::{
    K64, M, SINCE_P1, assert_clean, assert_empty_dir, bitmaps, blocks, disks, p1, p2, point,
    read_all, since_p1,
};

/// The environment variable that makes [`killed_child`] fleece and read until killed.
const CHILD: &str = "BLOCKVAULT_FLEECE_CHILD";

/// Not a test on its own: the process [`a_killed_blockvault_leaves_qemu_clean_after_cleanup`]
/// starts (this test binary, filtered to this test, with [`CHILD`] set) and kills mid-read.
/// Without the variable it returns at once.
#[test]
fn killed_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (qmp, staging, ready) = (parts[0], parts[1], parts[2]);
    let qmp = Qmp::connect(Path::new(qmp), Duration::from_secs(10)).expect("connect");
    let disk = FleeceDisk {
        path: PathBuf::from(parts[3]),
        parent_size: Some(32 * M),
    };
    let mut fleecing = Fleecing::start(
        qmp,
        &[disk],
        Some(&p1()),
        &p2(),
        &FleecingOptions::new(staging),
    )
    .expect("start");
    fleecing.fix().expect("fix");
    let sources = fleecing.export(&NbdOptions::default()).expect("export");
    std::fs::write(ready, b"reading").expect("say so");
    loop {
        read_all(&sources[0]);
    }
}

#[test]
fn a_killed_blockvault_leaves_qemu_clean_after_cleanup() {
    // The guest's NBD server runs only while it writes: the child starts its own.
    let vm = TestVm::start(&[32 * M], GuestNbd::OnWrite);
    let staging = tempfile::tempdir().expect("staging");
    vm.guest_write(0, &["write -P 0x01 0 8M"]);
    let mut first = Fleecing::start(
        vm.qmp(),
        &disks(&vm, None),
        None,
        &p1(),
        &FleecingOptions::new(staging.path()),
    )
    .expect("start");
    first.fix().expect("fix");
    first
        .export(&NbdOptions::default())
        .expect("our own NBD server");
    first.finish(true).expect("finish");
    vm.guest_write(0, SINCE_P1);

    let ready = vm.dir().join("ready");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", "leftovers::killed_child", "--nocapture"])
            .env(
                CHILD,
                format!(
                    "{}|{}|{}|{}",
                    vm.qmp_socket().display(),
                    staging.path().display(),
                    ready.display(),
                    vm.disk(0).display()
                ),
            )
            .spawn()
            .expect("start the child"),
    );
    let started = Instant::now();
    while !ready.exists() {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the child exited before reading: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the child never read"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reap");

    let mut qmp = vm.qmp();
    let jobs = qmp.execute("query-block-jobs", None).expect("jobs");
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(1),
        "the job outlived it"
    );
    let found = cleanup_leftovers(&mut qmp, Duration::from_secs(10)).expect("cleanup");
    assert_eq!(found.exports, ["blockvault-0"]);
    assert_eq!(found.jobs, ["blockvault-fleece-0"]);
    assert_eq!(found.nodes, ["blockvault-scratch-0"]);
    assert!(found.server_stopped, "{found:?}");
    assert_eq!(found.bitmaps, [format!("disk0/{}", bitmap_name(&p1()))]);
    assert_clean(&mut qmp);
    assert_empty_dir(staging.path());
    let kept = bitmaps(&mut qmp, "disk0");
    assert!(kept.iter().all(|b| b.recording), "{kept:?}");
    // A second cleanup finds nothing.
    assert!(
        cleanup_leftovers(&mut qmp, Duration::from_secs(10))
            .expect("again")
            .is_empty()
    );
    drop(qmp);
    // The child's NBD server is gone: the guest can start its own again.
    vm.guest_write(0, &["write -P 0x06 12M 64k"]);

    // The next backup from p1 sees every write since p1.
    let mut next = Fleecing::start(
        vm.qmp(),
        &disks(&vm, Some(32 * M)),
        Some(&p1()),
        &point("20261207-190000-0003"),
        &FleecingOptions::new(staging.path()),
    )
    .expect("start");
    next.fix().expect("fix");
    let sources = next.export(&NbdOptions::default()).expect("export");
    let mut expected = since_p1();
    expected.push(12 * M..12 * M + K64);
    assert_eq!(
        sources[0].dirty_extents().expect("dirty"),
        blocks(&expected)
    );
    drop(sources);
    next.finish(true).expect("finish");
    assert_clean(&mut vm.qmp());
    assert_empty_dir(staging.path());
}

/// A child process, killed and reaped if a test panics before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// The short socket directories in the temporary directory.
fn socket_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .expect("the temporary directory")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("blockvault-nbd-")
        })
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_staging_path_too_long_for_a_socket_gets_a_short_one_and_leaves_nothing() {
    let vm = TestVm::start(&[8 * M], GuestNbd::OnWrite);
    vm.guest_write(0, &["write -P 0x11 0 1M"]);
    let root = tempfile::tempdir().expect("staging");
    let staging = root.path().join("a-staging-directory-whose-path".repeat(4));
    std::fs::create_dir_all(&staging).expect("the long staging dir");
    let before = socket_dirs();
    let mut fleecing = Fleecing::start(
        vm.qmp(),
        &disks(&vm, None),
        None,
        &p1(),
        &FleecingOptions::new(&staging),
    )
    .expect("start");
    fleecing.fix().expect("fix");
    let sources = fleecing.export(&NbdOptions::default()).expect("export");
    let mut b = [0u8; 1];
    sources[0].read_at(0, &mut b).expect("read");
    assert_eq!(b[0], 0x11);
    assert!(
        socket_dirs().len() > before.len(),
        "no short socket directory"
    );
    drop(sources);
    fleecing.finish(true).expect("finish");
    assert_empty_dir(&staging);
    let left: Vec<_> = socket_dirs()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_clean(&mut vm.qmp());
}
