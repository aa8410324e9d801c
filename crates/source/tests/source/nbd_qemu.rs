//! The NBD client against a real `qemu-nbd` (qemu-utils): reads byte for byte from raw and
//! qcow2 images with holes, block status against what was written, a dirty bitmap's extents
//! against the writes made after it was added, and reads from many threads at once.
//!
//! These tests need `qemu-nbd`, `qemu-img` and `qemu-io`; without them they fail, saying so.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockvault_core::{BlockSize, ChunkCodec};
use blockvault_source::{
    BlockSource, ChangeHint, Chunker, Error, NbdAddress, NbdOptions, NbdSource, RawFile,
};
use jiff::Timestamp;

const K64: u64 = 64 << 10;
const M: u64 = 1 << 20;

/// Fails the test with what to install when a QEMU tool is missing.
pub(crate) fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed: the NBD and qcow2 tests need qemu-nbd, qemu-img and qemu-io \
         (Debian/Ubuntu: apt-get install qemu-utils)"
    );
}

/// Runs a QEMU tool, failing the test with its stderr when it fails.
pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a QEMU tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `qemu-nbd` serving one image read-only on a unix socket; killed when dropped.
pub(crate) struct QemuNbd {
    child: Child,
    socket: PathBuf,
}

impl QemuNbd {
    pub(crate) fn serve(image: &Path, format: &str, extra: &[&str]) -> QemuNbd {
        require("qemu-nbd");
        let socket = image.with_extension("sock");
        // A server killed before leaves its socket file behind.
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("qemu-nbd")
            .args([
                "--read-only",
                "--persistent",
                "--shared=8",
                "-f",
                format,
                "-k",
            ])
            .arg(&socket)
            .args(extra)
            .arg(image)
            .stdout(Stdio::null())
            .spawn()
            .expect("start qemu-nbd");
        let mut server = QemuNbd { child, socket };
        let started = Instant::now();
        // The socket file appears at bind(), before listen(): ready is when a connect is
        // taken (the server is --persistent, so the probe does not end it).
        while std::os::unix::net::UnixStream::connect(&server.socket).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("qemu-nbd exited ({status}) before it listened");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "qemu-nbd did not listen on {} within 10 s",
                server.socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn address(&self, export: &str) -> NbdAddress {
        NbdAddress::unix(&self.socket, export)
    }

    pub(crate) fn connect(&self, options: NbdOptions) -> NbdSource {
        NbdSource::connect(self.address(""), options).expect("connect to qemu-nbd")
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        // Already gone is fine: the test is over either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Deterministic bytes that do not repeat within a block.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A sparse raw image of `size` bytes with `writes` of patterned data, and its content.
pub(crate) fn raw_image(dir: &Path, size: u64, writes: &[Range<u64>]) -> (PathBuf, Vec<u8>) {
    let path = dir.join("disk.raw");
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(size).expect("len");
    let mut content = vec![0u8; size as usize];
    for (i, w) in writes.iter().enumerate() {
        let data = pattern((w.end - w.start) as usize, i as u64 + 1);
        file.write_all_at(&data, w.start).expect("write");
        content[w.start as usize..w.end as usize].copy_from_slice(&data);
    }
    (path, content)
}

/// Reads the whole export in `step`-byte reads.
fn read_all(source: &NbdSource, step: usize) -> Vec<u8> {
    let mut out = vec![0u8; source.size() as usize];
    for (i, chunk) in out.chunks_mut(step).enumerate() {
        let n = source
            .read_at((i * step) as u64, chunk)
            .expect("read through NBD");
        assert_eq!(n, chunk.len());
    }
    out
}

#[test]
fn a_raw_image_reads_byte_for_byte_and_its_holes_are_not_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writes = [
        M..M + 3 * K64,
        10 * M + 4096..10 * M + 300_000,
        31 * M..32 * M,
    ];
    let (image, content) = raw_image(dir.path(), 32 * M, &writes);
    let server = QemuNbd::serve(&image, "raw", &[]);
    let source = server.connect(NbdOptions::default());
    assert_eq!(source.size(), 32 * M);
    assert_eq!(source.current_size().expect("size"), 32 * M);
    assert!(source.info().structured_replies);
    assert!(source.info().read_only);
    assert!(
        read_all(&source, M as usize) == content,
        "the export reads differently"
    );

    // Unaligned reads inside and across extents, and a read past the end.
    for (offset, len) in [(12_345u64, 4097usize), (M + 3 * K64 - 10, 100), (0, 1)] {
        let mut buf = vec![0xaau8; len];
        assert_eq!(source.read_at(offset, &mut buf).expect("read"), len);
        assert!(
            buf == content[offset as usize..offset as usize + len],
            "{offset}+{len}"
        );
    }
    let mut tail = vec![0u8; 1000];
    assert_eq!(source.read_at(32 * M - 10, &mut tail).expect("tail"), 10);
    assert_eq!(source.read_at(32 * M, &mut tail).expect("end"), 0);

    // Every written byte is in a data extent, and the holes were found.
    let extents = source.data_extents().expect("extents");
    for w in &writes {
        assert!(
            extents.iter().any(|e| e.start <= w.start && w.end <= e.end),
            "{w:?} not in {extents:?}"
        );
    }
    let data: u64 = extents.iter().map(|e| e.end - e.start).sum();
    assert!(data < 4 * M, "holes reported as data: {extents:?}");
}

#[test]
fn a_qcow2_image_reads_byte_for_byte_and_block_status_matches_its_clusters() {
    require("qemu-img");
    require("qemu-io");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("48M"));
    // Cluster-aligned writes (64 KiB clusters), so the allocation is exactly these ranges.
    let mut content = vec![0u8; 48 * M as usize];
    let writes = [
        (0u64, K64, 0x11u8),
        (5 * M, 2 * M, 0x55),
        (40 * M, 3 * K64, 0xc3),
    ];
    for (offset, len, byte) in writes {
        run(Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("write -P {byte:#x} {offset} {len}"))
            .arg(&image));
        content[offset as usize..(offset + len) as usize].fill(byte);
    }
    // Data overwritten with zeros (`write -z`: a zero cluster) reads as zeros and is not data.
    for cmd in ["write -P 0x77", "write -z"] {
        run(Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("{cmd} {} {}", 20 * M, M))
            .arg(&image));
    }

    let server = QemuNbd::serve(&image, "qcow2", &[]);
    let source = server.connect(NbdOptions::default());
    assert_eq!(source.size(), 48 * M);
    assert!(
        read_all(&source, 3 * M as usize + 7) == content,
        "the export reads differently"
    );
    let expected: Vec<Range<u64>> = writes.iter().map(|&(o, l, _)| o..o + l).collect();
    assert_eq!(source.data_extents().expect("extents"), expected);
    let allocation = source
        .allocation()
        .expect("status")
        .expect("base:allocation");
    assert_eq!(allocation.first().map(|a| a.range.start), Some(0));
    assert_eq!(allocation.last().map(|a| a.range.end), Some(48 * M));
    assert!(
        allocation
            .iter()
            .any(|a| a.range.start <= 20 * M && 21 * M <= a.range.end && a.zero),
        "the zeroed range is not a zero extent: {allocation:?}"
    );

    // The scanner over the export builds the map it builds over the same bytes as a file.
    let raw = dir.path().join("copy.raw");
    std::fs::write(&raw, &content).expect("raw copy");
    let chunker = Chunker::new(BlockSize::new(K64).expect("bs"), ChunkCodec::plain());
    let through_nbd = chunker
        .map(&source, Timestamp::UNIX_EPOCH)
        .expect("scan nbd");
    let from_file = chunker
        .map(&RawFile::open(&raw).expect("open"), Timestamp::UNIX_EPOCH)
        .expect("scan file");
    assert!(through_nbd == from_file, "the maps differ");
}

