//! The format fixtures in `testdata/formats/`: every version this build reads must keep
//! decoding to the same values, encoding must keep producing the same bytes, and each corrupt
//! fixture must fail with its own error.
//!
//! To (re)write the fixtures after a deliberate format change, bump the format version, add a
//! new `vN/` directory, and run `BLOCKVAULT_WRITE_FIXTURES=1 cargo test -p blockvault-tests
//! fixtures`. Never rewrite an existing version's files.

use std::path::PathBuf;

use blockvault_core::{
    BlockMap, BlockSize, ChunkCodec, ChunkDecoder, ChunkEncoder, ChunkId, ChunkObject, ChunkSet,
    Codec, Consistency, DiskName, DiskRecord, Error, ForgottenChunks, PointId, PointStats,
    RecoveryPoint, VaultConfig, VmName,
};
use jiff::Timestamp;

pub(crate) fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/formats")
}

pub(crate) fn created() -> Timestamp {
    "2026-11-23T10:00:00.125Z".parse().expect("ts")
}

fn map_v1() -> BlockMap {
    let bs = BlockSize::new(64 << 10).expect("bs");
    let mut map = BlockMap::zeroed(5 * (64 << 10) + 100, bs, created());
    map.set(1, ChunkId::of(b"block one"));
    map.set(5, ChunkId::of(b"the tail"));
    map
}

pub(crate) fn text_block() -> Vec<u8> {
    b"blockvault fixture text block. "
        .iter()
        .copied()
        .cycle()
        .take(64 << 10)
        .collect()
}

fn noise_block() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn point_v1() -> RecoveryPoint {
    let time = created();
    RecoveryPoint {
        vm: VmName::new("web01").expect("vm"),
        id: "20261123-100000-1f2a".parse::<PointId>().expect("id"),
        time,
        consistency: Consistency::CrashConsistent,
        parent: Some("20261122-100000-0003".parse().expect("id")),
        disks: vec![DiskRecord {
            name: DiskName::new("root.img").expect("disk"),
            source: "/var/lib/vms/web01/root.img".into(),
            size: 5 * (64 << 10) + 100,
            block_size: BlockSize::new(64 << 10).expect("bs"),
            map_digest: blake3::hash(&map_v1().encode_v1()).to_hex().to_string(),
            blocks: 6,
            data_blocks: 2,
            format: Default::default(),
        }],
        stats: PointStats {
            bytes_scanned: 393316,
            bytes_changed: 65636,
            bytes_stored: 812,
            chunks_stored: 2,
            capture: None,
        },
        retain_until: None,
        vault: None,
    }
}

fn config_v1() -> VaultConfig {
    VaultConfig {
        id: "0123456789abcdef".into(),
        created: created(),
        default_block_size: BlockSize::new(4 << 20)
            .expect("4 MiB, the default when the fixture was made"),
        redundancy: Default::default(),
        replica_of: None,
        encryption: None,
    }
}

/// A GC sweep's candidates, shipped under its epoch.
fn forgotten_v1() -> ForgottenChunks {
    ForgottenChunks {
        previous: Some("0123456789abcdef".to_owned()),
        ids: ChunkSet::from_vec((0u8..3).map(|i| ChunkId::of(&[i])).collect()),
    }
}

/// Every fixture: its path under `testdata/formats/` and its bytes as this build makes them.
fn expected_files() -> Vec<(&'static str, Vec<u8>)> {
    let map = map_v1().encode_v1();
    let map_v2 = map_v1().encode();
    let codec = ChunkCodec::plain();
    let mut encoder = ChunkEncoder::new().expect("encoder");
    let (text, noise) = (text_block(), noise_block());
    let zstd_chunk = codec.encode(&mut encoder, codec.id(&text), &text);
    let raw_chunk = codec.encode(&mut encoder, codec.id(&noise), &noise);
    let point = point_v1().encode();
    let mut map_v99 = map.clone();
    map_v99[8] = 99;
    let mut map_flipped = map.clone();
    map_flipped[100] ^= 0x01;
    let mut map_magic = map.clone();
    map_magic[..8].copy_from_slice(b"NOTAMAP!");
    let mut chunk_codec = zstd_chunk.clone();
    chunk_codec[10] = 7;
    let mut point_flipped = point.clone();
    let last = point_flipped.len() - 10;
    point_flipped[last] ^= 0x04;
    vec![
        ("v1/block-map.bvmap", map.clone()),
        ("v1/chunk-zstd.bvchunk", zstd_chunk.clone()),
        ("v1/chunk-raw.bvchunk", raw_chunk),
        ("v1/point.bvpoint", point.clone()),
        ("v1/vault.config", config_v1().encode()),
        ("v1/gc-forgotten.bvforgot", forgotten_v1().encode()),
        ("v2/block-map.bvmap", map_v2.clone()),
        (
            "corrupt/block-map-v2-truncated.bvmap",
            map_v2[..map_v2.len() - 1].to_vec(),
        ),
        ("corrupt/block-map-bad-magic.bvmap", map_magic),
        ("corrupt/block-map-bad-checksum.bvmap", map_flipped),
        (
            "corrupt/block-map-truncated.bvmap",
            map[..map.len() - 32].to_vec(),
        ),
        ("corrupt/block-map-future-version.bvmap", map_v99),
        (
            "corrupt/chunk-truncated.bvchunk",
            zstd_chunk[..zstd_chunk.len() / 2].to_vec(),
        ),
        ("corrupt/chunk-unknown-codec.bvchunk", chunk_codec),
        ("corrupt/point-bad-checksum.bvpoint", point_flipped),
        (
            "corrupt/point-truncated.bvpoint",
            point[..point.len() - 1].to_vec(),
        ),
    ]
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

#[test]
fn fixtures_exist_or_are_written_on_request() {
    let write = std::env::var_os("BLOCKVAULT_WRITE_FIXTURES").is_some();
    for (name, bytes) in expected_files() {
        let path = dir().join(name);
        if write && !path.exists() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write fixture");
        }
        assert!(path.exists(), "missing fixture {}", path.display());
    }
}

