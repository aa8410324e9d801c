use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{BlockSize, DiskName, Encryption, PointId, Result, VmName, framed};

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

/// How the Snapshot fixed the instant of a point's disks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capture {
    /// Every disk cloned (reflink, `FICLONE`) back to back, then read from the clones: the
    /// hook's freeze lasted only the clones.
    Reflink,
    /// Every disk read while the pre-hook kept the VM quiesced: the freeze lasted the read.
    ReadUnderHook,
    /// Read while the VM ran, with no hook: not crash-consistent if the VM wrote meanwhile.
    ReadLive,
    /// A running QEMU VM: one QMP transaction started a copy-before-write fleecing job per
    /// disk (the hook's freeze lasted only the transaction), then the fleecing exports were
    /// read over NBD.
    QemuFleecing,
}

impl Capture {
    /// The stable key (`reflink`, `read-under-hook`, `read-live`, `qemu-fleecing`).
    pub fn key(self) -> &'static str {
        match self {
            Capture::Reflink => "reflink",
            Capture::ReadUnderHook => "read-under-hook",
            Capture::ReadLive => "read-live",
            Capture::QemuFleecing => "qemu-fleecing",
        }
    }
}

impl std::fmt::Display for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// The format of a disk image: how its bytes hold the guest's disk. Every format but raw is
/// read (and written) through QEMU's tools; the serde keys are QEMU's format names, so points
/// written before a format was added read as before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFormat {
    /// The bytes are the disk.
    #[default]
    Raw,
    /// QEMU's copy-on-write format, the only one that holds persistent dirty bitmaps.
    Qcow2,
    /// VMware's (sparse, or a descriptor naming its extents).
    Vmdk,
    /// VirtualBox's.
    Vdi,
    /// Hyper-V's current format.
    Vhdx,
    /// Virtual PC / Hyper-V's older VHD (QEMU calls it `vpc`).
    Vpc,
    /// QEMU's enhanced disk format, qcow2's abandoned sibling.
    Qed,
}

impl DiskFormat {
    /// Every format, in the order the help texts list them.
    pub const ALL: [DiskFormat; 7] = [
        DiskFormat::Raw,
        DiskFormat::Qcow2,
        DiskFormat::Vmdk,
        DiskFormat::Vdi,
        DiskFormat::Vhdx,
        DiskFormat::Vpc,
        DiskFormat::Qed,
    ];

    /// The stable key, as QEMU's tools name the format too (`raw`, `qcow2`, `vmdk`, ...).
    pub fn key(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vpc => "vpc",
            DiskFormat::Qed => "qed",
        }
    }

    /// Whether this format must be read through QEMU rather than as the file's bytes.
    pub fn needs_qemu(self) -> bool {
        self != DiskFormat::Raw
    }

    /// Whether an image of this format can keep QEMU's persistent dirty bitmaps (qcow2 only,
    /// and not every qcow2: a compat 0.10 image cannot either).
    pub fn holds_bitmaps(self) -> bool {
        self == DiskFormat::Qcow2
    }

    pub fn is_raw(&self) -> bool {
        *self == DiskFormat::Raw
    }
}

