//! The encodings mutated: the format fixtures in `testdata/formats/` and values encoded fresh,
//! made from a seed so that every run mutates the same ones.

use std::path::PathBuf;

use blockvault_core::{
    BlockMap, BlockSize, ChunkCodec, ChunkEncoder, ChunkId, ChunkSet, Consistency, DiskName,
    DiskRecord, ForgottenChunks, GcEpoch, HeldState, HostIdentity, LeaseKind, LeaseRecord, PointId,
    PointStats, ProtectionRecord, RecoveryPoint, Redundancy, ReplicaOf, SoftDeleteMarker,
    VaultConfig, VmName,
};
use jiff::{SignedDuration, Timestamp};

use crate::mutate::Rng;

/// An encoding to mutate, and where it came from.
pub struct Seed {
    pub label: String,
    pub bytes: Vec<u8>,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/formats")
}

/// The fixtures (sound and corrupt) whose name ends with `extension`.
fn fixtures(extension: &str) -> Vec<Seed> {
    let mut seeds = Vec::new();
    for dir in ["v1", "v2", "corrupt"] {
        let Ok(entries) = std::fs::read_dir(fixtures_dir().join(dir)) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        names.sort();
        for path in names {
            if path.to_string_lossy().ends_with(extension) {
                let bytes = std::fs::read(&path).expect("a fixture reads");
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let label = format!("testdata/formats/{dir}/{name}");
                seeds.push(Seed { label, bytes });
            }
        }
    }
    assert!(
        !seeds.is_empty(),
        "no fixtures *{extension} in {}",
        fixtures_dir().display()
    );
    seeds
}

fn fresh(label: impl Into<String>, bytes: Vec<u8>) -> Seed {
    Seed {
        label: label.into(),
        bytes,
    }
}

/// A time somewhere in the years blockvault may meet, to the millisecond.
fn time(rng: &mut Rng) -> Timestamp {
    let ms = 1_600_000_000_000 + (rng.next() % 400_000_000_000) as i64;
    Timestamp::from_millisecond(ms).expect("a time in range")
}

fn block(rng: &mut Rng, len: usize) -> Vec<u8> {
    match rng.below(3) {
        0 => vec![0; len],
        1 => rng.bytes(len),
        _ => b"a block of text that compresses. "
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect(),
    }
}

pub fn chunks(rng: &mut Rng) -> Vec<Seed> {
    let mut seeds = fixtures(".bvchunk");
    let codec = ChunkCodec::plain();
    let mut encoder = ChunkEncoder::new().expect("a zstd context");
    for len in [0, 1, 33, 4096, 5000, 16 << 10] {
        let block = block(rng, len);
        seeds.push(fresh(
            format!("chunk of {len} bytes"),
            codec.encode(&mut encoder, codec.id(&block), &block),
        ));
    }
    seeds
}

pub fn block_maps(rng: &mut Rng) -> Vec<Seed> {
    let mut seeds = fixtures(".bvmap");
    let small = BlockSize::new(64 << 10).expect("64 KiB");
    for blocks in [0u64, 1, 2, 3, 7, 20, 40] {
        let disk = blocks * small.bytes() - rng.below(2) as u64 * u64::from(blocks > 0);
        let mut map = BlockMap::zeroed(disk, small, time(rng));
        for index in 0..map.len() {
            if rng.one_in(2) {
                map.set(index, ChunkId::of(&rng.bytes(8)));
            }
        }
        seeds.push(fresh(format!("map of {blocks} blocks"), map.encode()));
        seeds.push(fresh(
            format!("map of {blocks} blocks, v1"),
            map.encode_v1(),
        ));
    }
    // A 1 TiB disk with data in a few places; and maps made at the ends of time.
    let mut big = BlockMap::zeroed(1 << 40, BlockSize::new(4 << 20).expect("4 MiB"), time(rng));
    for index in [0, 1, 2, 100_000, 262_143] {
        big.set(index, ChunkId::of(&rng.bytes(8)));
    }
    seeds.push(fresh("sparse 1 TiB map", big.encode()));
    for created in [Timestamp::MIN, Timestamp::MAX] {
        let ms = Timestamp::from_nanosecond(i128::from(created.as_millisecond()) * 1_000_000)
            .expect("in range");
        let mut map = BlockMap::zeroed(3 << 16, small, ms);
        map.set(1, ChunkId::of(b"one"));
        seeds.push(fresh(format!("map made at {ms}"), map.encode()));
    }
    seeds
}

fn vm(rng: &mut Rng) -> VmName {
    VmName::new(format!("vm{}", rng.below(1000))).expect("a VM name")
}

