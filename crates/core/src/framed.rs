//! The envelope of the JSON-bodied formats (recovery points, the vault config): a binary header
//! with magic, version, encryption scheme, body length and a BLAKE3 checksum, then a JSON body.
//! JSON keeps these small records readable with `tail -c +49 FILE | jq` and lets later versions
//! add fields; the header keeps them as strictly checked as the binary formats.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic |
//! | 8 | 2 | format version |
//! | 10 | 1 | encryption scheme (0 = none; reserved) |
//! | 11 | 1 | reserved, 0 |
//! | 12 | 4 | body length |
//! | 16 | 32 | BLAKE3 of bytes 0..16 followed by the body |
//! | 48 | … | body: UTF-8 JSON |

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{check_header, u32_at};
use crate::{Error, Result};

pub(crate) const HEADER_LEN: usize = 48;

pub(crate) fn encode<T: Serialize>(magic: &[u8; 8], version: u16, body: &T) -> Vec<u8> {
    // Serialising plain structs of strings and numbers cannot fail.
    let json = serde_json::to_vec_pretty(body).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.push(0); // encryption: none
    out.push(0); // reserved
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&out);
    hasher.update(&json);
    out.extend_from_slice(hasher.finalize().as_bytes());
    out.extend_from_slice(&json);
    out
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    magic: &[u8; 8],
    supported: u16,
    bytes: &[u8],
) -> Result<(u16, T)> {
    let version = check_header(what, bytes, magic, HEADER_LEN, supported, 10, &[0])?;
    let body_len = u32_at(bytes, 12) as usize;
    let expected = HEADER_LEN + body_len;
    if bytes.len() < expected {
        return Err(Error::Truncated {
            what,
            expected: expected as u64,
            actual: bytes.len() as u64,
        });
    }
    if bytes.len() > expected {
        return Err(Error::Malformed {
            what,
            reason: format!("{} trailing bytes after the body", bytes.len() - expected),
        });
    }
    let body = &bytes[HEADER_LEN..];
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..16]);
    hasher.update(body);
    if hasher.finalize().as_bytes() != &bytes[16..48] {
        return Err(Error::ChecksumMismatch { what });
    }
    if bytes[11] != 0 {
        return Err(Error::Malformed {
            what,
            reason: "reserved header byte 11 is not zero".to_owned(),
        });
    }
    let value = serde_json::from_slice(body).map_err(|e| Error::Malformed {
        what,
        reason: e.to_string(),
    })?;
    Ok((version, value))
}
