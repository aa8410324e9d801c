//! What garbage collection marks, and this host's cache of it.
//!
//! The mark reads every committed point's block maps. A map describes the whole disk (one id
//! per block, holes included), so reading them all costs points x disk size; yet a map never
//! changes, and its point record names it by digest. So the first collection on a host keeps,
//! per map digest, the distinct chunks the map names (8 bytes each, see [`Marks`]), and later
//! collections read those short lists instead: the mark then costs points x allocated data,
//! and maps are read once in their lifetime. The cache is this host's, under
//! `STATE/vaults/<vault id>/marks/<map digest>`; a missing or damaged entry is read from the
//! vault again, and entries of maps no point names any more are dropped after a collection.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use blockvault_core::ChunkId;

use crate::{Error, Result};

/// Chunk ids kept as their first 8 bytes: 8 bytes a chunk instead of 32 (a million live chunks
/// in about 16 MB). Two ids that share a prefix only make garbage look live, which keeps it:
/// safe, and for random ids about one chance in 2^64 / live chunks.
#[derive(Debug, Default)]
pub(crate) struct Marks(HashSet<u64>);

impl Marks {
    pub(crate) fn key(id: &ChunkId) -> u64 {
        let bytes = id.as_bytes();
        u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ])
    }

    /// The distinct non-zero chunks of `ids`, as sorted keys (what the cache holds per map).
    pub(crate) fn keys_of(ids: &[ChunkId]) -> Vec<u64> {
        let mut keys: Vec<u64> = ids
            .iter()
            .filter(|id| !id.is_zero())
            .map(Marks::key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    pub(crate) fn extend(&mut self, keys: &[u64]) {
        self.0.extend(keys.iter().copied());
    }

    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.0.contains(&Marks::key(id))
    }
}

const MAGIC: &[u8; 8] = b"BVMARKS\0";

/// This host's marks per map digest (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct MarkCache {
    dir: PathBuf,
}

impl MarkCache {
    pub(crate) fn new(dir: PathBuf) -> MarkCache {
        MarkCache { dir }
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        // Digests are hex; anything else is not ours to turn into a path.
        digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| self.dir.join(digest))
    }

    /// The keys cached for the map with `digest`, if a sound entry is there.
    pub(crate) fn get(&self, digest: &str) -> Option<Vec<u64>> {
        let bytes = std::fs::read(self.path(digest)?).ok()?;
        decode(&bytes)
    }

    /// Caches `keys` for the map with `digest` (a temp file renamed into place: a reader sees
    /// the whole entry or none; a torn one fails its checksum and is read from the vault).
    pub(crate) fn put(&self, digest: &str, keys: &[u64]) -> Result<()> {
        let Some(path) = self.path(digest) else {
            return Ok(());
        };
        let io = |e| Error::io(&path, e);
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        blockvault_repo::replace_via_tmp(
            &path,
            |tmp| std::fs::write(tmp, encode(keys)).map_err(io),
            io,
        )
    }

    /// Drops the entries of maps not in `live` (their points were deleted).
    pub(crate) fn retain(&self, live: &HashSet<&str>) -> Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&self.dir, e))?.path();
            let keep = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| live.contains(n));
            if !keep {
                remove(&path)?;
            }
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// `BVMARKS\0`, u64 count, the keys (u64 each, little-endian), BLAKE3 of all before it.
fn encode(keys: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + keys.len() * 8 + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for key in keys {
        out.extend_from_slice(&key.to_le_bytes());
    }
    let digest = blake3::hash(&out);
    out.extend_from_slice(digest.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Vec<u64>> {
    if bytes.len() < 16 + 32 || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != digest {
        return None;
    }
    let count = u64::from_le_bytes(body[8..16].try_into().ok()?) as usize;
    let keys = &body[16..];
    if keys.len() != count.checked_mul(8)? {
        return None;
    }
    Some(
        keys.chunks_exact(8)
            .filter_map(|k| k.try_into().ok().map(u64::from_le_bytes))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_rejects_damage_and_drops_dead_maps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MarkCache::new(dir.path().join("marks"));
        let ids = [
            ChunkId::of(b"a"),
            ChunkId::ZERO,
            ChunkId::of(b"b"),
            ChunkId::of(b"a"),
        ];
        let keys = Marks::keys_of(&ids);
        assert_eq!(keys.len(), 2, "distinct, zero left out");
        cache.put("ab12", &keys).expect("put");
        cache.put("cd34", &[7]).expect("put");
        assert_eq!(cache.get("ab12"), Some(keys.clone()));
        assert_eq!(cache.get("ef56"), None);
        assert_eq!(cache.get("../etc"), None, "not a digest");

        let path = dir.path().join("marks/ab12");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[17] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(cache.get("ab12"), None, "a damaged entry is a miss");

        cache.retain(&HashSet::from(["cd34"])).expect("retain");
        assert!(!path.exists() && cache.get("cd34") == Some(vec![7]));

        let mut marks = Marks::default();
        marks.extend(&keys);
        assert!(marks.contains(&ChunkId::of(b"b")) && !marks.contains(&ChunkId::of(b"c")));
    }
}
