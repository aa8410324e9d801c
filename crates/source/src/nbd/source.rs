//! [`NbdSource`]: an NBD export as a [`BlockSource`], with its allocation and a QEMU dirty
//! bitmap's extents.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::address::NbdAddress;
use super::conn::{Connection, Failure};
use super::handshake::{self, Refused};
use super::proto::*;
use crate::{BlockSource, Error, Result};

/// How long a further connection's handshake may take: the first one's answered, so a
/// server that stays silent this long on another is holding it back, not slow.
const EXTRA_GREETING: Duration = Duration::from_secs(2);

/// The most bytes one block status request asks about (the protocol's length is 32 bits).
const STATUS_SPAN: u64 = 1 << 30;

/// How to connect to an export.
#[derive(Clone, Debug)]
pub struct NbdOptions {
    /// How long the server may leave requests unanswered (and the connect and the handshake
    /// take) before the connection counts as broken. 30 s by default.
    pub timeout: Duration,
    /// Requests in flight at once on the connection; 1 makes every request wait for the one
    /// before. 64 by default.
    pub max_in_flight: usize,
    /// The size of one read request: a larger `read_at` is split into requests of about this
    /// size, all in flight at once (capped by the server's largest payload). 256 KiB by
    /// default.
    pub request_size: u64,
    /// Connections to open when the server allows several (`NBD_FLAG_CAN_MULTI_CONN`);
    /// reads take them in turn. Fewer when the server turns the later ones away. 1 by
    /// default.
    pub connections: usize,
    /// A QEMU dirty bitmap to negotiate (`qemu:dirty-bitmap:NAME`; `qemu-nbd -B NAME`), for
    /// [`NbdSource::dirty_extents`].
    pub dirty_bitmap: Option<String>,
    /// The disk as the user named it, for messages (the address's URI by default).
    pub name: Option<PathBuf>,
}

impl Default for NbdOptions {
    fn default() -> NbdOptions {
        NbdOptions {
            timeout: Duration::from_secs(30),
            max_in_flight: 64,
            request_size: 256 << 10,
            connections: 1,
            dirty_bitmap: None,
            name: None,
        }
    }
}

/// What the server said about the export in the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdExportInfo {
    /// The export's size in bytes.
    pub size: u64,
    /// The raw transmission flags.
    pub flags: u16,
    pub read_only: bool,
    /// The server allows several connections to one export (`NBD_FLAG_CAN_MULTI_CONN`).
    pub multi_conn: bool,
    /// The block size limits (`NBD_INFO_BLOCK_SIZE`; 1, 4096 and 32 MiB when not said).
    pub min_block: u32,
    pub preferred_block: u32,
    pub max_payload: u32,
    /// Structured replies are on (needed for holes in reads and for block status).
    pub structured_replies: bool,
    /// The meta contexts the server agreed to.
    pub contexts: Vec<String>,
}

/// One extent of `base:allocation`: a hole (unallocated), known to read as zeros, or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub range: Range<u64>,
    pub hole: bool,
    pub zero: bool,
}

impl Allocation {
    /// Holds data to read: neither a hole nor known zeros.
    pub fn is_data(&self) -> bool {
        !self.hole && !self.zero
    }
}

/// An NBD export open for reading, over one pipelined connection (or several, see
/// [`NbdOptions::connections`]), each closed with `NBD_CMD_DISC` when dropped.
#[derive(Debug)]
pub struct NbdSource {
    address: NbdAddress,
    label: PathBuf,
    info: NbdExportInfo,
    allocation: Option<u32>,
    dirty: Option<(String, Option<u32>)>,
    request_size: u64,
    conn: Connection,
    /// Further connections for reads, when asked for and the server allows them.
    more: Vec<Connection>,
    next: AtomicUsize,
}

impl NbdSource {
    /// Connects to the export at `uri` (`nbd+unix:///EXPORT?socket=PATH`,
    /// `nbd://HOST:PORT/EXPORT`) with the default options.
    pub fn open(uri: &str) -> Result<NbdSource> {
        NbdSource::connect(NbdAddress::parse(uri)?, NbdOptions::default())
    }

