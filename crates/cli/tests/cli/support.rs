//! Shared fixtures: running the real binary, building sparse disk images with an in-memory model
//! of their content, and looking inside a vault directory.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

// ---- running the binary ---------------------------------------------------------------------

/// What one run of `blockvault` did.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blockvault {}\n  exit: {}\n  stdout: {:?}\n  stderr: {:?}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `blockvault ARGS` with `TZ=UTC` and without `BLOCKVAULT_VAULT` from the caller.
pub fn blockvault<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    blockvault_with_env(args, &[])
}

/// Runs `blockvault ARGS` with `TZ=UTC` plus `env`.
pub fn blockvault_with_env<I, S>(args: I, env: &[(&str, &OsStr)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_blockvault"));
    command
        .args(&args)
        .env("TZ", "UTC")
        // Nothing of the user's own state (such as an s3.toml) may leak into a test, and no
        // test sees another's catalog or snapshot tier.
        .env("BLOCKVAULT_STATE_DIR", state_dir_for(&args, env))
        .env_remove("BLOCKVAULT_VAULT")
        .env_remove("BLOCKVAULT_SNAPSHOT_DIR");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the blockvault binary");
    Run {
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        // A signal has no code; -1 fails every assertion on codes.
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The host state directory a run gets: one per vault, beside a directory vault (inside the
/// test's temp dir), or one per S3 location under the system temp dir, so tests that run in
/// parallel never share a catalog or a snapshot tier. A test that passes `--state-dir` itself
/// overrides this.
pub fn state_dir_for(args: &[std::ffi::OsString], env: &[(&str, &OsStr)]) -> PathBuf {
    let given = args
        .iter()
        .position(|a| a == "--vault")
        .and_then(|i| args.get(i + 1))
        .or_else(|| {
            // `vault init [FLAGS] LOCATION`: the first argument after `init` that is no flag.
            args.iter()
                .skip_while(|a| *a != "init")
                .skip(1)
                .find(|a| !a.to_string_lossy().starts_with('-'))
        })
        .map(|a| a.to_string_lossy().into_owned())
        .or_else(|| {
            env.iter()
                .find(|(k, _)| *k == "BLOCKVAULT_VAULT")
                .map(|(_, v)| v.to_string_lossy().into_owned())
        });
    match given {
        Some(location) if !location.starts_with("s3://") => {
            let vault = Path::new(&location);
            let name = vault
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            vault
                .parent()
                .unwrap_or(Path::new("."))
                .join(format!(".{name}.host-state"))
        }
        Some(location) => std::env::temp_dir().join(format!(
            "blockvault-cli-tests-state-{}",
            &blake3::hash(location.as_bytes()).to_hex()[..16]
        )),
        None => std::env::temp_dir().join("blockvault-cli-tests-no-state"),
    }
}

impl Run {
    /// Asserts exit 0 with nothing on stderr (the progress bar stays hidden off a terminal).
    pub fn success(self) -> Run {
        assert_eq!(self.code, 0, "expected success\n{self}");
        assert!(self.stderr.is_empty(), "success wrote to stderr\n{self}");
        self
    }

    /// stdout as the one JSON document `--json` prints.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{self}"))
    }

    /// Asserts a failure the command itself reported: exit `code`, nothing on stdout, exactly
    /// one line on stderr starting `error: `. Returns that line.
    pub fn failure(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "wrong exit code\n{self}");
        assert!(self.stdout.is_empty(), "a failure wrote to stdout\n{self}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line\n{self}");
        assert!(lines[0].starts_with("error: "), "{self}");
        lines[0]
    }

    /// Asserts an argument error caught by the parser: exit 2, nothing on stdout, stderr is one
    /// `error: ` line followed only by the parser's pointer to `--help`. Returns the first line.
    pub fn parse_failure(&self) -> &str {
        assert_eq!(self.code, 2, "wrong exit code\n{self}");
        assert!(self.stdout.is_empty(), "a failure wrote to stdout\n{self}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert!(!lines.is_empty(), "{self}");
        assert!(lines[0].starts_with("error: "), "{self}");
        for extra in &lines[1..] {
            assert!(
                extra.contains("--help") || extra.starts_with("Usage:"),
                "unexpected stderr line {extra:?}\n{self}"
            );
        }
        lines[0]
    }

    /// Asserts a `--json` failure: exit `code`, nothing on stdout, stderr is exactly one JSON
    /// object `{"error": {"kind", "code", "message"}}` whose code and kind match. Returns the
    /// message.
    pub fn json_failure(&self, code: i32) -> String {
        assert_eq!(self.code, code, "wrong exit code\n{self}");
        assert!(self.stdout.is_empty(), "a failure wrote to stdout\n{self}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line\n{self}");
        let doc: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e})\n{self}"));
        let error = &doc["error"];
        assert_eq!(error["code"], Value::from(code), "{self}");
        let kind = match code {
            1 => "failure",
            2 => "usage",
            3 => "not-found",
            4 => "integrity",
            6 => "refused",
            other => panic!("no kind for exit code {other}"),
        };
        assert_eq!(error["kind"], Value::from(kind), "{self}");
        let message = error["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            !message.is_empty() && !message.starts_with("error"),
            "{self}"
        );
        assert_eq!(
            doc.as_object().map(|o| o.len()),
            Some(1),
            "only `error` at the top\n{self}"
        );
        message
    }
}

/// A path as a command-line argument (temp paths are UTF-8).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

// ---- the sandbox ----------------------------------------------------------------------------

/// A temp directory for one test: its images, its vault, its restore targets.
#[derive(Debug)]
pub struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `vault init SANDBOX/vault`, checked; returns the vault directory.
    pub fn init_vault(&self) -> PathBuf {
        let vault = self.path("vault");
        let run = blockvault(["vault", "init", arg(&vault)]).success();
        assert!(run.stdout.starts_with("created vault "), "{run}");
        vault
    }
}

