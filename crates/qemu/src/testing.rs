//! A running "VM" for tests: a `qemu-storage-daemon` with a QMP monitor and qcow2 disks, in a
//! temporary directory; killed, reaped and removed on drop. No KVM needed: there is no guest,
//! only its disks, and the guest's writes go through a writable NBD export of each disk's
//! node (`qemu-io -f raw nbd+unix:///diskI?socket=...`), so they pass through the same nodes,
//! bitmaps and fleecing jobs a guest's would.
//!
//! Two monitors: `qmp.sock` for the code under test, `qmp2.sock` for another client (a
//! monitor serves one client at a time). Disk `I` is the image `diskI.qcow2` (or `diskI.raw`,
//! [`TestVm::start_as`]), nodes `diskI-file` (file) and `diskI` (its format).
//! [`GuestNbd::Always`]: the daemon runs an NBD server on `guest.sock` for its whole life (a
//! Fleecing must then be given it: QEMU runs one NBD server at most);
//! [`GuestNbd::OnWrite`]: each guest write starts it and stops it again, so a Fleecing
//! starts its own, and the guest writes only between fleecings.
//!
//! Panics with what went wrong when a tool is missing or fails: a test that asked for a VM
//! cannot go on without it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::Qmp;

/// How the guest's writes reach the disks (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestNbd {
    Always,
    OnWrite,
}

/// A `qemu-storage-daemon` standing in for a running VM (module docs).
#[derive(Debug)]
pub struct TestVm {
    child: Child,
    dir: tempfile::TempDir,
    disks: Vec<PathBuf>,
    guest: GuestNbd,
    /// The disks exported over FUSE.
    fuse: Vec<usize>,
}

impl TestVm {
    /// Makes an empty qcow2 disk per size and starts the daemon on them.
    pub fn start(sizes: &[u64], guest: GuestNbd) -> TestVm {
        TestVm::start_as("qcow2", sizes, guest)
    }

