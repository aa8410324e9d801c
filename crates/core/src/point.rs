use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{BlockSize, DiskName, PointId, Result, VmName, framed};

const WHAT: &str = "recovery point";

/// How consistent the disks of a point are with each other and with the applications on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// Every disk read as it was on the host; as if the VM lost power at that instant.
    CrashConsistent,
    /// Pre-snapshot hooks quiesced the applications (for example `fsfreeze`) and succeeded.
    ApplicationConsistent,
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Consistency::CrashConsistent => "crash-consistent",
            Consistency::ApplicationConsistent => "application-consistent",
        })
    }
}

/// One disk of a recovery point: where its block map is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskRecord {
    pub name: DiskName,
    /// The image file the disk was read from, as given to the backup.
    pub source: String,
    pub size: u64,
    pub block_size: BlockSize,
    /// BLAKE3 of the encoded block map (full hex), so the point authenticates its maps.
    pub map_digest: String,
    /// Blocks in the map, and how many of them hold data (are not all-zero).
    pub blocks: u64,
    pub data_blocks: u64,
}

/// What a backup did to make the point (for `points` and for audits; not needed to restore).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PointStats {
    /// Bytes of allocated (non-hole) data read from the disks.
    pub bytes_scanned: u64,
    /// Bytes of non-zero blocks that differ from the previous point.
    pub bytes_changed: u64,
    /// Encoded bytes written to the vault (new chunks only).
    pub bytes_stored: u64,
    /// New chunk objects written.
    pub chunks_stored: u64,
}

/// A recovery point: one VM, one instant, every disk. Writing this record is the commit of a
/// backup: a point whose record is missing does not exist.
///
/// Encoding: the framed JSON envelope (magic `BVPOINT\0`, version 1; see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPoint {
    pub vm: VmName,
    pub id: PointId,
    pub time: Timestamp,
    pub consistency: Consistency,
    /// The point this one was taken incrementally against, if any (informational: every
    /// point's maps are complete).
    pub parent: Option<PointId>,
    pub disks: Vec<DiskRecord>,
    #[serde(default)]
    pub stats: PointStats,
    /// An on-demand backup's `retain until`: retention keeps the point at least until then,
    /// whatever the policy says. Absent on scheduled points (and written only when set, so
    /// records without it read as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<Timestamp>,
}

impl RecoveryPoint {
    pub const MAGIC: [u8; 8] = *b"BVPOINT\0";
    pub const VERSION: u16 = 1;

    pub fn encode(&self) -> Vec<u8> {
        framed::encode(&Self::MAGIC, Self::VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<RecoveryPoint> {
        let (_version, point) = framed::decode(WHAT, &Self::MAGIC, Self::VERSION, bytes)?;
        Ok(point)
    }

    /// The logical size of all disks together.
    pub fn total_size(&self) -> u64 {
        self.disks.iter().map(|d| d.size).sum()
    }
}

/// The marker object at the root of every vault. Its presence is what makes a location a vault.
///
/// Encoding: the framed JSON envelope (magic `BVVAULT\0`, version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Random id of this vault, to tell vaults apart in catalogs and logs.
    pub id: String,
    pub created: Timestamp,
    /// Block size for disks backed up without an explicit one.
    pub default_block_size: BlockSize,
}

impl VaultConfig {
    pub const MAGIC: [u8; 8] = *b"BVVAULT\0";
    pub const VERSION: u16 = 1;

    pub fn encode(&self) -> Vec<u8> {
        framed::encode(&Self::MAGIC, Self::VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<VaultConfig> {
        let (_version, config) =
            framed::decode("vault config", &Self::MAGIC, Self::VERSION, bytes)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn sample() -> RecoveryPoint {
        let time: Timestamp = "2026-11-23T10:15:03.250Z".parse().expect("ts");
        RecoveryPoint {
            vm: VmName::new("web01").expect("vm"),
            id: PointId::generate(time, b"t"),
            time,
            consistency: Consistency::CrashConsistent,
            parent: None,
            disks: vec![DiskRecord {
                name: DiskName::new("root.img").expect("disk"),
                source: "/var/lib/vms/root.img".into(),
                size: 8 << 30,
                block_size: BlockSize::DEFAULT,
                map_digest: "ab".repeat(32),
                blocks: 2048,
                data_blocks: 300,
            }],
            stats: PointStats {
                bytes_scanned: 1,
                bytes_changed: 2,
                bytes_stored: 3,
                chunks_stored: 4,
            },
            retain_until: None,
        }
    }

    #[test]
    fn points_round_trip() {
        let p = sample();
        assert_eq!(RecoveryPoint::decode(&p.encode()).expect("decode"), p);
    }

    #[test]
    fn corrupt_points_are_refused() {
        let bytes = sample().encode();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        assert!(matches!(
            RecoveryPoint::decode(&flipped),
            Err(Error::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            RecoveryPoint::decode(&bytes[..bytes.len() - 3]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            RecoveryPoint::decode(
                &VaultConfig {
                    id: "x".into(),
                    created: Timestamp::UNIX_EPOCH,
                    default_block_size: BlockSize::DEFAULT
                }
                .encode()
            ),
            Err(Error::BadMagic { .. })
        ));
    }
}
