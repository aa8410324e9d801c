//! Where an NBD export is: a unix socket or a TCP address, and the export's name; parsed from
//! and shown as the NBD URI forms (`nbd+unix:///EXPORT?socket=PATH`, `nbd://HOST:PORT/EXPORT`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// The port an `nbd://` URI without one means (IANA's NBD port).
pub const DEFAULT_PORT: u16 = 10809;

/// An NBD export's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NbdAddress {
    /// A unix socket (`qemu-nbd -k PATH`).
    Unix { socket: PathBuf, export: String },
    /// A TCP address (`qemu-nbd -b HOST -p PORT`).
    Tcp {
        host: String,
        port: u16,
        export: String,
    },
}

impl NbdAddress {
    /// The export `export` (`""` is the server's default) on the unix socket `socket`.
    pub fn unix(socket: impl Into<PathBuf>, export: impl Into<String>) -> NbdAddress {
        NbdAddress::Unix {
            socket: socket.into(),
            export: export.into(),
        }
    }

    /// The export `export` at `host:port`.
    pub fn tcp(host: impl Into<String>, port: u16, export: impl Into<String>) -> NbdAddress {
        NbdAddress::Tcp {
            host: host.into(),
            port,
            export: export.into(),
        }
    }

    /// Parses `nbd+unix:///EXPORT?socket=PATH` or `nbd://HOST[:PORT]/EXPORT` (percent-escapes
    /// decoded; TLS forms such as `nbds://` are refused).
    pub fn parse(uri: &str) -> Result<NbdAddress> {
        let bad = |reason: &str| Error::NbdUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = uri.strip_prefix("nbd+unix://") {
            let (path, query) = rest.split_once('?').ok_or_else(|| {
                bad("a unix socket URI needs ?socket=PATH (nbd+unix:///EXPORT?socket=PATH)")
            })?;
            if !path.is_empty() && !path.starts_with('/') {
                return Err(bad("nbd+unix:// takes no host: write nbd+unix:///EXPORT"));
            }
            let socket = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("socket="))
                .filter(|s| !s.is_empty())
                .ok_or_else(|| bad("the query names no socket (?socket=PATH)"))?;
            let export = decode(path.strip_prefix('/').unwrap_or(path))
                .ok_or_else(|| bad("a bad %-escape"))?;
            let socket = decode(socket).ok_or_else(|| bad("a bad %-escape"))?;
            return Ok(NbdAddress::unix(socket, export));
        }
        if let Some(rest) = uri
            .strip_prefix("nbd://")
            .or_else(|| uri.strip_prefix("nbd+tcp://"))
        {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            let path = path.split('?').next().unwrap_or_default();
            let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("an IPv6 host without its closing ]"))?;
                (host, after.strip_prefix(':'))
            } else {
                match authority.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (authority, None),
                }
            };
            if host.is_empty() {
                return Err(bad("no host (nbd://HOST[:PORT]/EXPORT)"));
            }
            let port = match port {
                None | Some("") => DEFAULT_PORT,
                Some(p) => p
                    .parse()
                    .map_err(|_| bad("the port is not a number up to 65535"))?,
            };
            let export = decode(path).ok_or_else(|| bad("a bad %-escape"))?;
            return Ok(NbdAddress::tcp(host, port, export));
        }
        Err(bad(
            "not an NBD URI: expected nbd+unix:///EXPORT?socket=PATH or nbd://HOST[:PORT]/EXPORT",
        ))
    }

    /// The export's name (`""`: the server's default export).
    pub fn export(&self) -> &str {
        match self {
            NbdAddress::Unix { export, .. } | NbdAddress::Tcp { export, .. } => export,
        }
    }

    /// Connects a socket to the server, with `timeout` for the TCP connect and every write.
    pub(crate) fn connect(&self, timeout: Duration) -> io::Result<Stream> {
        let stream = match self {
            NbdAddress::Unix { socket, .. } => Stream::Unix(UnixStream::connect(socket)?),
            NbdAddress::Tcp { host, port, .. } => {
                let mut last = None;
                let mut found = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let tcp = match (found, last) {
                    (Some(s), _) => s,
                    (None, Some(e)) => return Err(e),
                    (None, None) => return Err(io::ErrorKind::NotFound.into()),
                };
                tcp.set_nodelay(true)?;
                Stream::Tcp(tcp)
            }
        };
        stream.set_write_timeout(Some(timeout))?;
        stream.set_read_timeout(Some(timeout))?;
        Ok(stream)
    }
}

impl fmt::Display for NbdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NbdAddress::Unix { socket, export } => write!(
                f,
                "nbd+unix:///{}?socket={}",
                encode(export),
                encode(&socket.to_string_lossy())
            ),
            NbdAddress::Tcp { host, port, export } if host.contains(':') => {
                write!(f, "nbd://[{host}]:{port}/{}", encode(export))
            }
            NbdAddress::Tcp { host, port, export } => {
                write!(f, "nbd://{host}:{port}/{}", encode(export))
            }
        }
    }
}

/// Escapes what would change the URI's meaning (`?`, `&`, `%`, spaces, ...) as `%XX`, so the
/// address as shown parses back to itself: export names are the server's to choose (nbdkit
/// takes any string).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@+,=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A connected socket of either kind.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
        }
    }

    pub fn shutdown(&self) {
        // Already shut down or closed by the peer: nothing more to do.
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_to_addresses_and_back() {
        let a = NbdAddress::parse("nbd+unix:///disk0?socket=/run/x%20y.sock").expect("unix");
        assert_eq!(a, NbdAddress::unix("/run/x y.sock", "disk0"));
        assert_eq!(a.export(), "disk0");
        let d = NbdAddress::parse("nbd+unix://?socket=/s").expect("default export");
        assert_eq!(d, NbdAddress::unix("/s", ""));
        let t = NbdAddress::parse("nbd://host.example:10810/vm%2Fdisk").expect("tcp");
        assert_eq!(t, NbdAddress::tcp("host.example", 10810, "vm/disk"));
        assert_eq!(t.to_string(), "nbd://host.example:10810/vm/disk");
        let p = NbdAddress::parse("nbd://127.0.0.1").expect("default port");
        assert_eq!(p, NbdAddress::tcp("127.0.0.1", DEFAULT_PORT, ""));
        let v6 = NbdAddress::parse("nbd://[::1]:99/e").expect("v6");
        assert_eq!(v6, NbdAddress::tcp("::1", 99, "e"));
        assert_eq!(v6.to_string(), "nbd://[::1]:99/e");
        // Names and paths with characters a URI gives meaning to come back as they were.
        for a in [
            NbdAddress::unix("/run/a b&c=%?.sock", "disk #1?x=y&z"),
            NbdAddress::tcp("h", 1, "50% off/é"),
            NbdAddress::tcp("::1", 2, "?"),
        ] {
            assert_eq!(
                NbdAddress::parse(&a.to_string()).expect("round trip"),
                a,
                "{a}"
            );
        }
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        for (uri, says) in [
            ("nbd+unix:///disk", "?socket=PATH"),
            ("nbd+unix:///disk?other=1", "no socket"),
            ("nbd://:10809/x", "no host"),
            ("nbd://h:99999/x", "port"),
            ("nbds://h/x", "not an NBD URI"),
            ("/var/lib/disk.qcow2", "not an NBD URI"),
            ("nbd://h/%zz", "%-escape"),
        ] {
            let e = NbdAddress::parse(uri).expect_err(uri);
            assert!(matches!(e, Error::NbdUri { .. }), "{e}");
            assert!(e.to_string().contains(says), "{uri}: {e}");
        }
    }
}
