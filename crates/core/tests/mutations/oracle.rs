//! What must hold of every decoder, whatever bytes it is given: it returns, without panicking,
//! either an error that names the object, or a value that encodes again to bytes that decode
//! to the same value. Block maps are also decoded in pieces, with true and false size hints,
//! and by a second decoder written from the format's table alone: all must agree.
//!
//! Each function panics when something does not hold. Shared with the fuzz targets in
//! `fuzz/` (included there by path), so the fuzzer and the mutation test check one thing.

use std::fmt::Debug;

use blockvault_core::{
    BlockMap, BlockSize, ChunkCodec, ChunkDecoder, ChunkEncoder, ChunkId, ChunkObject, Error,
    ForgottenChunks, GcEpoch, LeaseRecord, MapDecoder, ProtectionRecord, RecoveryPoint,
    SoftDeleteMarker, VaultConfig,
};

/// Maps of at most this many blocks are also walked block by block, and written in format
/// version 1 (32 bytes a block, holes included); larger ones only through their data blocks.
const WALK_LIMIT: usize = 1 << 12;

/// An error must say what it was decoding, and "truncated" only of what is short.
fn names(err: &Error, what: &str) {
    let message = err.to_string();
    assert!(
        message.contains(what),
        "the error does not name the {what}: {message}"
    );
    if let Error::Truncated {
        expected, actual, ..
    } = err
    {
        assert!(
            actual < expected,
            "called truncated, but long enough: {message}"
        );
    }
}

/// A chunk object: decodes to the length its header gives, and the block decoded encodes to
/// a chunk that decodes back to it, verified against its id.
pub fn chunk(bytes: &[u8]) {
    let mut decoder = ChunkDecoder::new().expect("a zstd context");
    let header = ChunkObject::uncompressed_len(bytes);
    let mut block = Vec::new();
    let decoded = decoder.decode_into(bytes, &mut block);
    // A chunk is one block: whatever its header says, no more is reserved.
    assert!(
        block.capacity() <= BlockSize::MAX as usize,
        "{} bytes reserved for a chunk of {} ({decoded:?})",
        block.capacity(),
        bytes.len()
    );
    match decoded {
        Ok(()) => {
            let len = header.expect("a chunk that decodes has a sound header");
            assert_eq!(len, block.len(), "the header's length against the block's");
            let id = ChunkId::hash(&block);
            let mut again = Vec::new();
            let codec = ChunkCodec::plain();
            codec
                .decode(&mut decoder, bytes, id, &mut again)
                .expect("a chunk verifies against the hash of what it decodes to");
            let mut encoder = ChunkEncoder::new().expect("a zstd context");
            let encoded = codec.encode(&mut encoder, id, &block);
            codec
                .decode(&mut decoder, &encoded, id, &mut again)
                .expect("the block encoded again decodes");
            assert!(again == block, "the block encoded again decodes to another");
        }
        Err(e) => {
            names(&e, "chunk");
            if let Err(h) = header {
                // The header is checked first: its error is the decode's.
                assert_eq!(h.to_string(), e.to_string());
            }
        }
    }
}

/// A block map, decoded whole, in pieces (several splits and size hints) and by the reference
/// decoder; returns the whole decode's result.
pub fn block_map(bytes: &[u8]) -> Result<BlockMap, Error> {
    let whole = BlockMap::decode(bytes);
    let len = bytes.len();
    let mut splits: Vec<Vec<usize>> = vec![
        vec![],
        vec![0, 1, 95, 96, 97],
        (0..len).step_by(7).collect(),
        (0..len).step_by(32).map(|at| at + 1).collect(),
    ];
    if len <= 1024 {
        splits.push((0..len).collect());
    }
    let hints = [
        Some(len as u64),
        None,
        Some(0),
        Some(len as u64 / 2),
        Some(u64::MAX),
    ];
    for (k, cuts) in splits.iter().enumerate() {
        let hint = hints[k % hints.len()];
        block_map_split(bytes, &whole, cuts, hint);
    }
    if whole.is_ok() {
        block_map_split(bytes, &whole, &splits[2], Some(u64::MAX / 2));
    }
    let reference = reference::decode(bytes);
    match (&whole, &reference) {
        (Ok(map), Some(r)) => r.agrees(map),
        (Err(e), None) => names(e, "block map"),
        (Ok(map), None) => panic!("decoded to {map:?}; the reference refuses it"),
        (Err(e), Some(r)) => panic!("refused ({e}); the reference reads {r:?}"),
    }
    if let Ok(map) = &whole {
        map_holds_together(map);
    }
    whole
}

