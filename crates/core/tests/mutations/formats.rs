//! What the mutator knows of each format: where its fields are, how to seal it again, the
//! mutations that keep it consistent enough to reach deeper checks, and its oracle.

use blockvault_core::{
    BlockMap, ChunkDecoder, Error, ForgottenChunks, GcEpoch, LeaseRecord, ProtectionRecord,
    RecoveryPoint, SoftDeleteMarker, VaultConfig,
};

use crate::json;
use crate::mutate::{Field, Rng, boundary, overwrite, read};
use crate::values::{self, Seed};
use crate::{oracle, seal};

/// One format, as the mutation runner sees it.
pub struct Format {
    pub name: &'static str,
    /// Its fuzz target in `fuzz/`.
    pub target: &'static str,
    /// The encodings its cases start from.
    pub values: fn(&mut Rng) -> Vec<Seed>,
    /// Where the fields of an encoding are (found in the encoding itself).
    pub fields: fn(&[u8]) -> Vec<Field>,
    /// Computes the checksum again (`fix` also repairs what stands before it: lengths).
    pub seal: fn(&mut Vec<u8>, fix: bool),
    /// A mutation that knows the format, if it has one.
    pub structured: Option<fn(&mut Rng, &mut Vec<u8>) -> String>,
    /// Panics when the decoder does not hold up (the oracle).
    pub check: fn(&[u8]),
    /// What the decoder says, in a word, to count outcomes.
    pub outcome: fn(&[u8]) -> &'static str,
}

/// The kind of a decode's result.
fn kind<T>(result: Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "decodes",
        Err(Error::BadMagic { .. }) => "bad magic",
        Err(Error::UnsupportedVersion { .. }) => "version",
        Err(Error::UnsupportedEncryption { .. }) => "encryption",
        Err(Error::ChecksumMismatch { .. }) => "checksum",
        Err(Error::Truncated { .. }) => "length",
        Err(Error::Malformed { .. }) => "malformed",
        Err(_) => "other",
    }
}

// The fields every header starts with: version, encryption, one more byte.
const COMMON: [Field; 3] = [Field::new(8, 2), Field::new(10, 1), Field::new(11, 1)];

pub const CHUNK: Format = Format {
    name: "chunk",
    target: "chunk",
    values: values::chunks,
    fields: |bytes| {
        let mut fields = COMMON.to_vec();
        fields.push(Field::new(12, 4));
        // The zstd frame's magic and the bytes of its header after it.
        fields.push(Field::new(16, 4));
        fields.extend((20..26.min(bytes.len())).map(|at| Field::new(at, 1)));
        fields
    },
    seal: |bytes, fix| {
        if fix {
            seal::chunk(bytes);
        }
    },
    structured: Some(|rng, bytes| {
        // The other codec, with the length its payload decodes to.
        if bytes.len() > 10 {
            bytes[10] ^= 1;
        }
        seal::chunk(bytes);
        let _ = rng;
        "switch the codec".to_owned()
    }),
    check: oracle::chunk,
    outcome: |bytes| {
        let mut out = Vec::new();
        kind(ChunkDecoder::new().and_then(|mut d| d.decode_into(bytes, &mut out)))
    },
};

/// A block map's header fields, its run headers (version 2) and its ids.
fn map_fields(bytes: &[u8]) -> Vec<Field> {
    let mut fields = COMMON.to_vec();
    fields.extend(
        [12, 16, 24, 32, 40, 48, 56].map(|at| Field::new(at, if at == 12 { 4 } else { 8 })),
    );
    let version = read(bytes, Field::new(8, 2));
    let mut at = BlockMap::HEADER_LEN;
    while at + 16 <= bytes.len() && fields.len() < 80 {
        if version == 2 {
            fields.push(Field::new(at, 8));
            fields.push(Field::new(at + 8, 8));
            let ids = read(bytes, Field::new(at + 8, 8)).min(4096) as usize;
            at += 16;
            for _ in 0..ids {
                if at + 32 > bytes.len() {
                    break;
                }
                fields.push(Field::new(at, 32));
                at += 32;
            }
        } else {
            fields.push(Field::new(at, 32));
            at += 32;
        }
    }
    fields
}

