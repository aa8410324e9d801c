//! Resync: copying to a secondary store everything of a vault it lacks, to fill a new secondary
//! (one that replaces a lost one) or to mend one that lost objects.
//!
//! What a replica holds is what replicated writes reach: chunks, block maps, point records and
//! soft-delete markers. Leases, the GC epoch and damage marks live on the primary alone
//! (`coordination.rs`), and the config is each store's own; none of those is copied.
//!
//! # Order, and what a kill leaves
//!
//! The primary is listed once, the target once; what the target lacks (or holds at another
//! size) is copied in the order a backup writes: chunks, then maps, then soft-delete markers,
//! then, once a second listing of the target shows every one of those at its size, the point
//! records. So the target never holds a record whose data it lacks, however the copy ends; a
//! killed resync run again lists both stores again and copies only what is still missing.
//!
//! # Checks
//!
//! Nothing bad on the primary is copied: a chunk must decode to its id, a map must hash to the
//! digest its point record gives (a map of a backup that never committed has none and is
//! copied as it is), a record and a soft-delete marker must open (an encrypted vault's are
//! sealed) and decode. Copies are byte copies under the same key, so a sealed object, bound
//! to its key path, stays valid on the target. Objects that fail are
//! reported ([`ResyncReport::bad`]) and left out, and so is the record of every point they
//! belong to. After each phase the target is listed again: an object missing there or of
//! another size fails the resync ([`Error::ResyncMismatch`]).
//!
//! # Running beside backups and garbage collection
//!
//! A record copied is checked on the primary once more afterwards: one that retention or a
//! purge deleted meanwhile is taken back off the target (protection records and forgotten
//! points' markers travel with the VMs' soft-delete markers, counted among them). Records and
//! soft-delete markers only the target holds (points deleted while it was away) are removed,
//! unless the primary has them by the time they are checked again (a commit reaches the secondary first). Chunks only
//! the target holds are left for garbage collection, whose mark lists the secondary too.

use std::collections::{BTreeMap, BTreeSet};

use blockvault_core::{
    ChunkId, PointDeleteMarker, PointId, ProtectionRecord, RecoveryPoint, SoftDeleteMarker, VmName,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::Path;
use serde::Serialize;

use crate::checks::{self, decode_chunk};
use crate::{Error, Result, Store, layout};

/// Receives the progress of a resync: a phase ("chunks", "maps", "records") with the bytes it
/// will copy, then the bytes copied. Called from tasks: keep it cheap.
pub trait ResyncProgress: Send + Sync {
    fn begin(&self, _phase: &str, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoResyncProgress;

impl ResyncProgress for NoResyncProgress {}

/// How a resync runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncOptions {
    /// Objects in flight at once.
    pub concurrency: usize,
}

impl Default for ResyncOptions {
    fn default() -> Self {
        ResyncOptions { concurrency: 8 }
    }
}

/// Objects of each kind a replica holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectCounts {
    pub chunks: u64,
    pub maps: u64,
    pub records: u64,
    pub markers: u64,
}

impl ObjectCounts {
    pub fn total(&self) -> u64 {
        self.chunks + self.maps + self.records + self.markers
    }

    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Chunk => self.chunks += 1,
            Kind::Map => self.maps += 1,
            Kind::Record => self.records += 1,
            Kind::Marker => self.markers += 1,
        }
    }
}

impl std::fmt::Display for ObjectCounts {
    /// "3 chunks, 1 block map, 1 point record, 0 soft-delete markers".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            (self.chunks, "chunk", "chunks"),
            (self.maps, "block map", "block maps"),
            (self.records, "point record", "point records"),
            (self.markers, "soft-delete marker", "soft-delete markers"),
        ]
        .into_iter()
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        f.write_str(&parts.join(", "))
    }
}

/// What a resync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResyncReport {
    /// Objects of the primary the target should hold.
    pub on_primary: ObjectCounts,
    /// Of those, already on the target (at the right size) before this run.
    pub already: ObjectCounts,
    /// Copied by this run.
    pub copied: ObjectCounts,
    pub bytes_copied: u64,
    /// Objects bad on the primary, left out, each with what is wrong (verify finds them too).
    pub bad: Vec<String>,
    /// Objects the primary no longer had when they were to be copied (deleted meanwhile).
    pub vanished: u64,
    /// Point records and soft-delete markers removed from the target because the primary no
    /// longer has them (points deleted while the target was away, or during this run).
    pub removed: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Chunk,
    Map,
    Record,
    Marker,
}

