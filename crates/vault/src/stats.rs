//! What a vault holds, counted (`vault stats`, as `restic stats` and `borg info` give it): per
//! VM and for the whole vault, how much disk the points describe, how much data that is once
//! holes and repeats are taken out, and what the vault stores for it.
//!
//! Data flow: the point records are listed (of one VM, or of every VM as garbage collection
//! sees them, with the records a replicated vault's secondary holds alone), every block map
//! they name is read (concurrently, bounded by bytes in flight like the collector's mark; one
//! progress step counting maps), and reduced to the distinct chunks it names with their
//! lengths; the chunk objects' sizes come from one listing of `chunks/`, the maps' and
//! records' from listings of `maps/` and `points/`. Nothing is decompressed: a chunk's
//! uncompressed length is its block's length in the map. Reads only; no lease.
//!
//! # The figures ([`Figures`])
//!
//! - `points`: point records that read; `damaged_points`: those that do not (their maps are
//!   not counted, but what they may name is not garbage either).
//! - `logical_bytes`: the disks' sizes summed over every point; `latest_logical_bytes`: over
//!   the newest point (of each VM, for the vault).
//! - `referenced_bytes`: the lengths of the blocks the maps name, summed over every point's
//!   every disk; holes and all-zero blocks are not data and are left out.
//! - `unique_chunks`, `unique_bytes`: the distinct chunks named, and their uncompressed length.
//! - `unique_stored_bytes`: the compressed bytes of those chunk objects (listing sizes).
//! - `map_bytes`, `record_bytes`: the objects under `maps/<vm>/` and `points/<vm>/`.
//! - `stored_bytes`: for a VM, `unique_stored_bytes + map_bytes + record_bytes` (a chunk
//!   shared with other VMs counts for each); for the vault, every chunk object listed
//!   (garbage included) plus every map and record.
//! - `dedup_ratio`: `referenced_bytes / unique_bytes`; `compression_ratio`: `unique_bytes /
//!   unique_stored_bytes`; none when the divisor is 0.
//! - `missing_chunks`: chunks named but not listed (verify says more).
//!
//! For the vault also ([`VaultFigures`]): the chunk objects listed and their bytes, the garbage
//! (chunks no map of any record names, waiting for `gc`) and the chunks marked damaged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use blockvault_core::{BlockMap, ChunkId, RecoveryPoint, VmName};
use blockvault_store::MetadataBytes;
use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use crate::live::{MapRef, maps_in_flight};
use crate::{Error, Progress, Result, Vault};

/// What `vault stats` reads.
#[derive(Clone, Debug)]
pub struct StatsOptions {
    /// Only this VM (the vault's own figures, which need every map, are then left out).
    pub vm: Option<VmName>,
    /// Map reads in flight at once.
    pub concurrency: usize,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            vm: None,
            concurrency: 16,
        }
    }
}

/// The figures of one VM, or of the whole vault (see the module docs for each).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub points: u64,
    pub damaged_points: u64,
    pub logical_bytes: u64,
    pub latest_logical_bytes: u64,
    pub referenced_bytes: u64,
    pub unique_chunks: u64,
    pub unique_bytes: u64,
    pub unique_stored_bytes: u64,
    pub map_bytes: u64,
    pub record_bytes: u64,
    pub stored_bytes: u64,
    pub dedup_ratio: Option<f64>,
    pub compression_ratio: Option<f64>,
    pub missing_chunks: u64,
}

impl Figures {
    /// Sets the ratios from the sums.
    fn with_ratios(mut self) -> Figures {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        self.dedup_ratio = ratio(self.referenced_bytes, self.unique_bytes);
        self.compression_ratio = ratio(self.unique_bytes, self.unique_stored_bytes);
        self
    }
}

/// One VM's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmStats {
    pub vm: VmName,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The whole vault's figures: those of every VM together, and what only the vault has.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VaultFigures {
    #[serde(flatten)]
    pub figures: Figures,
    /// Chunk objects listed, and their bytes (garbage included).
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// Chunk objects no map of any record names (healthy or damaged): what `gc` deletes once
    /// they are older than its grace period.
    pub garbage_chunks: u64,
    pub garbage_bytes: u64,
    /// Chunks verify marked damaged (`damaged/`), to be sent again by the next backup.
    pub damaged_chunks: u64,
}

