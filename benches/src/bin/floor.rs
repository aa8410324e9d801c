//! `blockvault-floor`: the floors of issue 7, measured on the same image as blockvault and its
//! peers. Each floor is the least work any tool must do to produce the same result on this
//! machine, done with the same libraries as blockvault (the `blake3` and `zstd` crates, rayon
//! on all cores, `object_store` built by `blockvault_store::Store::s3` with blockvault's S3
//! settings), with none of blockvault's bookkeeping (no block map, no index, no catalog, no
//! chunk headers, no verification).
//!
//! The image is cut into blocks of blockvault's default block size (1 MiB; another with
//! `BLOCKVAULT_FLOOR_BLOCK_SIZE=BYTES`, to match a blockvault run at `--block-size`), aligned
//! on their size. A block is *allocated* when `SEEK_DATA`/`SEEK_HOLE` find data in it; only the data extents of
//! an allocated block are read (`pread` into a buffer whose hole parts are zero); holes are
//! never read. An allocated block that reads as all zero is skipped after that check, as
//! blockvault skips it (no hash, no compression, no object). Blocks go to rayon's pool (one
//! thread per core); every mode prints one JSON line on stdout with its own wall time (`secs`,
//! from its first read or request to its last byte out, process start excluded) and byte
//! counts. The scripts time the whole process too; the two differ by a few ms.
//!
//! Modes (one floor each; DIR and PREFIX hold one object per stored block, named `<index>.zst`
//! or `<index>.raw`, index in hex: zstd frame when smaller, the raw block otherwise, as
//! blockvault's chunks but without their 16-byte header):
//!
//! - `read IMAGE`: read the allocated blocks. The floor of reading.
//! - `hash IMAGE`: read + BLAKE3 of each allocated block. The floor of an incremental backup
//!   without changed-block tracking (its few changed blocks aside).
//! - `compress IMAGE`: read + zstd -1 of each allocated block, output dropped. Prints the
//!   compressed bytes. The CPU floor of a full backup.
//! - `backup-dir IMAGE DIR`: read + zstd -1 on rayon, overlapped with 8 writer threads (the
//!   concurrency of blockvault on a directory) that write each compressed block to its own file
//!   in DIR and fsync it; then one fsync of DIR. The floor of a full backup into a directory
//!   (one copy; blockvault's job writes the snapshot tier and then the vault).
//! - `backup-s3 IMAGE s3://BUCKET/PREFIX`: read + zstd -1 on rayon, overlapped with PUTs of each
//!   compressed block, 16 in flight (blockvault's S3 upload concurrency). The floor of a full backup
//!   to S3.
//! - `put DIR s3://BUCKET/PREFIX`: PUT every file of DIR (already compressed, read from the page
//!   cache), 16 in flight. The raw upload alone.
//! - `get DIR s3://BUCKET/PREFIX`: GET every object named like the files of DIR (the names
//!   only: the block list is known beforehand, as blockvault knows it from the block map),
//!   32 in flight (blockvault's S3 download concurrency), into memory, dropped. The raw
//!   download alone.
//! - `restore-dir DIR OUT --size BYTES`: read each compressed file of DIR, decompress (rayon),
//!   write the non-zero 4 KiB pages of each block at its offset in OUT (a new sparse file of
//!   BYTES), `fdatasync` OUT (every 128 MiB written, writeback started and the pages already
//!   written dropped from the page cache, as blockvault does). The floor of a restore from a
//!   directory (or the snapshot tier).
//! - `restore-s3 DIR s3://BUCKET/PREFIX OUT --size BYTES`: the same, GETting the objects (32
//!   in flight) instead of reading files. The floor of a restore from S3.
//!
//! S3 settings come from the environment as for blockvault (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use rayon::prelude::*;

