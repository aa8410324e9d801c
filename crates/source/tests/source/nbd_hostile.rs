//! The NBD client against servers that break the protocol: a small fake server on a unix
//! socket speaks just enough of the handshake, then misbehaves. Every case must end in a clear
//! error, quickly: no hang, no panic, no huge allocation.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blockvault_source::{BlockSource, Error, NbdAddress, NbdOptions, NbdSource};

pub(crate) const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
pub(crate) const OPTS_MAGIC: u64 = 0x4948_4156_454f_5054;
pub(crate) const REP_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub(crate) const SIMPLE: u32 = 0x6744_6698;
pub(crate) const STRUCTURED: u32 = 0x668e_33ef;
pub(crate) const DONE: u16 = 1;
pub(crate) const OFFSET_DATA: u16 = 1;
const BLOCK_STATUS: u16 = 5;
pub(crate) const ERROR: u16 = (1 << 15) | 1;
const CMD_READ: u16 = 0;
pub(crate) const CMD_DISC: u16 = 2;

/// How the fake server negotiates.
#[derive(Clone, Copy)]
pub(crate) struct Handshake {
    size: u64,
    structured: bool,
    /// The smallest block to advertise (`NBD_INFO_BLOCK_SIZE`); 0 sends none.
    min_block: u32,
}

/// A request as the fake server reads it.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) command: u16,
    pub(crate) cookie: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

fn u32_at(s: &mut UnixStream) -> Option<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).ok()?;
    Some(u32::from_be_bytes(b))
}

fn option_reply(s: &mut UnixStream, option: u32, kind: u32, data: &[u8]) {
    let mut m = Vec::new();
    m.extend_from_slice(&REP_MAGIC.to_be_bytes());
    m.extend_from_slice(&option.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    // The client may have gone; the test checks what it saw.
    let _ = s.write_all(&m);
}

/// The server side of the handshake; `None` if the client left.
fn handshake(s: &mut UnixStream, h: Handshake) -> Option<()> {
    let mut greeting = Vec::new();
    greeting.extend_from_slice(&INIT_MAGIC.to_be_bytes());
    greeting.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
    greeting.extend_from_slice(&3u16.to_be_bytes());
    s.write_all(&greeting).ok()?;
    u32_at(s)?;
    loop {
        let mut head = [0u8; 16];
        s.read_exact(&mut head).ok()?;
        let option = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let len = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).ok()?;
        match option {
            8 if h.structured => option_reply(s, option, 1, &[]),
            8 => option_reply(s, option, (1 << 31) | 1, &[]),
            10 => {
                let mut ctx = 1u32.to_be_bytes().to_vec();
                ctx.extend_from_slice(b"base:allocation");
                option_reply(s, option, 4, &ctx);
                option_reply(s, option, 1, &[]);
            }
            7 => {
                let mut info = 0u16.to_be_bytes().to_vec();
                info.extend_from_slice(&h.size.to_be_bytes());
                info.extend_from_slice(&3u16.to_be_bytes());
                option_reply(s, option, 3, &info);
                if h.min_block > 0 {
                    let mut sizes = 3u16.to_be_bytes().to_vec();
                    for v in [h.min_block, 64 << 10, 1 << 20] {
                        sizes.extend_from_slice(&v.to_be_bytes());
                    }
                    option_reply(s, option, 3, &sizes);
                }
                option_reply(s, option, 1, &[]);
                return Some(());
            }
            _ => option_reply(s, option, (1 << 31) | 1, &[]),
        }
    }
}

pub(crate) fn request(s: &mut UnixStream) -> Option<Request> {
    let mut b = [0u8; 28];
    s.read_exact(&mut b).ok()?;
    Some(Request {
        command: u16::from_be_bytes([b[6], b[7]]),
        cookie: u64::from_be_bytes(b[8..16].try_into().ok()?),
        offset: u64::from_be_bytes(b[16..24].try_into().ok()?),
        len: u32::from_be_bytes(b[24..28].try_into().ok()?),
    })
}

pub(crate) fn chunk_header(flags: u16, kind: u16, cookie: u64, length: u32) -> Vec<u8> {
    let mut m = STRUCTURED.to_be_bytes().to_vec();
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&cookie.to_be_bytes());
    m.extend_from_slice(&length.to_be_bytes());
    m
}

/// A whole, correct structured read reply: one data chunk of `fill` bytes, done.
pub(crate) fn good_read(r: &Request, fill: u8) -> Vec<u8> {
    let mut m = chunk_header(DONE, OFFSET_DATA, r.cookie, 8 + r.len);
    m.extend_from_slice(&r.offset.to_be_bytes());
    m.extend(std::iter::repeat_n(fill, r.len as usize));
    m
}

