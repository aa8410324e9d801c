//! Verification: re-read, decompress and re-hash every chunk a set of points names, and say
//! which points, disks and offsets each bad chunk damages.
//!
//! The points' block maps are read first (each checked against its point record's digest), and
//! every distinct chunk they name is then fetched once, with bounded concurrency, and decoded on
//! the rayon pool against its id. A chunk that is missing or does not decode to its id is bad;
//! every block that names it is listed as affected. On a single vault nothing is written: a bad
//! chunk is repaired by the next backup that reads the same data (it uploads any chunk the
//! vault does not hold intact).
//!
//! On a replicated vault both copies of every map and chunk are checked. One bad copy next to
//! a good one is no damage: the good copy is put back over the bad one, and the object is
//! listed as [`Repaired`] (with the store it was rewritten in and what was wrong). Only an
//! object bad in both stores is damage.
//!
//! A verification can be limited to a [`ChunkShare`] (a rolling verification reads one slice
//! of the chunk id space a day): every map is still read and checked, and only the chunks in
//! the share are fetched.

use std::collections::HashSet;
use std::sync::Arc;

use blockvault_core::{BlockMap, ChunkId, DiskName, DiskRecord, PointId, RecoveryPoint, VmName};
use blockvault_store::{DamagedPoint, Store};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Serialize, Serializer};

use crate::{ChunkShare, Progress, Repository, Result, TransferOptions};

/// One block of one disk of one point: where a bad chunk does damage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Affected {
    pub vm: VmName,
    pub point: PointId,
    pub disk: DiskName,
    /// Byte offset of the block in the disk.
    pub offset: u64,
}

/// A chunk that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadChunk {
    #[serde(serialize_with = "full_hex")]
    pub id: ChunkId,
    /// Why: missing, unreadable, or its content does not hash to its id.
    pub problem: String,
    /// Every block that names it, in point order.
    pub affects: Vec<Affected>,
}

/// A block map that could not be read (missing, or not matching its point record): the whole
/// disk of that point is unverifiable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadMap {
    pub vm: VmName,
    pub point: PointId,
    pub disk: DiskName,
    pub problem: String,
}

/// An object bad in one store of a replicated vault and rewritten there from the other's
/// good copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Repaired {
    /// `chunk` or `block map`.
    pub object: &'static str,
    /// The chunk id (full hex), or `VM/POINT/DISK` of a map.
    pub name: String,
    /// `primary` or `secondary`: the store whose copy was bad and is now rewritten.
    pub store: &'static str,
    pub location: String,
    /// What was wrong with the bad copy.
    pub problem: String,
}

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub points: u64,
    pub chunks_checked: u64,
    /// Encoded bytes read.
    pub bytes_read: u64,
    pub bad_chunks: Vec<BadChunk>,
    pub bad_maps: Vec<BadMap>,
    /// Point records that cannot be read (the caller lists them: see
    /// [`Repository::points`](crate::Repository::points)): damage that hides a whole point.
    pub bad_records: Vec<DamagedPoint>,
    /// Points deleted (by retention on this or another host) while they were verified: their
    /// missing maps and chunks are no damage, and are not reported.
    pub points_gone: u64,
    /// Replicated vaults: objects one store had bad and the other good, now repaired. Not
    /// damage.
    pub repaired: Vec<Repaired>,
}

impl VerifyReport {
    /// Whether everything verified.
    pub fn is_clean(&self) -> bool {
        self.bad_chunks.is_empty() && self.bad_maps.is_empty() && self.bad_records.is_empty()
    }
}

