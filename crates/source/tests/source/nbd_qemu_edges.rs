//! qemu-nbd cases that testing against nbdkit brought up:
//!
//! - `NBD_REPLY_TYPE_OFFSET_HOLE` chunks land where they say, in buffers that held other
//!   bytes. The client fills pooled buffers, so a hole chunk that zeroed the wrong range (or
//!   none) would leave an earlier read's bytes in a later one. nbdkit 1.32 never sends hole
//!   chunks (one data chunk per read, checked with a raw client); qemu-nbd sends them for the
//!   unallocated parts of a sparse raw file.
//! - A server that offers multi-conn but holds connections past its limit back: qemu-nbd
//!   `--shared=N` takes connection N+1 and greets it only once another is gone (nbdkit
//!   cannot be made to: serialized connections turn its multi-conn off).

use std::time::{Duration, Instant};

use blockvault_source::{BlockSource, NbdOptions};

use crate::nbd_qemu::{QemuNbd, raw_image};

const K: u64 = 1 << 10;
const M: u64 = 1 << 20;

#[test]
fn hole_chunks_zero_their_own_range_of_a_reused_buffer() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Data, then a hole with one data block inside it, then data again.
    let writes = [0..M, M + 12 * K..M + 16 * K, 2 * M - 4 * K..3 * M];
    let (image, content) = raw_image(dir.path(), 4 * M, &writes);
    let server = QemuNbd::serve(&image, "raw", &[]);
    let source = server.connect(NbdOptions {
        request_size: 64 * K,
        ..NbdOptions::default()
    });
    let read = |offset: u64, len: u64| {
        let mut buf = vec![0x5au8; len as usize];
        assert_eq!(
            source.read_at(offset, &mut buf).expect("read"),
            len as usize
        );
        buf
    };
    // Fill every pooled buffer with data first, then read across the holes with them.
    for _ in 0..2 {
        assert!(read(0, M) == content[..M as usize]);
        assert!(
            read(M, M) == content[M as usize..2 * M as usize],
            "the hole read stale bytes"
        );
        // Requests that start in data and end in a hole, and the reverse, unaligned.
        for (offset, len) in [
            (M - 100, 20_000),
            (M + 16 * K - 7, 64 * K),
            (2 * M - 5 * K, 9 * K),
        ] {
            let want = &content[offset as usize..(offset + len) as usize];
            assert!(read(offset, len) == want, "{offset}+{len}");
        }
        assert!(
            read(3 * M, M).iter().all(|&b| b == 0),
            "the tail hole is not zeros"
        );
    }
}

#[test]
fn a_server_that_holds_back_further_connections_is_read_over_the_first_soon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (image, content) = raw_image(dir.path(), 4 * M, &[M..2 * M + 5]);
    // Given last, --shared=2 is the one qemu-nbd keeps: the third connection waits.
    let server = QemuNbd::serve(&image, "raw", &["--shared=2"]);
    let started = Instant::now();
    let source = server.connect(NbdOptions {
        connections: 3,
        timeout: Duration::from_secs(8),
        ..NbdOptions::default()
    });
    let took = started.elapsed();
    assert!(source.info().multi_conn);
    assert!(took < Duration::from_secs(4), "connecting took {took:?}");
    let mut buf = vec![0u8; 4 * M as usize];
    assert_eq!(source.read_at(0, &mut buf).expect("read"), buf.len());
    assert!(buf == content);
}
