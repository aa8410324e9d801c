//! A running QEMU's block nodes as fleecing sees them (`query-named-block-nodes`): which node
//! is a disk the user names by its image path, its size and driver, and its dirty bitmaps
//! as [`BitmapState`]s.
//!
//! The disk's node is the one that holds its bitmaps and that the guest's writes pass
//! through: the format node (`qcow2`, `raw`, ...) whose image is the path, not the protocol
//! node below it (`file`, `host_device`) nor a filter above it (`throttle`,
//! `copy-before-write`, ...: they report their child's image). A VM that opens a raw image
//! with the protocol driver alone has only the protocol node: that one, then.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{BITMAP_PREFIX, BitmapState, Error, Qmp, Result};

/// The prefix of the names of every node, job and export blockvault adds to a QEMU.
pub const NODE_PREFIX: &str = "blockvault-";

/// Drivers of protocol nodes: below the disk's node.
const PROTOCOLS: &[&str] = &["file", "host_device", "host_cdrom"];

/// Drivers of filter nodes: above the disk's node, with its image's name.
const FILTERS: &[&str] = &[
    "blkdebug",
    "blklogwrites",
    "blkverify",
    "compress",
    "copy-before-write",
    "copy-on-read",
    "preallocate",
    "snapshot-access",
    "throttle",
];

/// One named block node of a running QEMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockNode {
    pub name: String,
    /// The block driver: `qcow2`, `raw`, `file`, ...
    pub driver: String,
    /// The image file the node reads (its own, or its child's for a filter).
    pub filename: PathBuf,
    /// The guest-visible size in bytes.
    pub size: u64,
    pub bitmaps: Vec<BitmapState>,
    /// A qcow2 node's `compat` (`0.10` or `1.1`), as QEMU reports it.
    pub compat: Option<String>,
}

impl BlockNode {
    /// Whether this node can keep persistent dirty bitmaps: only qcow2 stores them, and not
    /// in its version 2 (`compat=0.10`), where QEMU refuses to add one.
    pub fn persistent_bitmaps(&self) -> bool {
        self.driver == "qcow2" && self.compat.as_deref() != Some("0.10")
    }

    /// The blockvault bitmaps on this node.
    pub fn our_bitmaps(&self) -> impl Iterator<Item = &BitmapState> {
        self.bitmaps
            .iter()
            .filter(|b| b.name.starts_with(BITMAP_PREFIX))
    }
}

/// Every named block node of the QEMU behind `qmp`.
pub fn block_nodes(qmp: &mut Qmp) -> Result<Vec<BlockNode>> {
    let reply = qmp.execute("query-named-block-nodes", Some(json!({ "flat": true })))?;
    let nodes = reply.as_array().ok_or_else(|| Error::Qmp {
        socket: qmp.path().to_owned(),
        reason: "query-named-block-nodes did not return a list".to_owned(),
    })?;
    Ok(nodes.iter().filter_map(parse_node).collect())
}

