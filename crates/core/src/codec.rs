//! The chunk codec: the one place a chunk id is computed and a chunk object encoded or decoded.

use std::borrow::Cow;
use std::sync::Arc;

use crate::crypt::VaultKeys;
use crate::{
    ChunkDecoder, ChunkEncoder, ChunkId, Error, MasterKey, ObjectOpener, ObjectSealer, Result,
    SealedObject, is_zero,
};

/// How a repository turns blocks into chunk ids and chunk objects, and objects back into
/// blocks: the only code that does (see "The chunk codec" in the crate docs).
///
/// Every writer and reader is handed its repository's codec: the scanner computes ids with
/// [`ChunkCodec::id`], the write session encodes new chunks with [`ChunkCodec::encode`], and
/// every read that uses a chunk's content (restore, the point reader, transfer, verify, the
/// store's read checks and resync) decodes it with [`ChunkCodec::decode`], which verifies it
/// against its id.
///
/// A codec is a value, cheap to clone and to pass to every rayon worker. Its schemes are a
/// closed set, like the encryption-scheme byte of the format that names them, so it is an enum
/// inside rather than a trait: one branch per block, no virtual call, no allocation beyond the
/// encoded object. The per-thread working state (zstd contexts, buffers) is kept apart in a
/// [`ChunkEncoder`] and a [`ChunkDecoder`], which hold no key, so a thread's state serves every
/// codec.
///
/// A plain vault uses [`ChunkCodec::plain`]; an encrypted one [`ChunkCodec::keyed`]: keyed
/// BLAKE3 ids and AES-256-GCM per object, bound to its id (see the `crypt` module docs). A
/// keyed codec also seals every other object of its vault ([`ChunkCodec::seal_object`],
/// [`ChunkCodec::open_object`]); for the plain codec those are the identity, so plain vaults
/// keep the exact bytes they always had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkCodec {
    scheme: Scheme,
}

#[derive(Clone, Debug)]
enum Scheme {
    /// Ids are BLAKE3-256 of the block; objects hold the block in clear (zstd level 1 when that
    /// is smaller), encryption scheme 0.
    Plain,
    /// Ids are keyed BLAKE3; chunk objects are sealed (scheme 1), other objects sealed whole.
    Keyed(Arc<VaultKeys>),
}

impl PartialEq for Scheme {
    fn eq(&self, other: &Scheme) -> bool {
        match (self, other) {
            (Scheme::Plain, Scheme::Plain) => true,
            (Scheme::Keyed(a), Scheme::Keyed(b)) => a.key_id == b.key_id,
            _ => false,
        }
    }
}

impl Eq for Scheme {}

impl ChunkCodec {
    /// The codec of a plain vault: BLAKE3 ids, zstd-1 objects, no encryption.
    pub const fn plain() -> ChunkCodec {
        ChunkCodec {
            scheme: Scheme::Plain,
        }
    }

    /// The codec of a vault encrypted under `master`.
    pub fn keyed(master: &MasterKey) -> ChunkCodec {
        ChunkCodec {
            scheme: Scheme::Keyed(Arc::new(master.vault_keys())),
        }
    }

    /// The id of the master key this codec encrypts under; `None` for the plain codec.
    pub fn key_id(&self) -> Option<&str> {
        match &self.scheme {
            Scheme::Plain => None,
            Scheme::Keyed(keys) => Some(&keys.key_id),
        }
    }

