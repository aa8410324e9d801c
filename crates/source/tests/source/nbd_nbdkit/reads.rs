//! Reads and `base:allocation` against nbdkit when it behaves: byte for byte across request
//! boundaries and at the export's end, over unix sockets and TCP, within the server's block
//! size limits, with and without structured replies; extents exact where the plugin's layout
//! is known, and consistent with the bytes where it is random; named exports; multi-conn.

use blockvault_source::{Allocation, BlockSource, Error, NbdAddress, NbdOptions, NbdSource};

use super::{K, Listen, M, Nbdkit, logged_connections, pattern, pattern_at, quick};

/// Reads `len` bytes at `offset`, asserting the count.
fn read(source: &NbdSource, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xa5u8; len];
    let n = source.read_at(offset, &mut buf).expect("read through NBD");
    buf.truncate(n);
    buf
}

/// Unaligned reads inside one request, across request boundaries (256 KiB by default) and
/// across the export's end, each checked against the pattern.
fn check_pattern_reads(source: &NbdSource, size: u64) {
    for (offset, len) in [
        (0u64, 1usize),
        (7, 9),
        (256 * K - 3, 10),
        (256 * K - 1, 2 * 256 * K as usize + 5),
        (M + 12_345, 3 * M as usize + 777),
        (size - 4097, 4097),
    ] {
        let end = (offset + len as u64).min(size);
        assert!(
            read(source, offset, len) == pattern(offset..end),
            "{offset}+{len}"
        );
    }
    // Past the end: only what the export has, then nothing.
    assert!(read(source, size - 10, 1000) == pattern(size - 10..size));
    assert!(read(source, size, 1000).is_empty());
    assert!(read(source, size + M, 10).is_empty());
}

#[test]
fn the_pattern_plugin_reads_byte_for_byte_over_unix_and_tcp() {
    // An odd size: the last request is short and unaligned.
    let size = 5 * M + 12_345;
    for listen in [Listen::Unix, Listen::Tcp] {
        let server = Nbdkit::start(listen, &["pattern", &format!("size={size}")]);
        let source = server.connect(quick());
        assert_eq!(source.size(), size, "{listen:?}");
        // The pattern plugin cannot be written.
        assert!(source.info().read_only, "{listen:?}");
        assert!(source.info().structured_replies, "{listen:?}");
        let whole = read(&source, 0, size as usize);
        assert_eq!(whole.len() as u64, size);
        let wrong = (0..size).find(|&i| whole[i as usize] != pattern_at(i));
        assert_eq!(wrong, None, "{listen:?}: first wrong byte");
        check_pattern_reads(&source, size);
    }
}

#[test]
fn reads_keep_to_the_servers_block_size_limits() {
    // blocksize-policy advertises the limits and fails (EINVAL) any request outside them, so
    // one unaligned or oversized request fails the test.
    let size = 4 * M + 3 * 512;
    let server = Nbdkit::start(
        Listen::Unix,
        &[
            "--filter=blocksize-policy",
            "pattern",
            &format!("size={size}"),
            "blocksize-minimum=512",
            "blocksize-preferred=4096",
            "blocksize-maximum=65536",
            "blocksize-error-policy=error",
        ],
    );
    let source = server.connect(NbdOptions {
        request_size: M,
        ..quick()
    });
    let info = source.info();
    assert_eq!(
        (info.min_block, info.preferred_block, info.max_payload),
        (512, 4096, 65536)
    );
    check_pattern_reads(&source, size);
    // Block status keeps to the limits too (the whole export is data).
    assert_eq!(source.data_extents().expect("extents"), vec![0..size]);
}

#[test]
fn without_structured_replies_reads_are_simple_and_everything_is_data() {
    let size = 3 * M + 100;
    let server = Nbdkit::start(
        Listen::Unix,
        &["--no-sr", "pattern", &format!("size={size}")],
    );
    let source = server.connect(quick());
    let info = source.info();
    assert!(!info.structured_replies);
    assert!(info.contexts.is_empty(), "{:?}", info.contexts);
    assert_eq!(source.allocation().expect("allocation"), None);
    assert_eq!(source.data_extents().expect("extents"), vec![0..size]);
    check_pattern_reads(&source, size);
}

/// The `data` plugin's layout: bytes at offsets, holes elsewhere, allocated in 32 KiB pages.
const PAGE: u64 = 32 * K;

