//! Re-sealing: after a mutation, the checksum of each format is computed again over the
//! mutated bytes, so that the checks behind the checksum (lengths, structure, fields) are
//! reached instead of every mutant failing at the checksum.
//!
//! Shared with the fuzz targets in `fuzz/` (included there by path): a fuzzer cannot find a
//! BLAKE3 preimage either.

/// The header of the JSON-bodied formats (points, configs, leases, epochs, soft-delete
/// markers); the checksum is at 16..48, over bytes 0..16 and the body.
const FRAMED_HEADER: usize = 48;
/// A block map's header; the checksum is at 64..96, over bytes 0..64 and the body.
const MAP_HEADER: usize = 96;

/// A block map: BLAKE3 of bytes 0..64 and the body into 64..96 (nothing when the header is
/// not all there).
pub fn block_map(bytes: &mut [u8]) {
    if bytes.len() < MAP_HEADER {
        return;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..64]);
    hasher.update(&bytes[MAP_HEADER..]);
    bytes[64..MAP_HEADER].copy_from_slice(hasher.finalize().as_bytes());
}

/// A framed record: the body length at 12..16 set to what follows the header (when
/// `fix_length`), then BLAKE3 of bytes 0..16 and the body into 16..48.
pub fn framed(bytes: &mut [u8], fix_length: bool) {
    if bytes.len() < FRAMED_HEADER {
        return;
    }
    if fix_length {
        let body = u32::try_from(bytes.len() - FRAMED_HEADER).unwrap_or(u32::MAX);
        bytes[12..16].copy_from_slice(&body.to_le_bytes());
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..16]);
    hasher.update(&bytes[FRAMED_HEADER..]);
    bytes[16..FRAMED_HEADER].copy_from_slice(hasher.finalize().as_bytes());
}

/// A list of forgotten chunks: BLAKE3 of everything before the last 32 bytes into them.
pub fn forgotten(bytes: &mut [u8]) {
    if bytes.len() < 32 {
        return;
    }
    let (body, digest) = bytes.split_at_mut(bytes.len() - 32);
    digest.copy_from_slice(blake3::hash(body).as_bytes());
}

/// A chunk has no checksum (its key is the hash of its content); what stands in front of its
/// payload checks is the length at 12..16, set here to what the payload decodes to: its own
/// length when raw, the content size its zstd frame declares when compressed (when it declares
/// one).
pub fn chunk(bytes: &mut [u8]) {
    if bytes.len() < 16 {
        return;
    }
    let payload = &bytes[16..];
    let declared = match bytes[10] {
        1 => zstd::zstd_safe::get_frame_content_size(payload)
            .ok()
            .flatten(),
        _ => None,
    };
    let len = declared.unwrap_or(payload.len() as u64);
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    bytes[12..16].copy_from_slice(&len.to_le_bytes());
}
