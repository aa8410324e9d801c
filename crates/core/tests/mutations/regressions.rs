//! Decoder bugs the mutations and the fuzz targets found, each named after what broke.

use blockvault_core::{
    BlockMap, BlockSize, ChunkCodec, ChunkDecoder, ChunkEncoder, ChunkId, ChunkObject, ChunkSet,
    Codec, Error, ForgottenChunks, GcEpoch,
};
use jiff::Timestamp;

/// A map made in the last second jiff can represent (9999-12-30T22:00:00.001Z and later)
/// encoded its creation time as milliseconds that `Timestamp::from_millisecond` refuses: the
/// map was written and then read as malformed.
#[test]
fn a_map_made_in_the_last_second_of_time_reads_back() {
    for created in [Timestamp::MAX, Timestamp::MIN] {
        let mut map = BlockMap::zeroed(3 << 16, BlockSize::new(64 << 10).expect("bs"), created);
        map.set(1, ChunkId::of(b"one"));
        let decoded = BlockMap::decode(&map.encode()).expect("the map reads back");
        assert_eq!(decoded.created().as_millisecond(), created.as_millisecond());
        assert_eq!(
            decoded.data().collect::<Vec<_>>(),
            map.data().collect::<Vec<_>>()
        );
    }
}

/// A chunk's header gives the length of its block as a u32: a zstd chunk whose header said
/// 4 GiB had that much reserved for it before its payload was looked at (16 bytes of input,
/// 4 GiB of address space; a fuzzer's allocation limit stops there).
#[test]
fn a_chunk_claiming_more_than_a_block_is_refused_before_memory_is_reserved() {
    let mut chunk = encode(&b"text ".repeat(1000));
    assert_eq!(ChunkObject::codec(&chunk).expect("codec"), Codec::Zstd);
    for len in [BlockSize::MAX + 1, u32::MAX] {
        chunk[12..16].copy_from_slice(&len.to_le_bytes());
        let mut out = Vec::new();
        let err = ChunkDecoder::new()
            .expect("zstd")
            .decode_into(&chunk, &mut out)
            .expect_err("more than a block");
        assert!(
            matches!(err, Error::Malformed { what: "chunk", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("more than a block"), "{err}");
        assert!(
            out.capacity() < 1 << 20,
            "{} bytes reserved",
            out.capacity()
        );
        assert!(ChunkObject::uncompressed_len(&chunk).is_err());
    }
}

/// A raw chunk with bytes after its block was refused as "truncated: expected 49 bytes,
/// found 140": the error said the opposite of what was wrong.
#[test]
fn a_chunk_longer_than_its_header_says_is_not_called_truncated() {
    let mut chunk = encode(&[7, 1, 9]);
    assert_eq!(ChunkObject::codec(&chunk).expect("codec"), Codec::None);
    chunk.extend_from_slice(&[0; 5]);
    let err = ChunkDecoder::new()
        .expect("zstd")
        .decode_into(&chunk, &mut Vec::new())
        .expect_err("too long");
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("5 trailing bytes"), "{err}");
    chunk.truncate(18);
    let err = ChunkDecoder::new()
        .expect("zstd")
        .decode_into(&chunk, &mut Vec::new())
        .expect_err("too short");
    assert!(
        matches!(
            err,
            Error::Truncated {
                expected: 19,
                actual: 18,
                ..
            }
        ),
        "{err}"
    );
}

/// Forgotten chunks with a byte more than their count of ids takes were refused as
/// "truncated: expected 339 bytes, found 340".
#[test]
fn forgotten_chunks_longer_than_their_count_says_are_not_called_truncated() {
    let forgotten = ForgottenChunks {
        previous: Some("e1".to_owned()),
        ids: ChunkSet::from_vec(vec![ChunkId::of(b"a"), ChunkId::of(b"b")]),
    };
    let mut bytes = forgotten.encode();
    bytes.push(0);
    let split = bytes.len() - 32;
    let (body, digest) = bytes.split_at_mut(split);
    digest.copy_from_slice(blake3::hash(body).as_bytes());
    let err = ForgottenChunks::decode(&bytes).expect_err("too long");
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("1 bytes more than 2 ids"), "{err}");
}

/// The framed records (points, configs, leases, epochs, soft-delete markers) document header
/// byte 11 as "reserved, 0", as the block map does; the block map refused a non-zero one, the
/// framed records read it as if it were 0.
#[test]
fn a_record_with_its_reserved_header_byte_set_is_refused() {
    let epoch = GcEpoch {
        id: "e1".to_owned(),
        time: Timestamp::UNIX_EPOCH,
    };
    let mut bytes = epoch.encode();
    assert_eq!(GcEpoch::decode(&bytes).expect("sound"), epoch);
    bytes[11] = 1;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..16]);
    hasher.update(&bytes[48..]);
    bytes[16..48].copy_from_slice(hasher.finalize().as_bytes());
    let err = GcEpoch::decode(&bytes).expect_err("reserved byte set");
    assert!(
        matches!(
            err,
            Error::Malformed {
                what: "gc epoch",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("reserved"), "{err}");
}

/// `block` as the plain codec encodes it.
fn encode(block: &[u8]) -> Vec<u8> {
    let codec = ChunkCodec::plain();
    let mut encoder = ChunkEncoder::new().expect("zstd");
    codec.encode(&mut encoder, codec.id(block), block)
}