#[test]
fn a_dirty_bitmap_reports_exactly_the_clusters_written_after_it() {
    require("qemu-img");
    require("qemu-io");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("16M"));
    // Written before the bitmap: allocated, not dirty.
    run(Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x22 0 4M"])
        .arg(&image));
    run(Command::new("qemu-img")
        .args(["bitmap", "--add", "-g", "64K"])
        .arg(&image)
        .arg("since-p1"));
    // Unaligned writes: the bitmap marks every 64 KiB granule they touch.
    let writes = [
        (100_000u64, 1000u64),
        (3 * M - 10, 20),
        (9 * M, 2 * K64),
        (15 * M + 1, 5),
    ];
    for (offset, len) in writes {
        run(Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(format!("write -P 0x55 {offset} {len}"))
            .arg(&image));
    }
    let mut expected: Vec<Range<u64>> = Vec::new();
    for (offset, len) in writes {
        let r = offset / K64 * K64..(offset + len).div_ceil(K64) * K64;
        match expected.last_mut() {
            Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
            _ => expected.push(r),
        }
    }

    let server = QemuNbd::serve(&image, "qcow2", &["-B", "since-p1"]);
    let options = NbdOptions {
        dirty_bitmap: Some("since-p1".to_owned()),
        ..NbdOptions::default()
    };
    let source = server.connect(options);
    assert!(
        source
            .info()
            .contexts
            .iter()
            .any(|c| c == "qemu:dirty-bitmap:since-p1"),
        "{:?}",
        source.info().contexts
    );
    assert_eq!(source.dirty_extents().expect("dirty extents"), expected);
    // base:allocation still works beside the bitmap.
    let data = source.data_extents().expect("extents");
    assert!(
        data.first().is_some_and(|e| e.start == 0 && e.end >= 4 * M),
        "{data:?}"
    );

    // A bitmap the server does not export, and none asked for: clear errors.
    let other = server.connect(NbdOptions {
        dirty_bitmap: Some("nope".to_owned()),
        ..NbdOptions::default()
    });
    let e = other.dirty_extents().expect_err("no such bitmap");
    assert!(matches!(e, Error::Nbd { .. }), "{e}");
    assert!(e.to_string().contains("dirty bitmap \"nope\""), "{e}");
    let plain = server.connect(NbdOptions::default());
    let e = plain.dirty_extents().expect_err("none asked for");
    assert!(
        e.to_string().contains("no dirty bitmap was asked for"),
        "{e}"
    );
}