/// The objects under the replicated prefixes of a store, with their sizes.
type Listing = BTreeMap<Path, u64>;

/// A point, by VM and id.
type PointKey = (VmName, PointId);

/// Point records read from the primary: `None` for one that does not decode.
type Records = BTreeMap<PointKey, Option<RecoveryPoint>>;

impl Store {
    /// Copies to `target` every replicated object of this store (its primary, when
    /// replicated) that `target` lacks or holds at another size, checked, records last; see
    /// the module docs. `target` is written alone, never through a secondary of its own.
    pub async fn resync_to(
        &self,
        target: &Store,
        options: ResyncOptions,
        progress: &dyn ResyncProgress,
    ) -> Result<ResyncReport> {
        let source = self.primary();
        let target = target.primary();
        let mut report = ResyncReport::default();
        let on_source = list_replicated(&source).await?;
        let on_target = list_replicated(&target).await?;

        let mut missing: BTreeMap<Path, (Kind, u64)> = BTreeMap::new();
        for (key, &size) in &on_source {
            let Some(kind) = kind_of(key) else { continue };
            report.on_primary.add(kind);
            if on_target.get(key) == Some(&size) {
                report.already.add(kind);
            } else {
                missing.insert(key.clone(), (kind, size));
            }
        }

        // The records of the points whose record or maps are missing: they give the maps'
        // digests, and a point any of whose objects is bad keeps its record off the target.
        let wanted: BTreeSet<(VmName, PointId)> = missing
            .iter()
            .filter(|(_, (kind, _))| matches!(kind, Kind::Record | Kind::Map))
            .filter_map(|(key, _)| point_of(key))
            .collect();
        let records = read_records(&source, wanted, options, &mut report).await?;
        let mut spoiled: BTreeSet<(VmName, PointId)> = records
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(p, _)| p.clone())
            .collect();

        let copy = Copy {
            source: &source,
            target: &target,
            records: &records,
            options,
            progress,
        };
        for (phase, kinds) in [
            ("chunks", &[Kind::Chunk][..]),
            ("maps", &[Kind::Map, Kind::Marker][..]),
        ] {
            let batch: Vec<(Path, Kind, u64)> = missing
                .iter()
                .filter(|(_, (kind, _))| kinds.contains(kind))
                .map(|(key, &(kind, size))| (key.clone(), kind, size))
                .collect();
            let outcome = copy.run(phase, batch).await?;
            spoiled.extend(outcome.spoiled_points());
            outcome.add_to(&mut report);
            target.sync_chunks().await?;
            check_landed(&target, &outcome.landed).await?;
        }

        // The commit of the copy: each record whose point is whole on the target.
        let batch: Vec<(Path, Kind, u64)> = missing
            .iter()
            .filter(|(_, (kind, _))| *kind == Kind::Record)
            .filter(|(key, _)| point_of(key).is_none_or(|p| !spoiled.contains(&p)))
            .map(|(key, &(kind, size))| (key.clone(), kind, size))
            .collect();
        let outcome = copy.run("records", batch).await?;
        outcome.add_to(&mut report);
        check_landed(&target, &outcome.landed).await?;

        // A record copied whose point was deleted on the primary meanwhile goes again; so does
        // every record or marker only the target holds.
        let mut doubtful: Vec<Path> = outcome.landed.iter().map(|(k, _)| k.clone()).collect();
        doubtful.extend(
            on_target
                .keys()
                .filter(|key| matches!(kind_of(key), Some(Kind::Record | Kind::Marker)))
                .filter(|key| !on_source.contains_key(*key))
                .cloned(),
        );
        for key in doubtful {
            if source.head_here(&key).await? {
                continue;
            }
            match point_of(&key) {
                Some((vm, id)) if kind_of(&key) == Some(Kind::Record) => {
                    target.delete_point(&vm, &id).await?;
                }
                _ => target.delete_here(&key).await?,
            }
            report.removed.push(key.to_string());
        }
        Ok(report)
    }

    /// Whether this store (not its secondary) holds object `key`.
    async fn head_here(&self, key: &Path) -> Result<bool> {
        self.here.head(key).await
    }
}

