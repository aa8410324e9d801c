//! The state directory: every path a host keeps, in one table. It lives at the bottom of the
//! workspace, beside the formats, because every crate that keeps host state (the repository's
//! chunk index, the engine's catalog, locks and disk records, the host's settings) takes its
//! paths from it: pure paths, no I/O.

use std::path::{Path, PathBuf};

/// This host's state directory and the paths under it: the one list of what a host keeps.
///
/// | path | what | written by |
/// |---|---|---|
/// | `STATE/catalog.sqlite` | the job catalog: jobs, protected items, policies, points | jobs (`Catalog`, opened by the engine) |
/// | `STATE/snapshots/<vm>/` | the snapshot tier, unless `--snapshot-dir` puts it elsewhere | snapshot (`SnapshotTier`) |
/// | `STATE/s3.toml` | S3 endpoint and credentials (mode 0600), overridden by `AWS_*` | the user |
/// | `STATE/daemon.log` | the daemon's log, unless `--log` | the daemon |
/// | `STATE/locks/<vm>.snapshot`, `.transfer` | per-VM subtask exclusivity (`flock`) | jobs (engine) |
/// | `STATE/locks/job-<id>` | held by the process running a job, removed when it ends | jobs (engine) |
/// | `STATE/disks/<hash>.json` | what the last backup or restore left on each disk image | jobs (engine) |
/// | `STATE/vaults/<vault id>/chunks.idx` | this host's chunk index of a vault | repo (`ChunkIndex`) |
/// | `STATE/host.json` | this host's identity (id, name) in protection records | jobs (engine, on first need) |
/// | `STATE/vaults/<vault id>/marks/` | this host's cache of what GC marked per block map | vault |
/// | `STATE/keys/<vault id>.key` | the key file of a vault whose key is kept outside it (key-file mode; mode 0600), unless `BLOCKVAULT_KEY_FILE` names another | host (`vault init --encryption key-file`, `vault key import`) |
///
/// The engine is opened on a `StateDir` and takes every path of its own from it (catalog,
/// snapshot tier, locks, disk records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
    snapshots: Option<PathBuf>,
}

impl StateDir {
    /// The state directory at `root`, with the snapshot tier in `root/snapshots`.
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            snapshots: None,
        }
    }

    /// The state directory given (`--state-dir`), else `$XDG_STATE_HOME/blockvault`, else
    /// `~/.local/state/blockvault`, else `/var/lib/blockvault`.
    pub fn resolve(given: Option<PathBuf>) -> StateDir {
        StateDir::new(given.unwrap_or_else(default_root))
    }

    /// The same state directory with the snapshot tier at `dir` (`--snapshot-dir`) when given.
    pub fn with_snapshot_dir(mut self, dir: Option<PathBuf>) -> StateDir {
        self.snapshots = dir;
        self
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog.sqlite")
    }

    /// The snapshot tier's directory.
    pub fn snapshots(&self) -> PathBuf {
        self.snapshots
            .clone()
            .unwrap_or_else(|| self.root.join("snapshots"))
    }

    /// The S3 settings file.
    pub fn s3_config(&self) -> PathBuf {
        self.root.join("s3.toml")
    }

    /// The daemon's default log file.
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// The lock files' directory.
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// The lock of one subtask kind (`snapshot`, `transfer`) of `vm`: at most one such
    /// subtask of a VM runs at a time.
    pub fn subtask_lock(&self, vm: &str, subtask: &str) -> PathBuf {
        self.locks().join(format!("{vm}.{subtask}"))
    }

    /// The lock the process running job `job` holds until the job ends.
    pub fn job_lock(&self, job: impl std::fmt::Display) -> PathBuf {
        self.locks().join(format!("job-{job}"))
    }

    /// What the last backup or restore left on each disk image, one file per image.
    pub fn disks(&self) -> PathBuf {
        self.root.join("disks")
    }

    /// This host's identity, as protection records in vaults name it.
    pub fn host_identity(&self) -> PathBuf {
        self.root.join("host.json")
    }

    /// This host's knowledge of the vault with id `vault`.
    pub fn vault(&self, vault: &str) -> PathBuf {
        self.root.join("vaults").join(vault)
    }

    /// This host's chunk index of the vault with id `vault`.
    pub fn chunk_index(&self, vault: &str) -> PathBuf {
        self.vault(vault).join("chunks.idx")
    }

    /// The key file of the key-file-mode vault with id `vault`.
    pub fn key_file(&self, vault: &str) -> PathBuf {
        self.root.join("keys").join(format!("{vault}.key"))
    }

    /// This host's cache of GC marks of the vault with id `vault`.
    pub fn gc_marks(&self, vault: &str) -> PathBuf {
        self.vault(vault).join("marks")
    }
}

fn default_root() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(|d| PathBuf::from(d).join("blockvault"))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/blockvault"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/blockvault"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_the_root_but_a_snapshot_dir_given() {
        let state = StateDir::new("/s");
        assert_eq!(state.catalog(), Path::new("/s/catalog.sqlite"));
        assert_eq!(state.snapshots(), Path::new("/s/snapshots"));
        assert_eq!(state.s3_config(), Path::new("/s/s3.toml"));
        assert_eq!(state.daemon_log(), Path::new("/s/daemon.log"));
        assert_eq!(state.locks(), Path::new("/s/locks"));
        assert_eq!(
            state.subtask_lock("web01", "snapshot"),
            Path::new("/s/locks/web01.snapshot")
        );
        assert_eq!(state.job_lock(7), Path::new("/s/locks/job-7"));
        assert_eq!(state.disks(), Path::new("/s/disks"));
        assert_eq!(state.host_identity(), Path::new("/s/host.json"));
        assert_eq!(
            state.chunk_index("v1"),
            Path::new("/s/vaults/v1/chunks.idx")
        );
        assert_eq!(state.gc_marks("v1"), Path::new("/s/vaults/v1/marks"));
        let moved = state.with_snapshot_dir(Some("/fast/snaps".into()));
        assert_eq!(moved.snapshots(), Path::new("/fast/snaps"));
        assert_eq!(moved.catalog(), Path::new("/s/catalog.sqlite"));
    }

    #[test]
    fn a_given_state_dir_wins() {
        assert_eq!(StateDir::resolve(Some("/x".into())).root(), Path::new("/x"));
    }
}
