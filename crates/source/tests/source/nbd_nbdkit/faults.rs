//! nbdkit's fault schedules: EIO on reads and on block status (always, at a rate, or while a
//! trigger file exists), with structured and simple replies; a server too slow for the
//! client's timeout; the server killed during a large pipelined read; handshakes this client
//! does not speak. Each ends in a clear error, in bounded time, with no panic, and a server
//! error leaves the connection usable.

use std::time::{Duration, Instant};

use blockvault_source::{BlockSource, Error, NbdOptions, NbdSource};

use super::{K, Listen, M, Nbdkit, pattern, quick};

/// `error=EIO`'s number on the wire.
const EIO: u32 = 5;

/// Asserts `e` is the server's EIO for the `len`-byte request at `offset`, said so.
fn assert_eio(e: &Error, offset: u64, len: u64) {
    assert!(
        matches!(e, Error::NbdServer { errno: EIO, offset: o, .. } if *o == offset),
        "{e:?}"
    );
    let said = e.to_string();
    for part in [
        "EIO (5)",
        &format!("{len}-byte"),
        &format!("at byte {offset}"),
    ] {
        assert!(said.contains(part), "{part:?} not in: {said}");
    }
}

fn read(source: &NbdSource, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len];
    let n = source.read_at(offset, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn an_eio_on_a_read_names_the_request_and_the_connection_goes_on() {
    for sr in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let trigger = dir.path().join("fail");
        let mut args = vec![
            "--filter=error".to_owned(),
            "pattern".to_owned(),
            "size=4M".to_owned(),
            "error-pread=EIO".to_owned(),
            "error-pread-rate=100%".to_owned(),
            format!("error-pread-file={}", trigger.display()),
        ];
        if !sr {
            args.insert(0, "--no-sr".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Nbdkit::start(Listen::Unix, &args);
        let source = server.connect(quick());
        assert_eq!(source.info().structured_replies, sr);

        std::fs::write(&trigger, b"").expect("trigger");
        let e = read(&source, 12 * K, 4096).expect_err("a failed read");
        assert_eio(&e, 12 * K, 4096);
        // A read of several requests fails as a whole, naming one of them.
        let e = read(&source, M, M as usize).expect_err("a failed large read");
        assert!(matches!(e, Error::NbdServer { errno: EIO, .. }), "{e:?}");

        std::fs::remove_file(&trigger).expect("untrigger");
        for (offset, len) in [(12 * K, 4096usize), (M, M as usize), (0, 4 * M as usize)] {
            let got = read(&source, offset, len).expect("the connection still reads");
            assert!(
                got == pattern(offset..offset + len as u64),
                "sr={sr} {offset}+{len}"
            );
        }
    }
}

#[test]
fn read_errors_at_a_rate_fail_only_the_requests_they_hit() {
    let server = Nbdkit::start(
        Listen::Tcp,
        &[
            "--filter=error",
            "pattern",
            "size=8M",
            "error-pread=EIO",
            "error-pread-rate=30%",
        ],
    );
    let source = server.connect(quick());
    let (mut good, mut bad) = (0, 0);
    for i in 0..60u64 {
        let offset = i * 100 * K + i;
        match read(&source, offset, 50_000) {
            Ok(bytes) => {
                good += 1;
                assert!(bytes == pattern(offset..offset + 50_000), "read {i}");
            }
            Err(e) => {
                bad += 1;
                assert!(matches!(e, Error::NbdServer { errno: EIO, .. }), "{e:?}");
            }
        }
    }
    assert!(good > 0 && bad > 0, "{good} reads worked, {bad} failed");

    // The same from several threads at once on one connection (as the scan's workers read):
    // replies come back out of order, and each caller gets its own bytes or its own error.
    let source = std::sync::Arc::new(source);
    let workers: Vec<_> = (0..6u64)
        .map(|t| {
            let source = std::sync::Arc::clone(&source);
            std::thread::spawn(move || {
                let (mut good, mut bad) = (0u32, 0u32);
                for i in 0..20u64 {
                    let offset = (t * 977 + i * 333_333) % (7 * M);
                    let len = 1000 + ((t * 31 + i * 7919) % (900 * K)) as usize;
                    match read(&source, offset, len) {
                        Ok(bytes) => {
                            assert!(bytes == pattern(offset..offset + len as u64), "{t}/{i}");
                            good += 1;
                        }
                        Err(Error::NbdServer { errno: EIO, .. }) => bad += 1,
                        Err(e) => panic!("thread {t}, read {i}: {e:?}"),
                    }
                }
                (good, bad)
            })
        })
        .collect();
    let (good, bad) = workers
        .into_iter()
        .map(|w| w.join().expect("reader thread"))
        .fold((0, 0), |(g, b), (g2, b2)| (g + g2, b + b2));
    assert!(
        good > 0 && bad > 0,
        "{good} threaded reads worked, {bad} failed"
    );
}

#[test]
fn an_eio_on_block_status_fails_the_allocation_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trigger = dir.path().join("fail");
    let server = Nbdkit::start(
        Listen::Unix,
        &[
            "--filter=error",
            "data",
            "data=@1048576 1 2 3",
            "size=4M",
            "error-extents=EIO",
            "error-extents-rate=100%",
            &format!("error-extents-file={}", trigger.display()),
        ],
    );
    let source = server.connect(quick());
    std::fs::write(&trigger, b"").expect("trigger");
    let e = source.allocation().expect_err("failed block status");
    assert_eio(&e, 0, 4 * M);
    let e = source.data_extents().expect_err("failed block status");
    assert!(matches!(e, Error::NbdServer { errno: EIO, .. }), "{e:?}");
    std::fs::remove_file(&trigger).expect("untrigger");
    assert_eq!(
        source.data_extents().expect("block status works again"),
        vec![M..M + 32 * K]
    );
    assert!(read(&source, M, 4).expect("read") == [1, 2, 3, 0]);
}

#[test]
fn a_server_slower_than_the_timeout_fails_in_bounded_time() {
    let server = Nbdkit::start(
        Listen::Unix,
        &["--filter=delay", "pattern", "size=4M", "delay-read=5"],
    );
    let source = server.connect(NbdOptions {
        timeout: Duration::from_millis(500),
        ..NbdOptions::default()
    });
    let started = Instant::now();
    let e = read(&source, 0, M as usize).expect_err("a stalled read");
    let took = started.elapsed();
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
    assert!(e.to_string().contains("sent nothing for 0.5s"), "{e}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // The connection is broken now: the next read says so at once.
    let started = Instant::now();
    let again = read(&source, 0, 10).expect_err("broken");
    assert!(matches!(again, Error::Nbd { .. }), "{again:?}");
    assert!(started.elapsed() < Duration::from_millis(200));
    let started = Instant::now();
    drop(source);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closing took long"
    );
}

#[test]
fn a_slow_but_steady_server_is_not_timed_out() {
    // 4 MiB/s after a 2 MiB burst: an 8 MiB read takes about 1.5 times the timeout in all,
    // but replies keep coming, so no request waits the timeout with nothing arriving.
    let server = Nbdkit::start(
        Listen::Tcp,
        &[
            "--filter=rate",
            "pattern",
            "size=16M",
            "rate=32M",
            "burstiness=0.5",
        ],
    );
    let source = server.connect(NbdOptions {
        timeout: Duration::from_secs(1),
        ..NbdOptions::default()
    });
    let started = Instant::now();
    let got = read(&source, 1000, 8 * M as usize).expect("a slow read");
    let took = started.elapsed();
    assert!(got == pattern(1000..1000 + 8 * M));
    assert!(
        took > Duration::from_millis(1200),
        "not slowed down: {took:?}"
    );
}

#[test]
fn a_server_that_stalls_in_the_handshake_fails_the_connect_in_bounded_time() {
    let server = Nbdkit::start(
        Listen::Tcp,
        &["--filter=delay", "pattern", "size=1M", "delay-open=5"],
    );
    let started = Instant::now();
    let e = NbdSource::connect(
        server.address(""),
        NbdOptions {
            timeout: Duration::from_millis(500),
            ..NbdOptions::default()
        },
    )
    .expect_err("a stalled handshake");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
    assert!(e.to_string().contains("sent nothing for 0.5s"), "{e}");
}

#[test]
fn killing_the_server_during_a_pipelined_read_fails_it_cleanly() {
    for listen in [Listen::Unix, Listen::Tcp] {
        // 50 ms a request: a 32 MiB read (128 requests, 64 in flight, 16 server threads) takes
        // about 400 ms, and the server goes at 80 ms.
        let server = Nbdkit::start(
            listen,
            &["--filter=delay", "pattern", "size=64M", "delay-read=50ms"],
        );
        let source = server.connect(quick());
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(80));
            drop(server);
        });
        let started = Instant::now();
        let e = read(&source, 0, 32 * M as usize).expect_err("the server was killed");
        assert!(matches!(e, Error::Nbd { .. }), "{listen:?}: {e:?}");
        let said = e.to_string();
        assert!(
            said.contains("the server closed the connection")
                || said.contains("the server dropped the connection"),
            "{said}"
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{listen:?}");
        killer.join().expect("killer");
        let e = read(&source, 0, 10).expect_err("still broken");
        assert!(matches!(e, Error::Nbd { .. }), "{listen:?}: {e:?}");
    }
}

