//! A disk whose size changed since the VM's previous point (grown or shrunk between two
//! backups): recorded on the job's capture record ([`DiskCapture::resized`](crate::DiskCapture),
//! shown by `jobs show` and in its `--json`) and said as a warning of the backup. Nothing else
//! changes: every point's maps describe its disks in full at their own size, so a restore of
//! the older point still gives the older size.

use blockvault_core::RecoveryPoint;
use blockvault_vault::ParentChoice;

use crate::{CaptureRecord, Resized};

/// Marks on `record` each disk of `point` whose size differs from that disk in the parent
/// point (the VM's newest snapshot, which this backup was compared with), and returns one
/// warning for each. Disks new in `point`, or a backup without a parent, have nothing to say.
pub(super) fn note_resized(
    record: &mut CaptureRecord,
    parent: &ParentChoice,
    point: &RecoveryPoint,
) -> Vec<String> {
    let ParentChoice::Point(parent) = parent else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for disk in &point.disks {
        let Some(before) = parent.disks.iter().find(|d| d.name == disk.name) else {
            continue;
        };
        if before.size == disk.size {
            continue;
        }
        let resized = Resized {
            from: before.size,
            to: disk.size,
            since: parent.id.clone(),
        };
        warnings.push(format!(
            "disk {} of {} {} since point {} (the older point still restores at its own size)",
            disk.name,
            point.vm,
            resized.change(),
            parent.id
        ));
        let name = disk.name.to_string();
        if let Some(captured) = record.disks.iter_mut().find(|d| d.disk == name) {
            captured.resized = Some(resized);
        }
    }
    warnings
}