    /// The same with disks in `format` (`qcow2`, or `raw`: sparse files `diskI.raw`),
    /// optionally followed by qemu-img's `-o` options after a space (`qcow2 compat=0.10`).
    pub fn start_as(format: &str, sizes: &[u64], guest: GuestNbd) -> TestVm {
        let (format, options) = format.split_once(' ').unwrap_or((format, ""));
        let dir = tempfile::Builder::new()
            .prefix("blockvault-testvm-")
            .tempdir()
            .expect("temp dir for the test VM");
        let mut disks = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let path = dir.path().join(format!("disk{i}.{format}"));
            let mut create = Command::new("qemu-img");
            create.args(["create", "-q", "-f", format]);
            if !options.is_empty() {
                create.args(["-o", options]);
            }
            run(create.arg(&path).arg(size.to_string()));
            disks.push(path);
        }
        let child = spawn(dir.path(), &disks, guest);
        let vm = TestVm {
            child,
            dir,
            disks,
            guest,
            fuse: Vec::new(),
        };
        vm.wait_for_monitor();
        vm
    }

    /// Stops the daemon and starts it again on the same disks. `crash`: with SIGKILL, as a
    /// QEMU that crashed (the persistent bitmaps it loaded come back inconsistent, those it
    /// added are lost); else with SIGTERM, a clean stop (its bitmaps are stored in the
    /// images).
    pub fn restart(&mut self, crash: bool) {
        if !crash {
            Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .ok();
            self.child.wait().ok();
        }
        self.kill();
        for i in std::mem::take(&mut self.fuse) {
            Command::new("umount")
                .arg(self.dir.path().join(format!("fuse{i}.raw")))
                .stderr(Stdio::null())
                .status()
                .ok();
        }
        for socket in ["qmp.sock", "qmp2.sock", "guest.sock"] {
            std::fs::remove_file(self.dir.path().join(socket)).ok();
        }
        self.child = spawn(self.dir.path(), &self.disks, self.guest);
        self.wait_for_monitor();
    }

    fn wait_for_monitor(&self) {
        let started = Instant::now();
        loop {
            if Qmp::connect(&self.qmp_socket(), Duration::from_secs(5)).is_ok() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "qemu-storage-daemon did not open its monitor: {}",
                std::fs::read_to_string(self.dir.path().join("qsd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The temporary directory holding the disks and sockets (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn disk(&self, i: usize) -> &Path {
        &self.disks[i]
    }

    pub fn disks(&self) -> &[PathBuf] {
        &self.disks
    }

    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.path().join("qmp.sock")
    }

    /// A fresh connection to the daemon's second monitor: another client of the VM (as
    /// libvirt is of a VM it runs), since a monitor serves one client at a time.
    pub fn other_qmp(&self) -> Qmp {
        Qmp::connect(&self.dir.path().join("qmp2.sock"), Duration::from_secs(10))
            .expect("connect to the second monitor")
    }

    /// The NBD server the guest writes through.
    pub fn guest_socket(&self) -> PathBuf {
        self.dir.path().join("guest.sock")
    }

    /// A fresh QMP connection.
    pub fn qmp(&self) -> Qmp {
        Qmp::connect(&self.qmp_socket(), Duration::from_secs(10)).expect("connect to the monitor")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes as the guest: `qemu-io` commands (`write -P 0x11 0 64k`) on disk `i`.
    pub fn guest_write(&self, i: usize, commands: &[&str]) {
        self.with_guest_server(|socket| {
            let mut cmd = Command::new("qemu-io");
            cmd.args(["-f", "raw"]);
            for c in commands {
                cmd.args(["-c", c]);
            }
            cmd.arg(format!("nbd+unix:///disk{i}?socket={}", socket.display()));
            run(&mut cmd);
        });
    }

    /// Disk `i` as the guest sees it now.
    pub fn guest_read(&self, i: usize) -> Vec<u8> {
        self.with_guest_server(|socket| {
            let out = self.dir.path().join(format!("read{i}.raw"));
            run(Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "raw"])
                .arg(format!("nbd+unix:///disk{i}?socket={}", socket.display()))
                .arg(&out));
            let data = std::fs::read(&out).expect("read the guest's disk");
            std::fs::remove_file(&out).ok();
            data
        })
    }

    fn with_guest_server<T>(&self, f: impl FnOnce(&Path) -> T) -> T {
        let socket = self.guest_socket();
        if self.guest == GuestNbd::Always {
            return f(&socket);
        }
        let mut qmp = self.qmp();
        let addr = json!({"addr": {"type": "unix", "data": {"path": socket}}});
        qmp.execute("nbd-server-start", Some(addr))
            .expect("start the guest's NBD server (is a Fleecing running?)");
        for i in 0..self.disks.len() {
            qmp.execute("block-export-add", Some(guest_export(i)))
                .expect("export the guest's disk");
        }
        let out = f(&socket);
        for i in 0..self.disks.len() {
            qmp.execute(
                "block-export-del",
                Some(json!({"id": format!("guest{i}"), "mode": "hard"})),
            )
            .expect("remove the guest's export");
        }
        qmp.execute("nbd-server-stop", None)
            .expect("stop the guest's NBD server");
        out
    }

    /// Exports disk `i` writable over FUSE on a file in the VM's directory (made once), and
    /// returns that file: the guest writes to it with plain file writes (or `qemu-io -f raw
    /// FILE`), whatever NBD server runs. Needs /dev/fuse (and root, or fusermount3).
    pub fn fuse_file(&mut self, i: usize) -> PathBuf {
        let file = self.dir.path().join(format!("fuse{i}.raw"));
        if self.fuse.contains(&i) {
            return file;
        }
        std::fs::File::create(&file).expect("the FUSE mount point");
        let args = json!({"type": "fuse", "id": format!("fuse{i}"),
                          "node-name": format!("disk{i}"), "mountpoint": file,
                          "writable": true});
        self.qmp()
            .execute("block-export-add", Some(args))
            .unwrap_or_else(|e| panic!("a FUSE export needs /dev/fuse (and root): {e}"));
        self.fuse.push(i);
        file
    }

    /// Kills the daemon with SIGKILL and reaps it (a QEMU crash: its persistent bitmaps are
    /// left in-use, hence inconsistent on the next open).
    pub fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        // A FUSE mount outlives a killed daemon: removed while it runs, else unmounted.
        if !self.fuse.is_empty()
            && let Ok(mut qmp) = Qmp::connect(&self.qmp_socket(), Duration::from_secs(5))
        {
            for i in &self.fuse {
                let args = json!({"id": format!("fuse{i}"), "mode": "hard"});
                qmp.execute("block-export-del", Some(args)).ok();
            }
        }
        self.kill();
        for i in &self.fuse {
            Command::new("umount")
                .arg(self.dir.path().join(format!("fuse{i}.raw")))
                .stderr(Stdio::null())
                .status()
                .ok();
        }
    }
}

