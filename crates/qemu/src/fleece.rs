//! [`Fleecing`]: some disks of one running VM fixed at one instant by one QMP transaction, and
//! read at that instant over NBD while the guest keeps writing.
//!
//! ```text
//! start        cleanup_leftovers -> each disk's node (nodes.rs) and bitmaps, trusted
//!              against the parent point -> a scratch qcow2 per disk in a private directory
//!              of the staging dir -> blockdev-add blockvault-scratch-I (backing: the disk's
//!              node)
//! fix          ONE transaction, the only step inside the guest's freeze; per disk:
//!                block-dirty-bitmap-add blockvault-<point> (64 KiB; persistent on qcow2 v3,
//!                  in QEMU's memory on a raw file or qcow2 v2: lost when QEMU restarts;
//!                  none on a block device, which others may write)
//!                block-dirty-bitmap-disable blockvault-<parent> (when trusted: it then holds
//!                  exactly parent -> instant)
//!                blockdev-backup sync=none disk -> scratch (job blockvault-fleece-I),
//!                  on-cbw-error=break-snapshot where QEMU takes it (10.1+)
//! export       nbd-server-start on DIR/nbd.sock (or the VM's own server, when the caller
//!              names it) -> block-export-add blockvault-I of the scratch node, with the
//!              parent's bitmap -> an NbdSource per disk (dirty_bitmap set when trusted)
//! finish(ok)   exports removed (hard: open connections dropped), jobs cancelled, scratch
//!              nodes deleted, our NBD server stopped, the directory removed; then bitmaps:
//!                committed      every other blockvault bitmap of the disk removed
//!                not committed  the new bitmap merged into the parent's, which records
//!                               again; the new one removed (the next backup still sees
//!                               every write since the parent)
//! drop         finish(false) unless finished
//! ```
//!
//! Why a backup job into a scratch image rather than the copy-before-write filter with
//! snapshot-access: the filter must be inserted between the guest's device and its disk
//! node (`blockdev-reopen` of the device's parent link), a change to the VM's own graph that
//! a killed blockvault would leave behind; the backup job inserts its filter itself and
//! cancelling it removes it. Reads of clusters the guest has not overwritten fall through
//! the scratch image to the disk; QEMU copies a cluster to the scratch image before the
//! guest's write to it lands (and serialises reads of the fleecing target with it).
//!
//! A copy that cannot be written (the scratch's file system full) fails, by QEMU's default,
//! the guest's write that needed it. QEMU 10.1 lets the backup job break the snapshot
//! instead (`on-cbw-error=break-snapshot`): the guest's write lands and reads of the export
//! fail, so the backup fails and the guest never sees an error. [`Fleecing::start`] asks the
//! QEMU's schema and uses it when there; [`Fleecing::guest_writes_safe`] says which applies.
//!
//! One Fleecing per VM at a time (the engine's per-VM lock): every node, job and export is
//! named `blockvault-*`, and the next start removes whatever a killed blockvault left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use blockvault_core::PointId;
use blockvault_source::{NbdAddress, NbdOptions, NbdSource};
use serde_json::json;

use crate::nodes::{BlockNode, block_nodes, disk_node};
use crate::teardown::{
    DIR_PREFIX, MAX_SOCKET_PATH, NBD_MARKER, NBD_SOCKET, SCRATCH_FILE_PREFIX, SCRATCH_PREFIX,
    SOCKET_DIR_PREFIX, cancel_jobs, listed, remove_exports,
};
use crate::{
    Action, BITMAP_GRANULARITY, Distrust, Error, Qmp, Result, bitmap_name, command_takes,
    leftovers::cleanup_leftovers, trust,
};

/// How to fleece.
#[derive(Clone, Debug)]
pub struct FleecingOptions {
    /// Where the scratch images go (the snapshot tier's staging directory): a private
    /// directory is made in it and removed at the end. QEMU must be able to write there.
    pub staging: PathBuf,
    /// The unix socket of an NBD server the VM already runs (QEMU runs one at most), to add
    /// the exports to; `None`: blockvault starts one on a private socket and stops it.
    pub nbd_server: Option<PathBuf>,
    /// How long QEMU may take to answer a command, and a cancelled job or a removed export
    /// to go away.
    pub timeout: Duration,
}