/// Eight threads read random ranges at once and each gets its own bytes.
fn read_from_many_threads(source: &NbdSource, content: &[u8]) {
    let size = content.len() as u64;
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            scope.spawn(move || {
                let mut buf = vec![0u8; 40_000];
                for i in 0..200u64 {
                    let offset = (i * 7919 + t * 104_729) * 97 % (size - 40_000);
                    assert_eq!(source.read_at(offset, &mut buf).expect("read"), buf.len());
                    assert!(
                        buf[..] == content[offset as usize..offset as usize + buf.len()],
                        "thread {t} read {offset} wrong"
                    );
                }
            });
        }
    });
}

#[test]
fn many_threads_read_one_connection_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (image, content) = raw_image(dir.path(), 16 * M, &[0..16 * M]);
    let server = QemuNbd::serve(&image, "raw", &[]);
    let source = server.connect(NbdOptions {
        max_in_flight: 16,
        request_size: 8 << 10,
        ..NbdOptions::default()
    });
    read_from_many_threads(&source, &content);
}

#[test]
fn reads_take_several_connections_in_turn_when_the_server_allows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (image, content) = raw_image(dir.path(), 16 * M, &[0..16 * M]);
    let server = QemuNbd::serve(&image, "raw", &[]);
    let source = server.connect(NbdOptions {
        connections: 3,
        ..NbdOptions::default()
    });
    assert!(
        source.info().multi_conn,
        "qemu-nbd --read-only offers multi-conn"
    );
    read_from_many_threads(&source, &content);
}

