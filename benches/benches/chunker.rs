//! Chunking + hashing throughput: scanning a sparse image file (a `RawFile` block source: holes
//! skipped, zero blocks detected, BLAKE3 by the plain `ChunkCodec` on the rayon pool) into a
//! block map, at several block sizes; and the codec's id of one block.
//!
//! Run: `cargo bench -p blockvault-benches --bench chunker`

use std::fs::File;
use std::os::unix::fs::FileExt;

use blockvault_core::{BlockSize, ChunkCodec};
use blockvault_source::{Chunker, RawFile};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// 512 MiB sparse image with 256 MiB of data: text-like and noise regions, some zero runs.
fn image(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("bench.img");
    let f = File::create(&path).expect("create");
    f.set_len(512 << 20).expect("len");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for mib in (0..512u64).step_by(2) {
        for (i, b) in block.iter_mut().enumerate() {
            *b = if mib % 6 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                b"ext4 bench data "[i % 16]
            };
        }
        f.write_all_at(&block, mib << 20).expect("write");
    }
    path
}

fn scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = image(dir.path());
    let disk = RawFile::open(&path).expect("open");
    let mut group = c.benchmark_group("scan");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(256 << 20));
    for bs in [256 << 10, 1 << 20, 4 << 20] {
        let block_size = BlockSize::new(bs).expect("bs");
        group.bench_with_input(
            BenchmarkId::from_parameter(block_size),
            &block_size,
            |b, &bs| {
                let chunker = Chunker::new(bs, ChunkCodec::plain());
                b.iter(|| {
                    chunker
                        .map(&disk, jiff::Timestamp::UNIX_EPOCH)
                        .expect("scan")
                });
            },
        );
    }
    group.finish();
}

fn hash(c: &mut Criterion) {
    let block: Vec<u8> = (0..4u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let zero = vec![0u8; 4 << 20];
    let codec = ChunkCodec::plain();
    let mut group = c.benchmark_group("block-id");
    group.throughput(Throughput::Bytes(block.len() as u64));
    group.bench_function("blake3 4MiB", |b| b.iter(|| codec.id(&block)));
    group.bench_function("zero check 4MiB", |b| b.iter(|| codec.id(&zero)));
    group.finish();
}

criterion_group!(benches, scan, hash);
criterion_main!(benches);