impl std::fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl std::str::FromStr for DiskFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<DiskFormat, String> {
        DiskFormat::ALL
            .into_iter()
            .find(|f| f.key() == s)
            .ok_or_else(|| {
                let keys: Vec<&str> = DiskFormat::ALL.iter().map(|f| f.key()).collect();
                format!(
                    "unknown disk format {s:?} (expected one of {})",
                    keys.join(", ")
                )
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
    /// The format of the image the disk was read from (the guest's disk was read through QEMU
    /// when not raw); a restore writes this format by default. Written only when not raw, so
    /// records of raw disks read as before.
    #[serde(default, skip_serializing_if = "DiskFormat::is_raw")]
    pub format: DiskFormat,
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
    /// How the disks were captured; absent on points made before it was recorded (and
    /// ignored by readers that predate it: stats accept unknown fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<Capture>,
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
    /// The id of the vault ([`VaultConfig::id`]) a snapshot-tier point was taken for. A VM
    /// backed up to two vaults has one snapshot tier: a listing or restore against one vault
    /// must not see the other's points there. Set in the snapshot tier's record only (absent
    /// in the vault's copy, and in records written before it, which every vault sees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
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
/// Encoding: the framed JSON envelope (magic `BVVAULT\0`). A single vault that is no replica
/// is written exactly as before redundancy existed: version 1, without the `redundancy` and
/// `replica-of` fields, so older builds keep reading it. A replicated vault, or the replica of
/// one, is written as version 2: older builds refuse it as a newer version instead of opening
/// it and writing to one store only. Both versions decode; a version 1 body reads as
/// [`Redundancy::Single`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Random id of this vault, to tell vaults apart in catalogs and logs.
    pub id: String,
    pub created: Timestamp,
    /// Block size for disks backed up without an explicit one.
    pub default_block_size: BlockSize,
    /// Whether every object is also written to a secondary store.
    #[serde(default, skip_serializing_if = "Redundancy::is_single")]
    pub redundancy: Redundancy,
    /// Set in the config a replicated vault writes into its secondary store: the vault this
    /// location is the replica of. Such a location opens on its own as a single vault (to
    /// restore when the primary is lost).
    #[serde(
        default,
        rename = "replica-of",
        skip_serializing_if = "Option::is_none"
    )]
    pub replica_of: Option<ReplicaOf>,
    /// How the vault is encrypted; `None` for a plain vault. Its snapshot tier and its replica
    /// carry the same, so they open with the same passphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How many stores hold a vault's objects (Azure's storage replication, in our words).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Redundancy {
    /// One store.
    #[default]
    Single,
    /// Every object is also written to a secondary store, and reads fall back to it.
    Replicated {
        /// Where the secondary store is, as a vault location (a directory or
        /// `s3://BUCKET/PREFIX`).
        secondary: String,
    },
}

impl Redundancy {
    pub fn is_single(&self) -> bool {
        matches!(self, Redundancy::Single)
    }

    /// The secondary's location, when replicated.
    pub fn secondary(&self) -> Option<&str> {
        match self {
            Redundancy::Single => None,
            Redundancy::Replicated { secondary } => Some(secondary),
        }
    }
}

impl std::fmt::Display for Redundancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redundancy::Single => f.write_str("single"),
            Redundancy::Replicated { secondary } => write!(f, "replicated to {secondary}"),
        }
    }
}

/// The vault a replica belongs to: in the config of a replicated vault's secondary store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaOf {
    /// The id of the primary's config.
    pub vault: String,
    /// The primary's location, as the user gave it when replication was set up.
    pub primary: String,
}

impl VaultConfig {
    pub const MAGIC: [u8; 8] = *b"BVVAULT\0";
    /// The newest version this build writes and reads: 3 for an encrypted vault (so a build
    /// that cannot decrypt refuses it by its version), 2 for a replicated one, 1 otherwise;
    /// each older version is still read.
    pub const VERSION: u16 = 3;

    pub fn encode(&self) -> Vec<u8> {
        let version = if self.encryption.is_some() {
            3
        } else if self.redundancy.is_single() && self.replica_of.is_none() {
            1
        } else {
            2
        };
        framed::encode(&Self::MAGIC, version, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<VaultConfig> {
        let (_version, config) =
            framed::decode("vault config", &Self::MAGIC, Self::VERSION, bytes)?;
        Ok(config)
    }

    /// The config a replicated vault writes into its secondary store: a vault of its own
    /// (single, with an id derived from this one, so this host's state of the two never mixes)
    /// that says whose replica it is.
    pub fn for_replica(&self, primary: &str) -> VaultConfig {
        VaultConfig {
            id: blake3::hash(format!("{}:replica", self.id).as_bytes()).to_hex()[..16].to_owned(),
            created: self.created,
            default_block_size: self.default_block_size,
            redundancy: Redundancy::Single,
            replica_of: Some(ReplicaOf {
                vault: self.id.clone(),
                primary: primary.to_owned(),
            }),
            encryption: self.encryption.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn disk_formats_are_keyed_by_qemus_names_and_old_records_read() {
        for format in DiskFormat::ALL {
            let json = serde_json::to_string(&format).expect("json");
            assert_eq!(json, format!("\"{}\"", format.key()));
            assert_eq!(serde_json::from_str::<DiskFormat>(&json).ok(), Some(format));
            assert_eq!(format.key().parse::<DiskFormat>().ok(), Some(format));
            assert_eq!(format.holds_bitmaps(), format == DiskFormat::Qcow2);
        }
        let e = "vhd".parse::<DiskFormat>().expect_err("vpc is QEMU's name");
        assert!(e.contains("vmdk") && e.contains("qed"), "{e}");
    }

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
                format: Default::default(),
            }],
            stats: PointStats {
                bytes_scanned: 1,
                bytes_changed: 2,
                bytes_stored: 3,
                chunks_stored: 4,
                capture: Some(Capture::Reflink),
            },
            retain_until: None,
            vault: None,
        }
    }