impl Repository {
    /// Verifies `points` (see the module docs). Errors are for what stops the verification
    /// itself (the store unreachable for listing); damage is in the report.
    pub async fn verify(
        &self,
        points: &[RecoveryPoint],
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyReport> {
        self.verify_share(points, ChunkShare::ALL, options, progress)
            .await
    }

    /// Verifies the chunks of `points` that fall in `share`, and every block map of `points`
    /// (maps are read whole to learn which chunks they name); see the module docs.
    pub async fn verify_share(
        &self,
        points: &[RecoveryPoint],
        share: ChunkShare,
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            points: points.len() as u64,
            ..VerifyReport::default()
        };
        // Every distinct chunk the maps name, as a sorted list (32 bytes a chunk): the maps
        // are not kept, and which blocks a chunk feeds is worked out only for bad chunks.
        let mut ids: Vec<ChunkId> = Vec::new();
        let mut distinct = 0;
        let mut readable = Vec::new();
        for (n, point) in points.iter().enumerate() {
            for disk in &point.disks {
                let map = self
                    .verify_map(point, &disk.name, &disk.map_digest, &mut report)
                    .await;
                let map = match map {
                    Ok(map) => map,
                    Err(e) => {
                        report.bad_maps.push(BadMap {
                            vm: point.vm.clone(),
                            point: point.id.clone(),
                            disk: disk.name.clone(),
                            problem: e.to_string(),
                        });
                        continue;
                    }
                };
                ids.extend(map.data_ids().iter().filter(|id| share.contains(id)));
                // Deduplicate whenever the list doubles: points share most of their chunks.
                if ids.len() >= 2 * distinct.max(1 << 16) {
                    ids.sort_unstable();
                    ids.dedup();
                    distinct = ids.len();
                }
                readable.push((n, disk));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids.shrink_to_fit();
        progress.begin("verify", ids.len() as u64);
        let primary = self.store().primary();
        let secondary = self.store().secondary().cloned();
        let mut checks = futures::stream::iter(ids.iter().copied())
            .map(|id| {
                let (primary, secondary) = (&primary, secondary.as_ref());
                let progress = Arc::clone(&progress);
                async move {
                    let (bytes, outcome) = check_chunk_copies(primary, secondary, id).await;
                    progress.advance(1);
                    (id, bytes, outcome)
                }
            })
            .buffer_unordered(options.concurrency.max(1));
        while let Some((id, bytes, outcome)) = checks.next().await {
            report.chunks_checked += 1;
            report.bytes_read += bytes;
            match outcome {
                Outcome::Intact => {}
                Outcome::Bad(problem) => report.bad_chunks.push(BadChunk {
                    id,
                    problem,
                    affects: Vec::new(),
                }),
                Outcome::Repaired(repaired) => report.repaired.push(repaired),
            }
        }
        drop(checks);
        drop(ids);
        report.bad_chunks.sort_by_key(|b| b.id);
        report.repaired.sort_by(|a, b| a.name.cmp(&b.name));
        if !report.bad_chunks.is_empty() {
            self.find_affected(points, &readable, &mut report.bad_chunks)
                .await?;
        }
        self.forget_deleted_points(points, &mut report).await?;
        Ok(report)
    }

    /// Drops from `report` the damage of points whose records are gone now: a point pruned
    /// while it was verified loses its maps and, after a collection, its chunks; that is no
    /// damage. Only points with something reported are looked at again.
    async fn forget_deleted_points(
        &self,
        points: &[RecoveryPoint],
        report: &mut VerifyReport,
    ) -> Result<()> {
        let mut suspects: Vec<(&VmName, &PointId)> = report
            .bad_maps
            .iter()
            .map(|m| (&m.vm, &m.point))
            .chain(
                report
                    .bad_chunks
                    .iter()
                    .flat_map(|c| c.affects.iter().map(|a| (&a.vm, &a.point))),
            )
            .collect();
        suspects.sort();
        suspects.dedup();
        let mut gone: HashSet<(VmName, PointId)> = HashSet::new();
        for (vm, id) in suspects {
            match self.store().get_point(vm, id).await {
                Err(blockvault_store::Error::PointMissing { .. }) => {
                    gone.insert((vm.clone(), id.clone()));
                }
                Ok(_) => {}
                // Damaged since, or unreadable: the damage stands as found.
                Err(_) => {}
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        let is_gone = |vm: &VmName, id: &PointId| gone.contains(&(vm.clone(), id.clone()));
        report.bad_maps.retain(|m| !is_gone(&m.vm, &m.point));
        for chunk in &mut report.bad_chunks {
            chunk.affects.retain(|a| !is_gone(&a.vm, &a.point));
        }
        report.bad_chunks.retain(|c| !c.affects.is_empty());
        report.points_gone = points.iter().filter(|p| is_gone(&p.vm, &p.id)).count() as u64;
        Ok(())
    }

    /// Fills in the blocks each of `bad` (sorted by id) feeds, in point order, by reading the
    /// maps that read well in the first pass again (a map is verified already: a damaged one
    /// would be in the report's bad maps, not here).
    async fn find_affected(
        &self,
        points: &[RecoveryPoint],
        readable: &[(usize, &DiskRecord)],
        bad: &mut [BadChunk],
    ) -> Result<()> {
        for &(n, disk) in readable {
            let point = &points[n];
            let map = match self
                .store()
                .get_map(&point.vm, &point.id, &disk.name, Some(&disk.map_digest))
                .await
            {
                Ok(map) => map,
                // Pruned since the first pass: its blocks are no damage (see
                // `forget_deleted_points`).
                Err(blockvault_store::Error::MapMissing { .. })
                    if matches!(
                        self.store().get_point(&point.vm, &point.id).await,
                        Err(blockvault_store::Error::PointMissing { .. })
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for (index, id) in map.data() {
                if let Ok(b) = bad.binary_search_by_key(&id, |b| b.id) {
                    bad[b].affects.push(Affected {
                        vm: point.vm.clone(),
                        point: point.id.clone(),
                        disk: disk.name.clone(),
                        offset: map.offset_of(index),
                    });
                }
            }
        }
        Ok(())
    }

    /// The block map of `disk` in `point`, checked against `digest` in the primary and, when
    /// replicated, in the secondary; a copy bad next to a good one is rewritten and reported.
    async fn verify_map(
        &self,
        point: &RecoveryPoint,
        disk: &DiskName,
        digest: &str,
        report: &mut VerifyReport,
    ) -> blockvault_store::Result<BlockMap> {
        let primary = self.store().primary();
        let read = |store: Store| async move {
            store
                .get_map(&point.vm, &point.id, disk, Some(digest))
                .await
        };
        let here = read(primary.clone()).await;
        let Some(secondary) = self.store().secondary().cloned() else {
            return here;
        };
        let there = read(secondary.clone()).await;
        let name = format!("{}/{}/{}", point.vm, point.id, disk);
        let (map, bad_store, bad_role, problem) = match (here, there) {
            (Ok(map), Ok(_)) => return Ok(map),
            (Err(p), Err(s)) => {
                return Err(blockvault_store::Error::ReplicaAlsoBad {
                    primary: Box::new(p),
                    location: secondary.location().to_owned(),
                    secondary: Box::new(s),
                });
            }
            (Err(p), Ok(map)) => (map, primary, "primary", p),
            (Ok(map), Err(s)) => (map, secondary, "secondary", s),
        };
        // The encoding is deterministic: rewriting the map gives the bytes the digest names.
        let rewritten = bad_store.put_map(&point.vm, &point.id, disk, &map).await;
        match rewritten {
            Ok(written) if written == digest => report.repaired.push(Repaired {
                object: "block map",
                name,
                store: bad_role,
                location: bad_store.location().to_owned(),
                problem: problem.to_string(),
            }),
            Ok(_) | Err(_) => {
                report.bad_maps.push(BadMap {
                    vm: point.vm.clone(),
                    point: point.id.clone(),
                    disk: disk.clone(),
                    problem: format!(
                        "{problem} (in the {bad_role} store; rewriting it from the other \
                         store failed)"
                    ),
                });
            }
        }
        Ok(map)
    }
}

/// What checking both copies of a chunk found.
enum Outcome {
    Intact,
    Bad(String),
    Repaired(Repaired),
}

/// Reads and checks chunk `id` in `primary` and, when given, in `secondary`; rewrites a bad
/// copy from a good one. Returns the encoded bytes read and the outcome.
async fn check_chunk_copies(
    primary: &Store,
    secondary: Option<&Store>,
    id: ChunkId,
) -> (u64, Outcome) {
    let here = check_copy(primary, id).await;
    let Some(secondary) = secondary else {
        return match here {
            Ok(bytes) => (bytes.len() as u64, Outcome::Intact),
            Err(problem) => (0, Outcome::Bad(problem)),
        };
    };
    let there = check_copy(secondary, id).await;
    let read = [&here, &there]
        .iter()
        .map(|r| r.as_ref().map_or(0, |b| b.len() as u64))
        .sum();
    let (good, bad_store, bad_role, problem) = match (here, there) {
        (Ok(_), Ok(_)) => return (read, Outcome::Intact),
        (Err(p), Err(s)) => {
            let both = format!("{p} (and in secondary store {}: {s})", secondary.location());
            return (read, Outcome::Bad(both));
        }
        (Err(p), Ok(good)) => (good, primary, "primary", p),
        (Ok(good), Err(s)) => (good, secondary, "secondary", s),
    };
    let outcome = match bad_store.put_chunk(&id, good).await {
        Ok(()) => Outcome::Repaired(Repaired {
            object: "chunk",
            name: id.to_hex(),
            store: bad_role,
            location: bad_store.location().to_owned(),
            problem,
        }),
        Err(e) => Outcome::Bad(format!(
            "{problem} in the {bad_role} store, and rewriting it from the other store failed: \
             {e}"
        )),
    };
    (read, outcome)
}

/// The encoded bytes of chunk `id` in `store` when they decode to `id`; else what is wrong:
/// `missing`, `unreadable: ...`, or the decoding failure.
async fn check_copy(store: &Store, id: ChunkId) -> std::result::Result<Bytes, String> {
    let encoded = match store.get_chunk(&id).await {
        Err(e) if e.is_missing() => return Err("missing".to_owned()),
        Err(e) => return Err(format!("unreadable: {e}")),
        Ok(encoded) => encoded,
    };
    let (codec, checked) = (store.codec().clone(), encoded.clone());
    let corrupt = blockvault_store::cpu::run(move || {
        crate::decode::verified(&codec, &checked, id, |e| e.to_string(), |_| Ok(())).err()
    })
    .await;
    match corrupt {
        None => Ok(encoded),
        Some(problem) => Err(problem),
    }
}

fn full_hex<S: Serializer>(id: &ChunkId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}
