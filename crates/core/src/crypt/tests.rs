//! The keyed codec and sealed objects: round trips, and every way a stored object can be
//! altered, moved, swapped, cut or planted failing to open.

use proptest::prelude::*;

use crate::{ChunkCodec, ChunkDecoder, ChunkId, Error, MasterKey, SealedObject};

fn text(len: usize) -> Vec<u8> {
    b"guest file /etc/shadow root:x:0:0 MARKER-7f3a "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn decode(codec: &ChunkCodec, object: &[u8], id: ChunkId) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    codec.decode(&mut ChunkDecoder::new().expect("dec"), object, id, &mut out)?;
    Ok(out)
}

#[test]
fn a_keyed_chunk_round_trips_and_holds_no_plaintext() {
    let codec = ChunkCodec::keyed(&MasterKey::generate());
    for block in [
        text(1 << 16),
        text(100),
        (0..5000u32).map(|i| (i * 7919) as u8).collect(),
    ] {
        let (id, object) = codec.encode_one(&block).expect("encode");
        assert_eq!(object[11], 1, "scheme byte");
        assert!(
            !object.windows(10).any(|w| w == b"MARKER-7f3"),
            "plaintext in the object"
        );
        assert_eq!(decode(&codec, &object, id).expect("decode"), block);
        // Two encodings of one block differ (a fresh salt each), and both decode.
        let again = codec.encode(&mut crate::ChunkEncoder::new().expect("enc"), id, &block);
        assert_ne!(again, object);
        assert_eq!(decode(&codec, &again, id).expect("decode"), block);
    }
    assert_eq!(codec.id(&[0u8; 4096]), ChunkId::ZERO);
}

#[test]
fn ids_are_keyed_so_two_vaults_and_the_plain_codec_disagree() {
    let block = text(4096);
    let (a, b) = (
        ChunkCodec::keyed(&MasterKey::generate()),
        ChunkCodec::keyed(&MasterKey::generate()),
    );
    assert_ne!(a.id(&block), b.id(&block));
    assert_ne!(a.id(&block), ChunkCodec::plain().id(&block));
    assert_eq!(a.id(&block), a.id(&block));
    assert_ne!(a, b);
    assert_eq!(a, a.clone());
}

#[test]
fn every_flipped_bit_of_a_keyed_chunk_fails_to_decode() {
    let codec = ChunkCodec::keyed(&MasterKey::generate());
    let block = text(3000);
    let (id, object) = codec.encode_one(&block).expect("encode");
    for byte in 0..object.len() {
        let mut bad = object.clone();
        bad[byte] ^= 1 << (byte % 8);
        assert!(
            decode(&codec, &bad, id).is_err(),
            "flip at byte {byte} decoded"
        );
    }
    let err = decode(&codec, &object[..object.len() - 1], id).expect_err("cut");
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
}

#[test]
fn a_chunk_swapped_for_another_of_the_same_vault_is_refused() {
    let codec = ChunkCodec::keyed(&MasterKey::generate());
    let (id_a, _) = codec.encode_one(&text(4096)).expect("a");
    let (_, object_b) = codec.encode_one(&text(4095)).expect("b");
    let err = decode(&codec, &object_b, id_a).expect_err("swapped");
    assert!(
        matches!(err, Error::AuthenticationFailed { what: "chunk" }),
        "{err}"
    );
    assert_eq!(err.kind(), crate::ErrorKind::Integrity);
}

#[test]
fn plain_and_keyed_objects_do_not_pass_for_each_other() {
    let keyed = ChunkCodec::keyed(&MasterKey::generate());
    let block = text(4096);
    let (plain_id, plain_object) = ChunkCodec::plain().encode_one(&block).expect("plain");
    let err = decode(&keyed, &plain_object, keyed.id(&block)).expect_err("planted");
    assert!(matches!(err, Error::NotEncrypted { .. }), "{err}");
    let (_, sealed) = keyed.encode_one(&block).expect("keyed");
    let err = decode(&ChunkCodec::plain(), &sealed, plain_id).expect_err("plain reads sealed");
    assert!(
        matches!(err, Error::UnsupportedEncryption { scheme: 1, .. }),
        "{err}"
    );
    // Another vault's key opens nothing.
    let other = ChunkCodec::keyed(&MasterKey::generate());
    let (id, object) = keyed.encode_one(&block).expect("keyed");
    assert!(matches!(
        decode(&other, &object, id),
        Err(Error::AuthenticationFailed { .. })
    ));
}

