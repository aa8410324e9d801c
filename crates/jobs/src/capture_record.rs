//! What a Snapshot subtask records of its capture: how the instant was fixed, how long the VM
//! was frozen, and how each disk's changes were found. Shown by `jobs show`, in its `--json`
//! and in the daemon's log; kept in the catalog as one JSON column of the subtask.

use std::time::Duration;

use blockvault_core::{Capture, PointId, bytes};
use serde::{Deserialize, Serialize};

/// How a Snapshot fixed the instant and read the disks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRecord {
    pub capture: Capture,
    /// The freeze window: from the end of the pre-hook to the start of the post-hook, in
    /// microseconds (what the VM's guest waited). `None` without hooks: nothing was frozen.
    pub freeze_us: Option<u64>,
    /// How long the reflink clones of all disks took, in microseconds (inside the freeze
    /// window when there are hooks); `None` when the disks were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_us: Option<u64>,
    /// Each disk, in the VM's order.
    pub disks: Vec<DiskCapture>,
}

impl CaptureRecord {
    pub fn freeze(&self) -> Option<Duration> {
        self.freeze_us.map(Duration::from_micros)
    }

    /// The capture on one line: `reflink, frozen 2.31 ms (clones 0.84 ms), changes from the
    /// file system: 12.00 MiB read of 1.37 GiB allocated` (`changes from dirty bitmaps` for
    /// qcow2 disks read with QEMU's, `... and dirty bitmaps` for both, `full scan` for none).
    pub fn summary(&self) -> String {
        let mut out = self.capture.to_string();
        match self.freeze() {
            Some(f) => out.push_str(&format!(", frozen {}", short_duration(f))),
            None => out.push_str(", no hook (nothing frozen)"),
        }
        if let Some(us) = self.clone_us {
            let took = short_duration(Duration::from_micros(us));
            out.push_str(&format!(" (clones {took})"));
        }
        let (read, allocated) = self.bytes_read();
        let from = |kind| self.disks.iter().any(|d| d.changes == kind);
        let how = match (
            from(ChangesFrom::FileSystem),
            from(ChangesFrom::DirtyBitmap),
        ) {
            (true, true) => "changes from the file system and dirty bitmaps",
            (true, false) => "changes from the file system",
            (false, true) => "changes from dirty bitmaps",
            (false, false) => "full scan",
        };
        out.push_str(&format!(
            ", {how}: {} read of {} allocated",
            bytes(read),
            bytes(allocated)
        ));
        for disk in &self.disks {
            if let Some(resized) = &disk.resized {
                out.push_str(&format!("; disk {} {}", disk.disk, resized.change()));
            }
        }
        out
    }

    /// Bytes read and bytes allocated, over all disks.
    pub fn bytes_read(&self) -> (u64, u64) {
        self.disks.iter().fold((0, 0), |(read, allocated), d| {
            (read + d.bytes_read, allocated + d.bytes_allocated)
        })
    }
}

/// How one disk was captured and read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskCapture {
    pub disk: String,
    /// The disk's extents when it was cloned (what the clone cost); `None` when not cloned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extents: Option<u64>,
    /// Where the changes since the parent point came from.
    pub changes: ChangesFrom,
    /// Why the disk was scanned in full when its changes could have come from elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scan_reason: Option<String>,
    /// Bytes read and hashed.
    pub bytes_read: u64,
    /// Bytes of its allocated blocks: what a full scan reads.
    pub bytes_allocated: u64,
    /// How long reading the disk took, in microseconds: reading, hashing and compressing
    /// what was read, without the Snapshot's fixed costs (hooks, QEMU's tools, the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_us: Option<u64>,
    /// When the changed extents were checked by a full scan (the periodic check of change
    /// tracking): the blocks that changed where they said nothing did. 0 means sound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint_missed: Option<u64>,
    /// When the disk's size differs from the previous point's (grown or shrunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resized: Option<Resized>,
}

/// A disk whose size changed between two backups: its size in the previous point (`since`)
/// and in this one, in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resized {
    pub from: u64,
    pub to: u64,
    pub since: PointId,
}

impl Resized {
    /// `grew from 8.00 MiB to 12.00 MiB` (or `shrank ...`).
    pub fn change(&self) -> String {
        format!(
            "{} from {} ({} bytes) to {} ({} bytes)",
            if self.to > self.from {
                "grew"
            } else {
                "shrank"
            },
            bytes(self.from),
            self.from,
            bytes(self.to),
            self.to
        )
    }
}

