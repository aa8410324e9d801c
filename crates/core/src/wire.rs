//! Little-endian field access shared by the binary formats.

use crate::{Error, Result};

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The checks every header starts with, in the order that gives the clearest error: long
/// enough to hold a header, right magic, known version, an encryption scheme among `schemes`
/// (the ones this kind of object may carry).
pub(crate) fn check_header(
    what: &'static str,
    bytes: &[u8],
    magic: &[u8; 8],
    header_len: usize,
    supported: u16,
    encryption_at: usize,
    schemes: &[u8],
) -> Result<u16> {
    if bytes.len() < 8 || &bytes[..8] != magic {
        // A file shorter than the magic can only be judged by what it has.
        if bytes.len() < 8 && magic.starts_with(bytes) {
            return Err(Error::Truncated {
                what,
                expected: header_len as u64,
                actual: bytes.len() as u64,
            });
        }
        return Err(Error::BadMagic { what });
    }
    if bytes.len() < header_len {
        return Err(Error::Truncated {
            what,
            expected: header_len as u64,
            actual: bytes.len() as u64,
        });
    }
    let version = u16_at(bytes, 8);
    if version == 0 || version > supported {
        return Err(Error::UnsupportedVersion {
            what,
            version,
            supported,
        });
    }
    let scheme = bytes[encryption_at];
    if !schemes.contains(&scheme) {
        return Err(Error::UnsupportedEncryption { what, scheme });
    }
    Ok(version)
}
