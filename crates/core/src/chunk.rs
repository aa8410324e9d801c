use crate::crypt::aead::{SALT_LEN, TAG_LEN, nonce, object_key, open, random, seal};
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
/// | 11 | 1 | encryption scheme: 0 none, 1 AES-256-GCM (then a 24-byte salt, the sealed payload and a 16-byte tag follow the header) |
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
            &[0, 1],
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

    /// `block` compressed with zstd level 1 when that is smaller: the codec and the payload
    /// (in the scratch buffer, or `block` itself).
    fn compress<'a>(&'a mut self, block: &'a [u8]) -> (Codec, &'a [u8]) {
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(block.len()));
        match self.compressor.compress_to_buffer(block, &mut self.scratch) {
            Ok(n) if n < block.len() => (Codec::Zstd, &self.scratch[..n]),
            // Incompressible (or a zstd failure, which the raw form sidesteps): store as is.
            _ => (Codec::None, block),
        }
    }

    /// The plain object of `block`: zstd level 1 when that is smaller, the raw bytes
    /// otherwise, encryption scheme 0. Only the codec calls this.
    ///
    /// The result is allocated at its exact size: a well-compressed chunk must not hold a
    /// whole block's allocation while it waits to be written (the early send bounds what it
    /// holds by length, and may hold thousands).
    pub(crate) fn encode_plain(&mut self, block: &[u8]) -> Vec<u8> {
        let (codec, payload) = self.compress(block);
        let mut out = Vec::with_capacity(ChunkObject::HEADER_LEN + payload.len());
        push_header(&mut out, codec, 0, block.len());
        out.extend_from_slice(payload);
        out
    }

    /// The encrypted object of `block`, chunk `id`: compressed as [`Self::encode_plain`]
    /// does, then sealed with AES-256-GCM under a key of its own (derived from `chunks_key`
    /// and a random salt), the header, salt and id as associated data; encryption scheme 1.
    pub(crate) fn encode_sealed(
        &mut self,
        block: &[u8],
        id: ChunkId,
        chunks_key: &[u8; 32],
    ) -> Vec<u8> {
        let salt = random::<SALT_LEN>();
        let (codec, payload) = self.compress(block);
        let mut out = Vec::with_capacity(SEALED_HEADER_LEN + payload.len() + TAG_LEN);
        push_header(&mut out, codec, 1, block.len());
        out.extend_from_slice(&salt);
        let aad = sealed_aad(&out, id);
        out.extend_from_slice(payload);
        seal(
            &object_key(chunks_key, &salt),
            nonce(0, true),
            &aad,
            &mut out,
            SEALED_HEADER_LEN,
        );
        out
    }
}

/// Bytes before the ciphertext of an encrypted chunk: the header, then the salt.
const SEALED_HEADER_LEN: usize = ChunkObject::HEADER_LEN + SALT_LEN;

fn push_header(out: &mut Vec<u8>, codec: Codec, scheme: u8, len: usize) {
    let len = u32::try_from(len).expect("blocks are at most 16 MiB");
    out.extend_from_slice(&ChunkObject::MAGIC);
    out.extend_from_slice(&ChunkObject::VERSION.to_le_bytes());
    out.push(codec as u8);
    out.push(scheme);
    out.extend_from_slice(&len.to_le_bytes());
}

/// The associated data of an encrypted chunk: its header and salt, then its id, so an object
/// stored under another id (a chunk swapped for another of the same vault) fails to open.
fn sealed_aad(head: &[u8], id: ChunkId) -> [u8; SEALED_HEADER_LEN + ChunkId::LEN] {
    let mut aad = [0u8; SEALED_HEADER_LEN + ChunkId::LEN];
    aad[..SEALED_HEADER_LEN].copy_from_slice(&head[..SEALED_HEADER_LEN]);
    aad[SEALED_HEADER_LEN..].copy_from_slice(id.as_bytes());
    aad
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
    /// An encrypted chunk's payload, decrypted in place, reused from chunk to chunk.
    scratch: Vec<u8>,
}

