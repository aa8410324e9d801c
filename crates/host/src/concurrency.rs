//! How many requests a transfer keeps in flight, by where the vault is.

use blockvault_store::VaultLocation;
use blockvault_vault::TransferOptions;

/// Transfer settings for writes (backups, transfers): `concurrency` when given, else 8 for a
/// directory and 16 for S3 (round trips to an object store hide behind more requests in
/// flight).
pub fn write_options(location: &VaultLocation, concurrency: Option<u16>) -> TransferOptions {
    let default = match location {
        VaultLocation::Local(_) => 8,
        VaultLocation::S3 { .. } => 16,
    };
    TransferOptions {
        concurrency: concurrency.map_or(default, usize::from),
    }
}

/// Transfer settings for reads (restore, verify): as [`write_options`], but 32 in flight on
/// S3. A restore from Garage on the benchmark machine took 7% less time with 32 than with 16
/// (faster in 8 interleaved pairs of 8; BENCHMARKS.md), for 10-15 MiB more memory at 1 MiB
/// blocks (each read in flight holds one compressed block: more at larger block sizes). A
/// full backup to S3 already runs at its floor with 16. A restore from the snapshot tier of
/// a VM whose vault is on S3 gets 32 too; local reads do not mind.
pub fn read_options(location: &VaultLocation, concurrency: Option<u16>) -> TransferOptions {
    match location {
        VaultLocation::S3 { .. } => TransferOptions {
            concurrency: concurrency.map_or(32, usize::from),
        },
        VaultLocation::Local(_) => write_options(location, concurrency),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_stores_get_more_requests_in_flight_reads_most() {
        let dir = VaultLocation::Local("/v".into());
        let s3: VaultLocation = "s3://bucket/prefix".parse().expect("s3 location");
        assert_eq!(write_options(&dir, None).concurrency, 8);
        assert_eq!(write_options(&s3, None).concurrency, 16);
        assert_eq!(read_options(&dir, None).concurrency, 8);
        assert_eq!(read_options(&s3, None).concurrency, 32);
        assert_eq!(read_options(&s3, Some(3)).concurrency, 3);
    }
}