/// A fake server for one connection: the handshake, then `behave`.
pub(crate) struct Fake {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    pub(crate) fn start(
        h: Handshake,
        behave: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> Fake {
        Fake::raw(move |s| {
            if handshake(s, h).is_some() {
                behave(s);
            }
        })
    }

    /// A server that does everything itself, the greeting included.
    pub(crate) fn raw(serve: impl FnOnce(&mut UnixStream) + Send + 'static) -> Fake {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("nbd.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let thread = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                serve(&mut s);
            }
        });
        Fake {
            _dir: dir,
            socket,
            thread: Some(thread),
        }
    }

    pub(crate) fn connect(&self, timeout: Duration) -> Result<NbdSource, Error> {
        NbdSource::connect(
            NbdAddress::unix(&self.socket, ""),
            NbdOptions {
                timeout,
                ..NbdOptions::default()
            },
        )
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            // The server thread's own asserts show up as a panic here, in the test.
            if let Err(panic) = t.join()
                && !std::thread::panicking()
            {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

const SIZE: u64 = 1 << 20;
pub(crate) const STRUCT: Handshake = Handshake {
    size: SIZE,
    structured: true,
    min_block: 0,
};

/// Reads 4 KiB at 0 and returns the error, checking that it came quickly.
fn failed_read(source: &NbdSource) -> Error {
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let e = source.read_at(0, &mut buf).expect_err("a broken reply");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the error took {:?}",
        started.elapsed()
    );
    e
}

fn assert_broken(e: &Error, says: &str) {
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
    assert!(e.to_string().contains(says), "expected {says:?} in: {e}");
}

#[test]
fn a_server_that_closes_mid_reply_fails_the_read_and_every_later_one() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            let reply = good_read(&r, 7);
            let _ = s.write_all(&reply[..reply.len() / 2]);
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    let e = failed_read(&source);
    assert_broken(&e, "closed the connection");
    let again = failed_read(&source);
    assert_broken(&again, "closed the connection");
}

#[test]
fn a_reply_for_a_request_not_in_flight_breaks_the_connection() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            let mut m = SIMPLE.to_be_bytes().to_vec();
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&(r.cookie + 1000).to_be_bytes());
            let _ = s.write_all(&m);
            // Stay until the client hangs up.
            let _ = request(s);
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    assert_broken(&failed_read(&source), "not in flight");
}

#[test]
fn a_data_chunk_longer_than_the_read_is_refused_before_it_is_read() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            // Claims 4 GiB of data for a 4 KiB read.
            let mut m = chunk_header(DONE, OFFSET_DATA, r.cookie, u32::MAX);
            m.extend_from_slice(&r.offset.to_be_bytes());
            let _ = s.write_all(&m);
            let _ = request(s);
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    assert_broken(&failed_read(&source), "outside the 4096-byte read at 0");
}

#[test]
fn a_block_status_chunk_of_gigabytes_is_refused_before_it_is_read() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            let m = chunk_header(DONE, BLOCK_STATUS, r.cookie, 0xffff_fff4);
            let _ = s.write_all(&m);
            let _ = request(s);
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    let e = source.data_extents().expect_err("a huge chunk");
    assert_broken(&e, "block status chunk of");
}