/// `bytes` fed to a [`MapDecoder`] in pieces ending at each of `cuts`, with size hint `hint`,
/// must decode as `whole` did: the same map, or the same error.
pub fn block_map_split(
    bytes: &[u8],
    whole: &Result<BlockMap, Error>,
    cuts: &[usize],
    hint: Option<u64>,
) {
    let mut decoder = MapDecoder::new(hint);
    let mut from = 0;
    for &cut in cuts {
        let cut = cut.clamp(from, bytes.len());
        decoder.feed(&bytes[from..cut]);
        from = cut;
    }
    decoder.feed(&bytes[from..]);
    let split = decoder.finish();
    match (whole, &split) {
        (Ok(a), Ok(b)) => assert!(
            a == b,
            "split at {cuts:?} (hint {hint:?}): {b:?}, not {a:?}"
        ),
        (Err(a), Err(b)) => assert_eq!(
            a.to_string(),
            b.to_string(),
            "split at {cuts:?} (hint {hint:?})"
        ),
        _ => panic!("split at {cuts:?} (hint {hint:?}): {split:?}; whole: {whole:?}"),
    }
}

/// A decoded map's views agree with each other, and it encodes (both versions, whole and in
/// pieces) to bytes that decode to it.
fn map_holds_together(map: &BlockMap) {
    let mut previous = None;
    let mut data = 0;
    for (index, id) in map.data() {
        assert!(index < map.len(), "data block {index} of {}", map.len());
        assert!(
            previous < Some(index),
            "data blocks out of order at {index}"
        );
        assert!(!id.is_zero(), "a data block with the zero id at {index}");
        assert_eq!(map.get(index), Some(id));
        previous = Some(index);
        data += 1;
    }
    assert_eq!(data, map.data_blocks());
    assert_eq!(data, map.data_ids().len());
    assert_eq!(map.get(map.len()), None);
    if !map.is_empty() {
        let last = map.len() - 1;
        assert!(map.len_of(last) > 0 && map.len_of(last) as u64 <= map.block_size().bytes());
        assert_eq!(
            map.offset_of(last) + map.len_of(last) as u64,
            map.disk_size()
        );
    }
    if map.len() <= WALK_LIMIT {
        assert_eq!(map.iter().count(), map.len());
        let ids: Vec<ChunkId> = map.iter().collect();
        let rebuilt = BlockMap::from_ids(
            map.disk_size(),
            map.block_size(),
            map.created(),
            ids.clone(),
        )
        .expect("a map's own ids build it again");
        assert!(&rebuilt == map, "built from its ids: {rebuilt:?}");
        let v1 = BlockMap::decode(&map.encode_v1()).expect("version 1 of a decoded map");
        assert!(&v1 == map, "through version 1: {v1:?}");
    }
    let encoded = map.encode();
    assert_eq!(encoded.len() as u64, map.encoded_len());
    let again = BlockMap::decode(&encoded).expect("a decoded map encodes to a map");
    assert!(&again == map, "encoded again: {again:?}");
    let mut encoder = map.encoder();
    let mut pieces = Vec::new();
    while !encoder.is_done() {
        let mut piece = Vec::new();
        encoder.fill(&mut piece, 50);
        assert!(!piece.is_empty(), "the encoder makes no progress");
        pieces.extend_from_slice(&piece);
    }
    assert!(pieces == encoded, "the pieces are not the encoding");
}

/// The JSON-bodied records, through one function.
trait Record: Sized + PartialEq + Debug {
    const WHAT: &'static str;
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, Error>;
}

macro_rules! record {
    ($type:ty, $what:literal) => {
        impl Record for $type {
            const WHAT: &'static str = $what;
            fn encode(&self) -> Vec<u8> {
                <$type>::encode(self)
            }
            fn decode(bytes: &[u8]) -> Result<Self, Error> {
                <$type>::decode(bytes)
            }
        }
    };
}

record!(RecoveryPoint, "recovery point");
record!(VaultConfig, "vault config");
record!(LeaseRecord, "lease");
record!(GcEpoch, "gc epoch");
record!(SoftDeleteMarker, "soft-delete marker");
record!(ProtectionRecord, "protection record");

/// A record that decodes encodes to bytes that decode to it, and always to the same bytes.
fn record<T: Record>(bytes: &[u8]) -> Option<T> {
    match T::decode(bytes) {
        Ok(value) => {
            // The encryption scheme and the reserved byte are 0 in what this build reads.
            assert_eq!(
                bytes[10..12],
                [0, 0],
                "{value:?} read with header bytes 10..12 set"
            );
            let encoded = value.encode();
            let again = T::decode(&encoded)
                .unwrap_or_else(|e| panic!("{value:?} encoded again does not decode: {e}"));
            assert_eq!(again, value, "encoded again");
            assert!(again.encode() == encoded, "encoded twice, two encodings");
            Some(value)
        }
        Err(e) => {
            names(&e, T::WHAT);
            None
        }
    }
}

pub fn point(bytes: &[u8]) {
    record::<RecoveryPoint>(bytes);
}

