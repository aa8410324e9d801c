use crate::wire::{check_header, u32_at};
use crate::{BlockSize, ChunkId, Error, Result};

const WHAT: &str = "chunk";

/// How a chunk object's payload is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// The block's bytes as they are (used when zstd would not make them smaller).
    None = 0,
    /// One zstd frame, level 1.
    Zstd = 1,
}

/// The stored form of one block.
///
/// Encoding, version 1 (little endian, 16-byte header, then the payload):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `BVCHUNK\0` |
/// | 8 | 2 | format version (1) |
/// | 10 | 1 | codec: 0 none, 1 zstd |
/// | 11 | 1 | encryption scheme (0 = none; reserved) |
/// | 12 | 4 | uncompressed length (at most [`BlockSize::MAX`]: a chunk is one block) |
/// | 16 | … | payload |
///
/// There is no checksum field: the object's key is the BLAKE3 of the uncompressed block, and
/// every read re-hashes what it decoded ([`ChunkDecoder::decode_verified`]).
#[derive(Debug)]
pub struct ChunkObject;

impl ChunkObject {
    pub const MAGIC: [u8; 8] = *b"BVCHUNK\0";
    pub const VERSION: u16 = 1;
    pub const HEADER_LEN: usize = 16;
    /// The zstd level: level 1 keeps a full backup bound by I/O rather than compression.
    pub const ZSTD_LEVEL: i32 = 1;

    /// The codec of an encoded chunk (after the header checks).
    pub fn codec(bytes: &[u8]) -> Result<Codec> {
        check_header(
            WHAT,
            bytes,
            &Self::MAGIC,
            Self::HEADER_LEN,
            Self::VERSION,
            11,
        )?;
        match bytes[10] {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Zstd),
            other => Err(Error::Malformed {
                what: WHAT,
                reason: format!("unknown codec {other}"),
            }),
        }
    }

    /// The length of the block an encoded chunk decodes to (after the header checks): at most
    /// [`BlockSize::MAX`], since a chunk is one block.
    pub fn uncompressed_len(bytes: &[u8]) -> Result<usize> {
        Self::codec(bytes)?;
        let len = u32_at(bytes, 12);
        if len > BlockSize::MAX {
            return Err(Error::Malformed {
                what: WHAT,
                reason: format!(
                    "its header says {len} bytes, more than a block holds ({})",
                    BlockSize::MAX
                ),
            });
        }
        Ok(len as usize)
    }
}

/// Encodes blocks into chunk objects, keeping one zstd context for reuse (create one per thread).
pub struct ChunkEncoder {
    compressor: zstd::bulk::Compressor<'static>,
    /// zstd's output, reused from block to block: a fresh worst-case buffer per block costs a
    /// page fault for every page zstd writes (a block's allocation is past malloc's mmap
    /// threshold): with the unmapping, 7% of a full backup's CPU in perf.
    scratch: Vec<u8>,
}

impl ChunkEncoder {
    pub fn new() -> Result<ChunkEncoder> {
        let compressor =
            zstd::bulk::Compressor::new(ChunkObject::ZSTD_LEVEL).map_err(|e| Error::Malformed {
                what: WHAT,
                reason: format!("cannot create a zstd context: {e}"),
            })?;
        Ok(ChunkEncoder {
            compressor,
            scratch: Vec::new(),
        })
    }

    /// Encodes `block`: zstd level 1 when that is smaller, the raw bytes otherwise.
    ///
    /// The result is allocated at its exact size: a well-compressed chunk must not hold a
    /// whole block's allocation while it waits to be written (the early send bounds what it
    /// holds by length, and may hold thousands).
    pub fn encode(&mut self, block: &[u8]) -> Vec<u8> {
        let len = u32::try_from(block.len()).expect("blocks are at most 16 MiB");
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(block.len()));
        let (codec, payload) = match self.compressor.compress_to_buffer(block, &mut self.scratch) {
            Ok(n) if n < block.len() => (Codec::Zstd, &self.scratch[..n]),
            // Incompressible (or a zstd failure, which the raw form sidesteps): store as is.
            _ => (Codec::None, block),
        };
        let mut out = Vec::with_capacity(ChunkObject::HEADER_LEN + payload.len());
        out.extend_from_slice(&ChunkObject::MAGIC);
        out.extend_from_slice(&ChunkObject::VERSION.to_le_bytes());
        out.push(codec as u8);
        out.push(0); // encryption: none
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }
}

impl std::fmt::Debug for ChunkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkEncoder").finish_non_exhaustive()
    }
}

