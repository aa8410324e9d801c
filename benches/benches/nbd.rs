//! Reading a disk through the project's NBD client from `qemu-nbd`, as a Snapshot reads a qcow2
//! disk: 256 MiB of data in 1 MiB blocks, each block read and hashed (BLAKE3) on the rayon pool,
//! as the scanner does. Compared side by side in one run:
//!
//! - `raw-file`: the same bytes as a raw file, `pread` (the floor for this machine);
//! - `nbd-serial`: one request in flight (each waits for the one before);
//! - `nbd-pipelined`: the defaults (64 in flight, 256 KiB requests);
//! - `nbd-2-conns`: the defaults over two connections (qemu-nbd offers multi-conn read-only).
//!
//! Needs `qemu-img` and `qemu-nbd` (qemu-utils).
//!
//! Run: `cargo bench -p blockvault-benches --bench nbd`

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockvault_source::{BlockSource, NbdAddress, NbdOptions, NbdSource, RawFile};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

const SIZE: u64 = 256 << 20;
const BLOCK: usize = 1 << 20;

/// A qemu-nbd serving `image` read-only on a unix socket; killed when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
}

impl Server {
    fn start(image: &Path, format: &str, dir: &Path) -> Server {
        let socket = dir.join("nbd.sock");
        let child = Command::new("qemu-nbd")
            .args(["--read-only", "--persistent", "--shared=8"])
            .arg(format!("--format={format}"))
            .arg(format!("--socket={}", socket.display()))
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu-nbd is installed (qemu-utils)");
        let started = Instant::now();
        // Bound is not listening: ready when a connect is taken (--persistent outlives it).
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "qemu-nbd did not listen"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Server { child, socket }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 256 MiB of varied data (no holes, no zero blocks): the raw file and its qcow2.
fn images(dir: &Path) -> (PathBuf, PathBuf) {
    let raw = dir.join("disk.raw");
    let file = std::fs::File::create(&raw).expect("create");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; BLOCK];
    for i in 0..SIZE / BLOCK as u64 {
        for word in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all_at(&block, i * BLOCK as u64).expect("write");
    }
    let qcow2 = dir.join("disk.qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .status()
        .expect("qemu-img is installed (qemu-utils)");
    assert!(status.success(), "qemu-img convert failed");
    (raw, qcow2)
}

/// Reads and hashes every block of `source` on the rayon pool; the hashes' xor, so nothing is
/// optimised away.
fn scan(source: &dyn BlockSource) -> u8 {
    (0..SIZE / BLOCK as u64)
        .into_par_iter()
        .map_init(
            || vec![0u8; BLOCK],
            |buf, i| {
                let n = source.read_at(i * BLOCK as u64, buf).expect("read");
                assert_eq!(n, BLOCK);
                blake3::hash(buf).as_bytes()[0]
            },
        )
        .reduce(|| 0, |a, b| a ^ b)
}

fn read_through(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, qcow2) = images(dir.path());
    let server_dir = dir.path().join("server");
    std::fs::create_dir(&server_dir).expect("dir");
    let server = Server::start(&qcow2, "qcow2", &server_dir);
    let connect = |max_in_flight: usize, connections: usize| {
        NbdSource::connect(
            NbdAddress::unix(&server.socket, ""),
            NbdOptions {
                max_in_flight,
                connections,
                ..NbdOptions::default()
            },
        )
        .expect("connect")
    };
    let sources: Vec<(&str, Box<dyn BlockSource>)> = vec![
        ("raw-file", Box::new(RawFile::open(&raw).expect("open raw"))),
        ("nbd-serial", Box::new(connect(1, 1))),
        ("nbd-pipelined", Box::new(connect(64, 1))),
        ("nbd-2-conns", Box::new(connect(64, 2))),
    ];
    let expected = scan(sources[0].1.as_ref());
    let mut group = c.benchmark_group("scan-256MiB");
    group.throughput(Throughput::Bytes(SIZE));
    group.sample_size(10);
    for (name, source) in &sources {
        assert_eq!(scan(source.as_ref()), expected, "{name} reads other bytes");
        group.bench_with_input(BenchmarkId::from_parameter(name), source, |b, source| {
            b.iter(|| scan(source.as_ref()));
        });
    }
    group.finish();
    drop(sources);
    drop(server);
}

criterion_group!(benches, read_through);
criterion_main!(benches);
