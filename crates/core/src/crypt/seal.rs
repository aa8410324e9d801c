//! Sealed objects: every object of an encrypted vault but chunks and the vault config (block
//! maps, point records, markers, protection records, leases, GC records), encrypted whole, in
//! segments so that a large block map is sealed and opened as it streams.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `BVSEALED` |
//! | 8 | 2 | format version (1) |
//! | 10 | 1 | encryption scheme (1: AES-256-GCM) |
//! | 11 | 1 | reserved, 0 |
//! | 12 | 4 | segment length: plaintext bytes in each segment but the last (4 KiB to 16 MiB) |
//! | 16 | 24 | random salt |
//! | 40 | … | segments: ciphertext, then a 16-byte tag; the last holds 0 to segment-length bytes |
//!
//! The object's key is BLAKE3 keyed with the vault's object key over the salt; segment `i` is
//! sealed with nonce `i` and a flag on the last, and every segment's associated data is the
//! header and the object's key path. So a segment cannot be reordered, dropped or cut off at
//! the end, and a whole object cannot be moved to another path (a point record swapped for
//! another VM's) without failing to open. The inner object (a block map, a point record) is
//! the plain format, checksum included, sealed as it is.

use ring::aead::LessSafeKey;

use super::aead::{SALT_LEN, TAG_LEN, nonce, object_key, open, random, seal};
use crate::wire::{check_header, u32_at};
use crate::{Error, Result};

const WHAT: &str = "sealed object";

/// The format's constants.
#[derive(Debug)]
pub struct SealedObject;

impl SealedObject {
    pub const MAGIC: [u8; 8] = *b"BVSEALED";
    pub const VERSION: u16 = 1;
    pub const HEADER_LEN: usize = 16 + SALT_LEN;
    /// The segment length this build writes: 1 MiB, the piece a block map is encoded in.
    pub const SEGMENT: usize = 1 << 20;
    /// Bounds on a header's segment length, so a hostile one cannot make a reader buffer
    /// without bound.
    pub const SEGMENT_RANGE: std::ops::RangeInclusive<usize> = 4096..=16 << 20;

    /// Whether `bytes` starts like a sealed object.
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(&Self::MAGIC)
    }
}

fn aad(header: &[u8], path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + path.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(path.as_bytes());
    aad
}

/// Seals one object as it is produced: [`ObjectSealer::push`] the plaintext in pieces of any
/// size, then [`ObjectSealer::finish`]; the sealed bytes are appended to `out` as segments
/// fill, header first.
pub struct ObjectSealer {
    key: LessSafeKey,
    aad: Vec<u8>,
    index: u64,
    pending: Vec<u8>,
    header_written: bool,
}

impl ObjectSealer {
    pub(crate) fn new(objects_key: &[u8; 32], path: &str) -> ObjectSealer {
        let salt = random::<SALT_LEN>();
        let mut header = Vec::with_capacity(SealedObject::HEADER_LEN);
        header.extend_from_slice(&SealedObject::MAGIC);
        header.extend_from_slice(&SealedObject::VERSION.to_le_bytes());
        header.push(1);
        header.push(0);
        header.extend_from_slice(&(SealedObject::SEGMENT as u32).to_le_bytes());
        header.extend_from_slice(&salt);
        ObjectSealer {
            key: object_key(objects_key, &salt),
            aad: aad(&header, path),
            index: 0,
            pending: Vec::new(),
            header_written: false,
        }
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&self.aad[..SealedObject::HEADER_LEN]);
            self.header_written = true;
        }
    }

    /// Adds `plain` to the object; appends to `out` every segment it completes.
    pub fn push(&mut self, mut plain: &[u8], out: &mut Vec<u8>) {
        self.header(out);
        while !plain.is_empty() {
            // A full segment is sealed only once more follows: the last one carries the flag.
            if self.pending.len() == SealedObject::SEGMENT {
                self.seal_pending(false, out);
            }
            let take = (SealedObject::SEGMENT - self.pending.len()).min(plain.len());
            self.pending.extend_from_slice(&plain[..take]);
            plain = &plain[take..];
        }
    }

    /// Seals what is pending as the last segment.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.header(out);
        self.seal_pending(true, out);
    }

    fn seal_pending(&mut self, last: bool, out: &mut Vec<u8>) {
        let from = out.len();
        out.extend_from_slice(&self.pending);
        seal(&self.key, nonce(self.index, last), &self.aad, out, from);
        self.pending.clear();
        self.index += 1;
    }
}