#[test]
fn an_unknown_export_and_a_missing_socket_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (image, _) = raw_image(dir.path(), M, &[]);
    let server = QemuNbd::serve(&image, "raw", &["-x", "disk0"]);
    let uri = format!("nbd+unix:///disk0?socket={}", server.socket.display());
    let named = NbdSource::open(&uri).expect("the named export");
    assert_eq!(named.size(), M);
    assert_eq!(named.path(), Path::new(&uri));
    let e = NbdSource::connect(server.address("other"), NbdOptions::default())
        .expect_err("unknown export");
    assert!(matches!(e, Error::NbdNoExport { .. }), "{e}");
    let e = NbdSource::open(&format!(
        "nbd+unix:///x?socket={}",
        dir.path().join("no.sock").display()
    ))
    .expect_err("no socket");
    assert!(matches!(e, Error::NbdConnect { .. }), "{e}");
    assert!(e.to_string().contains("no.sock"), "{e}");
}

/// A measurement more than a check: one request at a time against pipelined reads of a
/// 256 MiB image over a unix socket, from four threads as the scan's workers read (1 MiB
/// blocks, the default block size, and 64 KiB blocks), the best of two interleaved rounds
/// each. Prints the rates and ratios (`-- --nocapture`); it checks every byte read, not the
/// ratio, which a loaded machine bends (`replies_out_of_order_reach_their_own_callers`
/// proves the pipelining).
#[test]
fn pipelined_and_serial_reads_of_a_256_mib_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 256 * M;
    let (image, content) = raw_image(dir.path(), size, &[0..size]);
    let server = QemuNbd::serve(&image, "raw", &[]);
    let rate = |max_in_flight: usize, request_size: u64, block: usize| {
        let source = server.connect(NbdOptions {
            max_in_flight,
            request_size,
            ..NbdOptions::default()
        });
        let started = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..4usize {
                let (source, content) = (&source, &content);
                scope.spawn(move || {
                    let mut buf = vec![0u8; block];
                    for (i, want) in content.chunks(block).enumerate().skip(t).step_by(4) {
                        let offset = (i * block) as u64;
                        assert_eq!(source.read_at(offset, &mut buf).expect("read"), want.len());
                        assert!(buf[..] == *want, "{offset} read wrong");
                    }
                });
            }
        });
        size as f64 / M as f64 / started.elapsed().as_secs_f64()
    };
    let default = NbdOptions::default().request_size;
    for block in [1 << 20, 64 << 10] {
        let (mut serial, mut whole, mut split) = (0f64, 0f64, 0f64);
        for _ in 0..2 {
            serial = serial.max(rate(1, default, block));
            whole = whole.max(rate(64, block as u64, block));
            split = split.max(rate(64, default, block));
        }
        println!(
            "NBD reads, unix socket, 4 threads, {} KiB blocks: one request at a time {serial:.0} \
             MiB/s; pipelined, a request per block {whole:.0} MiB/s ({:.2}x); pipelined, \
             {} KiB requests {split:.0} MiB/s ({:.2}x)",
            block >> 10,
            whole / serial,
            default >> 10,
            split / serial
        );
    }
}