/// What `vault stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VaultStats {
    /// VM by VM, in name order.
    pub vms: Vec<VmStats>,
    /// The vault's figures; none when only one VM was asked for.
    pub vault: Option<VaultFigures>,
    /// Block maps that could not be read (missing or corrupt), each named with its problem:
    /// their blocks are not counted.
    pub unreadable_maps: Vec<String>,
}

/// What one block map names: its distinct chunks with their lengths, and the blocks' lengths
/// summed.
struct MapContent {
    chunks: HashMap<ChunkId, u32>,
    referenced: u64,
}

impl MapContent {
    fn of(map: &BlockMap) -> MapContent {
        let mut chunks = HashMap::new();
        let mut referenced = 0;
        for (index, id) in map.data() {
            let len = map.len_of(index);
            referenced += len as u64;
            chunks.insert(id, len as u32);
        }
        MapContent { chunks, referenced }
    }
}

/// A map read: what it names; none for a map under a damaged record that is gone; or why it
/// cannot be read.
type MapRead = std::result::Result<Option<MapContent>, String>;

/// The points of one VM and what their maps name, as the reads come in.
#[derive(Default)]
struct VmTally {
    points: Vec<RecoveryPoint>,
    damaged: u64,
    chunks: HashMap<ChunkId, u32>,
    referenced: u64,
}

impl VmTally {
    /// The figures, given the chunk objects' sizes and the maps' and records' bytes.
    fn figures(&self, vm: &VmName, sizes: &HashMap<ChunkId, u64>, meta: &MetadataBytes) -> Figures {
        let (stored, missing) = stored_of(self.chunks.keys(), sizes);
        let (map_bytes, record_bytes) = (meta.maps_of(vm), meta.records_of(vm));
        Figures {
            points: self.points.len() as u64,
            damaged_points: self.damaged,
            logical_bytes: self.points.iter().map(RecoveryPoint::total_size).sum(),
            latest_logical_bytes: self
                .points
                .iter()
                .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)))
                .map_or(0, RecoveryPoint::total_size),
            referenced_bytes: self.referenced,
            unique_chunks: self.chunks.len() as u64,
            unique_bytes: self.chunks.values().map(|&len| u64::from(len)).sum(),
            unique_stored_bytes: stored,
            map_bytes,
            record_bytes,
            stored_bytes: stored + map_bytes + record_bytes,
            dedup_ratio: None,
            compression_ratio: None,
            missing_chunks: missing,
        }
        .with_ratios()
    }
}

/// The listed bytes of `ids`, and how many of them the listing lacks.
fn stored_of<'a>(
    ids: impl Iterator<Item = &'a ChunkId>,
    sizes: &HashMap<ChunkId, u64>,
) -> (u64, u64) {
    ids.fold((0, 0), |(bytes, missing), id| match sizes.get(id) {
        Some(size) => (bytes + size, missing),
        None => (bytes, missing + 1),
    })
}

