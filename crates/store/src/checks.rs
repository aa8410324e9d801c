//! The integrity checks of every read (see "Integrity" in the crate docs): a chunk decodes to
//! its id, a block map hashes to its point record's digest, opens and decodes, a point record
//! opens, decodes and is the point its key names. Over any [`Backend`], so that the store
//! checks what a primary holds and a replicated store what its secondary holds the same way.
//!
//! Every object but chunks and the config is *opened* with the vault's codec before it is
//! decoded ([`open`]): an encrypted vault's objects are sealed, bound to their key path, and
//! one that fails to open (altered, moved from another key, or a plain object planted in an
//! encrypted vault) is corrupt exactly as one that fails its checksum; a plain vault's objects
//! are read as they always were (a sealed one there is refused too).

use std::borrow::Cow;

use blockvault_core::{
    BlockMap, ChunkCodec, ChunkDecoder, ChunkId, DiskName, MapDecoder, ObjectOpener, PointId,
    RecoveryPoint, SealedObject, VmName,
};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::{cpu, layout};

/// Decodes chunk `id` with `codec` and checks it against its id, on the rayon pool.
pub(crate) async fn decode_chunk(
    codec: &ChunkCodec,
    encoded: Bytes,
    id: ChunkId,
) -> Result<Vec<u8>> {
    let codec = codec.clone();
    cpu::run(move || {
        let mut out = Vec::new();
        ChunkDecoder::new()
            .and_then(|mut d| codec.decode(&mut d, &encoded, id, &mut out))
            .map_err(|source| Error::ChunkCorrupt { id, source })?;
        Ok(out)
    })
    .await
}

/// The encoding held in `stored`, the object at `key`, opened with the vault's `codec` (as it is
/// in a plain vault). The error is the object's corruption: callers wrap it in their variant.
pub(crate) fn open<'a>(
    codec: &ChunkCodec,
    key: &Path,
    stored: &'a [u8],
) -> std::result::Result<Cow<'a, [u8]>, blockvault_core::Error> {
    codec.open_object(key.as_ref(), stored)
}

/// The block map of `disk` in `point` as `from` holds it, checked, opened and decoded as its
/// bytes arrive: the encoding is never held whole beside the map (at a million blocks each is
/// 32 MB).
pub(crate) async fn read_map(
    from: &dyn Backend,
    codec: &ChunkCodec,
    vm: &VmName,
    point: &PointId,
    disk: &DiskName,
    digest: Option<&str>,
) -> Result<BlockMap> {
    let key = layout::map(vm, point, disk);
    let (size, mut pieces) = from
        .get_pieces(&key)
        .await?
        .ok_or_else(|| map_missing(vm, point, disk))?;
    let mut reader = MapReader::new(codec, &key, size);
    while let Some(piece) = pieces.try_next().await? {
        reader.feed(&piece);
    }
    reader.finish(vm, point, disk, digest)
}

/// [`read_map`] with the map's bytes as well, to heal another copy with.
pub(crate) async fn read_map_bytes(
    from: &dyn Backend,
    codec: &ChunkCodec,
    vm: &VmName,
    point: &PointId,
    disk: &DiskName,
    digest: Option<&str>,
) -> Result<(BlockMap, Bytes)> {
    let key = layout::map(vm, point, disk);
    let bytes = from
        .get(&key)
        .await?
        .ok_or_else(|| map_missing(vm, point, disk))?;
    let mut reader = MapReader::new(codec, &key, bytes.len() as u64);
    reader.feed(&bytes);
    Ok((reader.finish(vm, point, disk, digest)?, bytes))
}

/// The point record as `from` holds it, opened and checked, with its stored bytes.
pub(crate) async fn read_point(
    from: &dyn Backend,
    codec: &ChunkCodec,
    vm: &VmName,
    id: &PointId,
) -> Result<(RecoveryPoint, Bytes)> {
    let key = layout::point(vm, id);
    let bytes = from.get(&key).await?.ok_or_else(|| Error::PointMissing {
        vm: vm.clone(),
        point: id.clone(),
    })?;
    let corrupt = |source| Error::PointCorrupt {
        vm: vm.clone(),
        point: id.clone(),
        source,
    };
    let point =
        RecoveryPoint::decode(&open(codec, &key, &bytes).map_err(corrupt)?).map_err(corrupt)?;
    // A record under another point's key (copied or renamed by hand) would pass for that
    // point: it names another point's maps.
    if &point.vm != vm || &point.id != id {
        return Err(corrupt(blockvault_core::Error::Malformed {
            what: "recovery point",
            reason: format!("the record is of point {} of VM {}", point.id, point.vm),
        }));
    }
    Ok((point, bytes))
}