#[test]
fn stopping_the_server_during_a_pipelined_read_fails_it_cleanly() {
    // SIGTERM: nbdkit stops taking requests (ESHUTDOWN) and closes its connections.
    let server = Nbdkit::start(
        Listen::Unix,
        &["--filter=delay", "pattern", "size=64M", "delay-read=50ms"],
    );
    let source = server.connect(quick());
    let pid = server.child.id();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(80));
        let sent = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .expect("kill -s TERM");
        assert!(sent.success());
        server
    });
    let started = Instant::now();
    let e = read(&source, 0, 32 * M as usize).expect_err("the server stopped");
    assert!(
        matches!(e, Error::Nbd { .. } | Error::NbdServer { errno: 108, .. }),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(stopper.join().expect("stopper"));
    let e = read(&source, 0, 10).expect_err("the server is gone");
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
}

#[test]
fn a_server_that_requires_tls_is_refused_saying_so() {
    // A pre-shared key needs no certificates; this client speaks no TLS, so every option it
    // sends is answered NBD_REP_ERR_TLS_REQD.
    let dir = tempfile::tempdir().expect("tempdir");
    let psk = dir.path().join("keys.psk");
    std::fs::write(&psk, "blockvault:0123456789abcdef0123456789abcdef\n").expect("psk");
    let server = Nbdkit::start(
        Listen::Tcp,
        &[
            "--tls=require",
            &format!("--tls-psk={}", psk.display()),
            "pattern",
            "size=1M",
        ],
    );
    let started = Instant::now();
    let e = NbdSource::connect(server.address(""), quick()).expect_err("TLS required");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
    assert!(e.to_string().contains("requires TLS"), "{e}");
}

