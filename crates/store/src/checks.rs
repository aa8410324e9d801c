//! The integrity checks of every read (see "Integrity" in the crate docs): a chunk decodes to
//! its id, a block map hashes to its point record's digest and decodes, a point record decodes
//! and is the point its key names. Over any [`Backend`], so that the store checks what a
//! primary holds and a replicated store what its secondary holds the same way.

use blockvault_core::{
    BlockMap, ChunkCodec, ChunkDecoder, ChunkId, DiskName, MapDecoder, PointId, RecoveryPoint,
    VmName,
};
use bytes::Bytes;
use futures::TryStreamExt;

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

/// The block map of `disk` in `point` as `from` holds it, checked, decoded as its bytes arrive:
/// the encoding is never held whole beside the map (at a million blocks each is 32 MB).
pub(crate) async fn read_map(
    from: &dyn Backend,
    vm: &VmName,
    point: &PointId,
    disk: &DiskName,
    digest: Option<&str>,
) -> Result<BlockMap> {
    let (size, mut pieces) = from
        .get_pieces(&layout::map(vm, point, disk))
        .await?
        .ok_or_else(|| map_missing(vm, point, disk))?;
    let mut reader = MapReader::new(size);
    while let Some(piece) = pieces.try_next().await? {
        reader.feed(&piece);
    }
    reader.finish(vm, point, disk, digest)
}

/// [`read_map`] with the map's bytes as well, to heal another copy with.
pub(crate) async fn read_map_bytes(
    from: &dyn Backend,
    vm: &VmName,
    point: &PointId,
    disk: &DiskName,
    digest: Option<&str>,
) -> Result<(BlockMap, Bytes)> {
    let bytes = from
        .get(&layout::map(vm, point, disk))
        .await?
        .ok_or_else(|| map_missing(vm, point, disk))?;
    let mut reader = MapReader::new(bytes.len() as u64);
    reader.feed(&bytes);
    Ok((reader.finish(vm, point, disk, digest)?, bytes))
}

/// The point record as `from` holds it, checked, with its bytes.
pub(crate) async fn read_point(
    from: &dyn Backend,
    vm: &VmName,
    id: &PointId,
) -> Result<(RecoveryPoint, Bytes)> {
    let bytes = from
        .get(&layout::point(vm, id))
        .await?
        .ok_or_else(|| Error::PointMissing {
            vm: vm.clone(),
            point: id.clone(),
        })?;
    let corrupt = |source| Error::PointCorrupt {
        vm: vm.clone(),
        point: id.clone(),
        source,
    };
    let point = RecoveryPoint::decode(&bytes).map_err(corrupt)?;
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

/// A block map read as it arrives: decoded, and hashed for the point record's digest.
struct MapReader {
    decoder: MapDecoder,
    digest: blake3::Hasher,
}

impl MapReader {
    fn new(size: u64) -> MapReader {
        MapReader {
            decoder: MapDecoder::new(Some(size)),
            digest: blake3::Hasher::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
        self.decoder.feed(bytes);
    }

    /// The map, if it hashes to `digest` (when given) and decodes. A digest that does not
    /// match is named before anything the decode found: it says the whole object is not the
    /// one the point record wrote.
    fn finish(
        self,
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
        self.decoder.finish().map_err(|e| corrupt(e.to_string()))
    }
}