/// `backup --json` of `disks` into `vault` as `vm`, checked: a Completed job without warnings.
/// Returns the point as the Snapshot made it (its stats are the snapshot's; the vault's record,
/// which `points` lists, counts what the transfer stored).
pub fn backup(vault: &Path, vm: &str, disks: &[&Path], block_size: Option<&str>) -> Value {
    let mut args = vec!["backup", "--json", "--vault", arg(vault), "--vm", vm];
    for disk in disks {
        args.extend(["--disk", arg(disk)]);
    }
    if let Some(bs) = block_size {
        args.extend(["--block-size", bs]);
    }
    let run = blockvault(&args).success();
    let doc = run.json();
    assert_eq!(doc["warnings"], serde_json::json!([]), "{run}");
    assert_eq!(doc["job"]["status"], "completed", "{run}");
    assert_eq!(doc["job"]["point"], doc["point"]["id"], "{run}");
    doc["point"].clone()
}

/// `restore --json` of `vm` into `to` with extra `args`, checked (no warning); returns the
/// report.
pub fn restore(vault: &Path, vm: &str, to: &Path, args: &[&str]) -> Value {
    let mut all = vec![
        "restore",
        "--json",
        "--vault",
        arg(vault),
        "--vm",
        vm,
        "--to",
        arg(to),
    ];
    all.extend_from_slice(args);
    let run = blockvault(&all).success();
    let doc = run.json();
    assert_eq!(doc["warnings"], serde_json::json!([]), "{run}");
    doc
}

/// The points of `vm` as `points --json` (all VMs, no warning) lists them, in its order.
pub fn points(vault: &Path, vm: &str) -> Vec<Value> {
    let run = blockvault(["points", "--json", "--vault", arg(vault)]).success();
    let doc = run.json();
    assert_eq!(doc["warnings"], serde_json::json!([]), "{run}");
    let all = doc["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points array\n{run}"));
    all.iter().filter(|p| p["vm"] == vm).cloned().collect()
}