#[test]
fn a_tcp_export_reads_like_the_image() {
    require("qemu-nbd");
    let dir = tempfile::tempdir().expect("tempdir");
    let (image, content) = raw_image(dir.path(), 4 * M, &[K64..3 * K64, 3 * M..4 * M]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new("qemu-nbd")
        .args([
            "--read-only",
            "--persistent",
            "-f",
            "raw",
            "-b",
            "127.0.0.1",
            "-x",
            "vm",
        ])
        .arg(format!("--port={port}"))
        .arg(&image)
        .stdout(Stdio::null())
        .spawn()
        .expect("start qemu-nbd");
    let uri = format!("nbd://127.0.0.1:{port}/vm");
    let started = Instant::now();
    let source = loop {
        match NbdSource::open(&uri) {
            Ok(source) => break Ok(source),
            Err(Error::NbdConnect { .. }) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => break Err(e),
        }
    };
    let outcome = source.map(|source| {
        let extents = source.data_extents().expect("extents");
        (read_all(&source, M as usize), extents)
    });
    let _ = child.kill();
    let _ = child.wait();
    let (bytes, extents) = outcome.expect("connect over TCP");
    assert!(bytes == content, "the TCP export reads differently");
    for w in [K64..3 * K64, 3 * M..4 * M] {
        assert!(
            extents.iter().any(|e| e.start <= w.start && w.end <= e.end),
            "{w:?} not in {extents:?}"
        );
    }
    let data: u64 = extents.iter().map(|e| e.end - e.start).sum();
    assert!(data < 2 * M, "holes reported as data: {extents:?}");
}

#[test]
fn a_dirty_bitmap_as_a_change_hint_builds_the_full_scans_map_from_the_dirty_blocks_alone() {
    require("qemu-img");
    require("qemu-io");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.qcow2");
    let qemu_io = |cmd: String| {
        run(Command::new("qemu-io")
            .args(["-f", "qcow2", "-c"])
            .arg(cmd)
            .arg(&image));
    };
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("16M"));
    qemu_io("write -P 0x22 0 4M".to_owned());
    qemu_io(format!("write -P 0x33 {} {}", 8 * M, M));
    let chunker = Chunker::new(BlockSize::new(K64).expect("bs"), ChunkCodec::plain());
    let parent = {
        let server = QemuNbd::serve(&image, "qcow2", &[]);
        let source = server.connect(NbdOptions::default());
        chunker
            .map(&source, Timestamp::UNIX_EPOCH)
            .expect("parent scan")
    };

    run(Command::new("qemu-img")
        .args(["bitmap", "--add", "-g", "64K"])
        .arg(&image)
        .arg("after-parent"));
    qemu_io("write -P 0x55 100000 1000".to_owned());
    qemu_io(format!("write -P 0x66 {} 20", 9 * M - 10));
    qemu_io(format!("write -z {} {}", 8 * M, K64));
    qemu_io(format!("write -P 0x77 {} 4096", 12 * M));

    let server = QemuNbd::serve(&image, "qcow2", &["-B", "after-parent"]);
    let source = server.connect(NbdOptions {
        dirty_bitmap: Some("after-parent".to_owned()),
        ..NbdOptions::default()
    });
    let hint = ChangeHint::Dirty(source.dirty_extents().expect("dirty extents"));
    let plan = chunker.plan(&source, Some(&parent), &hint).expect("plan");
    assert!(plan.is_incremental(), "{:?}", plan.fallback());
    let ChangeHint::Dirty(dirty) = &hint else {
        unreachable!("built as Dirty above")
    };
    assert!(
        dirty
            .iter()
            .any(|r| r.start <= 8 * M && 8 * M + K64 <= r.end),
        "the zeroed cluster is not dirty: {dirty:?}"
    );
    // Every dirty block that still holds data is read; the zeroed one is a hole now, zero
    // without a read.
    let read: Vec<usize> = plan.blocks().iter().collect();
    let block = |offset: u64| (offset / K64) as usize;
    let want = vec![
        block(100_000),
        block(9 * M - 10),
        block(9 * M),
        block(12 * M),
    ];
    assert_eq!(read, want, "the blocks read are not the blocks written");
    let incremental = plan
        .scan(&source, Timestamp::UNIX_EPOCH, |_| Ok::<(), Error>(()))
        .expect("incremental scan");
    let full = chunker
        .map(&source, Timestamp::UNIX_EPOCH)
        .expect("full scan");
    assert!(
        incremental == full,
        "the hinted map differs from the full scan's"
    );
    assert!(full != parent, "the writes changed nothing");
}