fn parse_node(node: &Value) -> Option<BlockNode> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let image = node.get("image")?;
    let bitmaps = node
        .get("dirty-bitmaps")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|b| {
                    let flag = |key: &str| b.get(key).and_then(Value::as_bool).unwrap_or(false);
                    Some(BitmapState {
                        name: text(b, "name")?,
                        granularity: u32::try_from(b.get("granularity")?.as_u64()?).ok()?,
                        recording: flag("recording"),
                        persistent: flag("persistent"),
                        inconsistent: flag("inconsistent"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(BlockNode {
        name: text(node, "node-name")?,
        driver: text(node, "drv")?,
        filename: PathBuf::from(text(image, "filename").or_else(|| text(node, "file"))?),
        size: image.get("virtual-size")?.as_u64()?,
        bitmaps,
        compat: image
            .get("format-specific")
            .filter(|f| f.get("type").and_then(Value::as_str) == Some("qcow2"))
            .and_then(|f| f.get("data"))
            .and_then(|d| text(d, "compat")),
    })
}

/// The node of the disk whose image is `disk` (module docs: the format node).
///
/// Errors ([`Error::Fleecing`]): no node reads that image (the VM does not use the disk,
/// or names it by another path), or several candidates (the same image opened twice).
pub fn disk_node(nodes: &[BlockNode], disk: &Path, socket: &Path) -> Result<BlockNode> {
    let wanted = canonical(disk);
    let candidates: Vec<&BlockNode> = nodes
        .iter()
        .filter(|n| !n.name.starts_with(NODE_PREFIX) && !FILTERS.contains(&n.driver.as_str()))
        .filter(|n| n.filename == disk || canonical(&n.filename) == wanted)
        .collect();
    let formats: Vec<&BlockNode> = candidates
        .iter()
        .copied()
        .filter(|n| !PROTOCOLS.contains(&n.driver.as_str()))
        .collect();
    let chosen = match (formats.as_slice(), candidates.as_slice()) {
        ([one], _) => *one,
        ([], [one]) => *one,
        ([], []) => {
            let mut images: Vec<String> = nodes
                .iter()
                .filter(|n| !n.name.starts_with(NODE_PREFIX))
                .map(|n| n.filename.display().to_string())
                .collect();
            images.sort();
            images.dedup();
            return Err(Error::Fleecing {
                socket: socket.to_owned(),
                disk: disk.to_owned(),
                reason: format!(
                    "no block node of this VM reads this image (its images: {})",
                    if images.is_empty() {
                        "none".to_owned()
                    } else {
                        images.join(", ")
                    }
                ),
            });
        }
        (many, _) => {
            let many = if many.is_empty() { &candidates } else { many };
            let names: Vec<&str> = many.iter().map(|n| n.name.as_str()).collect();
            return Err(Error::Fleecing {
                socket: socket.to_owned(),
                disk: disk.to_owned(),
                reason: format!(
                    "several block nodes read this image ({}): which one the guest writes \
                     through is ambiguous",
                    names.join(", ")
                ),
            });
        }
    };
    Ok(chosen.clone())
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, driver: &str, file: &str) -> BlockNode {
        BlockNode {
            name: name.to_owned(),
            driver: driver.to_owned(),
            filename: PathBuf::from(file),
            size: 1 << 20,
            bitmaps: vec![],
            compat: None,
        }
    }

    #[test]
    fn the_format_node_is_the_disk_not_the_protocol_node_or_a_filter() {
        let socket = Path::new("/run/vm.qmp");
        let nodes = [
            node("throttle0", "throttle", "/vm/a.qcow2"),
            node("a-fmt", "qcow2", "/vm/a.qcow2"),
            node("a-file", "file", "/vm/a.qcow2"),
            node("b-file", "file", "/vm/b.raw"),
            node("blockvault-scratch-0", "qcow2", "/vm/a.qcow2"),
        ];
        let found = |p: &str| disk_node(&nodes, Path::new(p), socket).map(|n| n.name);
        assert_eq!(found("/vm/a.qcow2").expect("a"), "a-fmt");
        // A raw image opened with the protocol driver alone.
        assert_eq!(found("/vm/b.raw").expect("b"), "b-file");
        let err = found("/vm/c.qcow2").expect_err("no such disk");
        assert!(err.to_string().contains("/vm/a.qcow2, /vm/b.raw"), "{err}");

        let twice = [
            node("a1", "qcow2", "/vm/a.qcow2"),
            node("a2", "qcow2", "/vm/a.qcow2"),
        ];
        let err = disk_node(&twice, Path::new("/vm/a.qcow2"), socket).expect_err("ambiguous");
        assert!(err.to_string().contains("a1, a2"), "{err}");
    }

    #[test]
    fn bitmaps_are_read_from_query_named_block_nodes() {
        let reply = json!({
            "node-name": "d0", "drv": "qcow2", "file": "/vm/d.qcow2",
            "image": {"filename": "/vm/d.qcow2", "virtual-size": 8388608},
            "dirty-bitmaps": [
                {"name": "blockvault-x", "recording": true, "persistent": true,
                 "busy": false, "granularity": 65536, "count": 0},
                {"name": "other", "recording": false, "persistent": false,
                 "inconsistent": true, "granularity": 4096, "count": 0}
            ]
        });
        let parsed = parse_node(&reply).expect("a node");
        assert_eq!(parsed.size, 8 << 20);
        assert_eq!(parsed.our_bitmaps().count(), 1);
        assert_eq!(
            parsed.bitmaps[1],
            BitmapState {
                name: "other".to_owned(),
                granularity: 4096,
                recording: false,
                persistent: false,
                inconsistent: true,
            }
        );
    }
}