/// A JSON field as u64, with a message naming it.
pub fn u64_of(value: &Value, field: &str) -> u64 {
    value
        .pointer(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{field} is not a number in {value}"))
}

/// A JSON field as a string, with a message naming it.
pub fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value
        .pointer(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

// ---- disk images ----------------------------------------------------------------------------

/// Deterministic incompressible bytes: xorshift64 from `seed`.
pub fn noise(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

/// Deterministic compressible text: numbered log lines tagged with `seed`.
pub fn text(len: u64, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize + 80);
    let mut line = 0u64;
    while (out.len() as u64) < len {
        out.extend_from_slice(
            format!("{seed:04} {line:08} kernel: the quick brown fox jumps over the lazy dog\n")
                .as_bytes(),
        );
        line += 1;
    }
    out.truncate(len as usize);
    out
}

/// A sparse raw image on disk plus the model of what it holds.
#[derive(Debug)]
pub struct Image {
    pub path: PathBuf,
    file: File,
    content: Vec<u8>,
}

impl Image {
    /// A new image of `size` bytes, all holes.
    pub fn create(path: &Path, size: u64) -> Image {
        let file = File::create(path).expect("create image");
        file.set_len(size).expect("size image");
        Image {
            path: path.to_owned(),
            file,
            content: vec![0; size as usize],
        }
    }

    /// Writes `data` at `offset`, in the file and in the model.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset as usize + data.len();
        assert!(end <= self.content.len(), "write past the end of the image");
        self.file.write_all_at(data, offset).expect("write image");
        self.content[offset as usize..end].copy_from_slice(data);
    }

    /// Grows (with a hole) or shrinks the image.
    pub fn set_len(&mut self, size: u64) {
        self.file.set_len(size).expect("resize image");
        self.content.resize(size as usize, 0);
    }

    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// A copy of the content as it is now: one generation, to compare restores against.
    pub fn snapshot(&self) -> Vec<u8> {
        self.content.clone()
    }
}

/// The usual test disk: 64 MiB, about 2.5 MiB of noise and text at several offsets (some
/// unaligned, one straddling 40 MiB, one up to the very end), holes everywhere else.
pub fn standard_disk(path: &Path) -> Image {
    let mut image = Image::create(path, 64 * MIB);
    image.write(0, &noise(512 * KIB, 1));
    image.write(5 * MIB + 1000, &text(300 * KIB, 2));
    image.write(20 * MIB, &noise(MIB, 3));
    image.write(40 * MIB - 100, &noise(200 * KIB, 4));
    image.write(63 * MIB + 512 * KIB, &text(512 * KIB, 5));
    image
}

// ---- the block model ------------------------------------------------------------------------

/// BLAKE3 of a block: the key of its chunk.
pub fn block_hash(block: &[u8]) -> blake3::Hash {
    blake3::hash(block)
}

fn is_zero(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Bytes in the non-zero blocks of `content` at block size `bs`.
pub fn nonzero_bytes(content: &[u8], bs: u64) -> u64 {
    content
        .chunks(bs as usize)
        .filter(|b| !is_zero(b))
        .map(|b| b.len() as u64)
        .sum()
}

/// The distinct contents of the non-zero blocks of `content`.
pub fn distinct_blocks(content: &[u8], bs: u64) -> HashSet<blake3::Hash> {
    content
        .chunks(bs as usize)
        .filter(|b| !is_zero(b))
        .map(block_hash)
        .collect()
}

/// Indices of the blocks of `new` that hold data and differ from `old` at the same index.
pub fn changed_blocks(old: &[u8], new: &[u8], bs: u64) -> Vec<usize> {
    new.chunks(bs as usize)
        .zip(old.chunks(bs as usize))
        .enumerate()
        .filter(|(_, (n, o))| !is_zero(n) && n != o)
        .map(|(i, _)| i)
        .collect()
}

// ---- the vault on disk ----------------------------------------------------------------------

/// The file of the chunk holding `block`: `VAULT/chunks/<2 hex>/<64 hex>`.
pub fn chunk_file(vault: &Path, block: &[u8]) -> PathBuf {
    let hex = block_hash(block).to_hex();
    vault.join("chunks").join(&hex[..2]).join(hex.as_str())
}

/// Every file under `VAULT/chunks`.
pub fn chunk_files(vault: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(prefixes) = fs::read_dir(vault.join("chunks")) else {
        return files;
    };
    for prefix in prefixes {
        let prefix = prefix.expect("read chunks dir").path();
        for entry in fs::read_dir(&prefix).expect("read chunk prefix dir") {
            files.push(entry.expect("read chunk prefix dir").path());
        }
    }
    files.sort();
    files
}

/// Total size of the chunk files: what the vault stores for blocks.
pub fn chunk_bytes(vault: &Path) -> u64 {
    chunk_files(vault)
        .iter()
        .map(|f| fs::metadata(f).expect("stat chunk").len())
        .sum()
}

/// `VAULT/maps/VM/POINT/DISK.map`.
pub fn map_file(vault: &Path, vm: &str, point: &str, disk: &str) -> PathBuf {
    vault
        .join("maps")
        .join(vm)
        .join(point)
        .join(format!("{disk}.map"))
}

/// Every file under `dir`, recursively, relative to it (empty when `dir` does not exist).
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("read dir").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The names in `dir`, hidden ones included, sorted (empty when `dir` does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = read
        .map(|e| {
            e.expect("read dir")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// XORs `len` bytes in the middle of `path` with 0xff.
pub fn flip_middle(path: &Path, len: usize) {
    let mut bytes = fs::read(path).expect("read file to corrupt");
    let mid = bytes.len() / 2;
    let end = (mid + len).min(bytes.len());
    for b in &mut bytes[mid..end] {
        *b ^= 0xff;
    }
    fs::write(path, bytes).expect("write corrupted file");
}

/// Cuts `path` to half its length.
pub fn truncate_half(path: &Path) {
    let len = fs::metadata(path).expect("stat file to truncate").len();
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate file");
}

// ---- restored images ------------------------------------------------------------------------

/// Asserts that the file at `path` holds exactly `expected`: same length, same bytes.
pub fn assert_image(path: &Path, expected: &[u8]) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        meta.len(),
        expected.len() as u64,
        "{}: apparent size",
        path.display()
    );
    let actual = fs::read(path).expect("read restored image");
    if actual != expected {
        let at = actual
            .iter()
            .zip(expected)
            .position(|(a, e)| a != e)
            .unwrap_or(actual.len().min(expected.len()));
        panic!(
            "{}: content differs from the expected image first at byte {at}",
            path.display()
        );
    }
}

/// Bytes the file system allocated for `path`.
pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path).expect("stat image").blocks() * 512
}

/// Asserts that `path` is sparse: it allocates at most `data + slack` bytes, and well under its
/// apparent size.
pub fn assert_sparse(path: &Path, data: u64) {
    let size = fs::metadata(path).expect("stat image").len();
    let used = allocated(path);
    assert!(
        used <= data + MIB && used < size / 4,
        "{}: {used} bytes allocated for {data} bytes of data in a {size}-byte image",
        path.display()
    );
}

/// A small test disk: 8 MiB with 256 KiB of noise and 64 KiB of text, tagged by `seed`.
pub fn small_disk(path: &Path, seed: u64) -> Image {
    let mut image = Image::create(path, 8 * MIB);
    image.write(MIB, &noise(256 * KIB, seed));
    image.write(5 * MIB + 3, &text(64 * KIB, seed));
    image
}

// ---- the host: state directory and snapshot tier ---------------------------------------------

/// The host state directory that [`blockvault`] gives runs on `vault` (see [`state_dir_for`]):
/// the catalog, the locks and the snapshot tier of the vault's VMs.
pub fn host_state(vault: &Path) -> PathBuf {
    state_dir_for(&["--vault".into(), vault.as_os_str().to_owned()], &[])
}

/// The snapshot tier of `vm` on the host of `vault`: `STATE/snapshots/<vm>`, a directory in the
/// vault format, so [`chunk_file`], [`map_file`] and [`chunk_files`] work on it.
pub fn snapshot_tier(vault: &Path, vm: &str) -> PathBuf {
    host_state(vault).join("snapshots").join(vm)
}

impl Run {
    /// Asserts exit 0 with exactly one `warning: ` line on stderr (text output prints each
    /// warning so; `--json` puts them in the document instead). Returns the warning, without
    /// its `warning: ` prefix.
    pub fn success_with_warning(&self) -> &str {
        assert_eq!(self.code, 0, "expected success\n{self}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one warning on stderr\n{self}");
        lines[0]
            .strip_prefix("warning: ")
            .unwrap_or_else(|| panic!("not a warning line\n{self}"))
    }
}
