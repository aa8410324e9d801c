//! The small records that let writers and the garbage collector share a vault without
//! compare-and-swap: leases and the GC epoch (see the store crate's docs for the protocol).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Result, framed};

/// What a lease holder does to the vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseKind {
    /// A backup or transfer: it may commit a point that names chunks it did not upload.
    Writer,
    /// The sweep of a garbage collection: it deletes chunks.
    Sweeper,
    /// A sweep that found no pause between writers for a while: new writers wait while it is
    /// held, so that the running ones can finish and the sweep get its turn. It deletes
    /// nothing and does not keep running writers from committing.
    SweepPending,
}

impl LeaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Writer => "writer",
            LeaseKind::Sweeper => "sweeper",
            LeaseKind::SweepPending => "sweep-pending",
        }
    }
}

/// A lease object: who holds it and since when. Its holder rewrites it every few seconds; a
/// lease not rewritten for the lease time is dead (its holder crashed or hangs).
///
/// Encoding: the framed JSON envelope (magic `BVLEASE\0`, version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    /// Random, unique per holder; the object's key ends with it.
    pub id: String,
    pub kind: LeaseKind,
    /// What holds it, for messages: "backup of web01 by host a (pid 4242)".
    pub holder: String,
    pub started: Timestamp,
    /// When the holder last rewrote it (by the holder's clock).
    pub refreshed: Timestamp,
}

impl LeaseRecord {
    pub const MAGIC: [u8; 8] = *b"BVLEASE\0";
    pub const VERSION: u16 = 1;

    pub fn encode(&self) -> Vec<u8> {
        framed::encode(&Self::MAGIC, Self::VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<LeaseRecord> {
        let (_version, lease) = framed::decode("lease", &Self::MAGIC, Self::VERSION, bytes)?;
        Ok(lease)
    }
}

/// The vault's garbage-collection epoch: a new one is written before a sweep deletes anything,
/// so every host's cache of "chunks the vault holds" learns that it may be stale.
///
/// Encoding: the framed JSON envelope (magic `BVGCEPOC`, version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcEpoch {
    /// Random, new for every sweep.
    pub id: String,
    /// When the sweep began.
    pub time: Timestamp,
}

impl GcEpoch {
    pub const MAGIC: [u8; 8] = *b"BVGCEPOC";
    pub const VERSION: u16 = 1;

    pub fn encode(&self) -> Vec<u8> {
        framed::encode(&Self::MAGIC, Self::VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<GcEpoch> {
        let (_version, epoch) = framed::decode("gc epoch", &Self::MAGIC, Self::VERSION, bytes)?;
        Ok(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_and_epoch_round_trip_and_reject_damage() {
        let lease = LeaseRecord {
            id: "0123abcd".into(),
            kind: LeaseKind::Sweeper,
            holder: "gc by host a (pid 1)".into(),
            started: Timestamp::from_second(1_700_000_000).expect("time"),
            refreshed: Timestamp::from_second(1_700_000_060).expect("time"),
        };
        let bytes = lease.encode();
        assert_eq!(LeaseRecord::decode(&bytes).expect("decode"), lease);
        let mut bad = bytes.clone();
        *bad.last_mut().expect("body") ^= 1;
        assert!(
            LeaseRecord::decode(&bad).is_err(),
            "checksum catches a flip"
        );
        assert!(
            GcEpoch::decode(&bytes).is_err(),
            "magic tells the records apart"
        );

        let epoch = GcEpoch {
            id: "e1".into(),
            time: lease.started,
        };
        assert_eq!(GcEpoch::decode(&epoch.encode()).expect("decode"), epoch);
    }
}