impl FleecingOptions {
    pub fn new(staging: impl Into<PathBuf>) -> FleecingOptions {
        FleecingOptions {
            staging: staging.into(),
            nbd_server: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A disk to fleece: its image's path (as QEMU has it open) and its size at the parent
/// point, when the parent has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleeceDisk {
    pub path: PathBuf,
    pub parent_size: Option<u64>,
}

/// What a disk of a running VM is, as fleecing will read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskCheck {
    pub path: PathBuf,
    /// The disk's block node, its driver (`qcow2`, `raw`, ...) and size.
    pub node: BlockNode,
    /// The parent point's bitmap, trusted (its name) or not (why); `None` without a parent.
    pub changes: Option<Result<String, Distrust>>,
}

/// Where a disk of a running VM keeps blockvault's dirty bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitmapHome {
    /// In the image (qcow2, version 3): it survives QEMU restarts.
    Image,
    /// In QEMU's memory (a raw image file, a version 2 qcow2): as true while that QEMU runs,
    /// since no one else writes the file; a restart loses it.
    Memory,
    /// Nowhere: a block device may be written by others than this QEMU (another host of a
    /// shared LUN, an LVM merge), which no bitmap of this QEMU would see.
    None,
}

impl DiskCheck {
    /// Where this disk's bitmap lives ([`BitmapHome`]).
    pub fn bitmap_home(&self) -> BitmapHome {
        if self.node.persistent_bitmaps() {
            return BitmapHome::Image;
        }
        let file = std::fs::metadata(&self.path).map(|m| m.file_type());
        match file {
            Ok(t) if t.is_file() => BitmapHome::Memory,
            _ => BitmapHome::None,
        }
    }

    /// Finds `disk`'s node and trusts its bitmaps against `parent` (the point and the disk's
    /// size then). Changes nothing in QEMU.
    pub fn of(qmp: &mut Qmp, disk: &Path, parent: Option<(&PointId, u64)>) -> Result<DiskCheck> {
        let nodes = block_nodes(qmp)?;
        DiskCheck::among(&nodes, qmp.path(), disk, parent)
    }

    fn among(
        nodes: &[BlockNode],
        socket: &Path,
        disk: &Path,
        parent: Option<(&PointId, u64)>,
    ) -> Result<DiskCheck> {
        let mut check = DiskCheck {
            path: disk.to_owned(),
            node: disk_node(nodes, disk, socket)?,
            changes: None,
        };
        let home = check.bitmap_home();
        let node = &check.node;
        check.changes = parent.map(|(point, size_then)| match home {
            BitmapHome::None => Err(Distrust::Device),
            _ => trust(&node.bitmaps, point, size_then, node.size).map(|b| b.name.clone()),
        });
        Ok(check)
    }
}

/// One fleeced disk: what it is and how it is read.
#[derive(Debug)]
pub struct FleecedDisk {
    pub check: DiskCheck,
    /// The bitmap added at the instant, where [`DiskCheck::bitmap_home`] says (none on a
    /// block device).
    pub new_bitmap: Option<String>,
    scratch_node: String,
    scratch_file: PathBuf,
    job: String,
    export: String,
}

impl FleecedDisk {
    /// The parent's bitmap, when trusted.
    pub fn parent_bitmap(&self) -> Option<&str> {
        match &self.check.changes {
            Some(Ok(name)) => Some(name),
            _ => None,
        }
    }
}

/// How far a Fleecing got: what its teardown undoes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Done {
    nodes: usize,
    fixed: bool,
    server_started: bool,
    exports: usize,
    finished: bool,
}

/// The disks of one running VM being fleeced (module docs).
#[derive(Debug)]
pub struct Fleecing {
    qmp: Qmp,
    point: PointId,
    disks: Vec<FleecedDisk>,
    dir: Option<tempfile::TempDir>,
    nbd_socket: PathBuf,
    own_server: bool,
    /// The short directory holding our server's socket, when the staging directory's path
    /// is too long for one.
    socket_dir: Option<tempfile::TempDir>,
    timeout: Duration,
    /// This QEMU's backup job takes `on-cbw-error` (module docs).
    break_snapshot: bool,
    done: Done,
}