/// The block size: blockvault's default unless `BLOCKVAULT_FLOOR_BLOCK_SIZE` sets one.
static BLOCK: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::env::var("BLOCKVAULT_FLOOR_BLOCK_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(blockvault_core::BlockSize::DEFAULT.bytes())
});
const PAGE: usize = 4096;
/// PUTs in flight, as blockvault's backups to S3.
const S3_PUTS_IN_FLIGHT: usize = 16;
/// GETs in flight, as blockvault's restores from S3.
const S3_GETS_IN_FLIGHT: usize = 32;
const DIR_WRITERS: usize = 8;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i).map(String::as_str).with_context(|| {
            format!("missing argument {i}; see the header of benches/src/bin/floor.rs")
        })
    };
    let size_opt = || -> Result<u64> {
        let i = args
            .iter()
            .position(|a| a == "--size")
            .context("--size BYTES is required")?;
        arg(i + 1)?.parse().context("--size")
    };
    let mode = arg(0)?;
    match mode {
        "read" | "hash" | "compress" => local_pass(mode, Path::new(arg(1)?)),
        "backup-dir" => backup_dir(Path::new(arg(1)?), Path::new(arg(2)?)),
        "backup-s3" => runtime()?.block_on(backup_s3(Path::new(arg(1)?), arg(2)?)),
        "put" => runtime()?.block_on(put(Path::new(arg(1)?), arg(2)?)),
        "get" => runtime()?.block_on(get(Path::new(arg(1)?), arg(2)?)),
        "restore-dir" => restore_dir(Path::new(arg(1)?), Path::new(arg(2)?), size_opt()?),
        "restore-s3" => runtime()?.block_on(restore_s3(
            Path::new(arg(1)?),
            arg(2)?,
            Path::new(arg(3)?),
            size_opt()?,
        )),
        other => bail!("unknown mode {other}; see the header of benches/src/bin/floor.rs"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn report(mode: &str, start: Instant, fields: &[(&str, u64)]) {
    let secs = start.elapsed().as_secs_f64();
    let mut line = format!("{{\"mode\":\"{mode}\",\"secs\":{secs:.4}");
    for (k, v) in fields {
        line.push_str(&format!(",\"{k}\":{v}"));
    }
    line.push('}');
    println!("{line}");
}

// ---- reading the allocated blocks ---------------------------------------------------------

/// The data extents of `file` (`SEEK_DATA`/`SEEK_HOLE`).
fn data_extents(file: &File) -> Result<Vec<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let size = file.metadata()?.len();
    let mut out = Vec::new();
    let mut off = 0;
    while off < size {
        let start = match seek(file, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = seek(file, SeekFrom::Hole(start))?.min(size);
        out.push((start, end));
        off = end;
    }
    Ok(out)
}

/// Each allocated block: its index and the data ranges inside it (absolute offsets).
struct Image {
    file: File,
    size: u64,
    blocks: Vec<(u64, Vec<(u64, u64)>)>,
}

impl Image {
    fn open(path: &Path) -> Result<Image> {
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let size = file.metadata()?.len();
        let mut blocks: Vec<(u64, Vec<(u64, u64)>)> = Vec::new();
        for (start, end) in data_extents(&file)? {
            let mut s = start;
            while s < end {
                let idx = s / *BLOCK;
                let e = end.min((idx + 1) * *BLOCK);
                match blocks.last_mut() {
                    Some((i, ranges)) if *i == idx => ranges.push((s, e)),
                    _ => blocks.push((idx, vec![(s, e)])),
                }
                s = e;
            }
        }
        Ok(Image { file, size, blocks })
    }

    /// Reads block `n` of `self.blocks` into `buf` (data extents only; holes zeroed); returns
    /// the bytes read from the file.
    fn read(&self, n: usize, buf: &mut Vec<u8>) -> Result<u64> {
        let (idx, ranges) = &self.blocks[n];
        let base = idx * *BLOCK;
        let len = (*BLOCK).min(self.size - base) as usize;
        buf.clear();
        buf.resize(len, 0);
        let mut read = 0;
        for &(s, e) in ranges {
            let (a, b) = ((s - base) as usize, (e - base) as usize);
            self.file.read_exact_at(&mut buf[a..b], s)?;
            read += e - s;
        }
        Ok(read)
    }
}

/// Whether `buf` is all zero (an OR over 64-byte chunks, which vectorises).
fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(64)
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

/// zstd -1 of `block` when smaller, else the block itself: (bytes, is_zstd).
fn compress(c: &mut zstd::bulk::Compressor<'static>, block: &[u8]) -> Result<(Vec<u8>, bool)> {
    let out = c.compress(block)?;
    if out.len() < block.len() {
        Ok((out, true))
    } else {
        Ok((block.to_vec(), false))
    }
}

fn name(idx: u64, zstd: bool) -> String {
    format!("{idx:08x}.{}", if zstd { "zst" } else { "raw" })
}

fn parse_name(name: &str) -> Option<(u64, bool)> {
    let (idx, ext) = name.split_once('.')?;
    let zstd = match ext {
        "zst" => true,
        "raw" => false,
        _ => return None,
    };
    Some((u64::from_str_radix(idx, 16).ok()?, zstd))
}

#[derive(Default)]
struct Counts {
    read: AtomicU64,
    blocks: AtomicU64,
    zero_blocks: AtomicU64,
    out: AtomicU64,
}

impl Counts {
    fn fields(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("bytes_read", self.read.load(Ordering::Relaxed)),
            ("blocks", self.blocks.load(Ordering::Relaxed)),
            ("zero_blocks", self.zero_blocks.load(Ordering::Relaxed)),
            ("bytes_out", self.out.load(Ordering::Relaxed)),
        ]
    }
}

/// Reads every allocated block on rayon and hands each non-zero one to `f` (with a per-thread
/// compressor).
fn for_each_block<F>(image: &Image, counts: &Counts, f: F) -> Result<()>
where
    F: Fn(u64, &[u8], &mut zstd::bulk::Compressor<'static>) -> Result<()> + Sync,
{
    (0..image.blocks.len()).into_par_iter().try_for_each_init(
        || {
            (
                Vec::with_capacity(*BLOCK as usize),
                zstd::bulk::Compressor::new(1).ok(),
            )
        },
        |(buf, c), n| -> Result<()> {
            let read = image.read(n, buf)?;
            counts.read.fetch_add(read, Ordering::Relaxed);
            counts.blocks.fetch_add(1, Ordering::Relaxed);
            if is_zero(buf) {
                counts.zero_blocks.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let c = c.as_mut().context("zstd context")?;
            f(image.blocks[n].0, buf, c)
        },
    )
}

fn local_pass(mode: &str, path: &Path) -> Result<()> {
    let image = Image::open(path)?;
    let counts = Counts::default();
    let start = Instant::now();
    for_each_block(&image, &counts, |_, block, c| {
        match mode {
            "hash" => {
                std::hint::black_box(blake3::hash(block));
            }
            "compress" => {
                let (out, _) = compress(c, block)?;
                counts.out.fetch_add(out.len() as u64, Ordering::Relaxed);
            }
            _ => {
                std::hint::black_box(block);
            }
        }
        Ok(())
    })?;
    report(mode, start, &counts.fields());
    Ok(())
}

// ---- full backup floors --------------------------------------------------------------------

fn backup_dir(path: &Path, dir: &Path) -> Result<()> {
    let image = Image::open(path)?;
    std::fs::create_dir_all(dir)?;
    let counts = Counts::default();
    let start = Instant::now();
    let (tx, rx) = crossbeam_like_channel();
    std::thread::scope(|s| -> Result<()> {
        let mut writers = Vec::new();
        for _ in 0..DIR_WRITERS {
            let rx = Arc::clone(&rx);
            writers.push(s.spawn(move || -> Result<()> {
                loop {
                    let item = rx.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.recv();
                    let Ok((file_name, bytes)) = item else {
                        return Ok(());
                    };
                    let p = dir.join::<String>(file_name);
                    let mut f = File::create(&p)?;
                    f.write_all(&bytes)?;
                    f.sync_all()?;
                }
            }));
        }
        let produced = for_each_block(&image, &counts, |idx, block, c| {
            let (out, zstd) = compress(c, block)?;
            counts.out.fetch_add(out.len() as u64, Ordering::Relaxed);
            tx.send((name(idx, zstd), out))
                .map_err(|_| anyhow::anyhow!("writers gone"))
        });
        drop(tx);
        for w in writers {
            w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        produced
    })?;
    File::open(dir)?.sync_all()?;
    report("backup-dir", start, &counts.fields());
    Ok(())
}

type Rx = Arc<std::sync::Mutex<std::sync::mpsc::Receiver<(String, Vec<u8>)>>>;

/// A bounded channel whose receiver several threads share.
fn crossbeam_like_channel() -> (std::sync::mpsc::SyncSender<(String, Vec<u8>)>, Rx) {
    let (tx, rx) = std::sync::mpsc::sync_channel(DIR_WRITERS);
    (tx, Arc::new(std::sync::Mutex::new(rx)))
}

/// The object store under `s3://BUCKET/PREFIX`, built by blockvault's own constructor (same
/// client, timeouts, retries, path-style requests).
fn s3(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let rest = url
        .strip_prefix("s3://")
        .context("expected s3://BUCKET/PREFIX")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let options = blockvault_store::S3Options::from_env()?;
    let store = blockvault_store::Store::s3(bucket, prefix.trim_end_matches('/'), &options)?;
    Ok(Arc::clone(store.objects()))
}

async fn backup_s3(path: &Path, url: &str) -> Result<()> {
    let objects = s3(url)?;
    let image = Arc::new(Image::open(path)?);
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    // rayon compresses and sends into a bounded channel; the runtime PUTs 16 at a time.
    let (tx, rx) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(S3_PUTS_IN_FLIGHT);
    let producer = {
        let (image, counts) = (Arc::clone(&image), Arc::clone(&counts));
        tokio::task::spawn_blocking(move || {
            for_each_block(&image, &counts, |idx, block, c| {
                let (out, zstd) = compress(c, block)?;
                counts.out.fetch_add(out.len() as u64, Ordering::Relaxed);
                tx.blocking_send((name(idx, zstd), out))
                    .map_err(|_| anyhow::anyhow!("uploader gone"))
            })
        })
    };
    tokio_stream_of(rx)
        .map(|(n, bytes)| {
            let objects = Arc::clone(&objects);
            async move {
                objects
                    .put(&ObjPath::from(n), Bytes::from(bytes).into())
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(S3_PUTS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    producer.await??;
    report("backup-s3", start, &counts.fields());
    Ok(())
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The stored blocks named by the files of DIR: (file name, block index, zstd?).
fn listing(dir: &Path) -> Result<Vec<(String, u64, bool)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let n = e?
            .file_name()
            .into_string()
            .map_err(|_| anyhow::anyhow!("bad name"))?;
        if let Some((idx, zstd)) = parse_name(&n) {
            out.push((n, idx, zstd));
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no stored blocks in {}", dir.display());
    }
    Ok(out)
}

async fn put(dir: &Path, url: &str) -> Result<()> {
    let objects = s3(url)?;
    let names = listing(dir)?;
    let bytes = AtomicU64::new(0);
    let start = Instant::now();
    futures::stream::iter(names.iter())
        .map(|(n, _, _)| {
            let (objects, bytes) = (Arc::clone(&objects), &bytes);
            let p: PathBuf = dir.join(n);
            async move {
                let data = tokio::fs::read(&p).await?;
                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                objects
                    .put(&ObjPath::from(n.as_str()), Bytes::from(data).into())
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(S3_PUTS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    report(
        "put",
        start,
        &[
            ("objects", names.len() as u64),
            ("bytes", bytes.into_inner()),
        ],
    );
    Ok(())
}

async fn get(dir: &Path, url: &str) -> Result<()> {
    let objects = s3(url)?;
    let names = listing(dir)?;
    let bytes = AtomicU64::new(0);
    let start = Instant::now();
    futures::stream::iter(names.iter())
        .map(|(n, _, _)| {
            let (objects, bytes) = (Arc::clone(&objects), &bytes);
            async move {
                let data = objects
                    .get(&ObjPath::from(n.as_str()))
                    .await?
                    .bytes()
                    .await?;
                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(S3_GETS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    report(
        "get",
        start,
        &[
            ("objects", names.len() as u64),
            ("bytes", bytes.into_inner()),
        ],
    );
    Ok(())
}

// ---- restore floors ------------------------------------------------------------------------

/// Decompresses one stored block and writes its non-zero 4 KiB pages at its offset in `out`.
fn write_block(
    out: &Output,
    d: &mut zstd::bulk::Decompressor<'static>,
    buf: &mut Vec<u8>,
    idx: u64,
    zstd: bool,
    stored: &[u8],
    written: &AtomicU64,
) -> Result<()> {
    let block: &[u8] = if zstd {
        buf.clear();
        buf.reserve(*BLOCK as usize);
        d.decompress_to_buffer(stored, buf)?;
        buf
    } else {
        stored
    };
    let base = idx * *BLOCK;
    let mut i = 0;
    while i < block.len() {
        // A run of non-zero pages, written with one pwrite.
        let page = |j: usize| &block[j..(j + PAGE).min(block.len())];
        if is_zero(page(i)) {
            i += PAGE;
            continue;
        }
        let s = i;
        while i < block.len() && !is_zero(page(i)) {
            i += PAGE;
        }
        let e = i.min(block.len());
        out.file.write_all_at(&block[s..e], base + s as u64)?;
        out.wrote((e - s) as u64);
        written.fetch_add((e - s) as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// The restored image, a new sparse file of the image's size. Writeback starts as it is
/// written, as blockvault's restore does it (so the floor is not slower than it for want of
/// this): every 128 MiB written, one `posix_fadvise(DONTNEED)` on a side thread, never two at
/// once, which starts writeback of the dirty pages and drops those already written; the last
/// `fdatasync` is waited for.
struct Output {
    file: Arc<File>,
    since_last: AtomicU64,
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl Output {
    const EVERY: u64 = 128 << 20;

    fn create(path: &Path, size: u64) -> Result<Output> {
        let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
        f.set_len(size)?;
        Ok(Output {
            file: Arc::new(f),
            since_last: AtomicU64::new(0),
            running: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    fn wrote(&self, bytes: u64) {
        let since = self.since_last.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if since >= Self::EVERY
            && self
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.since_last.store(0, Ordering::Relaxed);
            let (file, running) = (Arc::clone(&self.file), Arc::clone(&self.running));
            std::thread::spawn(move || {
                // Errors surface in the final fdatasync; this only starts writeback.
                let _ = rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::DontNeed);
                running.store(false, Ordering::Release);
            });
        }
    }

    fn finish(&self) -> Result<()> {
        while self.running.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(self.file.sync_data()?)
    }
}

fn restore_dir(dir: &Path, out: &Path, size: u64) -> Result<()> {
    let names = listing(dir)?;
    let read = AtomicU64::new(0);
    let written = AtomicU64::new(0);
    let start = Instant::now();
    let f = Output::create(out, size)?;
    names.par_iter().try_for_each_init(
        || (zstd::bulk::Decompressor::new().ok(), Vec::new()),
        |(d, buf), (n, idx, zstd)| -> Result<()> {
            let stored = std::fs::read(dir.join(n))?;
            read.fetch_add(stored.len() as u64, Ordering::Relaxed);
            let d = d.as_mut().context("zstd context")?;
            write_block(&f, d, buf, *idx, *zstd, &stored, &written)
        },
    )?;
    f.finish()?;
    report(
        "restore-dir",
        start,
        &[
            ("objects", names.len() as u64),
            ("bytes_in", read.into_inner()),
            ("bytes_written", written.into_inner()),
        ],
    );
    Ok(())
}

async fn restore_s3(dir: &Path, url: &str, out: &Path, size: u64) -> Result<()> {
    let objects = s3(url)?;
    let names = listing(dir)?;
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let f = Arc::new(Output::create(out, size)?);
    // 32 GETs in flight; each downloaded object is decompressed and written on rayon.
    futures::stream::iter(names.iter())
        .map(|(n, idx, zstd)| {
            let (objects, read, written, f) = (
                Arc::clone(&objects),
                Arc::clone(&read),
                Arc::clone(&written),
                Arc::clone(&f),
            );
            let (idx, zstd) = (*idx, *zstd);
            async move {
                let data = objects
                    .get(&ObjPath::from(n.as_str()))
                    .await?
                    .bytes()
                    .await?;
                read.fetch_add(data.len() as u64, Ordering::Relaxed);
                let (tx, rx) = tokio::sync::oneshot::channel();
                rayon::spawn(move || {
                    let r = (|| -> Result<()> {
                        let mut d = zstd::bulk::Decompressor::new()?;
                        let mut buf = Vec::new();
                        write_block(&f, &mut d, &mut buf, idx, zstd, &data, &written)
                    })();
                    let _ = tx.send(r);
                });
                rx.await?
            }
        })
        .buffer_unordered(S3_GETS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    f.finish()?;
    report(
        "restore-s3",
        start,
        &[
            ("objects", names.len() as u64),
            ("bytes_in", read.load(Ordering::Relaxed)),
            ("bytes_written", written.load(Ordering::Relaxed)),
        ],
    );
    Ok(())
}
