//! Reading a listing of leases: which are alive by the store's clock, which hold a sweep,
//! who holds them; and the ids and names leases carry.

use blockvault_core::{LeaseKind, LeaseRecord};
use blockvault_store::ListedLease;
use jiff::Timestamp;

/// A lease that has not been rewritten for this long is dead: its holder crashed, hangs, or
/// lost the store. Others may then ignore it.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a lease is alive at `now`: rewritten within the lease time. Both times are the
/// store's (`now` is when the store wrote the judge's own lease, see [`store_now`]), so the
/// hosts' clocks play no part: a host whose clock runs fast cannot take a live lease for dead,
/// and a crashed holder whose clock ran ahead cannot block others past the lease time.
pub(crate) fn is_live(lease: &ListedLease, now: Timestamp) -> bool {
    let written = lease.last_modified;
    written > now || now.duration_since(written).unsigned_abs() <= LEASE_TTL
}

/// "Now" by the store's clock: when it last wrote `own` lease, as the listing that follows
/// the write reports it (this host's clock if the listing misses it).
pub(super) fn store_now(leases: &[ListedLease], own: &LeaseRecord) -> Timestamp {
    leases
        .iter()
        .filter(|l| l.record.as_ref().is_some_and(|r| r.id == own.id))
        .map(|l| l.last_modified)
        .max()
        .unwrap_or_else(Timestamp::now)
}

/// Whether a live sweep, running or pending, is listed: writers wait for it. An unreadable
/// lease counts (waiting is the safe side).
pub(super) fn sweep_listed(leases: &[ListedLease], now: Timestamp) -> bool {
    leases.iter().any(|l| {
        is_live(l, now)
            && l.record
                .as_ref()
                .is_none_or(|r| matches!(r.kind, LeaseKind::Sweeper | LeaseKind::SweepPending))
    })
}

/// Whether a listed lease is a sweep's request to hold writers back (which keeps no sweep
/// from running).
pub(super) fn is_pending(lease: &ListedLease) -> bool {
    lease
        .record
        .as_ref()
        .is_some_and(|r| r.kind == LeaseKind::SweepPending)
}

/// Who holds a listed lease, for messages.
pub(super) fn describe(lease: &ListedLease) -> String {
    match &lease.record {
        Some(record) => record.holder.clone(),
        None => format!("the unreadable lease {}", lease.key),
    }
}

pub(super) fn random_id(holder: &str) -> String {
    let seed = format!(
        "{holder}:{}:{}:{:?}",
        std::process::id(),
        Timestamp::now().as_nanosecond(),
        std::thread::current().id()
    );
    blake3::hash(seed.as_bytes()).to_hex()[..16].to_owned()
}

/// A number in [0, 1) that differs between processes and calls.
pub(super) fn jitter() -> f64 {
    let seed = random_id("jitter");
    f64::from(u8::from_str_radix(&seed[..2], 16).unwrap_or(0)) / 256.0
}

/// "host NAME, pid N", for lease holders.
pub(super) fn whoami() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".to_owned());
    format!("host {host}, pid {}", std::process::id())
}