impl Fleecing {
    /// Removes what a killed blockvault left in this QEMU, finds each disk and its bitmaps,
    /// and adds a scratch node per disk; nothing is fixed yet ([`Fleecing::fix`]). On any
    /// error what was added is removed again.
    pub fn start(
        mut qmp: Qmp,
        disks: &[FleeceDisk],
        parent: Option<&PointId>,
        point: &PointId,
        options: &FleecingOptions,
    ) -> Result<Fleecing> {
        cleanup_leftovers(&mut qmp, options.timeout)?;
        let break_snapshot = command_takes(&mut qmp, "blockdev-backup", "on-cbw-error")?;
        let nodes = block_nodes(&mut qmp)?;
        let mut checks = Vec::with_capacity(disks.len());
        for disk in disks {
            let parent = parent.zip(disk.parent_size);
            checks.push(DiskCheck::among(&nodes, qmp.path(), &disk.path, parent)?);
        }
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&options.staging)
            .map_err(|e| Error::io(&options.staging, e))?;
        let mut socket_dir = None;
        let (nbd_socket, own_server) = match &options.nbd_server {
            Some(socket) => (socket.clone(), false),
            None => {
                let mut socket = dir.path().join(NBD_SOCKET);
                if socket.as_os_str().len() > MAX_SOCKET_PATH {
                    let short = tempfile::Builder::new()
                        .prefix(SOCKET_DIR_PREFIX)
                        .tempdir()
                        .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
                    socket = short.path().join(NBD_SOCKET);
                    socket_dir = Some(short);
                }
                (socket, true)
            }
        };
        let disks = checks
            .into_iter()
            .enumerate()
            .map(|(i, check)| FleecedDisk {
                new_bitmap: (check.bitmap_home() != BitmapHome::None).then(|| bitmap_name(point)),
                scratch_node: format!("{SCRATCH_PREFIX}{i}"),
                scratch_file: dir.path().join(format!("{SCRATCH_PREFIX}{i}.qcow2")),
                job: format!("blockvault-fleece-{i}"),
                export: format!("blockvault-{i}"),
                check,
            })
            .collect();
        let mut fleecing = Fleecing {
            qmp,
            point: point.clone(),
            disks,
            dir: Some(dir),
            nbd_socket,
            own_server,
            socket_dir,
            timeout: options.timeout,
            break_snapshot,
            done: Done::default(),
        };
        if let Err(e) = fleecing
            .remove_stale_bitmaps()
            .and_then(|()| fleecing.add_scratch_nodes())
        {
            fleecing.teardown(false).ok();
            return Err(e);
        }
        Ok(fleecing)
    }

    /// A bitmap already named after the new point is stale (a point id is made once; its
    /// backup was killed): removed, so the transaction can add it afresh.
    fn remove_stale_bitmaps(&mut self) -> Result<()> {
        for disk in &self.disks {
            let Some(new) = &disk.new_bitmap else {
                continue;
            };
            if disk.check.node.bitmaps.iter().any(|b| &b.name == new) {
                let args = json!({"node": disk.check.node.name, "name": new});
                self.qmp.execute("block-dirty-bitmap-remove", Some(args))?;
            }
        }
        Ok(())
    }

    fn add_scratch_nodes(&mut self) -> Result<()> {
        for i in 0..self.disks.len() {
            let disk = &self.disks[i];
            create_scratch(&disk.scratch_file, disk.check.node.size)?;
            let args = json!({
                "driver": "qcow2",
                "node-name": disk.scratch_node,
                "file": {"driver": "file", "filename": disk.scratch_file,
                         "node-name": format!("{SCRATCH_FILE_PREFIX}{i}")},
                "backing": disk.check.node.name,
            });
            self.qmp.execute("blockdev-add", Some(args))?;
            self.done.nodes = i + 1;
        }
        Ok(())
    }

    /// The disks, in the order given.
    pub fn disks(&self) -> &[FleecedDisk] {
        &self.disks
    }

    /// Whether a copy-before-write that fails (the scratch's file system full) fails the
    /// backup rather than the guest's write: QEMU 10.1 and later (module docs).
    pub fn guest_writes_safe(&self) -> bool {
        self.break_snapshot
    }

    /// The point the new bitmaps are named after.
    pub fn point(&self) -> &PointId {
        &self.point
    }

    /// Fixes every disk at one instant: the one transaction (module docs). This is the only
    /// step to run inside the guest's freeze.
    pub fn fix(&mut self) -> Result<()> {
        let mut actions = Vec::new();
        for disk in &self.disks {
            let node = &disk.check.node.name;
            if let Some(new) = &disk.new_bitmap {
                let persistent = disk.check.bitmap_home() == BitmapHome::Image;
                actions.push(Action::new(
                    "block-dirty-bitmap-add",
                    json!({"node": node, "name": new, "persistent": persistent,
                           "granularity": BITMAP_GRANULARITY}),
                ));
            }
            if let Some(parent) = disk.parent_bitmap() {
                actions.push(Action::new(
                    "block-dirty-bitmap-disable",
                    json!({"node": node, "name": parent}),
                ));
            }
            let mut backup = json!({"device": node, "target": disk.scratch_node,
                                    "sync": "none", "job-id": disk.job, "auto-dismiss": true});
            if self.break_snapshot {
                backup["on-cbw-error"] = json!("break-snapshot");
            }
            actions.push(Action::new("blockdev-backup", backup));
        }
        self.qmp.transaction(&actions)?;
        self.done.fixed = true;
        Ok(())
    }

    /// Exports each fleeced disk over NBD and connects to it: one [`NbdSource`] per disk, in
    /// order, with the parent's bitmap negotiated when it is trusted. Call after
    /// [`Fleecing::fix`].
    pub fn export(&mut self, options: &NbdOptions) -> Result<Vec<NbdSource>> {
        if !self.done.fixed {
            return Err(Error::Fleecing {
                socket: self.qmp.path().to_owned(),
                disk: self
                    .disks
                    .first()
                    .map(|d| d.check.path.clone())
                    .unwrap_or_default(),
                reason: "exported before the transaction fixed the disks".to_owned(),
            });
        }
        if self.own_server && !self.done.server_started {
            let args = json!({"addr": {"type": "unix", "data": {"path": self.nbd_socket}}});
            match self.qmp.execute("nbd-server-start", Some(args)) {
                Ok(_) => {
                    self.done.server_started = true;
                    // For the next start, should this process be killed (best effort: the
                    // server is stopped by this teardown otherwise).
                    if let Some(dir) = &self.dir {
                        std::fs::write(
                            dir.path().join(NBD_MARKER),
                            self.nbd_socket.as_os_str().as_encoded_bytes(),
                        )
                        .ok();
                    }
                }
                Err(Error::QmpCommand(refusal)) if refusal.desc.contains("already running") => {
                    return Err(Error::Fleecing {
                        socket: self.qmp.path().to_owned(),
                        disk: self
                            .disks
                            .first()
                            .map(|d| d.check.path.clone())
                            .unwrap_or_default(),
                        reason: "the VM already runs an NBD server (QEMU runs one at most): \
                                 name its unix socket (FleecingOptions::nbd_server) to export \
                                 there"
                            .to_owned(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        for i in self.done.exports..self.disks.len() {
            let disk = &self.disks[i];
            let bitmaps: Vec<&str> = disk.parent_bitmap().into_iter().collect();
            let args = json!({"type": "nbd", "id": disk.export, "name": disk.export,
                              "node-name": disk.scratch_node, "writable": false,
                              "bitmaps": bitmaps});
            self.qmp.execute("block-export-add", Some(args))?;
            self.done.exports = i + 1;
        }
        let mut sources = Vec::with_capacity(self.disks.len());
        for disk in &self.disks {
            let options = NbdOptions {
                dirty_bitmap: disk.parent_bitmap().map(str::to_owned),
                name: Some(disk.check.path.clone()),
                ..options.clone()
            };
            let address = NbdAddress::unix(&self.nbd_socket, disk.export.as_str());
            sources.push(NbdSource::connect(address, options)?);
        }
        Ok(sources)
    }

    /// Whether every fleecing job still runs: one that ended (cancelled by another client of
    /// the monitor) no longer copies the old data aside, so what was read after it ended may
    /// be the guest's newer writes. Call after the reads, before trusting them.
    pub fn intact(&mut self) -> Result<bool> {
        if !self.done.fixed {
            return Ok(false);
        }
        let running = listed(&mut self.qmp, "query-block-jobs", "device")?;
        Ok(self.disks.iter().all(|d| running.contains(&d.job)))
    }

    /// Tears everything down (module docs); `committed`: the point the new bitmaps are named
    /// after is recorded. Every step is tried; the first failure is returned.
    pub fn finish(mut self, committed: bool) -> Result<()> {
        self.teardown(committed)
    }

    fn teardown(&mut self, committed: bool) -> Result<()> {
        if self.done.finished {
            return Ok(());
        }
        self.done.finished = true;
        let mut first: Option<Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        let exports: Vec<String> = self.disks[..self.done.exports]
            .iter()
            .map(|d| d.export.clone())
            .collect();
        keep(remove_exports(&mut self.qmp, &exports, self.timeout));
        if self.done.fixed {
            let jobs: Vec<String> = self.disks.iter().map(|d| d.job.clone()).collect();
            keep(cancel_jobs(&mut self.qmp, &jobs, self.timeout));
        }
        for disk in &self.disks[..self.done.nodes] {
            let args = json!({"node-name": disk.scratch_node});
            keep(self.qmp.execute("blockdev-del", Some(args)).map(drop));
        }
        if self.done.server_started {
            keep(self.qmp.execute("nbd-server-stop", None).map(drop));
        }
        if let Some(dir) = self.socket_dir.take() {
            let path = dir.path().to_owned();
            keep(dir.close().map_err(|e| Error::io(&path, e)));
        }
        if self.done.fixed {
            keep(self.settle_bitmaps(committed));
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            keep(dir.close().map_err(|e| Error::io(&path, e)));
        }
        first.map_or(Ok(()), Err)
    }

    fn settle_bitmaps(&mut self, committed: bool) -> Result<()> {
        let nodes = block_nodes(&mut self.qmp)?;
        let mut actions = Vec::new();
        for disk in &self.disks {
            let Some(new) = &disk.new_bitmap else {
                continue;
            };
            let name = &disk.check.node.name;
            if committed {
                let Some(node) = nodes.iter().find(|n| &n.name == name) else {
                    continue;
                };
                for old in node.our_bitmaps().filter(|b| &b.name != new) {
                    actions.push(Action::new(
                        "block-dirty-bitmap-remove",
                        json!({"node": name, "name": old.name}),
                    ));
                }
            } else {
                if let Some(parent) = disk.parent_bitmap() {
                    actions.push(Action::new(
                        "block-dirty-bitmap-merge",
                        json!({"node": name, "target": parent, "bitmaps": [new]}),
                    ));
                    actions.push(Action::new(
                        "block-dirty-bitmap-enable",
                        json!({"node": name, "name": parent}),
                    ));
                }
                actions.push(Action::new(
                    "block-dirty-bitmap-remove",
                    json!({"node": name, "name": new}),
                ));
            }
        }
        if !actions.is_empty() {
            self.qmp.transaction(&actions)?;
        }
        Ok(())
    }
}

impl Drop for Fleecing {
    fn drop(&mut self) {
        self.teardown(false).ok();
    }
}

/// A scratch qcow2 of `size` bytes at `path`, without a backing file in its header (QEMU gets
/// the backing node at blockdev-add).
fn create_scratch(path: &Path, size: u64) -> Result<()> {
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size.to_string())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing { tool: "qemu-img" },
            _ => Error::io(path, e),
        })?;
    if !out.status.success() {
        return Err(Error::io(
            path,
            std::io::Error::other(format!(
                "qemu-img create failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BitmapState;

    /// A blockvault bitmap on a block device is never trusted, even one named after the
    /// parent (left by an older blockvault, or added by hand): others may write the device.
    #[test]
    fn a_block_devices_bitmap_is_not_trusted_a_files_is() {
        let parent: PointId = "20261207-170000-0001".parse().expect("point");
        let file = tempfile::NamedTempFile::new().expect("a file");
        let node = |path: &Path| BlockNode {
            name: "disk0".to_owned(),
            driver: "raw".to_owned(),
            filename: path.to_owned(),
            size: 1 << 20,
            bitmaps: vec![BitmapState {
                name: bitmap_name(&parent),
                granularity: BITMAP_GRANULARITY,
                recording: true,
                persistent: false,
                inconsistent: false,
            }],
            compat: None,
        };
        let socket = Path::new("/run/vm.qmp");
        let check = |path: &Path| {
            DiskCheck::among(&[node(path)], socket, path, Some((&parent, 1 << 20)))
                .expect("the disk's node")
                .changes
        };
        assert_eq!(check(file.path()), Some(Ok(bitmap_name(&parent))));
        assert_eq!(check(Path::new("/dev/null")), Some(Err(Distrust::Device)));
    }
}