    #[test]
    fn the_capture_is_optional_in_stats_and_readers_ignore_what_they_do_not_know() {
        let old: PointStats = serde_json::from_str(
            r#"{"bytes_scanned":1,"bytes_changed":2,"bytes_stored":3,"chunks_stored":4}"#,
        )
        .expect("stats without a capture");
        assert_eq!(old.capture, None);
        let text = serde_json::to_string(&old).expect("encode");
        assert!(!text.contains("capture"), "written only when known: {text}");
        let newer: PointStats = serde_json::from_str(
            r#"{"bytes_scanned":1,"capture":"read-under-hook","freeze_us":5,"chunks_stored":4}"#,
        )
        .expect("stats from a newer writer");
        assert_eq!(newer.capture, Some(Capture::ReadUnderHook));
        for capture in [Capture::Reflink, Capture::ReadUnderHook, Capture::ReadLive] {
            let json = serde_json::to_value(capture).expect("json");
            assert_eq!(json, capture.key());
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
                    default_block_size: BlockSize::DEFAULT,
                    redundancy: Redundancy::Single,
                    replica_of: None,
                    encryption: None,
                }
                .encode()
            ),
            Err(Error::BadMagic { .. })
        ));
    }

    /// A config written before redundancy existed: version 1, no redundancy field. Built by
    /// hand so it stays the old encoding whatever this build writes.
    fn old_single_config() -> Vec<u8> {
        let body = br#"{
  "id": "0123456789abcdef",
  "created": "2026-11-20T08:00:00Z",
  "default_block_size": 4194304
}"#;
        let mut out = Vec::new();
        out.extend_from_slice(&VaultConfig::MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let mut hasher = blake3::Hasher::new();
        hasher.update(&out);
        hasher.update(body);
        out.extend_from_slice(hasher.finalize().as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn configs_from_before_redundancy_read_as_single() {
        let old = old_single_config();
        let config = VaultConfig::decode(&old).expect("old config decodes");
        assert_eq!(config.redundancy, Redundancy::Single);
        assert_eq!(config.replica_of, None);
        assert_eq!(config.id, "0123456789abcdef");
        // A single vault is still written as version 1, readable by older builds.
        let again = config.encode();
        assert_eq!(u16::from_le_bytes([again[8], again[9]]), 1);
        assert!(!String::from_utf8_lossy(&again[48..]).contains("redundancy"));
    }

    #[test]
    fn replicated_configs_round_trip_as_version_2() {
        let config = VaultConfig {
            redundancy: Redundancy::Replicated {
                secondary: "s3://backups/replica".into(),
            },
            ..VaultConfig::decode(&old_single_config()).expect("old")
        };
        let bytes = config.encode();
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2);
        assert_eq!(VaultConfig::decode(&bytes).expect("decode"), config);
        let replica = config.for_replica("/srv/vault");
        assert_eq!(replica.redundancy, Redundancy::Single);
        assert_ne!(replica.id, config.id);
        assert_eq!(
            replica.replica_of.as_ref().map(|r| r.vault.as_str()),
            Some("0123456789abcdef")
        );
        let bytes = replica.encode();
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2);
        assert_eq!(VaultConfig::decode(&bytes).expect("decode"), replica);
        // A version this build does not know is refused, not guessed at.
        let mut future = bytes.clone();
        future[8] = 4;
        assert!(matches!(
            VaultConfig::decode(&future),
            Err(Error::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn encrypted_configs_are_version_3_and_keep_their_slots() {
        let master = crate::MasterKey::generate();
        let kdf = crate::Kdf::argon2id(8 * 1024, 1).expect("kdf");
        let encryption = Encryption::new(
            &master,
            b"pw",
            kdf,
            crate::KeyHome::Vault,
            Timestamp::UNIX_EPOCH,
        )
        .expect("encryption");
        let config = VaultConfig {
            encryption: Some(encryption),
            ..VaultConfig::decode(&old_single_config()).expect("old")
        };
        let bytes = config.encode();
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3);
        let back = VaultConfig::decode(&bytes).expect("decode");
        assert_eq!(back, config);
        let enc = back.encryption.as_ref().expect("encrypted");
        assert_eq!(
            enc.unlock(&enc.slots, b"pw").expect("unlock").key_id(),
            master.key_id()
        );
        // The replica carries the same key, so a promoted replica opens with the passphrase.
        assert_eq!(config.for_replica("/srv/v").encryption, config.encryption);
    }
}
