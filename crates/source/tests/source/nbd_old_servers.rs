//! Servers older than the options the client prefers, played by a small fake (neither
//! qemu-nbd nor nbdkit 1.32 can be made to lack them):
//!
//! - without `NBD_OPT_GO`: it answers it `NBD_REP_ERR_UNSUP`, and the protocol asks clients to
//!   fall back to `NBD_OPT_EXPORT_NAME`: 124 zero bytes after the export's flags unless both
//!   sides dropped them, and a closed connection for a name it does not have;
//! - with structured replies but without meta contexts (`NBD_OPT_SET_META_CONTEXT` unknown, as
//!   in QEMU before 2.12; nbdkit's `--no-meta-contexts` came after 1.32): no block status, so
//!   every byte is data, read with structured replies.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blockvault_source::{BlockSource, Error, NbdAddress, NbdOptions, NbdSource};

const SIZE: u64 = 256 << 10;

fn u32_from(s: &mut UnixStream) -> Option<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).ok()?;
    Some(u32::from_be_bytes(b))
}

/// The byte at `i` of the fake export.
fn byte_at(i: u64) -> u8 {
    (i % 251) as u8
}

/// What the old server offers.
#[derive(Clone, Copy)]
struct Offers {
    /// NBD_FLAG_NO_ZEROES.
    no_zeroes: bool,
    /// NBD_OPT_STRUCTURED_REPLY (and then structured replies to reads).
    structured: bool,
}

/// Serves one connection as an old server would.
fn old_server(s: &mut UnixStream, export: &str, offers: Offers) -> Option<()> {
    let no_zeroes = offers.no_zeroes;
    let mut greeting = 0x4e42_444d_4147_4943u64.to_be_bytes().to_vec();
    greeting.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    greeting.extend_from_slice(&(1u16 | if no_zeroes { 2 } else { 0 }).to_be_bytes());
    s.write_all(&greeting).ok()?;
    let client_flags = u32_from(s)?;
    loop {
        let mut head = [0u8; 16];
        s.read_exact(&mut head).ok()?;
        let option = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let mut data =
            vec![0u8; u32::from_be_bytes([head[12], head[13], head[14], head[15]]) as usize];
        s.read_exact(&mut data).ok()?;
        if option == 1 {
            // NBD_OPT_EXPORT_NAME: a wrong name ends the session, as the protocol says.
            if data != export.as_bytes() {
                return None;
            }
            let mut reply = SIZE.to_be_bytes().to_vec();
            reply.extend_from_slice(&1u16.to_be_bytes());
            if client_flags & 2 == 0 {
                reply.extend_from_slice(&[0u8; 124]);
            }
            s.write_all(&reply).ok()?;
            break;
        }
        // NBD_REP_ACK to structured replies when offered, NBD_REP_ERR_UNSUP to the rest.
        let kind = if option == 8 && offers.structured {
            1
        } else {
            (1u32 << 31) | 1
        };
        let mut reply = 0x0003_e889_0455_65a9u64.to_be_bytes().to_vec();
        reply.extend_from_slice(&option.to_be_bytes());
        reply.extend_from_slice(&kind.to_be_bytes());
        reply.extend_from_slice(&0u32.to_be_bytes());
        s.write_all(&reply).ok()?;
    }
    // Simple replies to reads until the client says goodbye.
    loop {
        let mut r = [0u8; 28];
        s.read_exact(&mut r).ok()?;
        let command = u16::from_be_bytes([r[6], r[7]]);
        if command != 0 {
            return Some(());
        }
        let offset = u64::from_be_bytes(r[16..24].try_into().ok()?);
        let len = u32::from_be_bytes(r[24..28].try_into().ok()?);
        let mut reply = if offers.structured {
            // One data chunk, done.
            let mut m = 0x668e_33efu32.to_be_bytes().to_vec();
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&r[8..16]);
            m.extend_from_slice(&(8 + len).to_be_bytes());
            m.extend_from_slice(&offset.to_be_bytes());
            m
        } else {
            let mut m = 0x6744_6698u32.to_be_bytes().to_vec();
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&r[8..16]);
            m
        };
        reply.extend((offset..offset + u64::from(len)).map(byte_at));
        s.write_all(&reply).ok()?;
    }
}

/// An old server taking one connection on a private socket.
struct Old {
    dir: tempfile::TempDir,
    thread: Option<JoinHandle<()>>,
}

impl Old {
    fn start(export: &'static str, offers: Offers) -> Old {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = UnixListener::bind(dir.path().join("nbd.sock")).expect("bind");
        let thread = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                old_server(&mut s, export, offers);
            }
        });
        Old {
            dir,
            thread: Some(thread),
        }
    }

    fn connect(&self, export: &str) -> Result<NbdSource, Error> {
        NbdSource::connect(
            NbdAddress::unix(self.dir.path().join("nbd.sock"), export),
            NbdOptions {
                timeout: Duration::from_secs(3),
                ..NbdOptions::default()
            },
        )
    }
}

impl Drop for Old {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            // The server thread only ends its sessions; its result is what the test saw.
            let _ = t.join();
        }
    }
}

#[test]
fn a_server_without_opt_go_is_read_through_opt_export_name() {
    for no_zeroes in [true, false] {
        let offers = Offers {
            no_zeroes,
            structured: false,
        };
        let server = Old::start("disk", offers);
        let source = server
            .connect("disk")
            .expect("connect through NBD_OPT_EXPORT_NAME");
        assert_eq!(source.size(), SIZE, "no_zeroes={no_zeroes}");
        assert!(!source.info().structured_replies);
        assert_eq!(source.data_extents().expect("extents"), vec![0..SIZE]);
        let mut buf = vec![0u8; SIZE as usize + 10];
        assert_eq!(source.read_at(0, &mut buf).expect("read"), SIZE as usize);
        let wrong = (0..SIZE).find(|&i| buf[i as usize] != byte_at(i));
        assert_eq!(wrong, None, "no_zeroes={no_zeroes}: first wrong byte");
    }
}

#[test]
fn a_name_a_server_without_opt_go_does_not_have_is_a_clear_error() {
    let offers = Offers {
        no_zeroes: true,
        structured: false,
    };
    let server = Old::start("disk", offers);
    let started = Instant::now();
    let e = server.connect("other").expect_err("a wrong name");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(e, Error::Nbd { .. }), "{e:?}");
    let said = e.to_string();
    assert!(said.contains("NBD_OPT_EXPORT_NAME"), "{said}");
    assert!(said.contains("\"other\""), "{said}");
}

#[test]
fn a_server_with_structured_replies_but_no_meta_contexts_reads_everything_as_data() {
    let offers = Offers {
        no_zeroes: true,
        structured: true,
    };
    let server = Old::start("", offers);
    let source = server.connect("").expect("connect");
    let info = source.info();
    assert!(info.structured_replies);
    assert!(info.contexts.is_empty(), "{:?}", info.contexts);
    assert_eq!(source.allocation().expect("allocation"), None);
    assert_eq!(source.data_extents().expect("extents"), vec![0..SIZE]);
    let mut buf = vec![0u8; 100_000];
    assert_eq!(source.read_at(77, &mut buf).expect("read"), buf.len());
    let wrong = (0..buf.len() as u64).find(|&i| buf[i as usize] != byte_at(77 + i));
    assert_eq!(wrong, None, "first wrong byte");
}
