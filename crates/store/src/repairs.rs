//! What the reads of a replicated store took from its secondary (see "Replication" in the
//! crate docs).

use serde::Serialize;

/// Objects a replicated store read from its secondary because the primary's copy was missing
/// or failed its integrity check, each then put back on the primary (healed). Counted over
/// the life of the store (all its clones); diff two readings to count one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Repairs {
    pub chunks: u64,
    pub maps: u64,
    pub records: u64,
    /// Of those, how many could not be put back on the primary (the read still succeeded).
    pub unhealed: u64,
}

impl Repairs {
    /// Objects read from the secondary.
    pub fn total(&self) -> u64 {
        self.chunks + self.maps + self.records
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Repairs) -> Repairs {
        Repairs {
            chunks: self.chunks - before.chunks,
            maps: self.maps - before.maps,
            records: self.records - before.records,
            unhealed: self.unhealed - before.unhealed,
        }
    }
}

impl std::fmt::Display for Repairs {
    /// "2 chunks and 1 block map were read from the replica and repaired on the primary".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (n, one, many) in [
            (self.chunks, "chunk", "chunks"),
            (self.maps, "block map", "block maps"),
            (self.records, "point record", "point records"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {}", if n == 1 { one } else { many }));
            }
        }
        let verb = if self.total() == 1 { "was" } else { "were" };
        write!(f, "{} {verb} read from the replica", parts.join(" and "))?;
        match self.unhealed {
            0 => write!(f, " and repaired on the primary"),
            n if n == self.total() => write!(f, "; the primary could not be repaired"),
            n => write!(
                f,
                " and repaired on the primary, except {n} the primary refused"
            ),
        }
    }
}