impl std::fmt::Debug for ObjectSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSealer").finish_non_exhaustive()
    }
}

/// Opens one sealed object as it arrives: [`ObjectOpener::push`] the stored bytes in pieces of
/// any size (each completed segment's plaintext is appended to `out`), then
/// [`ObjectOpener::finish`], which opens the last segment. Errors name the object's path.
pub struct ObjectOpener {
    objects_key: [u8; 32],
    path: String,
    state: Option<(LessSafeKey, Vec<u8>, usize)>,
    index: u64,
    pending: Vec<u8>,
}

impl ObjectOpener {
    pub(crate) fn new(objects_key: &[u8; 32], path: &str) -> ObjectOpener {
        ObjectOpener {
            objects_key: *objects_key,
            path: path.to_owned(),
            state: None,
            index: 0,
            pending: Vec::new(),
        }
    }

    /// Adds stored bytes; appends to `out` the plaintext of every segment known not to be the
    /// last.
    pub fn push(&mut self, mut sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.state.is_none() {
            let take = (SealedObject::HEADER_LEN - self.pending.len()).min(sealed.len());
            self.pending.extend_from_slice(&sealed[..take]);
            sealed = &sealed[take..];
            if self.pending.len() < SealedObject::HEADER_LEN {
                return Ok(());
            }
            self.start()?;
        }
        let segment = self.segment_len();
        while !sealed.is_empty() {
            if self.pending.len() == segment + TAG_LEN {
                self.open_pending(false, out)?;
            }
            let take = (segment + TAG_LEN - self.pending.len()).min(sealed.len());
            self.pending.extend_from_slice(&sealed[..take]);
            sealed = &sealed[take..];
        }
        Ok(())
    }

    /// Opens the last segment: the object ends here.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.state.is_none() {
            if self.pending.is_empty() || SealedObject::MAGIC.starts_with(&self.pending) {
                return Err(Error::Truncated {
                    what: WHAT,
                    expected: SealedObject::HEADER_LEN as u64,
                    actual: self.pending.len() as u64,
                });
            }
            // Not a sealed object at all: the header check says what.
            self.start()?;
        }
        if self.pending.len() < TAG_LEN {
            return Err(Error::AuthenticationFailed { what: WHAT });
        }
        self.open_pending(true, out)
    }

    fn segment_len(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.2)
    }

    fn start(&mut self) -> Result<()> {
        let header = std::mem::take(&mut self.pending);
        check_header(
            WHAT,
            &header,
            &SealedObject::MAGIC,
            SealedObject::HEADER_LEN,
            SealedObject::VERSION,
            10,
            &[1],
        )?;
        if header[11] != 0 {
            return Err(Error::Malformed {
                what: WHAT,
                reason: "reserved header byte 11 is not zero".to_owned(),
            });
        }
        let segment = u32_at(&header, 12) as usize;
        if !SealedObject::SEGMENT_RANGE.contains(&segment) {
            return Err(Error::Malformed {
                what: WHAT,
                reason: format!("segment length {segment} is out of range"),
            });
        }
        let key = object_key(&self.objects_key, &header[16..SealedObject::HEADER_LEN]);
        self.state = Some((key, aad(&header, &self.path), segment));
        Ok(())
    }

    fn open_pending(&mut self, last: bool, out: &mut Vec<u8>) -> Result<()> {
        let (key, aad, _) = self.state.as_ref().expect("started");
        open(key, nonce(self.index, last), aad, &mut self.pending, WHAT)?;
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        self.index += 1;
        Ok(())
    }
}

impl Drop for ObjectOpener {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.objects_key);
    }
}

impl std::fmt::Debug for ObjectOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectOpener")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
