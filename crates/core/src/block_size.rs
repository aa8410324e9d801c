use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The fixed block size of a disk's block map: a power of two from 64 KiB to 16 MiB.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct BlockSize(u32);

impl BlockSize {
    pub const MIN: u32 = 64 << 10;
    pub const MAX: u32 = 16 << 20;
    /// 1 MiB, from the chunk-size study in BENCHMARKS.md: on a realistic VM's daily churn it
    /// uploads half of what 4 MiB blocks do (1.19x the bytes changed against 2.44x) at the same
    /// speed, and its costs are small now that maps hold and store only their data blocks
    /// (about a million objects per TiB of data; 32 bytes of map per MiB of data). 256 KiB
    /// saves little more and costs 4x the objects.
    pub const DEFAULT: BlockSize = BlockSize(1 << 20);

    pub fn new(bytes: u64) -> Result<BlockSize> {
        let invalid = |reason: &str| Error::InvalidBlockSize {
            value: bytes.to_string(),
            reason: reason.to_owned(),
        };
        if !bytes.is_power_of_two() {
            return Err(invalid("must be a power of two (64KiB, 128KiB, ... 16MiB)"));
        }
        if bytes < u64::from(Self::MIN) || bytes > u64::from(Self::MAX) {
            return Err(invalid("must be between 64KiB and 16MiB"));
        }
        Ok(BlockSize(bytes as u32))
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    pub const fn bytes(self) -> u64 {
        self.0 as u64
    }

    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// How many blocks cover a disk of `disk_size` bytes (the last one may be partial).
    pub const fn blocks_for(self, disk_size: u64) -> u64 {
        disk_size.div_ceil(self.0 as u64)
    }
}

impl Default for BlockSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u32> for BlockSize {
    type Error = Error;
    fn try_from(v: u32) -> Result<BlockSize> {
        BlockSize::new(u64::from(v))
    }
}

impl From<BlockSize> for u32 {
    fn from(b: BlockSize) -> u32 {
        b.0
    }
}

impl FromStr for BlockSize {
    type Err = Error;

    /// Accepts a byte count with an optional binary unit: `65536`, `64K`, `64KiB`, `4M`, `4MiB`
    /// (case-insensitive; `K`/`M` mean KiB/MiB).
    fn from_str(s: &str) -> Result<BlockSize> {
        let invalid = |reason: &str| Error::InvalidBlockSize {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| invalid("expected a size such as 64KiB, 1MiB or 4MiB"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            _ => return Err(invalid("unknown unit (use KiB or MiB)")),
        };
        let bytes = n
            .checked_mul(1 << shift)
            .ok_or_else(|| invalid("too large"))?;
        BlockSize::new(bytes).map_err(|e| match e {
            Error::InvalidBlockSize { reason, .. } => invalid(&reason),
            other => other,
        })
    }
}

impl fmt::Display for BlockSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1 << 20 {
            write!(f, "{}MiB", self.0 >> 20)
        } else {
            write!(f, "{}KiB", self.0 >> 10)
        }
    }
}

impl fmt::Debug for BlockSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockSize({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_parse_in_all_spellings() {
        let cases = [
            ("65536", 64 << 10),
            ("64K", 64 << 10),
            ("64KiB", 64 << 10),
            ("1m", 1 << 20),
            ("4MiB", 4 << 20),
            ("16MiB", 16 << 20),
        ];
        for (text, bytes) in cases {
            assert_eq!(
                text.parse::<BlockSize>().expect(text).get(),
                bytes,
                "{text}"
            );
        }
    }

    #[test]
    fn block_sizes_out_of_range_or_not_a_power_of_two_are_refused() {
        let cases = [
            ("3MiB", "power of two"),
            ("100000", "power of two"),
            ("32KiB", "between"),
            ("32MiB", "between"),
            ("0", "power of two"),
            ("4GiB", "unknown unit"),
            ("lots", "expected a size"),
        ];
        for (text, why) in cases {
            let err = text.parse::<BlockSize>().expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(why) && msg.contains(text), "{text}: {msg}");
        }
    }

    #[test]
    fn display_round_trips() {
        for b in [BlockSize::new(64 << 10), BlockSize::new(4 << 20)] {
            let b = b.expect("valid");
            assert_eq!(b.to_string().parse::<BlockSize>().expect("parse"), b);
        }
    }
}