/// A vault config; a single vault that is no replica is written as version 1, others as 2.
pub fn vault_config(bytes: &[u8]) {
    if let Some(config) = record::<VaultConfig>(bytes) {
        let version = u16::from_le_bytes([config.encode()[8], config.encode()[9]]);
        let single = config.redundancy.is_single() && config.replica_of.is_none();
        assert_eq!(version, if single { 1 } else { 2 }, "{config:?}");
    }
}

pub fn lease(bytes: &[u8]) {
    record::<LeaseRecord>(bytes);
}

pub fn gc_epoch(bytes: &[u8]) {
    record::<GcEpoch>(bytes);
}

pub fn soft_delete(bytes: &[u8]) {
    record::<SoftDeleteMarker>(bytes);
}

pub fn protection(bytes: &[u8]) {
    record::<ProtectionRecord>(bytes);
}

/// Forgotten chunks have one encoding per value: what decodes encodes to the very bytes.
pub fn forgotten(bytes: &[u8]) {
    match ForgottenChunks::decode(bytes) {
        Ok(value) => {
            assert!(value.previous.as_ref().is_none_or(|p| !p.is_empty()));
            assert!(value.encode() == bytes, "{value:?} encodes to other bytes");
        }
        Err(e) => names(&e, "forgotten chunks"),
    }
}

/// A block map decoder written from the format's table in `BlockMap`'s docs, the whole buffer
/// at once and nothing shared with the crate's decoder: whether a map is sound, and what it
/// holds. Errors are not told apart, only refusal.
mod reference {
    use blockvault_core::{BlockMap, ChunkId};
    use jiff::Timestamp;

    #[derive(Debug)]
    pub struct Map {
        disk_size: u64,
        block_size: u64,
        created_ms: i64,
        count: u64,
        /// The blocks that hold data: (index, id).
        data: Vec<(u64, ChunkId)>,
    }

    impl Map {
        pub fn agrees(&self, map: &BlockMap) {
            assert_eq!(map.disk_size(), self.disk_size);
            assert_eq!(map.block_size().bytes(), self.block_size);
            assert_eq!(map.created().as_millisecond(), self.created_ms);
            assert_eq!(map.len() as u64, self.count);
            assert_eq!(map.data_blocks(), self.data.len());
            for ((index, id), (r_index, r_id)) in map.data().zip(&self.data) {
                assert_eq!((index as u64, id), (*r_index, *r_id));
            }
        }
    }

    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }

    fn id_at(b: &[u8], at: usize) -> Option<ChunkId> {
        Some(ChunkId::from_bytes(b.get(at..at + 32)?.try_into().ok()?))
    }

    pub fn decode(bytes: &[u8]) -> Option<Map> {
        let header = bytes.get(..96)?;
        let body = &bytes[96..];
        if &header[..8] != b"BVBLKMAP" || header[10] != 0 || header[11] != 0 {
            return None;
        }
        let version = u16::from_le_bytes([header[8], header[9]]);
        let reserved = match version {
            1 => 40..64,
            2 => 48..64,
            _ => return None,
        };
        if header[reserved].iter().any(|&b| b != 0) {
            return None;
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header[..64]);
        hasher.update(body);
        if hasher.finalize().as_bytes() != &header[64..96] {
            return None;
        }
        let block_size = u64::from(u32::from_le_bytes(header[12..16].try_into().ok()?));
        if !block_size.is_power_of_two() || !(64 << 10..=16 << 20).contains(&block_size) {
            return None;
        }
        let disk_size = u64_at(header, 16)?;
        let created_ms = u64_at(header, 24)? as i64;
        // Any millisecond that is a time (jiff's `from_millisecond` refuses the last second).
        Timestamp::from_nanosecond(i128::from(created_ms) * 1_000_000).ok()?;
        let count = u64_at(header, 32)?;
        if count != disk_size.div_ceil(block_size) {
            return None;
        }
        let mut data = Vec::new();
        if version == 1 {
            if body.len() as u64 != count.checked_mul(32)? {
                return None;
            }
            for (index, at) in (0..body.len()).step_by(32).enumerate() {
                data.push((index as u64, id_at(body, at)?));
            }
        } else {
            let runs = u64_at(header, 40)?;
            let (mut at, mut index) = (0usize, 0u64);
            for _ in 0..runs {
                index = index.checked_add(u64_at(body, at)?)?;
                let ids = u64_at(body, at + 8)?;
                at += 16;
                // Every id is in the body: the count is bounded by what is there.
                if ids > (body.len() - at.min(body.len())) as u64 / 32 {
                    return None;
                }
                for _ in 0..ids {
                    data.push((index, id_at(body, at)?));
                    index = index.checked_add(1)?;
                    at += 32;
                }
            }
            if index != count || at != body.len() {
                return None;
            }
        }
        data.retain(|(_, id)| !id.is_zero());
        Some(Map {
            disk_size,
            block_size,
            created_ms,
            count,
            data,
        })
    }
}
