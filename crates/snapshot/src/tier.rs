use std::path::{Path, PathBuf};

use blockvault_core::{PointId, RecoveryPoint, VmName};
use blockvault_repo::{Keyring, Repository};

use crate::clones::{CLONES, clones_space};
use crate::sweep::{SweepReport, sweep};
use crate::{Error, Result, heal};

/// The snapshot tier on this host: one repository (a vault-format directory) per VM under
/// `root`.
#[derive(Clone, Debug)]
pub struct SnapshotTier {
    root: PathBuf,
    /// How encrypted tiers are unlocked: the process's keys (see `keys.rs`).
    keyring: Keyring,
}

impl SnapshotTier {
    /// The tier at `root`; an encrypted VM's tier opens only with a key
    /// [added](Keyring::add) to its keyring (see [`SnapshotTier::with_keyring`]).
    pub fn new(root: impl Into<PathBuf>) -> SnapshotTier {
        SnapshotTier {
            root: root.into(),
            keyring: Keyring::without_unlock(),
        }
    }

    /// This tier, its encrypted repositories unlocked through `keyring` (the process's: a
    /// key the vault unlocked opens its VMs' tiers without asking again).
    pub fn with_keyring(mut self, keyring: Keyring) -> SnapshotTier {
        self.keyring = keyring;
        self
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory that holds `vm`'s snapshots.
    pub fn dir(&self, vm: &VmName) -> PathBuf {
        self.root.join(vm.as_str())
    }

    /// `vm`'s snapshots, or `None` when this host never took one. A config that cannot be
    /// read is set aside and rebuilt (see `heal.rs`).
    pub async fn open(&self, vm: &VmName) -> Result<Option<Repository>> {
        heal::open_healing(self, &self.dir(vm)).await
    }

    /// `vm`'s snapshots, created empty (plain) on first use. Call with the VM's snapshot lock
    /// held. A Snapshot for a vault uses [`SnapshotTier::open_for`].
    pub async fn open_or_init(&self, vm: &VmName) -> Result<Repository> {
        Ok(self.open_for(vm, None).await?.repository)
    }

    /// The VMs that have snapshots on this host (a directory holding a snapshot repository).
    pub async fn vms(&self) -> Result<Vec<VmName>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        let mut vms = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.root, e))?;
            if let Ok(vm) = VmName::new(entry.file_name().to_string_lossy().as_ref())
                && self.open(&vm).await?.is_some()
            {
                vms.push(vm);
            }
        }
        vms.sort();
        Ok(vms)
    }

    /// The committed snapshot points of `vm`, oldest first (none when it has no snapshots).
    /// Records that cannot be read are set aside (see `heal.rs`).
    pub async fn points(&self, vm: &VmName) -> Result<Vec<RecoveryPoint>> {
        match self.open(vm).await? {
            Some(vault) => Ok(heal::healthy_points(vm, &vault).await?.points),
            None => Ok(Vec::new()),
        }
    }

    /// Deletes the points `expired` of `vm` (their records, then their maps), then sweeps.
    /// Call with the VM's snapshot lock held.
    pub async fn expire(&self, vm: &VmName, expired: &[PointId]) -> Result<SweepReport> {
        let Some(vault) = self.open(vm).await? else {
            return Ok(SweepReport::default());
        };
        for id in expired {
            vault.store().delete_point(vm, id).await?;
        }
        let mut report = sweep(vm, &vault, &self.clones_dir(vm)).await?;
        report.points_removed = expired.len();
        Ok(report)
    }

    /// Deletes what no committed point of `vm` needs (see `sweep.rs`): maps of backups that
    /// never committed, chunks no point's maps name, staging files a killed writer left, kept
    /// clones of points no longer committed and staging directories of dead captures (see
    /// `clones.rs`). Call with the VM's snapshot lock held (a running Snapshot's chunks are
    /// named by no point yet).
    pub async fn sweep(&self, vm: &VmName) -> Result<SweepReport> {
        match self.open(vm).await? {
            Some(vault) => sweep(vm, &vault, &self.clones_dir(vm)).await,
            None => Ok(SweepReport::default()),
        }
    }

    /// Bytes `vm`'s snapshots take on this host: [`TierSpace::bytes`].
    pub fn usage(&self, vm: &VmName) -> Result<u64> {
        Ok(self.space(vm)?.bytes())
    }

    /// What `vm`'s snapshots take on this host: the repository's files, and the kept clones
    /// counted by what they hold alone (see `clones.rs`), not by their apparent size.
    pub fn space(&self, vm: &VmName) -> Result<TierSpace> {
        let dir = self.dir(vm);
        let mut stored = 0;
        for path in read_dir_or_empty(&dir)? {
            if path.file_name().is_some_and(|n| n == CLONES) {
                continue;
            }
            stored += size_of(&path)?;
        }
        let (clones, clones_apparent) = clones_space(&self.clones_dir(vm))?;
        Ok(TierSpace {
            stored,
            clones,
            clones_apparent,
        })
    }
}