fn map_missing(vm: &VmName, point: &PointId, disk: &DiskName) -> Error {
    Error::MapMissing {
        vm: vm.clone(),
        point: point.clone(),
        disk: disk.clone(),
    }
}

/// A block map read as it arrives: hashed as stored (for the point record's digest), opened
/// with the vault's codec, decoded.
struct MapReader {
    /// `None` for a plain vault, whose maps are stored as encoded.
    opener: Option<ObjectOpener>,
    /// The first bytes, until there are enough to tell a sealed object from a plain one.
    head: Option<Vec<u8>>,
    decoder: MapDecoder,
    digest: blake3::Hasher,
    /// What the opener gave for the last piece.
    plain: Vec<u8>,
    /// Why the stored bytes do not open: nothing more is decoded.
    failed: Option<blockvault_core::Error>,
}

const WHAT: &str = "block map";

impl MapReader {
    fn new(codec: &ChunkCodec, key: &Path, size: u64) -> MapReader {
        MapReader {
            opener: codec.object_opener(key.as_ref()),
            head: Some(Vec::new()),
            decoder: MapDecoder::new(Some(size)),
            digest: blake3::Hasher::new(),
            plain: Vec::new(),
            failed: None,
        }
    }

    fn feed(&mut self, stored: &[u8]) {
        self.digest.update(stored);
        let Some(mut head) = self.head.take() else {
            self.pass(stored);
            return;
        };
        if head.is_empty() && stored.len() >= SealedObject::MAGIC.len() {
            self.check_sealing(stored);
            self.pass(stored);
            return;
        }
        head.extend_from_slice(stored);
        if head.len() < SealedObject::MAGIC.len() {
            self.head = Some(head);
            return;
        }
        self.check_sealing(&head);
        self.pass(&head);
    }

    /// A sealed map in a plain vault, or a plain one in an encrypted vault, is refused.
    fn check_sealing(&mut self, start: &[u8]) {
        let sealed = SealedObject::is_sealed(start);
        match (&self.opener, sealed) {
            (Some(_), false) => {
                self.failed = Some(blockvault_core::Error::NotEncrypted { what: WHAT });
            }
            (None, true) => self.failed = Some(blockvault_core::Error::Encrypted { what: WHAT }),
            _ => {}
        }
    }

    fn pass(&mut self, stored: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        match &mut self.opener {
            None => self.decoder.feed(stored),
            Some(opener) => {
                self.plain.clear();
                match opener.push(stored, &mut self.plain) {
                    Ok(()) => self.decoder.feed(&self.plain),
                    Err(e) => self.failed = Some(e),
                }
            }
        }
    }

    /// The map, if it hashes to `digest` (when given), opens and decodes. A digest that does
    /// not match is named before anything the decode found: it says the whole object is not
    /// the one the point record wrote.
    fn finish(
        mut self,
        vm: &VmName,
        point: &PointId,
        disk: &DiskName,
        digest: Option<&str>,
    ) -> Result<BlockMap> {
        let corrupt = |reason: String| Error::MapCorrupt {
            vm: vm.clone(),
            point: point.clone(),
            disk: disk.clone(),
            reason,
        };
        if let Some(expected) = digest {
            let actual = self.digest.finalize().to_hex();
            if actual.as_str() != expected {
                return Err(corrupt(format!(
                    "its digest {} does not match the point record's {}",
                    &actual[..16],
                    &expected[..expected.len().min(16)]
                )));
            }
        }
        // An object shorter than the magic: whatever it is, it is checked now.
        if let Some(head) = self.head.take() {
            self.check_sealing(&head);
            self.pass(&head);
        }
        if let (None, Some(opener)) = (&self.failed, self.opener.take()) {
            self.plain.clear();
            match opener.finish(&mut self.plain) {
                Ok(()) => self.decoder.feed(&self.plain),
                Err(e) => self.failed = Some(e),
            }
        }
        if let Some(e) = self.failed {
            return Err(corrupt(e.to_string()));
        }
        self.decoder.finish().map_err(|e| corrupt(e.to_string()))
    }
}
