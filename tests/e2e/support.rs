//! Builders for sparse disk images and vaults, and a model of what each image holds.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blockvault_core::{BlockSize, VmName};
use blockvault_vault::{
    BackupReport, BackupRequest, DiskInput, NoProgress, PointSelector, RestoreReport,
    RestoreRequest, TransferOptions, Vault,
};

/// One write to an image: `len` bytes at `offset` of a pattern picked by `kind` (0 = zeros,
/// which punches data back to zero; odd = compressible text; even = noise).
#[derive(Clone, Copy, Debug)]
pub struct Write {
    pub offset: u64,
    pub len: usize,
    pub kind: u8,
}

/// A disk image on disk plus its expected content in memory.
#[derive(Debug)]
pub struct Image {
    pub path: PathBuf,
    pub content: Vec<u8>,
}

impl Image {
    /// A sparse image of `size` bytes.
    pub fn create(path: impl AsRef<Path>, size: u64) -> Image {
        let path = path.as_ref().to_owned();
        File::create(&path)
            .and_then(|f| f.set_len(size))
            .expect("create image");
        Image {
            path,
            content: vec![0; size as usize],
        }
    }

    pub fn size(&self) -> u64 {
        self.content.len() as u64
    }

    /// Applies `w` to the file and the model (clipped to the image).
    pub fn apply(&mut self, w: Write) {
        let size = self.size();
        if size == 0 {
            return;
        }
        let offset = w.offset % size;
        let len = w.len.min((size - offset) as usize);
        let data = pattern(w.kind, offset, len);
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .expect("open");
        file.write_all_at(&data, offset).expect("write");
        self.content[offset as usize..offset as usize + len].copy_from_slice(&data);
    }

    /// Grows or shrinks the image.
    pub fn resize(&mut self, size: u64) {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_len(size))
            .expect("resize");
        self.content.resize(size as usize, 0);
    }
}

/// Deterministic content: zeros, text, or xorshift noise seeded by the offset.
pub fn pattern(kind: u8, offset: u64, len: usize) -> Vec<u8> {
    match kind {
        0 => vec![0; len],
        k if k % 2 == 1 => format!("log line {k} at {offset}: all quiet on the host\n")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(len)
            .collect(),
        k => {
            let mut x = offset.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(k) | 1;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }
    }
}

pub fn vm(name: &str) -> VmName {
    VmName::new(name).expect("vm name")
}

pub fn block_size(bytes: u64) -> BlockSize {
    BlockSize::new(bytes).expect("block size")
}

pub async fn new_vault(dir: &Path) -> Vault {
    Vault::init_local(dir.join("vault"))
        .await
        .expect("init vault")
}

pub async fn backup(
    vault: &Vault,
    vm_name: &str,
    disks: &[&Image],
    bs: BlockSize,
) -> blockvault_vault::Result<BackupReport> {
    let request = BackupRequest {
        vm: vm(vm_name),
        disks: disks.iter().map(|d| DiskInput::file(&d.path)).collect(),
        block_size: Some(bs),
        consistency: blockvault_core::Consistency::CrashConsistent,
        capture: None,
        options: TransferOptions::default(),
        time: None,
        retain_until: None,
        id: None,
        vault: None,
    };
    vault.backup(&request, Arc::new(NoProgress)).await
}

pub async fn restore(
    vault: &Vault,
    vm_name: &str,
    point: PointSelector,
    target: &Path,
) -> blockvault_vault::Result<RestoreReport> {
    let request = RestoreRequest {
        vm: vm(vm_name),
        point,
        target: target.to_owned(),
        overwrite: false,
        in_place: false,
        known_content: Default::default(),
        options: TransferOptions::default(),
    };
    vault.restore(&request, Arc::new(NoProgress)).await
}

/// Every file in `dir` (hidden ones too), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// All chunk object files under a local vault.
pub fn chunk_files(vault_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for prefix in std::fs::read_dir(vault_dir.join("chunks"))
        .into_iter()
        .flatten()
    {
        let prefix = prefix.expect("entry").path();
        if prefix.is_dir() {
            for chunk in std::fs::read_dir(&prefix).expect("read").flatten() {
                out.push(chunk.path());
            }
        }
    }
    out.sort();
    out
}