#[test]
fn an_unfixed_newstyle_handshake_is_refused_saying_why() {
    // --mask-handshake=0 takes NBD_FLAG_FIXED_NEWSTYLE out of the greeting.
    let server = Nbdkit::start(Listen::Unix, &["--mask-handshake=0", "pattern", "size=1M"]);
    let started = Instant::now();
    let e = NbdSource::connect(server.address(""), quick()).expect_err("unfixed newstyle");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
    assert!(e.to_string().contains("NBD_FLAG_FIXED_NEWSTYLE"), "{e}");
}

#[test]
fn an_oldstyle_server_reads_with_simple_replies_and_has_no_export_names() {
    let size = 2 * M + 333;
    let server = Nbdkit::start(
        Listen::Tcp,
        &["--oldstyle", "pattern", &format!("size={size}")],
    );
    let source = server.connect(quick());
    assert_eq!(source.size(), size);
    assert!(!source.info().structured_replies);
    assert_eq!(source.allocation().expect("allocation"), None);
    assert_eq!(source.data_extents().expect("extents"), vec![0..size]);
    for (offset, len) in [
        (0u64, size as usize),
        (M - 5, 300 * K as usize),
        (size - 7, 100),
    ] {
        let got = read(&source, offset, len).expect("read");
        assert!(
            got == pattern(offset..(offset + len as u64).min(size)),
            "{offset}+{len}"
        );
    }
    let e = NbdSource::connect(server.address("disk"), quick()).expect_err("a named export");
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("oldstyle protocol, which has no export names"),
        "{e}"
    );
}