/// The copying of one resync: what it reads from, writes to, and knows.
struct Copy<'a> {
    source: &'a Store,
    target: &'a Store,
    records: &'a Records,
    options: ResyncOptions,
    progress: &'a dyn ResyncProgress,
}

/// What one phase did.
#[derive(Default)]
struct Outcome {
    landed: Vec<(Path, u64)>,
    copied: ObjectCounts,
    bytes: u64,
    bad: Vec<(Path, String)>,
    vanished: u64,
}

/// What became of one object.
enum Copied {
    Landed(Path, Kind, u64),
    Bad(Path, String),
    Vanished,
}

impl Outcome {
    /// The points a bad map belongs to: their records stay off the target.
    fn spoiled_points(&self) -> impl Iterator<Item = (VmName, PointId)> + '_ {
        self.bad
            .iter()
            .filter(|(key, _)| kind_of(key) == Some(Kind::Map))
            .filter_map(|(key, _)| point_of(key))
    }

    fn add_to(&self, report: &mut ResyncReport) {
        report.copied.chunks += self.copied.chunks;
        report.copied.maps += self.copied.maps;
        report.copied.records += self.copied.records;
        report.copied.markers += self.copied.markers;
        report.bytes_copied += self.bytes;
        report.vanished += self.vanished;
        report
            .bad
            .extend(self.bad.iter().map(|(key, why)| format!("{key}: {why}")));
    }
}