fn sealed_sizes() -> [usize; 7] {
    let s = SealedObject::SEGMENT;
    [0, 1, 1000, s - 1, s, s + 1, 2 * s + 17]
}

#[test]
fn sealed_objects_round_trip_whole_and_in_pieces() {
    let codec = ChunkCodec::keyed(&MasterKey::generate());
    for len in sealed_sizes() {
        let plain = text(len);
        let stored = codec.seal_object("points/vm/p1", plain.clone());
        assert!(SealedObject::is_sealed(&stored));
        if len >= 10 {
            assert!(!stored.windows(10).any(|w| w == b"MARKER-7f3"));
        }
        assert_eq!(
            &*codec.open_object("points/vm/p1", &stored).expect("open"),
            &plain[..]
        );
        // Pushed in odd pieces, sealed and opened alike.
        let mut sealer = codec.object_sealer("maps/vm/p1/d.map").expect("keyed");
        let mut streamed = Vec::new();
        for piece in plain.chunks(77_777) {
            sealer.push(piece, &mut streamed);
        }
        sealer.finish(&mut streamed);
        let mut opener = codec.object_opener("maps/vm/p1/d.map").expect("keyed");
        let mut opened = Vec::new();
        for piece in streamed.chunks(65_537) {
            opener.push(piece, &mut opened).expect("push");
        }
        opener.finish(&mut opened).expect("finish");
        assert_eq!(opened, plain, "len {len}");
    }
}

#[test]
fn a_sealed_object_altered_cut_or_moved_fails_to_open() {
    let codec = ChunkCodec::keyed(&MasterKey::generate());
    let plain = text(2 * SealedObject::SEGMENT + 5);
    let stored = codec.seal_object("points/vm/p1", plain);
    let open = |bytes: &[u8], path: &str| codec.open_object(path, bytes).map(|b| b.len());
    for at in [
        0,
        9,
        10,
        12,
        20,
        40,
        41,
        SealedObject::SEGMENT + 60,
        stored.len() - 1,
    ] {
        let mut bad = stored.clone();
        bad[at] ^= 0x40;
        assert!(open(&bad, "points/vm/p1").is_err(), "flip at {at} opened");
    }
    // Cut at a segment boundary: the last segment's flag is missing.
    let boundary = SealedObject::HEADER_LEN + SealedObject::SEGMENT + 16;
    let err = open(&stored[..boundary], "points/vm/p1").expect_err("cut");
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
    for cut in [0, 5, 39, 41, stored.len() - 16] {
        assert!(
            open(&stored[..cut], "points/vm/p1").is_err(),
            "cut at {cut}"
        );
    }
    let err = open(&stored, "points/other/p1").expect_err("moved");
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
    // A plain object planted in an encrypted vault, and a sealed one in a plain vault.
    let err = open(b"BVPOINT\0 plain", "points/vm/p1").expect_err("planted");
    assert!(matches!(err, Error::NotEncrypted { .. }), "{err}");
    let err = ChunkCodec::plain()
        .open_object("points/vm/p1", &stored)
        .expect_err("plain");
    assert!(matches!(err, Error::Encrypted { .. }), "{err}");
    // The plain codec stores encodings as they are.
    assert_eq!(
        ChunkCodec::plain().seal_object("k", b"abc".to_vec()),
        b"abc"
    );
}

proptest! {
    #[test]
    fn any_block_round_trips_keyed(data in proptest::collection::vec(any::<u8>(), 1..3000), rep in 1usize..20) {
        let codec = ChunkCodec::keyed(&MasterKey::generate());
        let block: Vec<u8> = data.iter().copied().cycle().take(data.len() * rep).collect();
        let (id, object) = codec.encode_one(&block).expect("encode");
        prop_assert_eq!(decode(&codec, &object, id).expect("decode"), block);
    }
}