#[test]
fn fixtures_of_every_version_decode_to_their_values() {
    assert_eq!(
        BlockMap::decode(&read("v1/block-map.bvmap")).expect("map"),
        map_v1()
    );
    // Version 2 (zero runs) of the same map.
    assert_eq!(
        BlockMap::decode(&read("v2/block-map.bvmap")).expect("map v2"),
        map_v1()
    );
    assert_eq!(
        RecoveryPoint::decode(&read("v1/point.bvpoint")).expect("point"),
        point_v1()
    );
    assert_eq!(
        VaultConfig::decode(&read("v1/vault.config")).expect("config"),
        config_v1()
    );
    assert_eq!(
        ForgottenChunks::decode(&read("v1/gc-forgotten.bvforgot")).expect("forgotten"),
        forgotten_v1()
    );
    let mut decoder = ChunkDecoder::new().expect("decoder");
    let mut out = Vec::new();
    let zstd = read("v1/chunk-zstd.bvchunk");
    assert_eq!(ChunkObject::codec(&zstd).expect("codec"), Codec::Zstd);
    let codec = ChunkCodec::plain();
    codec
        .decode(&mut decoder, &zstd, ChunkId::of(&text_block()), &mut out)
        .expect("zstd chunk");
    assert_eq!(out, text_block());
    let raw = read("v1/chunk-raw.bvchunk");
    assert_eq!(ChunkObject::codec(&raw).expect("codec"), Codec::None);
    codec
        .decode(&mut decoder, &raw, ChunkId::of(&noise_block()), &mut out)
        .expect("raw chunk");
    assert_eq!(out, noise_block());
}

#[test]
fn versioned_encodings_are_stable() {
    // zstd's output may change between library versions, so the zstd chunk is only decoded.
    for (name, bytes) in expected_files() {
        if !name.starts_with("corrupt/") && name != "v1/chunk-zstd.bvchunk" {
            assert!(
                read(name) == bytes,
                "{name}: this build encodes it differently"
            );
        }
    }
}

#[test]
fn corrupt_fixtures_fail_with_their_own_error() {
    let map = |name: &str| BlockMap::decode(&read(name)).expect_err(name);
    assert!(matches!(
        map("corrupt/block-map-bad-magic.bvmap"),
        Error::BadMagic { .. }
    ));
    assert!(matches!(
        map("corrupt/block-map-bad-checksum.bvmap"),
        Error::ChecksumMismatch { .. }
    ));
    assert!(matches!(
        map("corrupt/block-map-truncated.bvmap"),
        Error::Truncated { .. }
    ));
    assert!(matches!(
        map("corrupt/block-map-v2-truncated.bvmap"),
        Error::Truncated { .. }
    ));
    assert!(matches!(
        map("corrupt/block-map-future-version.bvmap"),
        Error::UnsupportedVersion {
            version: 99,
            supported: 2,
            ..
        }
    ));
    let mut decoder = ChunkDecoder::new().expect("decoder");
    let mut out = Vec::new();
    for name in [
        "corrupt/chunk-truncated.bvchunk",
        "corrupt/chunk-unknown-codec.bvchunk",
    ] {
        let err = decoder.decode_into(&read(name), &mut out).expect_err(name);
        assert!(
            matches!(err, Error::Malformed { what: "chunk", .. }),
            "{name}: {err}"
        );
    }
    let point = |name: &str| RecoveryPoint::decode(&read(name)).expect_err(name);
    assert!(matches!(
        point("corrupt/point-bad-checksum.bvpoint"),
        Error::ChecksumMismatch { .. }
    ));
    assert!(matches!(
        point("corrupt/point-truncated.bvpoint"),
        Error::Truncated { .. }
    ));
}
