//! The protection record: what a vault says about who protects a VM (`protection/<vm>` in the
//! store's layout). A VM is protected by one host at a time; the record is how every other
//! host reading the vault learns it, and what it refuses a second protector with.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Result, VmName, framed};

/// A host as protection records name it: a stable id made once in its state directory, the
/// machine's host name, and the state directory (two state directories on one machine are two
/// hosts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostIdentity {
    /// Random, made when the state directory first needed it; never changes.
    pub id: String,
    /// The machine's host name when the id was made.
    pub name: String,
    /// The state directory holding the id.
    pub state_dir: String,
}

impl HostIdentity {
    /// "host NAME (id ID, state dir DIR)", for messages.
    pub fn describe(&self) -> String {
        format!(
            "host {} (id {}, state dir {})",
            self.name, self.id, self.state_dir
        )
    }
}

/// Where the holder's protection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum HeldState {
    /// Backups are scheduled by the holder.
    Protected,
    /// Protection stopped with the data retained: the holder still holds the VM (as Azure
    /// keeps the item); another host takes it only with `protect --take-over`.
    Stopped { stopped: Timestamp },
}

/// The protection of one VM, as its vault records it.
///
/// Encoding: the framed JSON envelope (magic `BVPROTEC`, version 1; see the crate docs), the
/// state flattened into the body (`"state": "protected"`, or `"stopped"` with `"stopped": TIME`;
/// serde cannot deny unknown fields beside a flattened one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectionRecord {
    pub vm: VmName,
    /// The host that protects it.
    pub host: HostIdentity,
    /// The policy's name.
    pub policy: String,
    /// The policy's settings, as a policy file says them (TOML): a new host can read the
    /// policy from here (`policy create --file`).
    pub policy_settings: String,
    /// Since when the holder protects it.
    pub since: Timestamp,
    /// When the holder last wrote the record.
    pub updated: Timestamp,
    #[serde(flatten)]
    pub state: HeldState,
}

impl ProtectionRecord {
    pub const MAGIC: [u8; 8] = *b"BVPROTEC";
    pub const VERSION: u16 = 1;

    /// Whether `host` holds the VM (by id: names and paths may repeat).
    pub fn held_by(&self, host: &HostIdentity) -> bool {
        self.host.id == host.id
    }

    pub fn encode(&self) -> Vec<u8> {
        framed::encode(&Self::MAGIC, Self::VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<ProtectionRecord> {
        let (_version, record) =
            framed::decode("protection record", &Self::MAGIC, Self::VERSION, bytes)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn record(state: HeldState) -> ProtectionRecord {
        ProtectionRecord {
            vm: VmName::new("web01").expect("vm"),
            host: HostIdentity {
                id: "0123456789abcdef".into(),
                name: "hv1".into(),
                state_dir: "/var/lib/blockvault".into(),
            },
            policy: "DefaultPolicy".into(),
            policy_settings: "name = \"DefaultPolicy\"\n".into(),
            since: "2026-11-23T10:00:00Z".parse().expect("ts"),
            updated: "2026-11-24T10:00:00Z".parse().expect("ts"),
            state,
        }
    }

    #[test]
    fn records_round_trip_in_every_state_and_are_checked() {
        let stopped = HeldState::Stopped {
            stopped: "2026-11-25T10:00:00Z".parse().expect("ts"),
        };
        for state in [HeldState::Protected, stopped] {
            let record = record(state);
            let bytes = record.encode();
            assert_eq!(&bytes[..8], b"BVPROTEC");
            assert_eq!(ProtectionRecord::decode(&bytes).expect("decode"), record);
        }
        let mut flipped = record(HeldState::Protected).encode();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert!(matches!(
            ProtectionRecord::decode(&flipped),
            Err(Error::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn a_holder_is_known_by_its_id_and_described_by_name_and_dir() {
        let record = record(HeldState::Protected);
        let mut other = record.host.clone();
        assert!(record.held_by(&other));
        other.id = "fedcba9876543210".into();
        assert!(!record.held_by(&other));
        let said = record.host.describe();
        assert!(
            said.contains("hv1") && said.contains("0123456789abcdef"),
            "{said}"
        );
        assert!(said.contains("/var/lib/blockvault"), "{said}");
    }
}
