//! The NBD client against a second real server, nbdkit (Debian package `nbdkit`), which
//! answers differently from qemu-nbd: one data chunk per read, block status replies that stop
//! short of or run past the request, its own error numbers and option replies. Each test
//! starts nbdkit on a private unix socket or on 127.0.0.1 TCP with the plugins whose bytes are
//! knowable (`pattern`: every 8-byte word is its own offset; `data`: bytes placed at offsets,
//! the rest holes; `sparse-random`: runs of one non-zero byte per block between holes) and the
//! filters that misbehave on purpose (`error`, `delay`, `blocksize`, `multi-conn`), and
//! always stops it (kill and reap, on drop).
//!
//! These tests need `nbdkit`; without it they fail, saying so.

mod faults;
mod reads;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockvault_source::{NbdAddress, NbdOptions, NbdSource};

const K: u64 = 1 << 10;
const M: u64 = 1 << 20;

/// Where a server listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listen {
    Unix,
    Tcp,
}

/// An nbdkit serving one plugin (and filters), started in the foreground with
/// `--exit-with-parent` so that even a test that aborts leaves no server behind.
struct Nbdkit {
    child: Child,
    dir: tempfile::TempDir,
    listen: Listen,
    port: u16,
}

impl Nbdkit {
    /// Starts `nbdkit ARGS` (server flags, filters, the plugin and its parameters) on a
    /// private unix socket or a free port on 127.0.0.1; returns once it listens.
    fn start(listen: Listen, args: &[&str]) -> Nbdkit {
        let found = Command::new("nbdkit")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "nbdkit is not installed: the second-server NBD tests need it \
             (Debian/Ubuntu: apt-get install nbdkit; scripts/test.sh installs it)"
        );
        // A port found free can be taken before nbdkit binds it: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = match listen {
                Listen::Unix => 0,
                Listen::Tcp => TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port(),
            };
            let pidfile = dir.path().join("nbdkit.pid");
            let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
            let mut cmd = Command::new("nbdkit");
            cmd.args(["-f", "--exit-with-parent", "-P"]).arg(&pidfile);
            match listen {
                Listen::Unix => cmd.arg("-U").arg(dir.path().join("nbd.sock")),
                Listen::Tcp => cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]),
            };
            let child = cmd
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start nbdkit");
            let mut server = Nbdkit {
                child,
                dir,
                listen,
                port,
            };
            // nbdkit writes its pid file once it listens.
            let started = Instant::now();
            loop {
                if std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')) {
                    return server;
                }
                if let Ok(Some(status)) = server.child.try_wait() {
                    let said = server.stderr();
                    assert!(
                        listen == Listen::Tcp && said.contains("bind"),
                        "nbdkit {args:?} exited ({status}) before it listened: {said}"
                    );
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "nbdkit {args:?} did not listen within 5 s: {}",
                    server.stderr()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        panic!("nbdkit found no free port on 127.0.0.1 in 5 tries");
    }

    fn address(&self, export: &str) -> NbdAddress {
        match self.listen {
            Listen::Unix => NbdAddress::unix(self.dir.path().join("nbd.sock"), export),
            Listen::Tcp => NbdAddress::tcp("127.0.0.1", self.port, export),
        }
    }

    /// The default export with `options` (the tests' own timeout, or [`quick`]'s).
    fn connect(&self, options: NbdOptions) -> NbdSource {
        NbdSource::connect(self.address(""), options).expect("connect to nbdkit")
    }

    /// What nbdkit said on stderr so far.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for Nbdkit {
    fn drop(&mut self) {
        // Already gone (a test killed it) is fine: the test is over either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options with a timeout short enough that a hang fails the test quickly.
fn quick() -> NbdOptions {
    NbdOptions {
        timeout: Duration::from_secs(3),
        ..NbdOptions::default()
    }
}

/// The byte at `i` of a `pattern` export: each 8-byte word holds its own offset, big-endian.
fn pattern_at(i: u64) -> u8 {
    (i & !7).to_be_bytes()[(i & 7) as usize]
}

fn pattern(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(pattern_at).collect()
}

/// The connections a `log` filter's file saw, and how many of them read.
fn logged_connections(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).expect("the log filter's file");
    let mut connected = std::collections::BTreeSet::new();
    let mut read = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.split_once("connection=").map(|(_, r)| r) else {
            continue;
        };
        let (id, what) = rest.split_once(' ').unwrap_or((rest, ""));
        if what.starts_with("Connect ") {
            connected.insert(id.to_owned());
        }
        if what.starts_with("Read ") {
            read.insert(id.to_owned());
        }
    }
    (connected.len(), read.len())
}