impl Vault {
    /// Counts what the vault holds (see the module docs): of `options.vm`, or of every VM and
    /// the vault. `progress` gets one step, "stats", counting block maps read.
    pub async fn stats(
        &self,
        options: &StatsOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<VaultStats> {
        let (points, damaged) = match &options.vm {
            Some(vm) => {
                let listing = self.points(vm).await?;
                (listing.points, listing.damaged)
            }
            None => {
                let live = self.live_points().await?;
                (live.points, live.damaged)
            }
        };
        let mut tallies: BTreeMap<VmName, VmTally> = BTreeMap::new();
        for point in &points {
            tallies
                .entry(point.vm.clone())
                .or_default()
                .points
                .push(point.clone());
        }
        for record in &damaged {
            tallies.entry(record.vm.clone()).or_default().damaged += 1;
        }
        let maps = self.maps_to_mark(&points, &damaged).await?;
        let mut stats = VaultStats::default();
        // Chunks only maps under damaged records name: not counted, but not garbage either.
        let mut named_by_damaged: HashSet<ChunkId> = HashSet::new();
        let mut reads = self.read_maps(maps, &points, options, progress.as_ref());
        while let Some((map, read)) = reads.try_next().await? {
            progress.advance(1);
            let content = match read {
                Ok(Some(content)) => content,
                Ok(None) => continue,
                Err(problem) => {
                    stats.unreadable_maps.push(format!(
                        "map {} of point {} of VM {}: {problem}",
                        map.disk, map.point, map.vm
                    ));
                    continue;
                }
            };
            if map.digest.is_none() {
                named_by_damaged.extend(content.chunks.into_keys());
                continue;
            }
            let tally = tallies.entry(map.vm).or_default();
            tally.referenced += content.referenced;
            tally.chunks.extend(content.chunks);
        }
        drop(reads);
        let sizes: HashMap<ChunkId, u64> = self
            .store()
            .list_chunk_objects()
            .map_ok(|c| (c.id, c.size))
            .try_collect()
            .await?;
        let meta = self.store().metadata_bytes(options.vm.as_ref()).await?;
        stats.vms = tallies
            .iter()
            .map(|(vm, tally)| VmStats {
                vm: vm.clone(),
                figures: tally.figures(vm, &sizes, &meta),
            })
            .collect();
        if options.vm.is_none() {
            let damaged_chunks = self.store().damaged_chunks().await?.len() as u64;
            stats.vault = Some(vault_figures(
                &stats.vms,
                tallies,
                &named_by_damaged,
                &sizes,
                &meta,
                damaged_chunks,
            ));
        }
        Ok(stats)
    }

    /// Reads `maps`, each reduced to what it names, in any order; a map that is missing or
    /// fails its checks is its problem in words, not an error (a map under a damaged record
    /// that is missing is simply skipped).
    fn read_maps<'a>(
        &'a self,
        maps: Vec<MapRef>,
        points: &[RecoveryPoint],
        options: &StatsOptions,
        progress: &dyn Progress,
    ) -> impl futures::Stream<Item = Result<(MapRef, MapRead)>> + 'a {
        let in_flight = maps_in_flight(points, options.concurrency);
        progress.begin("stats", maps.len() as u64);
        let store = self.store();
        stream::iter(maps)
            .map(move |map: MapRef| async move {
                let read = store
                    .get_map(&map.vm, &map.point, &map.disk, map.digest.as_deref())
                    .await;
                match read {
                    Ok(block_map) => Ok((map, Ok(Some(MapContent::of(&block_map))))),
                    Err(e) if map.digest.is_none() && e.is_missing() => Ok((map, Ok(None))),
                    Err(e) if e.is_missing() || e.is_corrupt() => Ok((map, Err(e.to_string()))),
                    Err(e) => Err(Error::from(e)),
                }
            })
            .buffer_unordered(in_flight)
    }
}

/// The vault's figures from its VMs' (`vms`, and the tallies they came from).
fn vault_figures(
    vms: &[VmStats],
    tallies: BTreeMap<VmName, VmTally>,
    named_by_damaged: &HashSet<ChunkId>,
    sizes: &HashMap<ChunkId, u64>,
    meta: &MetadataBytes,
    damaged_chunks: u64,
) -> VaultFigures {
    let mut unique: HashMap<ChunkId, u32> = HashMap::new();
    for tally in tallies.into_values() {
        unique.extend(tally.chunks);
    }
    let (unique_stored, missing) = stored_of(unique.keys(), sizes);
    let chunk_bytes: u64 = sizes.values().sum();
    let (garbage_chunks, garbage_bytes) = sizes
        .iter()
        .filter(|(id, _)| !unique.contains_key(id) && !named_by_damaged.contains(id))
        .fold((0, 0), |(n, bytes), (_, size)| (n + 1, bytes + size));
    let map_bytes: u64 = meta.maps.values().sum();
    let record_bytes: u64 = meta.records.values().sum();
    let sum = |f: fn(&Figures) -> u64| vms.iter().map(|v| f(&v.figures)).sum::<u64>();
    let figures = Figures {
        points: sum(|f| f.points),
        damaged_points: sum(|f| f.damaged_points),
        logical_bytes: sum(|f| f.logical_bytes),
        latest_logical_bytes: sum(|f| f.latest_logical_bytes),
        referenced_bytes: sum(|f| f.referenced_bytes),
        unique_chunks: unique.len() as u64,
        unique_bytes: unique.values().map(|&len| u64::from(len)).sum(),
        unique_stored_bytes: unique_stored,
        map_bytes,
        record_bytes,
        stored_bytes: chunk_bytes + map_bytes + record_bytes,
        dedup_ratio: None,
        compression_ratio: None,
        missing_chunks: missing,
    }
    .with_ratios();
    VaultFigures {
        figures,
        chunks: sizes.len() as u64,
        chunk_bytes,
        garbage_chunks,
        garbage_bytes,
        damaged_chunks,
    }
}