    /// Whether objects are encrypted.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.scheme, Scheme::Keyed(_))
    }

    /// The encryption scheme byte of the chunk objects this codec writes and reads (0: none,
    /// 1: AES-256-GCM).
    #[inline]
    pub fn encryption_scheme(&self) -> u8 {
        match self.scheme {
            Scheme::Plain => 0,
            Scheme::Keyed(_) => 1,
        }
    }

    /// The id of `block`: [`ChunkId::ZERO`] when every byte is zero (found without hashing),
    /// otherwise its digest (BLAKE3 for the plain codec, keyed BLAKE3 for a keyed one). One
    /// block hashes on the calling thread: callers parallelise across blocks.
    #[inline]
    pub fn id(&self, block: &[u8]) -> ChunkId {
        match &self.scheme {
            Scheme::Plain => ChunkId::of(block),
            Scheme::Keyed(keys) => {
                if is_zero(block) {
                    ChunkId::ZERO
                } else {
                    keyed_hash(keys, block)
                }
            }
        }
    }

    /// The chunk object of `block`, whose id is `id` (from [`ChunkCodec::id`]; the caller has
    /// it already, and a keyed codec binds the object to it), with `encoder`'s state.
    ///
    /// Both codecs compress with zstd level 1 when that is smaller; the keyed one then seals.
    /// The result is allocated at its exact size.
    #[inline]
    pub fn encode(&self, encoder: &mut ChunkEncoder, id: ChunkId, block: &[u8]) -> Vec<u8> {
        match &self.scheme {
            Scheme::Plain => encoder.encode_plain(block),
            Scheme::Keyed(keys) => encoder.encode_sealed(block, id, &keys.chunks),
        }
    }

    /// The id and the chunk object of one block, with a fresh encoder: for tests and one-off
    /// writes. A loop over blocks keeps one [`ChunkEncoder`] per thread and calls
    /// [`ChunkCodec::encode`].
    pub fn encode_one(&self, block: &[u8]) -> Result<(ChunkId, Vec<u8>)> {
        let id = self.id(block);
        Ok((id, self.encode(&mut ChunkEncoder::new()?, id, block)))
    }

    /// Decodes the chunk object `object` into `out` (cleared first) with `decoder`'s state and
    /// checks that the content is chunk `id`: [`Error::IdMismatch`] when it is not, and the
    /// format's errors (truncated, malformed, another encryption scheme, failed
    /// authentication) before that.
    pub fn decode(
        &self,
        decoder: &mut ChunkDecoder,
        object: &[u8],
        id: ChunkId,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let actual = match &self.scheme {
            Scheme::Plain => {
                decoder.decode_into(object, out)?;
                // A stored chunk is never all zero, so no zero check: the digest of zeros is
                // not `ChunkId::ZERO`, and such an object fails here.
                ChunkId::hash(out)
            }
            Scheme::Keyed(keys) => {
                decoder.decode_sealed(object, id, &keys.chunks, out)?;
                keyed_hash(keys, out)
            }
        };
        if actual != id {
            return Err(Error::IdMismatch {
                expected: id.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(())
    }

    /// The object stored at `path` for the encoding `plain` of a block map, point record,
    /// marker, lease or GC record: `plain` itself for the plain codec, sealed whole for a keyed
    /// one (see [`SealedObject`]).
    pub fn seal_object(&self, path: &str, plain: Vec<u8>) -> Vec<u8> {
        match self.object_sealer(path) {
            None => plain,
            Some(mut sealer) => {
                let mut out = Vec::with_capacity(plain.len() + SealedObject::HEADER_LEN + 16);
                sealer.push(&plain, &mut out);
                sealer.finish(&mut out);
                out
            }
        }
    }

    /// The encoding held in `stored`, the object at `path`: opened when this codec is keyed
    /// ([`Error::AuthenticationFailed`] when it was altered or moved, [`Error::NotEncrypted`]
    /// when it is not sealed), as it is for the plain codec ([`Error::Encrypted`] when it is
    /// sealed: the vault config and its objects disagree).
    pub fn open_object<'a>(&self, path: &str, stored: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        match self.object_opener(path) {
            None if SealedObject::is_sealed(stored) => Err(Error::Encrypted { what: "object" }),
            None => Ok(Cow::Borrowed(stored)),
            // Shorter than the magic and a prefix of it: cut, not planted.
            Some(_) if stored.len() < 8 && SealedObject::MAGIC.starts_with(stored) => {
                Err(Error::Truncated {
                    what: "sealed object",
                    expected: SealedObject::HEADER_LEN as u64,
                    actual: stored.len() as u64,
                })
            }
            Some(_) if !SealedObject::is_sealed(stored) => {
                Err(Error::NotEncrypted { what: "object" })
            }
            Some(mut opener) => {
                let mut out = Vec::with_capacity(stored.len());
                opener.push(stored, &mut out)?;
                opener.finish(&mut out)?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// A sealer for the object at `path`, to seal it as it is encoded; `None` for the plain
    /// codec, whose objects are stored as encoded.
    pub fn object_sealer(&self, path: &str) -> Option<ObjectSealer> {
        match &self.scheme {
            Scheme::Plain => None,
            Scheme::Keyed(keys) => Some(ObjectSealer::new(&keys.objects, path)),
        }
    }

    /// An opener for the object at `path`, to open it as it arrives; `None` for the plain
    /// codec.
    pub fn object_opener(&self, path: &str) -> Option<ObjectOpener> {
        match &self.scheme {
            Scheme::Plain => None,
            Scheme::Keyed(keys) => Some(ObjectOpener::new(&keys.objects, path)),
        }
    }
}

fn keyed_hash(keys: &VaultKeys, block: &[u8]) -> ChunkId {
    ChunkId::from_bytes(*blake3::keyed_hash(&keys.ids, block).as_bytes())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{ChunkObject, Codec};

    fn text_block(len: usize) -> Vec<u8> {
        b"the quick brown fox jumps over the lazy dog. "
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// `block` encoded with the plain codec and a fresh encoder.
    fn encode(block: &[u8]) -> Vec<u8> {
        let (id, object) = ChunkCodec::plain().encode_one(block).expect("enc");
        assert_eq!(id, ChunkId::of(block));
        object
    }

    fn decode(object: &[u8], id: ChunkId) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut decoder = ChunkDecoder::new().expect("dec");
        ChunkCodec::plain().decode(&mut decoder, object, id, &mut out)?;
        Ok(out)
    }

    /// The encoder as it was before the codec (the old `ChunkEncoder::encode`, written out
    /// plainly): the objects the plain codec writes must stay byte for byte these.
    fn encoded_before_the_codec(block: &[u8]) -> Vec<u8> {
        let compressed = zstd::bulk::compress(block, 1).expect("zstd");
        let (codec, payload) = if compressed.len() < block.len() {
            (1u8, &compressed[..])
        } else {
            (0u8, block)
        };
        let mut out = b"BVCHUNK\0".to_vec();
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&[codec, 0]);
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn the_plain_codec_writes_the_objects_and_ids_written_before_it() {
        // Digests of the objects and the ids the pre-codec `ChunkEncoder` and `ChunkId::of`
        // gave for these blocks (recorded with it, at this build's zstd).
        let cases: [(Vec<u8>, &str, &str); 3] = [
            (
                text_block(1 << 16),
                "2b48cbb995e0973d79b7db9273b9293c405a0e4d929c3362529e48907d044f2d",
                "cbb278fe0c2566cb5d5f6e4e36b9ef797cdacab7f68bf485544bf932ca4e238a",
            ),
            (
                noise(4096, 7),
                "46b1b37f04ec23ffd330fd26eee62f6afe7ae53aacb42c8b558ba1ca006e5d00",
                "cfc88ae865d5784284434d195b73d35f1c18fbb4fc00f164c27ccae084824bbf",
            ),
            (
                vec![1, 2, 3],
                "b177ec1bf26dfb3b7010d473e6d44713b29b765b99c6e60ecbfae742de496543",
                "f0a9b5b4f1f6a79b7089a990ac81f198bea17b96bf8660d23ab48793918994ac",
            ),
        ];
        let codec = ChunkCodec::plain();
        assert_eq!(codec.encryption_scheme(), 0);
        for (block, id, object) in cases {
            assert_eq!(codec.id(&block).to_hex(), id);
            let encoded = encode(&block);
            assert_eq!(blake3::hash(&encoded).to_hex().as_str(), object);
            assert_eq!(encoded, encoded_before_the_codec(&block));
        }
        assert_eq!(codec.id(&[0u8; 4096]), ChunkId::ZERO);
    }

    #[test]
    fn compressible_blocks_use_zstd_and_round_trip() {
        let block = text_block(1 << 16);
        let enc = encode(&block);
        assert_eq!(ChunkObject::codec(&enc).expect("codec"), Codec::Zstd);
        assert!(enc.len() < block.len() / 10);
        // It holds no more memory than its bytes: not the block-sized worst case it was
        // compressed into.
        assert!(enc.capacity() < block.len() / 10, "{}", enc.capacity());
        assert_eq!(decode(&enc, ChunkId::of(&block)).expect("decode"), block);
    }

    #[test]
    fn a_reused_encoder_encodes_each_block_as_a_fresh_one_would() {
        // The scratch buffer carries from block to block: a short block after a long one, or
        // a raw one after a compressed one, must not see the previous block's bytes.
        let blocks = [
            text_block(1 << 16),
            noise(1 << 12, 5),
            text_block(1 << 10),
            noise(1 << 16, 9),
            text_block(1 << 14),
        ];
        let codec = ChunkCodec::plain();
        let mut reused = ChunkEncoder::new().expect("enc");
        for block in &blocks {
            let reused = codec.encode(&mut reused, codec.id(block), block);
            assert_eq!(reused, encode(block));
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let block = noise(1 << 16, 7);
        let enc = encode(&block);
        assert_eq!(ChunkObject::codec(&enc).expect("codec"), Codec::None);
        assert_eq!(enc.len(), block.len() + ChunkObject::HEADER_LEN);
        let mut out = Vec::new();
        ChunkDecoder::new()
            .expect("dec")
            .decode_into(&enc, &mut out)
            .expect("decode");
        assert_eq!(out, block);
    }

    #[test]
    fn truncated_chunks_are_refused_for_both_codecs() {
        let mut dec = ChunkDecoder::new().expect("dec");
        let mut out = Vec::new();
        for block in [text_block(1 << 16), noise(1 << 16, 3)] {
            let enc = encode(&block);
            for cut in [enc.len() - 1, enc.len() / 2, 20, 15, 3, 0] {
                assert!(
                    dec.decode_into(&enc[..cut], &mut out).is_err(),
                    "cut at {cut} of {}",
                    enc.len()
                );
                assert!(
                    decode(&enc[..cut], ChunkId::of(&block)).is_err(),
                    "cut at {cut} of {}",
                    enc.len()
                );
            }
        }
    }

    #[test]
    fn content_that_does_not_match_its_id_is_refused() {
        let block = text_block(4096);
        let enc = encode(&block);
        let err = decode(&enc, ChunkId::of(b"other")).expect_err("mismatch");
        assert!(matches!(err, Error::IdMismatch { .. }), "{err}");
    }

    #[test]
    fn an_object_of_another_encryption_scheme_is_refused() {
        let block = text_block(4096);
        let mut enc = encode(&block);
        enc[11] = 1;
        let err = decode(&enc, ChunkId::of(&block)).expect_err("encrypted");
        assert!(
            matches!(err, Error::UnsupportedEncryption { scheme: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_codec_and_version_are_refused() {
        let mut enc = encode(&text_block(4096));
        enc[10] = 9;
        assert!(matches!(
            ChunkObject::codec(&enc),
            Err(Error::Malformed { .. })
        ));
        enc[10] = 1;
        enc[8] = 7;
        assert!(matches!(
            ChunkObject::codec(&enc),
            Err(Error::UnsupportedVersion { version: 7, .. })
        ));
    }

    proptest! {
        #[test]
        fn any_block_round_trips_and_encodes_as_before(data in proptest::collection::vec(any::<u8>(), 0..5000), rep in 1usize..50) {
            let block: Vec<u8> = data.iter().copied().cycle().take(data.len() * rep).collect();
            let enc = encode(&block);
            prop_assert_eq!(&enc, &encoded_before_the_codec(&block));
            prop_assert_eq!(decode(&enc, ChunkId::hash(&block)).expect("decode"), block);
        }
    }
}
