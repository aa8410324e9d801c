use crate::wire::{check_header, u32_at};
use crate::{BlockSize, Error, Result};

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
/// There is no checksum field: the object's key is the id of the uncompressed block, and every
/// read re-hashes what it decoded ([`ChunkCodec::decode`](crate::ChunkCodec::decode)). Objects are written and read only
/// through the [`ChunkCodec`](crate::ChunkCodec); this type names the format's constants and reads its header.
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

/// The working state [`ChunkCodec::encode`](crate::ChunkCodec::encode) encodes with: one zstd context and its output
/// buffer, reused from block to block. Create one per thread (it holds no key: one encoder
/// serves any codec).
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

    /// The plain object of `block`: zstd level 1 when that is smaller, the raw bytes
    /// otherwise, encryption scheme 0. Only the codec calls this.
    ///
    /// The result is allocated at its exact size: a well-compressed chunk must not hold a
    /// whole block's allocation while it waits to be written (the early send bounds what it
    /// holds by length, and may hold thousands).
    pub(crate) fn encode_plain(&mut self, block: &[u8]) -> Vec<u8> {
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

/// The working state [`ChunkCodec::decode`](crate::ChunkCodec::decode) decodes with: one zstd context, reused from chunk
/// to chunk. Create one per thread (it holds no key: one decoder serves any codec).
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

    /// Decodes the plain object `bytes` into `out` (cleared first), checking header and length
    /// but not the content against an id: the format step [`ChunkCodec::decode`](crate::ChunkCodec::decode) builds on,
    /// open for format tests and the fuzzer. Readers decode through the codec, which verifies
    /// (and which a keyed codec needs: its objects do not decode without their id).
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
}

impl std::fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDecoder").finish_non_exhaustive()
    }
}
