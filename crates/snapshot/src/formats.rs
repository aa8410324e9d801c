//! The format each disk of a VM was last read in, kept beside the VM's snapshots
//! (`<root>/.formats/<vm>.json`) and outliving them.
//!
//! A disk's format is found by its header, and a header may not change from the previous
//! point's format unless the user says the format outright: a guest can write a qcow2 or vmdk
//! header into its own raw disk, naming host files as its backing file or extents. The
//! previous point is the VM's newest snapshot, and snapshots expire (after their instant
//! restore days) or are forgotten; this memo keeps the formats for the check once they have.
//! A memo that cannot be read or written leaves the header to decide, as on a VM's first
//! backup, never an error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use blockvault_core::{DiskFormat, DiskName, VmName};

use crate::SnapshotTier;

const FORMATS: &str = ".formats";

impl SnapshotTier {
    /// Remembers the format of each of `vm`'s disks (see the module docs).
    pub fn remember_formats<'d>(
        &self,
        vm: &VmName,
        disks: impl IntoIterator<Item = (&'d DiskName, DiskFormat)>,
    ) {
        let mut formats = self.formats(vm);
        let before = formats.clone();
        formats.extend(disks.into_iter().map(|(name, f)| (name.to_string(), f)));
        if formats == before {
            return;
        }
        let path = self.formats_path(vm);
        if let Ok(text) = serde_json::to_vec_pretty(&formats) {
            let _ = std::fs::create_dir_all(self.root().join(FORMATS));
            let staged = path.with_extension("json.new");
            if std::fs::write(&staged, text).is_ok() {
                let _ = std::fs::rename(&staged, &path);
            }
        }
    }

    /// The formats [`SnapshotTier::remember_formats`] kept for `vm`'s disks, by disk name.
    pub fn formats(&self, vm: &VmName) -> BTreeMap<String, DiskFormat> {
        std::fs::read(self.formats_path(vm))
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default()
    }

    fn formats_path(&self, vm: &VmName) -> PathBuf {
        self.root()
            .join(FORMATS)
            .join(format!("{}.json", vm.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_kept_per_vm_and_outlive_nothing_but_the_memo() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tier = SnapshotTier::new(dir.path());
        let (web, db): (VmName, VmName) = ("web".parse().expect("vm"), "db".parse().expect("vm"));
        let (root, data): (DiskName, DiskName) = (
            "root.qcow2".parse().expect("disk"),
            "data.raw".parse().expect("disk"),
        );
        assert!(tier.formats(&web).is_empty());
        tier.remember_formats(&web, [(&root, DiskFormat::Qcow2), (&data, DiskFormat::Raw)]);
        tier.remember_formats(&db, [(&data, DiskFormat::Vmdk)]);
        let kept = tier.formats(&web);
        assert_eq!(kept.get("root.qcow2"), Some(&DiskFormat::Qcow2));
        assert_eq!(kept.get("data.raw"), Some(&DiskFormat::Raw));
        assert_eq!(tier.formats(&db).get("data.raw"), Some(&DiskFormat::Vmdk));
        // A later backup of fewer disks keeps what it did not read.
        tier.remember_formats(&web, [(&root, DiskFormat::Raw)]);
        let kept = tier.formats(&web);
        assert_eq!(kept.get("root.qcow2"), Some(&DiskFormat::Raw));
        assert_eq!(kept.get("data.raw"), Some(&DiskFormat::Raw));
        // A damaged memo is no memo.
        std::fs::write(dir.path().join(".formats/web.json"), b"{").expect("damage");
        assert!(tier.formats(&web).is_empty());
    }
}