/// What one VM's snapshots take on this host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierSpace {
    /// Bytes of the repository's files (chunks, maps, records).
    pub stored: u64,
    /// Bytes the kept clones hold alone: what the disks overwrote since the clones were taken.
    pub clones: u64,
    /// The kept clones' apparent size (their disks' sizes): not space used.
    pub clones_apparent: u64,
}

impl TierSpace {
    /// The space used: the repository's files and what the clones hold alone.
    pub fn bytes(&self) -> u64 {
        self.stored + self.clones
    }
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Bytes of the file at `path`, or of the files in the tree under it.
fn size_of(path: &Path) -> Result<u64> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for path in read_dir_or_empty(path)? {
        total += size_of(&path)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use blockvault_core::{BlockSize, ChunkId, Consistency};
    use blockvault_repo::{BackupRequest, NoProgress, TransferOptions};

    use super::*;

    fn image(dir: &Path, name: &str, fill: &[(usize, u8)]) -> PathBuf {
        let path = dir.join(name);
        let mut data = vec![0u8; 1 << 20];
        for &(block, byte) in fill {
            data[block * (64 << 10)..(block + 1) * (64 << 10)].fill(byte);
        }
        std::fs::write(&path, data).expect("write image");
        path
    }

    async fn snapshot(vault: &Repository, vm: &VmName, disk: &Path) -> RecoveryPoint {
        let request = BackupRequest {
            vm: vm.clone(),
            disks: vec![disk.into()],
            block_size: Some(BlockSize::new(64 << 10).expect("bs")),
            consistency: Consistency::CrashConsistent,
            capture: None,
            options: TransferOptions::default(),
            time: None,
            retain_until: None,
            id: None,
            vault: None,
        };
        vault
            .backup(&request, Arc::new(NoProgress))
            .await
            .expect("snapshot")
            .point
    }

    #[tokio::test]
    async fn expiry_frees_only_chunks_no_live_point_names() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tier = SnapshotTier::new(tmp.path().join("snapshots"));
        let vm = VmName::new("vm1").expect("vm");
        assert!(tier.open(&vm).await.expect("open").is_none());
        let vault = tier.open_or_init(&vm).await.expect("init");
        let disk = image(tmp.path(), "d.img", &[(0, 1), (1, 2)]);
        let first = snapshot(&vault, &vm, &disk).await;
        image(tmp.path(), "d.img", &[(0, 1), (1, 3)]);
        let second = snapshot(&vault, &vm, &disk).await;
        assert_eq!(tier.vms().await.expect("vms"), vec![vm.clone()]);

        let report = tier
            .expire(&vm, std::slice::from_ref(&first.id))
            .await
            .expect("expire");
        assert_eq!(report.points_removed, 1);
        // Block 1's old content (2s) was only in the first point; block 0 is still named.
        assert_eq!(report.chunks_removed, 1);
        assert!(report.bytes_freed > 0);
        let points = tier.points(&vm).await.expect("points");
        assert_eq!(
            points.iter().map(|p| &p.id).collect::<Vec<_>>(),
            vec![&second.id]
        );

        // The remaining point restores from the tier alone.
        let out = tmp.path().join("out");
        let request = blockvault_repo::RestoreRequest {
            vm: vm.clone(),
            point: blockvault_repo::PointSelector::Latest,
            target: out.clone(),
            overwrite: false,
            in_place: false,
            known_content: Default::default(),
            options: TransferOptions::default(),
        };
        vault
            .restore(&request, Arc::new(NoProgress))
            .await
            .expect("restore");
        assert_eq!(
            std::fs::read(out.join("d.img")).expect("read"),
            std::fs::read(&disk).expect("read")
        );
    }

