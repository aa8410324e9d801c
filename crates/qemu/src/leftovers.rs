//! [`cleanup_leftovers`]: what a killed blockvault left in a running QEMU, removed.
//!
//! A blockvault killed while fleecing leaves exports, block jobs and scratch nodes named
//! `blockvault-*`, maybe its NBD server, its private directory in the staging directory,
//! and on each fleeced disk the parent's bitmap disabled (it holds parent -> instant) beside
//! the new one (recording since the instant). They are removed in the order a teardown
//! removes them; the scratch node's image tells where the private directory is.
//!
//! Bitmaps are mended as for a failure, with one difference: whether the point that the new
//! bitmap is named after was recorded is not known here, so both are kept. The new bitmap is
//! merged into the disabled one, which records again: it then holds every write since the
//! parent, and the new one every write since the instant; whichever point the next backup
//! follows finds a bitmap that is true, and the next committed backup removes the other.
//! A disabled blockvault bitmap with no recording one beside it missed writes: it is left
//! disabled, and never trusted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::nodes::{NODE_PREFIX, block_nodes};
use crate::teardown::{
    DIR_PREFIX, NBD_MARKER, SCRATCH_FILE_PREFIX, SCRATCH_PREFIX, SOCKET_DIR_PREFIX, cancel_jobs,
    listed, remove_exports,
};
use crate::{Action, Error, Qmp, Result};

/// What [`cleanup_leftovers`] found and removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub exports: Vec<String>,
    pub jobs: Vec<String>,
    pub nodes: Vec<String>,
    /// `node/bitmap` of each disabled blockvault bitmap made to record again.
    pub bitmaps: Vec<String>,
    pub server_stopped: bool,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

/// Removes every export, block job and node named `blockvault-*` from the QEMU behind `qmp`,
/// the NBD server and directory a killed blockvault started, and mends its bitmaps (module
/// docs). Each wait is bounded by `timeout`.
pub fn cleanup_leftovers(qmp: &mut Qmp, timeout: Duration) -> Result<Leftovers> {
    let mut found = Leftovers {
        exports: ours(listed(qmp, "query-block-exports", "id")?),
        jobs: ours(listed(qmp, "query-block-jobs", "device")?),
        ..Leftovers::default()
    };
    remove_exports(qmp, &found.exports, timeout)?;
    cancel_jobs(qmp, &found.jobs, timeout)?;
    let nodes = block_nodes(qmp)?;
    // Deleting a scratch node deletes the file node made with it; the file node tells
    // where the private directory is.
    for node in nodes.iter().filter(|n| n.name.starts_with(SCRATCH_PREFIX)) {
        qmp.execute("blockdev-del", Some(json!({"node-name": node.name})))?;
        found.nodes.push(node.name.clone());
    }
    let files = nodes
        .iter()
        .filter(|n| n.name.starts_with(SCRATCH_FILE_PREFIX));
    for dir in files.filter_map(|n| n.filename.parent()) {
        let named_ours = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(DIR_PREFIX));
        if !named_ours || !dir.exists() {
            continue;
        }
        let marker = dir.join(NBD_MARKER);
        if marker.exists() && !found.server_stopped {
            match qmp.execute("nbd-server-stop", None) {
                Ok(_) => found.server_stopped = true,
                // Stopped already (the teardown was cut short after it).
                Err(Error::QmpCommand(_)) => {}
                Err(e) => return Err(e),
            }
            // The socket's own short directory, when it had one.
            let socket = std::fs::read(&marker)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(PathBuf::from);
            if let Some(short) = socket.as_deref().and_then(Path::parent)
                && short
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(SOCKET_DIR_PREFIX))
            {
                remove_dir(short)?;
            }
        }
        remove_dir(dir)?;
    }
    for node in &nodes {
        let recording: Vec<&str> = node
            .our_bitmaps()
            .filter(|b| b.recording)
            .map(|b| b.name.as_str())
            .collect();
        if recording.is_empty() {
            continue;
        }
        let mut actions = Vec::new();
        for stopped in node
            .our_bitmaps()
            .filter(|b| !b.recording && !b.inconsistent)
        {
            actions.push(Action::new(
                "block-dirty-bitmap-merge",
                json!({"node": node.name, "target": stopped.name, "bitmaps": recording}),
            ));
            actions.push(Action::new(
                "block-dirty-bitmap-enable",
                json!({"node": node.name, "name": stopped.name}),
            ));
            found
                .bitmaps
                .push(format!("{}/{}", node.name, stopped.name));
        }
        if !actions.is_empty() {
            qmp.transaction(&actions)?;
        }
    }
    Ok(found)
}

fn ours(names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| n.starts_with(NODE_PREFIX))
        .collect()
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}
