//! Chunk codec throughput, plain (`ChunkCodec::plain`) and keyed (`ChunkCodec::keyed`, an
//! encrypted vault's) side by side: ids (BLAKE3, keyed BLAKE3), encoding (zstd-1, raw when
//! incompressible; then AES-256-GCM for the keyed codec) and verified decoding (authenticate,
//! decompress, hash, compare) of 4 MiB blocks of text-like, binary-like and random data.
//!
//! Run: `cargo bench -p blockvault-benches --bench codec`

use blockvault_core::{ChunkCodec, ChunkDecoder, ChunkEncoder, MasterKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const BLOCK: usize = 4 << 20;

fn blocks() -> Vec<(&'static str, Vec<u8>)> {
    let text: Vec<u8> = b"Nov 23 01:04:11 host kernel: [ 1.234] eth0: link up, 1000Mbps\n"
        .iter()
        .copied()
        .cycle()
        .take(BLOCK)
        .collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Machine-code-like: small values with structure, compresses about 2:1.
    let binary: Vec<u8> = (0..BLOCK)
        .map(|i| (next() % 16) as u8 ^ (i % 7) as u8)
        .collect();
    let random: Vec<u8> = (0..BLOCK).map(|_| next() as u8).collect();
    vec![("text", text), ("binary", binary), ("random", random)]
}

/// The two codecs, named.
fn codecs() -> [(&'static str, ChunkCodec); 2] {
    [
        ("plain", ChunkCodec::plain()),
        ("keyed", ChunkCodec::keyed(&MasterKey::generate())),
    ]
}

fn id(c: &mut Criterion) {
    let mut group = c.benchmark_group("id");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    let (_, block) = blocks().swap_remove(1);
    for (codec_name, codec) in codecs() {
        group.bench_with_input(
            BenchmarkId::from_parameter(codec_name),
            &block,
            |b, block| {
                b.iter(|| codec.id(block));
            },
        );
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    let mut encoder = ChunkEncoder::new().expect("encoder");
    for (codec_name, codec) in codecs() {
        for (name, block) in blocks() {
            let id = codec.id(&block);
            let param = format!("{codec_name}/{name}");
            group.bench_with_input(BenchmarkId::from_parameter(param), &block, |b, block| {
                b.iter(|| codec.encode(&mut encoder, id, block));
            });
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode-verified");
    group.throughput(Throughput::Bytes(BLOCK as u64));
    let mut decoder = ChunkDecoder::new().expect("decoder");
    let mut out = Vec::with_capacity(BLOCK);
    for (codec_name, codec) in codecs() {
        for (name, block) in blocks() {
            let (id, encoded) = codec.encode_one(&block).expect("encode");
            let param = format!("{codec_name}/{name}");
            group.bench_with_input(
                BenchmarkId::from_parameter(param),
                &encoded,
                |b, encoded| {
                    b.iter(|| {
                        codec
                            .decode(&mut decoder, encoded, id, &mut out)
                            .expect("decode")
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, id, encode, decode);
criterion_main!(benches);