fn guest_export(i: usize) -> serde_json::Value {
    json!({"type": "nbd", "id": format!("guest{i}"), "name": format!("disk{i}"),
           "node-name": format!("disk{i}"), "writable": true})
}

fn spawn(dir: &Path, disks: &[PathBuf], guest: GuestNbd) -> Child {
    let qmp = dir.join("qmp.sock");
    let mut cmd = Command::new("qemu-storage-daemon");
    cmd.arg("--chardev")
        .arg(format!(
            "socket,id=qmp,path={},server=on,wait=off",
            qmp.display()
        ))
        .args(["--monitor", "chardev=qmp"])
        .arg("--chardev")
        .arg(format!(
            "socket,id=qmp2,path={},server=on,wait=off",
            dir.join("qmp2.sock").display()
        ))
        .args(["--monitor", "chardev=qmp2"]);
    for (i, disk) in disks.iter().enumerate() {
        cmd.arg("--blockdev").arg(format!(
            "driver=file,node-name=disk{i}-file,filename={}",
            disk.display()
        ));
        let format = disk.extension().and_then(|e| e.to_str()).unwrap_or("qcow2");
        cmd.arg("--blockdev").arg(format!(
            "driver={format},node-name=disk{i},file=disk{i}-file"
        ));
    }
    if guest == GuestNbd::Always {
        cmd.arg("--nbd-server").arg(format!(
            "addr.type=unix,addr.path={}",
            dir.join("guest.sock").display()
        ));
        for i in 0..disks.len() {
            cmd.arg("--export").arg(format!(
                "type=nbd,id=guest{i},node-name=disk{i},name=disk{i},writable=on"
            ));
        }
    }
    let log = std::fs::File::create(dir.join("qsd.log")).expect("the daemon's log");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start qemu-storage-daemon (Debian/Ubuntu: apt-get install qemu-utils): \
                 {e}"
            )
        })
}

/// Runs a QEMU tool, panicking with its stderr when it fails; its output.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (apt-get install qemu-utils): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails the test with what to install when a QEMU tool is missing.
pub fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: the QEMU tests need qemu-nbd, qemu-img, qemu-io and \
         qemu-storage-daemon (Debian/Ubuntu: apt-get install qemu-utils)"
    );
}

/// Writes to the qcow2 `image` as a guest would: one `qemu-io` run of `commands`
/// (`write -P 0x55 0 1M`, ...), so its dirty bitmaps see the writes.
pub fn qemu_io(image: &Path, commands: &[impl AsRef<str>]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for c in commands {
        cmd.args(["-c", c.as_ref()]);
    }
    run(cmd.arg(image));
}

/// The guest's disk of the qcow2 `image`, converted to raw at `out` by `qemu-img` and read.
pub fn as_raw(image: &Path, out: &Path) -> Vec<u8> {
    run(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(image)
        .arg(out));
    std::fs::read(out).expect("read the converted image")
}
