//! What a Snapshot's capture reports: the job's record of how each disk was captured and
//! read (the full scan's reason when there was no hint), and the warning of a long freeze.

use std::time::Duration;

use blockvault_core::VmName;
use blockvault_vault::DiskScan;

use super::capture::Captured;
use crate::{CaptureRecord, ChangesFrom, DiskCapture};

/// The job's record of a capture, once the disks were read as `scans` say.
pub(super) fn record(
    captured: &Captured,
    freeze: Option<Duration>,
    scans: &[DiskScan],
) -> CaptureRecord {
    let disks = captured
        .names
        .iter()
        .zip(&captured.extents)
        .zip(&captured.reasons)
        .zip(&captured.hint_from)
        .map(|(((name, extents), reason), from)| {
            let scan = scans.iter().find(|s| s.disk == *name);
            DiskCapture {
                disk: name.to_string(),
                extents: *extents,
                changes: match scan {
                    Some(scan) if scan.incremental => *from,
                    _ => ChangesFrom::FullScan,
                },
                full_scan_reason: match scan {
                    Some(s) if s.incremental || s.hint_missed.is_some() => None,
                    Some(s) => s
                        .fallback
                        .as_ref()
                        .map(|r| r.to_string())
                        .or_else(|| reason.clone()),
                    None => reason.clone(),
                },
                bytes_read: scan.map_or(0, |s| s.bytes_read),
                bytes_allocated: scan.map_or(0, |s| s.bytes_allocated),
                read_us: scan.map(|s| s.scan_time.as_micros() as u64),
                hint_missed: scan.and_then(|s| s.hint_missed),
                resized: None,
            }
        })
        .collect();
    CaptureRecord {
        capture: captured.kind,
        freeze_us: freeze.map(micros),
        clone_us: captured.clone_time.map(micros),
        disks,
    }
}

/// The warning of a read under the hook that froze the VM for `window`.
pub(super) fn long_freeze_warning(vm: &VmName, window: Duration, captured: &Captured) -> String {
    let why = captured
        .no_clone
        .as_deref()
        .map(|why| format!(" (no reflink clones: {why})"))
        .unwrap_or_default();
    format!(
        "{vm} was frozen for {:.1} s while its disks were read{why}; put the disks and the \
         snapshot tier (--snapshot-dir) on one XFS (reflink=1) or btrfs file system to freeze \
         it only for the clones, milliseconds",
        window.as_secs_f64()
    )
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
