//! The encrypted formats' fixtures in `testdata/formats/encrypted/`: a vault config (version
//! 3) with one key slot, a chunk sealed under its key (scheme 1), and a point record sealed
//! at its key path. Encryption is randomised (salts, the master key), so unlike the plain
//! fixtures these cannot be re-encoded byte for byte: they were written once, and every
//! later build must keep opening them with the passphrase below to the same values. A build
//! that changed how keys are derived, ids keyed or objects sealed fails here.
//!
//! Written with `BLOCKVAULT_WRITE_FIXTURES=1 cargo test -p blockvault-tests encrypted_fixtures`
//! when missing; never rewrite existing files.

use std::path::PathBuf;

use blockvault_core::{
    ChunkCodec, ChunkDecoder, ChunkId, Encryption, Error, Kdf, KeyHome, MasterKey, RecoveryPoint,
    SealedObject, VaultConfig,
};

use crate::fixtures::{created, dir, point_v1, text_block};

const PASSPHRASE: &[u8] = b"fixture passphrase";
const POINT_PATH: &str = "points/web01/20261123-100000-1f2a";

fn path(name: &str) -> PathBuf {
    dir().join("encrypted").join(name)
}

fn write_fixtures() {
    let master = MasterKey::generate();
    let kdf = Kdf::argon2id(8 * 1024, 1).expect("kdf");
    let encryption =
        Encryption::new(&master, PASSPHRASE, kdf, KeyHome::Vault, created()).expect("slot");
    let config = VaultConfig {
        id: "fedcba9876543210".into(),
        created: created(),
        default_block_size: blockvault_core::BlockSize::DEFAULT,
        redundancy: Default::default(),
        replica_of: None,
        encryption: Some(encryption),
    };
    let codec = ChunkCodec::keyed(&master);
    let (id, chunk) = codec.encode_one(&text_block()).expect("chunk");
    let point = codec.seal_object(POINT_PATH, point_v1().encode());
    std::fs::create_dir_all(path("")).expect("mkdir");
    std::fs::write(path("vault.config"), config.encode()).expect("config");
    std::fs::write(path("chunk.bvchunk"), chunk).expect("chunk");
    std::fs::write(path("chunk.id"), id.to_hex()).expect("id");
    std::fs::write(path("point.sealed"), point).expect("point");
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The codec the fixture vault's passphrase unlocks.
fn codec() -> (VaultConfig, ChunkCodec) {
    let config = VaultConfig::decode(&read("vault.config")).expect("config v3");
    let encryption = config.encryption.clone().expect("encrypted");
    let master = encryption
        .unlock(&encryption.slots, PASSPHRASE)
        .expect("the fixture passphrase opens its slot");
    assert_eq!(master.key_id(), encryption.key_id);
    (config, ChunkCodec::keyed(&master))
}

#[test]
fn encrypted_fixtures_exist_or_are_written_on_request() {
    if std::env::var_os("BLOCKVAULT_WRITE_FIXTURES").is_some() && !path("vault.config").exists() {
        write_fixtures();
    }
    for name in ["vault.config", "chunk.bvchunk", "chunk.id", "point.sealed"] {
        assert!(path(name).exists(), "missing fixture encrypted/{name}");
    }
}

#[test]
fn encrypted_fixtures_open_to_their_values() {
    let (config, codec) = codec();
    assert_eq!(
        u16::from_le_bytes([read("vault.config")[8], read("vault.config")[9]]),
        3
    );
    assert_eq!(config.id, "fedcba9876543210");
    // The chunk: its keyed id is still what this build computes for the block.
    let id_hex = String::from_utf8(read("chunk.id")).expect("utf-8");
    assert_eq!(codec.id(&text_block()).to_hex(), id_hex);
    assert_ne!(ChunkId::of(&text_block()).to_hex(), id_hex, "ids are keyed");
    let chunk = read("chunk.bvchunk");
    assert_eq!(chunk[11], 1, "encryption scheme 1");
    let mut out = Vec::new();
    codec
        .decode(
            &mut ChunkDecoder::new().expect("dec"),
            &chunk,
            codec.id(&text_block()),
            &mut out,
        )
        .expect("the chunk opens");
    assert_eq!(out, text_block());
    // The point record, at its key path.
    let sealed = read("point.sealed");
    assert!(SealedObject::is_sealed(&sealed));
    let plain = codec
        .open_object(POINT_PATH, &sealed)
        .expect("the record opens");
    assert_eq!(RecoveryPoint::decode(&plain).expect("point"), point_v1());
    // Elsewhere, or with another key, it does not.
    assert!(matches!(
        codec.open_object("points/web02/20261123-100000-1f2a", &sealed),
        Err(Error::AuthenticationFailed { .. })
    ));
    let stranger = ChunkCodec::keyed(&MasterKey::generate());
    assert!(stranger.open_object(POINT_PATH, &sealed).is_err());
}

#[test]
fn the_fixture_vault_refuses_a_wrong_passphrase() {
    let config = VaultConfig::decode(&read("vault.config")).expect("config");
    let encryption = config.encryption.expect("encrypted");
    assert!(matches!(
        encryption.unlock(&encryption.slots, b"fixture passphrase!"),
        Err(Error::WrongPassphrase { slots: 1 })
    ));
}