impl ChunkDecoder {
    pub fn new() -> Result<ChunkDecoder> {
        let decompressor = zstd::bulk::Decompressor::new().map_err(|e| Error::Malformed {
            what: WHAT,
            reason: format!("cannot create a zstd context: {e}"),
        })?;
        Ok(ChunkDecoder {
            decompressor,
            scratch: Vec::new(),
        })
    }

    /// Decodes the plain object `bytes` into `out` (cleared first), checking header and length
    /// but not the content against an id: the format step [`ChunkCodec::decode`](crate::ChunkCodec::decode) builds on,
    /// open for format tests and the fuzzer. Readers decode through the codec, which verifies
    /// (and which a keyed codec needs: its objects do not decode without their id).
    pub fn decode_into(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let codec = ChunkObject::codec(bytes)?;
        if bytes[11] != 0 {
            return Err(Error::UnsupportedEncryption {
                what: WHAT,
                scheme: bytes[11],
            });
        }
        // Checked before anything is reserved for it.
        let len = ChunkObject::uncompressed_len(bytes)?;
        let payload = &bytes[ChunkObject::HEADER_LEN..];
        inflate(
            &mut self.decompressor,
            codec,
            len,
            payload,
            bytes.len(),
            out,
        )
    }

    /// Decodes the encrypted object `bytes` of chunk `id` into `out` (cleared first): header
    /// checks, then authentication (any change to the object, or an object stored under
    /// another id, fails as [`Error::AuthenticationFailed`]), then decompression. A plain
    /// object is refused ([`Error::NotEncrypted`]): the store could have planted it.
    pub(crate) fn decode_sealed(
        &mut self,
        bytes: &[u8],
        id: ChunkId,
        chunks_key: &[u8; 32],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let codec = ChunkObject::codec(bytes)?;
        if bytes[11] != 1 {
            return Err(Error::NotEncrypted { what: WHAT });
        }
        let len = ChunkObject::uncompressed_len(bytes)?;
        if bytes.len() < SEALED_HEADER_LEN + TAG_LEN {
            return Err(Error::Truncated {
                what: WHAT,
                expected: (SEALED_HEADER_LEN + TAG_LEN) as u64,
                actual: bytes.len() as u64,
            });
        }
        let aad = sealed_aad(bytes, id);
        let key = object_key(
            chunks_key,
            &bytes[ChunkObject::HEADER_LEN..SEALED_HEADER_LEN],
        );
        let sealed = &bytes[SEALED_HEADER_LEN..];
        if codec == Codec::None {
            // Decrypted where the block goes: one copy of an incompressible block, not two.
            out.clear();
            out.extend_from_slice(sealed);
            open(&key, nonce(0, true), &aad, out, WHAT)?;
            if out.len() != len {
                return Err(Error::Malformed {
                    what: WHAT,
                    reason: format!("holds {} bytes, its header says {len}", out.len()),
                });
            }
            return Ok(());
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(sealed);
        open(&key, nonce(0, true), &aad, &mut self.scratch, WHAT)?;
        let total = ChunkObject::HEADER_LEN + self.scratch.len();
        inflate(
            &mut self.decompressor,
            codec,
            len,
            &self.scratch,
            total,
            out,
        )
    }
}

/// `payload` (raw or one zstd frame, as `codec` says) decoded into `out`, which must come to
/// `len` bytes; `total` is the object's length, for messages.
fn inflate(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    codec: Codec,
    len: usize,
    payload: &[u8],
    total: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    match codec {
        Codec::None => {
            if payload.len() < len {
                return Err(Error::Truncated {
                    what: WHAT,
                    expected: (ChunkObject::HEADER_LEN + len) as u64,
                    actual: total as u64,
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
            let n = decompressor
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

impl std::fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDecoder").finish_non_exhaustive()
    }
}