#[test]
fn the_data_plugins_holes_and_data_are_exact_and_read_as_placed() {
    let size = 2 * M;
    // Bytes placed in pages 0, 6 and 31 (the last, its final byte the export's last).
    let placed: [(u64, &[u8]); 3] = [(0, b"\x01\x02\x03"), (200_000, b"abc"), (size - 4, b"tail")];
    let mut expr = String::new();
    for (at, bytes) in placed {
        expr.push_str(&format!("@{at} "));
        for b in bytes {
            expr.push_str(&format!("{b} "));
        }
    }
    let mut content = vec![0u8; size as usize];
    for (at, bytes) in placed {
        content[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }
    let server = Nbdkit::start(
        Listen::Unix,
        &["data", &format!("data={expr}"), &format!("size={size}")],
    );
    let source = server.connect(quick());
    // The data plugin can be written (this client never does).
    assert!(!source.info().read_only);
    let data = |r: std::ops::Range<u64>| Allocation {
        range: r,
        hole: false,
        zero: false,
    };
    let hole = |r: std::ops::Range<u64>| Allocation {
        range: r,
        hole: true,
        zero: true,
    };
    assert_eq!(
        source.allocation().expect("allocation"),
        Some(vec![
            data(0..PAGE),
            hole(PAGE..6 * PAGE),
            data(6 * PAGE..7 * PAGE),
            hole(7 * PAGE..size - PAGE),
            data(size - PAGE..size),
        ])
    );
    assert_eq!(
        source.data_extents().expect("extents"),
        vec![0..PAGE, 6 * PAGE..7 * PAGE, size - PAGE..size]
    );
    assert!(read(&source, 0, size as usize) == content);
    assert!(read(&source, 199_999, 5) == b"\0abc\0");
    assert!(read(&source, size - 6, 100) == b"\0\0tail");
}

#[test]
fn allocation_is_exact_across_status_requests_that_stop_short_or_run_past() {
    // 3 GiB: block status goes in 1 GiB requests, and the data straddles the first boundary,
    // so a reply that runs past its request (nbdkit's last extent does) must not be counted
    // twice or skipped.
    let g = 1u64 << 30;
    let server = Nbdkit::start(
        Listen::Unix,
        &["data", &format!("data=@{} \"abcdefgh\"", g - 4), "size=3G"],
    );
    let source = server.connect(quick());
    let alloc = source
        .allocation()
        .expect("allocation")
        .expect("base:allocation");
    let expected = vec![
        (0..g - PAGE, true),
        (g - PAGE..g + PAGE, false),
        (g + PAGE..3 * g, true),
    ];
    let got: Vec<_> = alloc.iter().map(|a| (a.range.clone(), a.hole)).collect();
    assert_eq!(got, expected);
    assert!(read(&source, g - 6, 12) == b"\0\0abcdefgh\0\0");

    // The blocksize filter answers each block status request for at most 64 KiB (less than
    // asked): the client asks again from where the reply stopped, and the log filter in
    // front counts the requests that took.
    let size = 8 * M;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let server = Nbdkit::start(
        Listen::Unix,
        &[
            "--filter=log",
            "--filter=blocksize",
            "data",
            &format!("data=@{} \"x\" @{} \"y\"", 3 * M + 1, 5 * M),
            &format!("size={size}"),
            "maxlen=65536",
            &format!("logfile={}", log.display()),
        ],
    );
    let source = server.connect(quick());
    assert_eq!(
        source.data_extents().expect("extents"),
        vec![3 * M..3 * M + PAGE, 5 * M..5 * M + PAGE]
    );
    drop(source);
    let text = std::fs::read_to_string(&log).expect("log");
    let asked = text.lines().filter(|l| l.contains(" Extents id=")).count();
    assert!(
        asked >= 10,
        "{asked} block status requests: no reply stopped short"
    );
}

#[test]
fn sparse_random_extents_agree_with_the_bytes_block_by_block() {
    // Data blocks repeat one non-zero byte; holes read as zeros: every extent is checkable.
    let size = 64 * M;
    let server = Nbdkit::start(
        Listen::Unix,
        &[
            "sparse-random",
            &format!("size={size}"),
            "seed=24",
            "percent=30",
            "runlength=262144",
        ],
    );
    let source = server.connect(quick());
    let alloc = source
        .allocation()
        .expect("allocation")
        .expect("base:allocation");
    assert!(alloc.len() >= 50, "only {} extents", alloc.len());
    assert_eq!(alloc.first().map(|a| a.range.start), Some(0));
    assert_eq!(alloc.last().map(|a| a.range.end), Some(size));
    assert!(alloc.windows(2).all(|w| w[0].range.end == w[1].range.start));
    let whole = read(&source, 0, size as usize);
    let mut data = 0;
    for a in &alloc {
        let bytes = &whole[a.range.start as usize..a.range.end as usize];
        if a.is_data() {
            data += a.range.end - a.range.start;
            assert!(bytes.iter().all(|&b| b != 0), "zeros in data {:?}", a.range);
        } else {
            assert!(bytes.iter().all(|&b| b == 0), "data in hole {:?}", a.range);
        }
    }
    assert!(data > size / 10 && data < size / 2, "{data} bytes of data");
    // Smaller reads give the same bytes as the whole read. From block starts only: nbdkit
    // 1.32's sparse-random seeds a block's byte by the read's offset, so a read from inside
    // a block sees another byte than one from its start (checked with a raw client).
    for offset in (0..size).step_by(3 * M as usize + 4096) {
        let got = read(&source, offset, 70_000);
        let want = &whole[offset as usize..offset as usize + 70_000];
        let first = (0..got.len()).find(|&i| got[i] != want[i]);
        assert_eq!(
            first,
            None,
            "at {offset}: {:?}",
            first.map(|i| (got[i], want[i], &got[i..i + 8], &want[i..i + 8]))
        );
    }
}

#[test]
fn a_named_export_opens_over_unix_and_tcp_and_a_wrong_name_is_refused() {
    for listen in [Listen::Unix, Listen::Tcp] {
        let server = Nbdkit::start(
            listen,
            &[
                "--filter=exportname",
                "pattern",
                "size=1M",
                "exportname=vm/disk 0?a&b",
                "exportname-strict=true",
            ],
        );
        let source = NbdSource::connect(server.address("vm/disk 0?a&b"), quick()).expect("named");
        assert_eq!(source.size(), M);
        assert!(read(&source, 4093, 8) == pattern(4093..4101));
        for wrong in ["vm/disk 1?a&b", ""] {
            let address = server.address(wrong);
            let e = NbdSource::connect(address.clone(), quick()).expect_err(wrong);
            assert!(
                matches!(e, Error::NbdNoExport { .. }),
                "{listen:?} {wrong:?}: {e:?}"
            );
            assert!(e.to_string().contains("no such export"), "{e}");
            // The message's URI is the one to try again with.
            assert!(e.to_string().contains(&address.to_string()), "{e}");
            assert_eq!(
                NbdAddress::parse(&address.to_string()).expect("parse"),
                address
            );
        }
        // The refused connections did not disturb the open one.
        assert!(read(&source, M - 8, 8) == pattern(M - 8..M));
    }
}

#[test]
fn several_connections_are_opened_only_when_the_server_offers_multi_conn() {
    for (mode, offered) in [("plugin", true), ("disable", false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let server = Nbdkit::start(
            Listen::Unix,
            &[
                "--filter=log",
                "--filter=multi-conn",
                "pattern",
                "size=16M",
                &format!("multi-conn-mode={mode}"),
                &format!("logfile={}", log.display()),
            ],
        );
        let source = server.connect(NbdOptions {
            connections: 3,
            ..quick()
        });
        assert_eq!(source.info().multi_conn, offered, "{mode}");
        assert!(
            read(&source, 0, 16 * M as usize) == pattern(0..16 * M),
            "{mode}"
        );
        drop(source);
        let (connected, read_on) = logged_connections(&log);
        if offered {
            assert_eq!((connected, read_on), (3, 3), "{mode}");
        } else {
            assert_eq!((connected, read_on), (1, 1), "{mode}");
        }
    }
}

#[test]
fn a_server_that_takes_fewer_connections_than_asked_is_read_over_those_it_takes() {
    // multi-conn offered, but the limit filter turns away a third concurrent client: the
    // extra connections are an optimisation, so the source reads over the two it got.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let server = Nbdkit::start(
        Listen::Unix,
        &[
            "--filter=log",
            "--filter=limit",
            "pattern",
            "size=8M",
            "limit=2",
            &format!("logfile={}", log.display()),
        ],
    );
    let source = server.connect(NbdOptions {
        connections: 4,
        ..quick()
    });
    assert!(source.info().multi_conn);
    assert!(read(&source, 3, 8 * M as usize) == pattern(3..8 * M));
    drop(source);
    let (_, read_on) = logged_connections(&log);
    assert_eq!(read_on, 2, "reads went over {read_on} connections");
}

#[test]
fn an_empty_export_has_no_bytes_and_no_extents() {
    let server = Nbdkit::start(Listen::Unix, &["null", "size=0"]);
    let source = server.connect(quick());
    assert_eq!(source.size(), 0);
    assert!(read(&source, 0, 10).is_empty());
    assert_eq!(source.allocation().expect("allocation"), Some(Vec::new()));
    assert!(source.data_extents().expect("extents").is_empty());
}

#[test]
fn a_dirty_bitmap_the_server_does_not_have_is_a_clear_error_and_reads_go_on() {
    // nbdkit has no qemu:dirty-bitmap contexts: it agrees to base:allocation only.
    let server = Nbdkit::start(Listen::Unix, &["pattern", "size=1M"]);
    let source = server.connect(NbdOptions {
        dirty_bitmap: Some("blockvault-p1".to_owned()),
        ..quick()
    });
    assert_eq!(source.info().contexts, vec!["base:allocation".to_owned()]);
    let e = source.dirty_extents().expect_err("no such bitmap");
    assert!(
        e.to_string().contains("dirty bitmap \"blockvault-p1\""),
        "{e}"
    );
    assert_eq!(source.data_extents().expect("extents"), vec![0..M]);
    assert!(read(&source, 100, 100) == pattern(100..200));
}

#[test]
fn a_server_without_extent_information_is_read_as_all_data() {
    // The noextents filter keeps base:allocation but answers every request with one data
    // extent to the end: the holes are not known, so every byte is read.
    let size = 4 * M;
    let server = Nbdkit::start(
        Listen::Unix,
        &[
            "--filter=noextents",
            "data",
            &format!("data=1 2 3 @{M} 4"),
            &format!("size={size}"),
        ],
    );
    let source = server.connect(quick());
    assert_eq!(source.info().contexts, vec!["base:allocation".to_owned()]);
    assert_eq!(source.data_extents().expect("extents"), vec![0..size]);
    assert!(read(&source, 0, 4) == [1, 2, 3, 0]);
    assert!(read(&source, M - 1, 3) == [0, 4, 0]);
}

#[test]
fn offsets_past_4_gib_and_a_large_sparse_disk_s_many_extents() {
    // Offsets that do not fit 32 bits, on both request paths.
    let size = 10u64 << 30;
    let server = Nbdkit::start(Listen::Tcp, &["pattern", &format!("size={size}")]);
    let source = server.connect(quick());
    assert_eq!(source.data_extents().expect("extents"), vec![0..size]);
    for offset in [(4u64 << 30) - 3, (9 << 30) + 12_345, size - 100] {
        assert!(read(&source, offset, 300_000) == pattern(offset..(offset + 300_000).min(size)));
    }

    // 100 GiB of runs of data and holes: thousands of extents over a hundred block status
    // requests, merged into one ascending cover of the disk.
    let size = 100u64 << 30;
    let server = Nbdkit::start(
        Listen::Unix,
        &[
            "sparse-random",
            &format!("size={size}"),
            "seed=3",
            "runlength=4194304",
        ],
    );
    let source = server.connect(quick());
    let alloc = source
        .allocation()
        .expect("allocation")
        .expect("base:allocation");
    assert!(alloc.len() > 2000, "only {} extents", alloc.len());
    assert_eq!(alloc.first().map(|a| a.range.start), Some(0));
    assert_eq!(alloc.last().map(|a| a.range.end), Some(size));
    assert!(
        alloc
            .windows(2)
            .all(|w| w[0].range.end == w[1].range.start && w[0].is_data() != w[1].is_data())
    );
    // Spot checks: a data extent's first block is its byte, a hole's is zeros.
    for a in alloc.iter().step_by(alloc.len() / 20) {
        let bytes = read(
            &source,
            a.range.start,
            4096.min((a.range.end - a.range.start) as usize),
        );
        assert!(bytes.iter().all(|&b| (b != 0) == a.is_data()), "{a:?}");
    }
}