#[test]
fn a_bad_reply_magic_breaks_the_connection() {
    let fake = Fake::start(STRUCT, |s| {
        if request(s).is_some() {
            let _ = s.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
            let _ = request(s);
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    assert_broken(&failed_read(&source), "bad magic 0xdeadbeef");
}

#[test]
fn an_export_smaller_than_claimed_fails_reads_past_its_real_end_only() {
    let fake = Fake::start(STRUCT, |s| {
        while let Some(r) = request(s) {
            if r.command == CMD_DISC {
                return;
            }
            let reply = if r.offset + u64::from(r.len) > SIZE / 2 {
                let message = b"request out of range";
                let mut m = chunk_header(DONE, ERROR, r.cookie, 6 + message.len() as u32);
                m.extend_from_slice(&22u32.to_be_bytes());
                m.extend_from_slice(&(message.len() as u16).to_be_bytes());
                m.extend_from_slice(message);
                m
            } else {
                good_read(&r, 9)
            };
            if s.write_all(&reply).is_err() {
                return;
            }
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    let mut buf = vec![0u8; 4096];
    let e = source
        .read_at(SIZE - 4096, &mut buf)
        .expect_err("past the real end");
    assert!(matches!(e, Error::NbdServer { errno: 22, .. }), "{e:?}");
    assert!(e.to_string().contains("EINVAL"), "{e}");
    assert!(e.to_string().contains("request out of range"), "{e}");
    // The connection still works for what the export has.
    assert_eq!(source.read_at(0, &mut buf).expect("inside"), 4096);
    assert!(buf.iter().all(|&b| b == 9));
}

#[test]
fn a_reply_that_leaves_part_of_a_read_unanswered_is_an_error() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            let half = Request {
                len: r.len / 2,
                ..r
            };
            let _ = s.write_all(&good_read(&half, 1));
            let _ = request(s);
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    assert_broken(&failed_read(&source), "ended at byte 2048");
}

#[test]
fn a_server_that_stalls_times_out() {
    let fake = Fake::start(STRUCT, |s| {
        // Reads the request, never answers, waits for the client to hang up.
        while let Some(r) = request(s) {
            if r.command == CMD_DISC {
                return;
            }
        }
    });
    let source = fake.connect(Duration::from_millis(300)).expect("connect");
    let started = Instant::now();
    let e = failed_read(&source);
    assert_broken(&e, "sent nothing for 0.3s");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_idle_connection_does_not_time_out() {
    let fake = Fake::start(STRUCT, |s| {
        while let Some(r) = request(s) {
            if r.command == CMD_DISC || s.write_all(&good_read(&r, 3)).is_err() {
                return;
            }
        }
    });
    // Idle for three timeouts; the timeout is long enough for a loaded machine to answer.
    let source = fake.connect(Duration::from_millis(500)).expect("connect");
    std::thread::sleep(Duration::from_millis(1500));
    let mut buf = vec![0u8; 512];
    assert_eq!(source.read_at(0, &mut buf).expect("read after idling"), 512);
}

#[test]
fn replies_out_of_order_reach_their_own_callers() {
    let fake = Fake::start(STRUCT, |s| {
        let mut batch = Vec::new();
        while batch.len() < 4 {
            match request(s) {
                Some(r) if r.command == CMD_READ => batch.push(r),
                _ => return,
            }
        }
        // Answer the last first; each reply's bytes say which offset it is for.
        for r in batch.iter().rev() {
            let _ = s.write_all(&good_read(r, (r.offset / 4096) as u8));
        }
        let _ = request(s);
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    std::thread::scope(|scope| {
        for i in 0..4u64 {
            let source = &source;
            scope.spawn(move || {
                let mut buf = vec![0u8; 4096];
                source.read_at(i * 4096, &mut buf).expect("read");
                assert!(
                    buf.iter().all(|&b| u64::from(b) == i),
                    "read {i} got another's data"
                );
            });
        }
    });
}

#[test]
fn simple_replies_work_when_the_server_has_no_structured_replies() {
    let fake = Fake::start(
        Handshake {
            size: SIZE,
            structured: false,
            min_block: 0,
        },
        |s| {
            while let Some(r) = request(s) {
                if r.command == CMD_DISC {
                    return;
                }
                let mut m = SIMPLE.to_be_bytes().to_vec();
                m.extend_from_slice(&0u32.to_be_bytes());
                m.extend_from_slice(&r.cookie.to_be_bytes());
                m.extend(std::iter::repeat_n(5u8, r.len as usize));
                if s.write_all(&m).is_err() {
                    return;
                }
            }
        },
    );
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    assert!(!source.info().structured_replies);
    assert_eq!(source.data_extents().expect("extents"), vec![0..SIZE]);
    let mut buf = vec![0u8; 10_000];
    assert_eq!(source.read_at(SIZE - 100, &mut buf).expect("tail"), 100);
    assert!(buf[..100].iter().all(|&b| b == 5));
}

#[test]
fn not_an_nbd_server_and_an_oversized_option_reply_fail_the_handshake() {
    let http = Fake::raw(|s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let e = http.connect(Duration::from_secs(5)).expect_err("not NBD");
    assert_broken(&e, "not an NBD server");

    let huge = Fake::raw(|s| {
        let mut greeting = INIT_MAGIC.to_be_bytes().to_vec();
        greeting.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
        greeting.extend_from_slice(&3u16.to_be_bytes());
        let _ = s.write_all(&greeting);
        let _ = u32_at(s);
        let mut head = [0u8; 16];
        if s.read_exact(&mut head).is_ok() {
            let mut m = REP_MAGIC.to_be_bytes().to_vec();
            m.extend_from_slice(&head[8..12]);
            m.extend_from_slice(&1u32.to_be_bytes());
            m.extend_from_slice(&(1u32 << 30).to_be_bytes());
            let _ = s.write_all(&m);
        }
    });
    let e = huge
        .connect(Duration::from_secs(5))
        .expect_err("1 GiB option reply");
    assert_broken(&e, "an option reply of 1073741824 bytes");

    let silent = Fake::raw(|s| {
        // Accepts and says nothing until the client gives up.
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
    });
    let started = Instant::now();
    let e = silent
        .connect(Duration::from_millis(200))
        .expect_err("silent");
    assert_broken(&e, "sent nothing");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn dropping_the_source_sends_a_disconnect() {
    let (said, heard) = std::sync::mpsc::channel();
    let fake = Fake::start(STRUCT, move |s| {
        let commands: Vec<u16> = std::iter::from_fn(|| request(s).map(|r| r.command)).collect();
        let _ = said.send(commands);
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    drop(source);
    let commands = heard
        .recv_timeout(Duration::from_secs(5))
        .expect("the server saw the connection end");
    assert_eq!(commands, vec![CMD_DISC]);
}

#[test]
fn a_server_that_stalls_mid_reply_times_out() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            let reply = good_read(&r, 7);
            let _ = s.write_all(&reply[..100]);
            // Then nothing, until the client hangs up.
            while request(s).is_some_and(|r| r.command != CMD_DISC) {}
        }
    });
    let source = fake.connect(Duration::from_millis(300)).expect("connect");
    assert_broken(
        &failed_read(&source),
        "sent nothing for 0.3s during a reply",
    );
}

#[test]
fn reads_are_aligned_to_the_servers_smallest_block_and_split_at_its_largest_payload() {
    let byte = |p: u64| (p % 251) as u8;
    let (said, heard) = std::sync::mpsc::channel();
    let fake = Fake::start(
        Handshake {
            size: SIZE,
            structured: true,
            min_block: 4096,
        },
        move |s| {
            let mut bad = Vec::new();
            while let Some(r) = request(s) {
                if r.command == CMD_DISC {
                    break;
                }
                if r.offset % 4096 != 0 || r.len % 4096 != 0 || r.len > 1 << 20 {
                    bad.push(r);
                    break;
                }
                let mut m = chunk_header(DONE, OFFSET_DATA, r.cookie, 8 + r.len);
                m.extend_from_slice(&r.offset.to_be_bytes());
                m.extend((r.offset..r.offset + u64::from(r.len)).map(byte));
                if s.write_all(&m).is_err() {
                    break;
                }
            }
            let _ = said.send(bad);
        },
    );
    let source = NbdSource::connect(
        NbdAddress::unix(&fake.socket, ""),
        NbdOptions {
            request_size: 10_000,
            timeout: Duration::from_secs(5),
            ..NbdOptions::default()
        },
    )
    .expect("connect");
    assert_eq!(source.info().min_block, 4096);
    for (offset, len) in [
        (1u64, 1usize),
        (4095, 2),
        (5000, 30_000),
        (0, 3 << 20),
        (SIZE - 7, 7),
    ] {
        let mut buf = vec![0u8; len];
        let n = source.read_at(offset, &mut buf).expect("read");
        assert_eq!(n, len.min((SIZE - offset) as usize));
        let want: Vec<u8> = (offset..offset + n as u64).map(byte).collect();
        assert!(buf[..n] == want[..], "{offset}+{len} read wrong");
    }
    drop(source);
    let bad = heard
        .recv_timeout(Duration::from_secs(5))
        .expect("server done");
    assert!(
        bad.is_empty(),
        "requests the server does not accept: {bad:?}"
    );
}

#[test]
fn a_reply_that_never_finishes_is_refused_once_its_chunks_overlap() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            // The same hole, again and again, never done.
            let mut hole = chunk_header(0, 2, r.cookie, 12);
            hole.extend_from_slice(&r.offset.to_be_bytes());
            hole.extend_from_slice(&r.len.to_be_bytes());
            for _ in 0..1000 {
                if s.write_all(&hole).is_err() {
                    return;
                }
            }
            while request(s).is_some_and(|r| r.command != CMD_DISC) {}
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    assert_broken(&failed_read(&source), "overlapping hole chunk");
}

#[test]
fn endless_error_chunks_are_refused() {
    let fake = Fake::start(STRUCT, |s| {
        if let Some(r) = request(s) {
            let mut error = chunk_header(0, ERROR, r.cookie, 6);
            error.extend_from_slice(&5u32.to_be_bytes());
            error.extend_from_slice(&0u16.to_be_bytes());
            for _ in 0..1000 {
                if s.write_all(&error).is_err() {
                    return;
                }
            }
            while request(s).is_some_and(|r| r.command != CMD_DISC) {}
        }
    });
    let source = fake.connect(Duration::from_secs(5)).expect("connect");
    assert_broken(&failed_read(&source), "more than 64 error chunks");
}

#[test]
fn a_server_that_closes_an_idle_connection_fails_the_next_read_at_once() {
    let fake = Fake::start(STRUCT, |_| {});
    let source = fake.connect(Duration::from_secs(30)).expect("connect");
    std::thread::sleep(Duration::from_millis(100));
    assert_broken(&failed_read(&source), "closed the connection");
}