    #[tokio::test]
    async fn sweep_removes_orphans_and_staging_leftovers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tier = SnapshotTier::new(tmp.path().join("snapshots"));
        let vm = VmName::new("vm1").expect("vm");
        let vault = tier.open_or_init(&vm).await.expect("init");
        let disk = image(tmp.path(), "d.img", &[(0, 1)]);
        let point = snapshot(&vault, &vm, &disk).await;
        // What a killed snapshot leaves: an uncommitted point's maps, a chunk, a staging file.
        let orphan = PointId::generate(jiff::Timestamp::now(), b"orphan");
        let map = vault
            .store()
            .get_map(&vm, &point.id, &point.disks[0].name, None)
            .await
            .expect("map");
        vault
            .store()
            .put_map(&vm, &orphan, &point.disks[0].name, &map)
            .await
            .expect("orphan map");
        let block = vec![7u8; 64 << 10];
        let stray = ChunkId::hash(&block);
        vault
            .store()
            .put_chunk(&stray, block.into())
            .await
            .expect("stray chunk");
        let fan = tier.dir(&vm).join("chunks").join("00");
        std::fs::create_dir_all(&fan).expect("fan");
        std::fs::write(fan.join(format!("{}#3", "0".repeat(64))), b"half").expect("leftover");
        // A map a killed snapshot was putting, alone in its point's directory.
        let killed = PointId::generate(jiff::Timestamp::now(), b"killed");
        let maps = tier
            .dir(&vm)
            .join("maps")
            .join(vm.to_string())
            .join(killed.to_string());
        std::fs::create_dir_all(&maps).expect("maps dir");
        std::fs::write(maps.join("d.map#1"), b"half a map").expect("map leftover");

        let hex = stray.to_hex();
        let stray_file = tier.dir(&vm).join("chunks").join(&hex[..2]).join(&hex);
        let stray_bytes = std::fs::metadata(stray_file).expect("stray file").len();

        let report = tier.sweep(&vm).await.expect("sweep");
        assert_eq!(report.bytes_freed, stray_bytes + 4 + 10, "{report:?}");
        assert_eq!(report.orphan_maps_removed, 1);
        assert_eq!(report.chunks_removed, 1);
        assert_eq!(report.leftovers_removed, 2);
        assert!(
            !maps.exists(),
            "the point's directory went with its only file"
        );
        assert!(fan.exists(), "the chunk fan-out directory stays");
        assert!(!vault.store().has_chunk(&stray).await.expect("head"));
        assert_eq!(tier.points(&vm).await.expect("points").len(), 1);
    }

    /// Flips one byte in the middle of `path`.
    fn flip(path: &Path) {
        let mut bytes = std::fs::read(path).expect("read");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(path, bytes).expect("write");
    }

    #[tokio::test]
    async fn a_damaged_record_or_map_is_set_aside_and_expiry_goes_on() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tier = SnapshotTier::new(tmp.path().join("snapshots"));
        let vm = VmName::new("vm1").expect("vm");
        let vault = tier.open_or_init(&vm).await.expect("init");
        let disk = image(tmp.path(), "d.img", &[(0, 1)]);
        let first = snapshot(&vault, &vm, &disk).await;
        image(tmp.path(), "d.img", &[(0, 2)]);
        let second = snapshot(&vault, &vm, &disk).await;
        image(tmp.path(), "d.img", &[(0, 3)]);
        let third = snapshot(&vault, &vm, &disk).await;
        let dir = tier.dir(&vm);
        flip(&dir.join("points").join("vm1").join(second.id.as_str()));
        flip(
            &dir.join("maps/vm1")
                .join(third.id.as_str())
                .join("d.img.map"),
        );

        // The damaged record is set aside when listed; the other points are all there.
        let listed = tier.points(&vm).await.expect("points");
        assert_eq!(
            listed.iter().map(|p| &p.id).collect::<Vec<_>>(),
            vec![&first.id, &third.id]
        );
        let aside = dir.join("quarantine/points/vm1").join(second.id.as_str());
        assert!(aside.is_file(), "{}", aside.display());

        // Expiry goes on; the point whose map is damaged is set aside by the sweep, and the
        // chunks only the set-aside points named are freed.
        let report = tier
            .expire(&vm, std::slice::from_ref(&first.id))
            .await
            .expect("expire");
        assert_eq!(report.chunks_removed, 3, "{report:?}");
        assert!(tier.points(&vm).await.expect("points").is_empty());
        assert!(
            dir.join("quarantine/points/vm1")
                .join(third.id.as_str())
                .is_file()
        );

        // A damaged config is set aside and rebuilt; snapshots go on.
        flip(&dir.join("vault.config"));
        let vault = tier.open_or_init(&vm).await.expect("healed");
        let fourth = snapshot(&vault, &vm, &disk).await;
        assert_eq!(
            tier.points(&vm)
                .await
                .expect("points")
                .iter()
                .map(|p| &p.id)
                .collect::<Vec<_>>(),
            vec![&fourth.id]
        );
        assert!(
            std::fs::read_dir(dir.join("quarantine"))
                .expect("quarantine")
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("vault.config."))
        );
    }
}