pub fn points(rng: &mut Rng) -> Vec<Seed> {
    let mut seeds = fixtures(".bvpoint");
    for k in 0..4 {
        let time = time(rng);
        let disks = (0..k)
            .map(|d| DiskRecord {
                name: DiskName::new(format!("disk{d}.img")).expect("a disk name"),
                source: format!("/var/lib/vms/disk{d}.img"),
                size: rng.next() >> 20,
                block_size: BlockSize::DEFAULT,
                map_digest: blake3::hash(&rng.bytes(4)).to_hex().to_string(),
                blocks: rng.next() >> 40,
                data_blocks: rng.next() >> 41,
                format: Default::default(),
            })
            .collect();
        let point = RecoveryPoint {
            vm: vm(rng),
            id: PointId::generate(time, &rng.bytes(4)),
            time,
            consistency: if k % 2 == 0 {
                Consistency::CrashConsistent
            } else {
                Consistency::ApplicationConsistent
            },
            parent: (k > 1).then(|| PointId::generate(time - SignedDuration::from_hours(1), b"p")),
            disks,
            stats: PointStats {
                bytes_scanned: rng.next(),
                bytes_changed: rng.next() >> 8,
                bytes_stored: rng.next() >> 16,
                chunks_stored: rng.next() >> 32,
                capture: (k == 2).then_some(blockvault_core::Capture::Reflink),
            },
            retain_until: (k == 2).then_some(time + SignedDuration::from_hours(24 * 30)),
            vault: (k == 3).then(|| "0123456789abcdef".to_owned()),
        };
        seeds.push(fresh(format!("point of {k} disks"), point.encode()));
    }
    seeds
}

pub fn vault_configs(rng: &mut Rng) -> Vec<Seed> {
    let mut seeds = fixtures(".config");
    let single = VaultConfig {
        id: format!("{:016x}", rng.next()),
        created: time(rng),
        default_block_size: BlockSize::DEFAULT,
        redundancy: Redundancy::Single,
        replica_of: None,
        encryption: None,
    };
    let replicated = VaultConfig {
        redundancy: Redundancy::Replicated {
            secondary: "s3://backups/replica".to_owned(),
        },
        ..single.clone()
    };
    let replica = VaultConfig {
        replica_of: Some(ReplicaOf {
            vault: single.id.clone(),
            primary: "/srv/vault".to_owned(),
        }),
        ..single.clone()
    };
    seeds.push(fresh("single config", single.encode()));
    seeds.push(fresh("replicated config", replicated.encode()));
    seeds.push(fresh("replica config", replica.encode()));
    seeds
}

pub fn leases(rng: &mut Rng) -> Vec<Seed> {
    [
        LeaseKind::Writer,
        LeaseKind::Sweeper,
        LeaseKind::SweepPending,
    ]
    .into_iter()
    .map(|kind| {
        let started = time(rng);
        let lease = LeaseRecord {
            id: format!("{:016x}", rng.next()),
            kind,
            holder: format!("{} by host a (pid {})", kind.as_str(), rng.below(1 << 22)),
            started,
            refreshed: started + SignedDuration::from_secs(rng.below(1000) as i64),
        };
        fresh(format!("{} lease", kind.as_str()), lease.encode())
    })
    .collect()
}

pub fn gc_epochs(rng: &mut Rng) -> Vec<Seed> {
    (0..2)
        .map(|k| {
            let epoch = GcEpoch {
                id: format!("{:016x}", rng.next()),
                time: time(rng),
            };
            fresh(format!("epoch {k}"), epoch.encode())
        })
        .collect()
}

pub fn soft_deletes(rng: &mut Rng) -> Vec<Seed> {
    (0..2)
        .map(|k| {
            let marker = SoftDeleteMarker::new(vm(rng), time(rng));
            fresh(format!("soft-delete marker {k}"), marker.encode())
        })
        .collect()
}

pub fn protections(rng: &mut Rng) -> Vec<Seed> {
    (0..2)
        .map(|k| {
            let since = time(rng);
            let record = ProtectionRecord {
                vm: vm(rng),
                host: HostIdentity {
                    id: format!("{:016x}", rng.next()),
                    name: format!("hv{k}"),
                    state_dir: "/var/lib/blockvault".to_owned(),
                },
                policy: "DefaultPolicy".to_owned(),
                policy_settings: "name = \"DefaultPolicy\"\n".to_owned(),
                since,
                updated: since,
                state: match k {
                    0 => HeldState::Protected,
                    _ => HeldState::Stopped { stopped: since },
                },
            };
            fresh(format!("protection record {k}"), record.encode())
        })
        .collect()
}

pub fn forgotten(rng: &mut Rng) -> Vec<Seed> {
    let mut seeds = fixtures(".bvforgot");
    for (previous, ids) in [
        (None, 0),
        (Some("0123456789abcdef".to_owned()), 3),
        (Some("e".repeat(255)), 1),
        (None, 9),
    ] {
        let ids = (0..ids).map(|_| ChunkId::of(&rng.bytes(8))).collect();
        let value = ForgottenChunks {
            previous,
            ids: ChunkSet::from_vec(ids),
        };
        seeds.push(fresh(
            format!("{} forgotten ids", value.ids.len()),
            value.encode(),
        ));
    }
    seeds
}