/// Decodes chunk objects, keeping one zstd context for reuse (create one per thread).
pub struct ChunkDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl ChunkDecoder {
    pub fn new() -> Result<ChunkDecoder> {
        let decompressor = zstd::bulk::Decompressor::new().map_err(|e| Error::Malformed {
            what: WHAT,
            reason: format!("cannot create a zstd context: {e}"),
        })?;
        Ok(ChunkDecoder { decompressor })
    }

    /// Decodes `bytes` into `out` (cleared first), checking header and length.
    pub fn decode_into(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let codec = ChunkObject::codec(bytes)?;
        // Checked before anything is reserved for it.
        let len = ChunkObject::uncompressed_len(bytes)?;
        let payload = &bytes[ChunkObject::HEADER_LEN..];
        out.clear();
        match codec {
            Codec::None => {
                if payload.len() < len {
                    return Err(Error::Truncated {
                        what: WHAT,
                        expected: (ChunkObject::HEADER_LEN + len) as u64,
                        actual: bytes.len() as u64,
                    });
                }
                if payload.len() > len {
                    return Err(Error::Malformed {
                        what: WHAT,
                        reason: format!("{} trailing bytes after the block", payload.len() - len),
                    });
                }
                out.extend_from_slice(payload);
            }
            Codec::Zstd => {
                out.reserve(len);
                let n = self
                    .decompressor
                    .decompress_to_buffer(payload, &mut *out)
                    .map_err(|e| Error::Malformed {
                        what: WHAT,
                        reason: format!("zstd payload does not decode ({e}); truncated or corrupt"),
                    })?;
                if n != len {
                    return Err(Error::Malformed {
                        what: WHAT,
                        reason: format!("decodes to {n} bytes, header says {len}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Decodes `bytes` into `out` and checks that the content hashes to `expected`.
    pub fn decode_verified(
        &mut self,
        bytes: &[u8],
        expected: ChunkId,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.decode_into(bytes, out)?;
        let actual = ChunkId::hash(out);
        if actual != expected {
            return Err(Error::IdMismatch { expected, actual });
        }
        Ok(())
    }
}

impl std::fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDecoder").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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

    #[test]
    fn compressible_blocks_use_zstd_and_round_trip() {
        let block = text_block(1 << 16);
        let enc = ChunkEncoder::new().expect("enc").encode(&block);
        assert_eq!(ChunkObject::codec(&enc).expect("codec"), Codec::Zstd);
        assert!(enc.len() < block.len() / 10);
        // It holds no more memory than its bytes: not the block-sized worst case it was
        // compressed into.
        assert!(enc.capacity() < block.len() / 10, "{}", enc.capacity());
        let mut out = Vec::new();
        ChunkDecoder::new()
            .expect("dec")
            .decode_verified(&enc, ChunkId::of(&block), &mut out)
            .expect("decode");
        assert_eq!(out, block);
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
        let mut reused = ChunkEncoder::new().expect("enc");
        for block in &blocks {
            let fresh = ChunkEncoder::new().expect("enc").encode(block);
            assert_eq!(reused.encode(block), fresh);
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let block = noise(1 << 16, 7);
        let enc = ChunkEncoder::new().expect("enc").encode(&block);
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
            let enc = ChunkEncoder::new().expect("enc").encode(&block);
            for cut in [enc.len() - 1, enc.len() / 2, 20, 15, 3, 0] {
                assert!(
                    dec.decode_into(&enc[..cut], &mut out).is_err(),
                    "cut at {cut} of {}",
                    enc.len()
                );
            }
        }
    }

    #[test]
    fn content_that_does_not_match_its_id_is_refused() {
        let block = text_block(4096);
        let enc = ChunkEncoder::new().expect("enc").encode(&block);
        let err = ChunkDecoder::new()
            .expect("dec")
            .decode_verified(&enc, ChunkId::of(b"other"), &mut Vec::new())
            .expect_err("mismatch");
        assert!(matches!(err, Error::IdMismatch { .. }), "{err}");
    }

    #[test]
    fn unknown_codec_and_version_are_refused() {
        let mut enc = ChunkEncoder::new().expect("enc").encode(&text_block(4096));
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
        fn any_block_round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000), rep in 1usize..50) {
            let block: Vec<u8> = data.iter().copied().cycle().take(data.len() * rep).collect();
            let enc = ChunkEncoder::new().expect("enc").encode(&block);
            let mut out = Vec::new();
            ChunkDecoder::new().expect("dec").decode_verified(&enc, ChunkId::hash(&block), &mut out).expect("decode");
            prop_assert_eq!(out, block);
        }
    }
}