    /// Connects, negotiates structured replies, `base:allocation` (and the dirty bitmap's
    /// context when the options name one) and the export, and starts the reader thread.
    pub fn connect(address: NbdAddress, options: NbdOptions) -> Result<NbdSource> {
        let who = address.to_string();
        let mut queries = vec![BASE_ALLOCATION.to_owned()];
        if let Some(bitmap) = &options.dirty_bitmap {
            queries.push(format!("{DIRTY_BITMAP_PREFIX}{bitmap}"));
        }
        let (negotiated, conn) = open_connection(&address, &options, &queries, options.timeout)?;
        let find = |name: &str| {
            negotiated
                .contexts
                .iter()
                .find(|(_, n)| n == name)
                .map(|(id, _)| *id)
        };
        let allocation = find(BASE_ALLOCATION);
        let dirty = options
            .dirty_bitmap
            .as_ref()
            .map(|b| (b.clone(), find(&format!("{DIRTY_BITMAP_PREFIX}{b}"))));
        let info = NbdExportInfo {
            size: negotiated.size,
            flags: negotiated.flags,
            read_only: negotiated.flags & FLAG_HAS_FLAGS != 0
                && negotiated.flags & FLAG_READ_ONLY != 0,
            multi_conn: negotiated.flags & FLAG_CAN_MULTI_CONN != 0,
            min_block: negotiated.min_block,
            preferred_block: negotiated.preferred_block,
            max_payload: negotiated.max_payload,
            structured_replies: negotiated.structured,
            contexts: negotiated.contexts.iter().map(|(_, n)| n.clone()).collect(),
        };
        let mut more = Vec::new();
        if info.multi_conn {
            for _ in 1..options.connections {
                // More connections only make reads faster: a server that offers multi-conn
                // can still turn clients away (nbdkit's limit filter closes the greeting) or
                // leave them unanswered until another closes (qemu-nbd past its --shared
                // limit), and then the source reads over the connections it got, after a
                // short wait, not the whole timeout.
                let greeting = options.timeout.min(EXTRA_GREETING);
                let Ok((other, conn)) = open_connection(&address, &options, &[], greeting) else {
                    break;
                };
                if other.size != info.size {
                    return Err(Error::Nbd {
                        export: who,
                        reason: format!(
                            "a second connection saw {} bytes, the first {}",
                            other.size, info.size
                        ),
                    });
                }
                more.push(conn);
            }
        }
        Ok(NbdSource {
            label: options.name.unwrap_or_else(|| PathBuf::from(&who)),
            address,
            info,
            allocation,
            dirty,
            request_size: options.request_size.max(1),
            conn,
            more,
            next: AtomicUsize::new(0),
        })
    }

    pub fn address(&self) -> &NbdAddress {
        &self.address
    }

    /// What the handshake settled.
    pub fn info(&self) -> &NbdExportInfo {
        &self.info
    }

    /// The export's allocation from `base:allocation`, ascending and covering the whole
    /// export (adjacent extents of one kind merged); `None` when the server does not offer
    /// the context.
    pub fn allocation(&self) -> Result<Option<Vec<Allocation>>> {
        let Some(context) = self.allocation else {
            return Ok(None);
        };
        let mut out: Vec<Allocation> = Vec::new();
        for (range, flags) in self.status(context, 0..self.info.size)? {
            let next = Allocation {
                range,
                hole: flags & STATE_HOLE != 0,
                zero: flags & STATE_ZERO != 0,
            };
            match out.last_mut() {
                Some(last)
                    if last.range.end == next.range.start
                        && (last.hole, last.zero) == (next.hole, next.zero) =>
                {
                    last.range.end = next.range.end;
                }
                _ => out.push(next),
            }
        }
        Ok(Some(out))
    }

    /// The byte ranges the dirty bitmap named in the options marks dirty, ascending and
    /// merged, at the bitmap's granularity (a caller rounds them out to its block size).
    pub fn dirty_extents(&self) -> Result<Vec<Range<u64>>> {
        let context = match &self.dirty {
            Some((_, Some(context))) => *context,
            Some((name, None)) => {
                return Err(self.broken(format!(
                    "the server does not export the dirty bitmap {name:?} (qemu-nbd -B {name}; \
                     is it in the image, and not inconsistent?)"
                )));
            }
            None => {
                return Err(self.broken(
                    "no dirty bitmap was asked for when connecting (NbdOptions::dirty_bitmap)"
                        .to_owned(),
                ));
            }
        };
        let mut out: Vec<Range<u64>> = Vec::new();
        for (range, flags) in self.status(context, 0..self.info.size)? {
            if flags & STATE_DIRTY == 0 {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.end == range.start => last.end = range.end,
                _ => out.push(range),
            }
        }
        Ok(out)
    }