pub const BLOCK_MAP: Format = Format {
    name: "block map",
    target: "block_map",
    values: values::block_maps,
    fields: map_fields,
    seal: |bytes, _| seal::block_map(bytes),
    structured: Some(|rng, bytes| {
        if bytes.len() < BlockMap::HEADER_LEN {
            return "nothing (no header)".to_owned();
        }
        // A new disk size (or block size) with the block count that goes with it, so that
        // the header's own checks pass and the runs are checked against the new count.
        let mut block_size = read(bytes, Field::new(12, 4));
        if rng.one_in(3) {
            block_size = 1 << (16 + rng.below(9));
            overwrite(bytes, Field::new(12, 4), block_size);
        }
        let disk = read(bytes, Field::new(16, 8));
        let disk = match rng.below(4) {
            0 => boundary(rng, 8, bytes.len()),
            1 => disk.wrapping_add(block_size),
            2 => disk.wrapping_sub(block_size),
            _ => disk.wrapping_add_signed(rng.pick(&[1, -1])),
        };
        overwrite(bytes, Field::new(16, 8), disk);
        let count = disk.div_ceil(block_size.max(1));
        overwrite(bytes, Field::new(32, 8), count);
        if rng.one_in(2) {
            let runs = read(bytes, Field::new(40, 8));
            overwrite(
                bytes,
                Field::new(40, 8),
                runs.wrapping_add_signed(rng.pick(&[1, -1])),
            );
        }
        format!("disk size {disk}, block size {block_size}, count {count}")
    }),
    check: |bytes| {
        let _ = oracle::block_map(bytes);
    },
    outcome: |bytes| kind(BlockMap::decode(bytes)),
};

/// The fields of the JSON-bodied formats' header.
fn framed_fields(_: &[u8]) -> Vec<Field> {
    let mut fields = COMMON.to_vec();
    fields.push(Field::new(12, 4));
    fields
}

macro_rules! framed {
    ($name:ident, $what:literal, $target:literal, $values:path, $type:ty, $check:path) => {
        pub const $name: Format = Format {
            name: $what,
            target: $target,
            values: $values,
            fields: framed_fields,
            seal: |bytes, fix| seal::framed(bytes, fix),
            structured: Some(json::mutate),
            check: $check,
            outcome: |bytes| kind(<$type>::decode(bytes)),
        };
    };
}

framed!(
    POINT,
    "recovery point",
    "point",
    values::points,
    RecoveryPoint,
    oracle::point
);
framed!(
    VAULT_CONFIG,
    "vault config",
    "vault_config",
    values::vault_configs,
    VaultConfig,
    oracle::vault_config
);
framed!(
    LEASE,
    "lease",
    "lease",
    values::leases,
    LeaseRecord,
    oracle::lease
);
framed!(
    GC_EPOCH,
    "gc epoch",
    "gc_epoch",
    values::gc_epochs,
    GcEpoch,
    oracle::gc_epoch
);
framed!(
    SOFT_DELETE,
    "soft-delete marker",
    "soft_delete",
    values::soft_deletes,
    SoftDeleteMarker,
    oracle::soft_delete
);
framed!(
    PROTECTION,
    "protection record",
    "protection",
    values::protections,
    ProtectionRecord,
    oracle::protection
);

/// The header fields of forgotten chunks, and its ids.
fn forgotten_fields(bytes: &[u8]) -> Vec<Field> {
    let mut fields = COMMON.to_vec();
    fields.push(Field::new(12, 8));
    let mut at = 20 + usize::from(bytes.get(11).copied().unwrap_or(0));
    while at + 64 <= bytes.len() && fields.len() < 40 {
        fields.push(Field::new(at, 32));
        at += 32;
    }
    fields
}

pub const FORGOTTEN: Format = Format {
    name: "forgotten chunks",
    target: "forgotten",
    values: values::forgotten,
    fields: forgotten_fields,
    seal: |bytes, _| seal::forgotten(bytes),
    structured: Some(|rng, bytes| {
        // A new previous epoch's id, with the count of ids that fits what follows it.
        if bytes.len() < 20 {
            return "nothing (no header)".to_owned();
        }
        let old = usize::from(bytes[11]);
        let new = rng.pick(&[0, 1, 2, 16, 31, 32, 33, 255]);
        let text: Vec<u8> = match rng.below(3) {
            0 => vec![b'e'; new],
            1 => rng.bytes(new),
            _ => "é".repeat(new / 2 + 1).into_bytes()[..new].to_vec(),
        };
        let end = (20 + old).min(bytes.len());
        bytes.splice(20..end, text);
        bytes[11] = new as u8;
        let ids = bytes.len().saturating_sub(20 + new + 32) / 32;
        overwrite(bytes, Field::new(12, 8), ids as u64);
        format!("previous epoch {new} bytes, {ids} ids")
    }),
    check: oracle::forgotten,
    outcome: |bytes| kind(ForgottenChunks::decode(bytes)),
};

pub const ALL: [&Format; 9] = [
    &CHUNK,
    &BLOCK_MAP,
    &POINT,
    &VAULT_CONFIG,
    &LEASE,
    &GC_EPOCH,
    &SOFT_DELETE,
    &PROTECTION,
    &FORGOTTEN,
];
