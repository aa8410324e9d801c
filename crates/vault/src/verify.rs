//! Verification: re-read, decompress and re-hash every chunk a set of points names, and say
//! which points, disks and offsets each bad chunk damages.
//!
//! The points' block maps are read first (each checked against its point record's digest), and
//! every distinct chunk they name is then fetched once, with bounded concurrency, and decoded on
//! the rayon pool against its id. A chunk that is missing or does not decode to its id is bad;
//! every block that names it is listed as affected. Nothing is written: a bad chunk is repaired
//! by the next backup that reads the same data (it uploads any chunk the vault does not hold
//! intact) or, in a replicated vault, from the replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use blockvault_core::{ChunkId, DiskName, PointId, RecoveryPoint, VmName};
use futures::{StreamExt, TryStreamExt};
use serde::{Serialize, Serializer};

use crate::{Progress, Result, TransferOptions, Vault};

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

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub points: u64,
    pub chunks_checked: u64,
    /// Encoded bytes read.
    pub bytes_read: u64,
    pub bad_chunks: Vec<BadChunk>,
    pub bad_maps: Vec<BadMap>,
}

impl VerifyReport {
    /// Whether everything verified.
    pub fn is_clean(&self) -> bool {
        self.bad_chunks.is_empty() && self.bad_maps.is_empty()
    }
}

impl Vault {
    /// Verifies `points` (see the module docs). Errors are for what stops the verification
    /// itself (the store unreachable for listing); damage is in the report.
    pub async fn verify(
        &self,
        points: &[RecoveryPoint],
        options: TransferOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            points: points.len() as u64,
            ..VerifyReport::default()
        };
        // chunk -> the blocks naming it.
        let mut users: BTreeMap<ChunkId, Vec<Affected>> = BTreeMap::new();
        for point in points {
            for disk in &point.disks {
                let map = self
                    .store()
                    .get_map(&point.vm, &point.id, &disk.name, Some(&disk.map_digest))
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
                for (index, id) in map.ids().iter().enumerate() {
                    if *id == ChunkId::ZERO {
                        continue;
                    }
                    users.entry(*id).or_default().push(Affected {
                        vm: point.vm.clone(),
                        point: point.id.clone(),
                        disk: disk.name.clone(),
                        offset: map.offset_of(index),
                    });
                }
            }
        }
        progress.begin("verify", users.len() as u64);
        let store = self.store().clone();
        let checked: Vec<(ChunkId, u64, Option<String>)> =
            futures::stream::iter(users.keys().copied())
                .map(|id| {
                    let store = store.clone();
                    let progress = Arc::clone(&progress);
                    async move {
                        let outcome = match store.get_chunk(&id).await {
                            Err(e) if e.is_missing() => (0, Some("missing".to_owned())),
                            Err(e) => (0, Some(format!("unreadable: {e}"))),
                            Ok(encoded) => {
                                let len = encoded.len() as u64;
                                let corrupt = blockvault_store::cpu::run(move || {
                                    crate::decode::verified(
                                        &encoded,
                                        id,
                                        |e| e.to_string(),
                                        |_| Ok(()),
                                    )
                                    .err()
                                })
                                .await;
                                (len, corrupt)
                            }
                        };
                        progress.advance(1);
                        Ok::<_, crate::Error>((id, outcome.0, outcome.1))
                    }
                })
                .buffer_unordered(options.concurrency.max(1))
                .try_collect()
                .await?;
        for (id, bytes, problem) in checked {
            report.chunks_checked += 1;
            report.bytes_read += bytes;
            if let Some(problem) = problem {
                report.bad_chunks.push(BadChunk {
                    id,
                    problem,
                    affects: users.remove(&id).unwrap_or_default(),
                });
            }
        }
        report.bad_chunks.sort_by_key(|b| b.id);
        Ok(report)
    }
}

fn full_hex<S: Serializer>(id: &ChunkId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}