impl DiskCapture {
    /// One disk on one line: `root.img: file-system, 12.00 MiB of 1.37 GiB read, 812 extents`
    /// (`root.qcow2: dirty-bitmap, ...` when a QEMU dirty bitmap said what changed),
    /// with the check's result and why it was scanned in full, when either applies.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: {}, {} of {} read",
            self.disk,
            self.changes.key(),
            bytes(self.bytes_read),
            bytes(self.bytes_allocated)
        );
        if let Some(us) = self.read_us {
            out.push_str(&format!(
                " in {}",
                short_duration(Duration::from_micros(us))
            ));
        }
        if let Some(n) = self.extents {
            out.push_str(&format!(", {n} extents"));
        }
        match self.hint_missed {
            Some(0) => out.push_str("; changed extents checked by a full scan: sound"),
            Some(n) => out.push_str(&format!(
                "; changed extents checked by a full scan: they missed {n} changed blocks \
                 (the scan's map was kept)"
            )),
            None => {}
        }
        if let Some(why) = &self.full_scan_reason {
            out.push_str(&format!(" ({why})"));
        }
        if let Some(resized) = &self.resized {
            out.push_str(&format!(
                "; size {} since point {}",
                resized.change(),
                resized.since
            ));
        }
        out
    }
}

/// A short time as precisely as it matters: `0.21 ms`, `3.4 ms`, `2.31 s`.
fn short_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// Where a disk's changes came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangesFrom {
    /// Every allocated block read and hashed.
    FullScan,
    /// The extents of the parent's clone and the new clone compared (FIEMAP): only the
    /// ranges whose place on the device differs were read.
    FileSystem,
    /// A QEMU persistent dirty bitmap, named after the parent point: only the blocks it
    /// marks were read.
    DirtyBitmap,
}

impl ChangesFrom {
    pub fn key(self) -> &'static str {
        match self {
            ChangesFrom::FullScan => "full-scan",
            ChangesFrom::FileSystem => "file-system",
            ChangesFrom::DirtyBitmap => "dirty-bitmap",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, changes: ChangesFrom) -> DiskCapture {
        DiskCapture {
            disk: name.to_owned(),
            extents: None,
            changes,
            full_scan_reason: None,
            bytes_read: 1 << 20,
            bytes_allocated: 8 << 20,
            read_us: None,
            hint_missed: None,
            resized: None,
        }
    }

    fn record(disks: Vec<DiskCapture>) -> CaptureRecord {
        CaptureRecord {
            capture: Capture::ReadUnderHook,
            freeze_us: Some(2_000),
            clone_us: None,
            disks,
        }
    }

    #[test]
    fn a_disk_says_how_long_its_read_took() {
        let mut timed = disk("root.qcow2", ChangesFrom::DirtyBitmap);
        timed.read_us = Some(45_200);
        let text = timed.summary();
        assert!(
            text.contains("1.00 MiB of 8.00 MiB read in 45.2 ms"),
            "{text}"
        );
        assert!(!disk("a", ChangesFrom::FullScan).summary().contains(" in "));
    }

    #[test]
    fn the_summary_says_where_the_changes_came_from() {
        let bitmap = record(vec![disk("root.qcow2", ChangesFrom::DirtyBitmap)]);
        let text = bitmap.summary();
        assert!(text.contains("changes from dirty bitmaps"), "{text}");
        assert!(
            bitmap.disks[0]
                .summary()
                .starts_with("root.qcow2: dirty-bitmap, "),
            "{}",
            bitmap.disks[0].summary()
        );
        let both = record(vec![
            disk("root.qcow2", ChangesFrom::DirtyBitmap),
            disk("data.img", ChangesFrom::FileSystem),
        ]);
        let text = both.summary();
        assert!(
            text.contains("changes from the file system and dirty bitmaps"),
            "{text}"
        );
        let fs = record(vec![disk("data.img", ChangesFrom::FileSystem)]);
        let text = fs.summary();
        assert!(text.contains("changes from the file system:"), "{text}");
        let full = record(vec![disk("root.qcow2", ChangesFrom::FullScan)]);
        assert!(full.summary().contains("full scan"), "{}", full.summary());
        // The key survives the catalog's JSON.
        let json = serde_json::to_string(&bitmap).expect("json");
        assert!(json.contains("\"dirty-bitmap\""), "{json}");
        let back: CaptureRecord = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, bitmap);
    }
}