impl Copy<'_> {
    async fn run(&self, phase: &str, batch: Vec<(Path, Kind, u64)>) -> Result<Outcome> {
        self.progress
            .begin(phase, batch.iter().map(|(_, _, size)| size).sum());
        let results: Vec<Copied> = stream::iter(batch)
            .map(|(key, kind, _)| self.one(key, kind))
            .buffer_unordered(self.options.concurrency.max(1))
            .try_collect()
            .await?;
        let mut outcome = Outcome::default();
        for result in results {
            match result {
                Copied::Landed(key, kind, size) => {
                    outcome.copied.add(kind);
                    outcome.bytes += size;
                    outcome.landed.push((key, size));
                }
                Copied::Bad(key, why) => outcome.bad.push((key, why)),
                Copied::Vanished => outcome.vanished += 1,
            }
        }
        Ok(outcome)
    }

    /// Reads `key` from the source, checks it, writes it to the target.
    async fn one(&self, key: Path, kind: Kind) -> Result<Copied> {
        let Some(bytes) = self.source.get(&key).await? else {
            return Ok(Copied::Vanished);
        };
        let size = bytes.len() as u64;
        if let Err(why) = self.check(&key, kind, bytes.clone()).await {
            return Ok(Copied::Bad(key, why));
        }
        let written = match (kind, key.filename().and_then(|n| n.parse::<ChunkId>().ok())) {
            (Kind::Chunk, Some(id)) => self.target.put_chunk(&id, bytes).await,
            _ => self.target.put_here(&key, bytes).await,
        };
        written.map_err(|e| Error::InStore {
            role: "target",
            location: self.target.location().to_owned(),
            source: Box::new(e),
        })?;
        self.progress.advance(size);
        Ok(Copied::Landed(key, kind, size))
    }

    /// Whether the source's copy of `key` is sound; what is wrong otherwise.
    async fn check(&self, key: &Path, kind: Kind, bytes: Bytes) -> std::result::Result<(), String> {
        let opened = |bytes: &Bytes| -> std::result::Result<Vec<u8>, String> {
            checks::open(self.source.codec(), key, bytes)
                .map(|plain| plain.into_owned())
                .map_err(|e| e.to_string())
        };
        match kind {
            Kind::Chunk => {
                let id = key
                    .filename()
                    .and_then(|n| n.parse::<ChunkId>().ok())
                    .ok_or_else(|| "not a chunk id".to_owned())?;
                decode_chunk(self.source.codec(), bytes, id)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Kind::Map => {
                let digest = point_of(key)
                    .and_then(|p| self.records.get(&p).cloned().flatten())
                    .and_then(|record| {
                        let disk = key.filename()?.strip_suffix(".map")?.to_owned();
                        record
                            .disks
                            .iter()
                            .find(|d| d.name.as_str() == disk)
                            .map(|d| d.map_digest.clone())
                    });
                match digest {
                    Some(expected) => {
                        let actual = blake3::hash(&bytes).to_hex();
                        if actual.as_str() == expected {
                            Ok(())
                        } else {
                            Err(format!(
                                "its digest {} does not match the point record's {}",
                                &actual[..16],
                                &expected[..expected.len().min(16)]
                            ))
                        }
                    }
                    // A map no record names (a backup that never committed): copied as is.
                    None => Ok(()),
                }
            }
            Kind::Record => RecoveryPoint::decode(&opened(&bytes)?)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            // Soft-delete markers (of a VM, of a forgotten point), and protection records
            // (which host protects a VM).
            Kind::Marker if key.as_ref().starts_with("protection/") => {
                ProtectionRecord::decode(&opened(&bytes)?)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Kind::Marker if key.as_ref().starts_with("deleted-points/") => {
                PointDeleteMarker::decode(&opened(&bytes)?)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Kind::Marker => SoftDeleteMarker::decode(&opened(&bytes)?)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

/// Every object under the prefixes a replica holds, with its size.
async fn list_replicated(store: &Store) -> Result<Listing> {
    let mut listing = Listing::new();
    for root in [
        layout::chunks_root(),
        layout::maps_root(),
        layout::points_root(),
        layout::soft_delete_root(),
        layout::point_deletes_root(),
        layout::protection_root(),
    ] {
        let found: Vec<(Path, u64)> = store
            .here
            .list(Some(&root))
            .map_ok(|meta| (meta.location, meta.size))
            .try_collect()
            .await?;
        listing.extend(found);
    }
    Ok(listing)
}

/// The kind of a replicated object by its key; `None` for a key that is none of them.
fn kind_of(key: &Path) -> Option<Kind> {
    let parts: Vec<_> = key.parts().collect();
    match (parts.first().map(|p| p.as_ref()), parts.len()) {
        (Some("chunks"), 3) if parts[2].as_ref().parse::<ChunkId>().is_ok() => Some(Kind::Chunk),
        (Some("maps"), 4) => Some(Kind::Map),
        (Some("points"), 3) => Some(Kind::Record),
        (Some("deleted" | "protection"), 2) | (Some("deleted-points"), 3) => Some(Kind::Marker),
        _ => None,
    }
}

/// The point a map or record key belongs to.
fn point_of(key: &Path) -> Option<(VmName, PointId)> {
    let parts: Vec<_> = key.parts().collect();
    match kind_of(key)? {
        Kind::Map | Kind::Record => {
            let vm = VmName::new(parts.get(1)?.as_ref()).ok()?;
            let id = parts.get(2)?.as_ref().parse::<PointId>().ok()?;
            Some((vm, id))
        }
        Kind::Chunk | Kind::Marker => None,
    }
}

/// The records of `points` on the source: `None` for one that is there but does not decode.
/// A record that is gone is left out (its point was deleted).
async fn read_records(
    source: &Store,
    points: BTreeSet<(VmName, PointId)>,
    options: ResyncOptions,
    report: &mut ResyncReport,
) -> Result<Records> {
    let read: Vec<Option<(PointKey, Option<RecoveryPoint>)>> = stream::iter(points)
        .map(|(vm, id)| async move {
            match source.get_point_here(&vm, &id).await {
                Ok((record, _)) => Ok(Some(((vm, id), Some(record)))),
                Err(Error::PointMissing { .. }) => Ok(None),
                Err(Error::PointCorrupt { .. }) => Ok(Some(((vm, id), None))),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    let mut records = BTreeMap::new();
    for ((vm, id), record) in read.into_iter().flatten() {
        if record.is_none() {
            report
                .bad
                .push(format!("{}: does not decode", layout::point(&vm, &id)));
        }
        records.insert((vm, id), record);
    }
    Ok(records)
}

/// Fails unless the target lists every object in `landed` at its size.
async fn check_landed(target: &Store, landed: &[(Path, u64)]) -> Result<()> {
    if landed.is_empty() {
        return Ok(());
    }
    let listed = list_replicated(target).await?;
    for (key, size) in landed {
        match listed.get(key) {
            Some(found) if found == size => {}
            found => {
                return Err(Error::ResyncMismatch {
                    location: target.location().to_owned(),
                    key: key.to_string(),
                    reason: match found {
                        Some(found) => format!("it holds {found} bytes, not {size}"),
                        None => "it is not there after it was written".to_owned(),
                    },
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