    /// Walks `range` with block status requests and returns `context`'s extents, clipped to
    /// the range.
    fn status(&self, context: u32, range: Range<u64>) -> Result<Vec<(Range<u64>, u32)>> {
        let mut out = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(STATUS_SPAN);
            let descriptors = self
                .conn
                .block_status(at, len as u32)
                .map_err(|f| self.failure(f))?;
            let mut pos = at;
            for d in descriptors.iter().filter(|d| d.context == context) {
                if pos >= range.end {
                    break;
                }
                let end = (pos + u64::from(d.len)).min(range.end);
                out.push((pos..end, d.flags));
                pos = end;
            }
            if pos == at {
                return Err(self.broken(format!(
                    "the server answered block status at byte {at} without an extent for \
                     context {context}"
                )));
            }
            at = pos;
        }
        Ok(out)
    }

    /// Reads `buf.len()` bytes at `offset`, all inside the export, in requests the server
    /// accepts (at most its largest payload, aligned to its smallest block) of about
    /// [`NbdOptions::request_size`], all sent before the first is waited for.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let align = u64::from(self.info.min_block.max(1));
        let limit = self.request_size.min(u64::from(self.info.max_payload));
        let step = (limit / align * align).max(align);
        let mut sent = Vec::new();
        let mut at = offset;
        let until = offset + buf.len() as u64;
        while at < until {
            let start = at / align * align;
            let end = until
                .min(start + step)
                .div_ceil(align)
                .saturating_mul(align)
                .min(self.info.size);
            let skip = (at - start) as usize;
            let n = (end.min(until) - at) as usize;
            let conn = self.reader();
            let ticket = conn
                .send_read(start, (end - start) as u32)
                .map_err(|f| self.failure(f))?;
            sent.push((conn, ticket, skip, (at - offset) as usize, n));
            at += n as u64;
        }
        for (conn, ticket, skip, from, n) in sent {
            conn.finish_read(ticket, skip, &mut buf[from..from + n])
                .map_err(|f| self.failure(f))?;
        }
        Ok(())
    }

    /// The connection for the next read request, in turn.
    fn reader(&self) -> &Connection {
        if self.more.is_empty() {
            return &self.conn;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % (self.more.len() + 1);
        self.more.get(i).unwrap_or(&self.conn)
    }

    fn failure(&self, failure: Failure) -> Error {
        match failure {
            Failure::Server {
                errno,
                message,
                offset,
                length,
            } => Error::NbdServer {
                export: self.address.to_string(),
                offset,
                length,
                errno,
                message,
            },
            Failure::Broken(reason) => self.broken(reason.to_string()),
        }
    }

    fn broken(&self, reason: String) -> Error {
        Error::Nbd {
            export: self.address.to_string(),
            reason,
        }
    }
}

impl BlockSource for NbdSource {
    fn path(&self) -> &Path {
        &self.label
    }

    fn size(&self) -> u64 {
        self.info.size
    }

    /// An export's size is fixed at the handshake.
    fn current_size(&self) -> Result<u64> {
        Ok(self.info.size)
    }

    /// The `base:allocation` extents that are neither holes nor zeros; the whole export when
    /// the server does not offer the context.
    fn data_extents(&self) -> Result<Vec<Range<u64>>> {
        match self.allocation()? {
            Some(extents) => {
                let mut out: Vec<Range<u64>> = Vec::new();
                for a in extents.into_iter().filter(Allocation::is_data) {
                    match out.last_mut() {
                        Some(last) if last.end == a.range.start => last.end = a.range.end,
                        _ => out.push(a.range),
                    }
                }
                Ok(out)
            }
            None if self.info.size == 0 => Ok(Vec::new()),
            None => Ok(std::iter::once(0..self.info.size).collect()),
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.info.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.info.size - offset) as usize;
        self.read_exact_at(offset, &mut buf[..n])?;
        Ok(n)
    }
}

/// Connects a socket, runs the handshake asking for `queries` (within `handshake_timeout`)
/// and starts the connection (with the options' timeout).
fn open_connection(
    address: &NbdAddress,
    options: &NbdOptions,
    queries: &[String],
    handshake_timeout: Duration,
) -> Result<(handshake::Negotiated, Connection)> {
    let who = address.to_string();
    let mut stream = address
        .connect(handshake_timeout)
        .map_err(|source| Error::NbdConnect {
            export: who.clone(),
            source,
        })?;
    let negotiated =
        handshake::negotiate(&mut stream, address.export(), queries, handshake_timeout).map_err(
            |refused| match refused {
                Refused::NoExport => Error::NbdNoExport {
                    export: who.clone(),
                },
                Refused::Other(reason) => Error::Nbd {
                    export: who.clone(),
                    reason,
                },
            },
        )?;
    stream
        .set_write_timeout(Some(options.timeout))
        .map_err(|source| Error::NbdConnect {
            export: who.clone(),
            source,
        })?;
    let conn = Connection::start(
        stream,
        negotiated.structured,
        options.timeout,
        options.max_in_flight,
    )
    .map_err(|source| Error::NbdConnect {
        export: who,
        source,
    })?;
    Ok((negotiated, conn))
}
