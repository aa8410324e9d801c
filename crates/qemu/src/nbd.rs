//! [`QemuNbd`]: a disk image in any format QEMU reads (qcow2 above all), served by a
//! `qemu-nbd` this process starts and always stops, and read through the source crate's NBD
//! client.
//!
//! ```text
//! detect_format(image)   the header: qcow2 magic `QFI\xfb`, else raw
//! QemuNbd::start(image, fmt)  a fresh private directory (0700) -> qemu-nbd --read-only
//!                             --persistent --shared=8 --format=FMT --socket=DIR/nbd.sock IMAGE
//! QemuNbd::start_with(.., Some(bitmap))  the same with -B BITMAP, the bitmap's context
//!                             negotiated: dirty_extents() are the bitmap's
//! QemuNbd::start_from(clone, disk, ..)  a copy of the disk kept elsewhere (a reflink clone):
//!                             its backing file resolved against the disk's directory and
//!                             given explicitly (--image-opts driver=FMT,file.filename=CLONE,
//!                             backing.driver=..,backing.file.filename=BASE)
//!                             -> wait for the socket (qemu-nbd exiting first is an error with
//!                             its stderr; a missing file of the backing chain is
//!                             Error::BackingMissing, naming it) -> NbdSource over the socket
//! drop                        the connection closed (NBD_CMD_DISC), qemu-nbd killed and
//!                             reaped, the directory removed
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blockvault_core::DiskFormat;
use blockvault_source::{BlockSource, NbdAddress, NbdOptions, NbdSource};

use crate::chain::{backing_as, missing_backing};
use crate::support::check_readable;
use crate::{Error, Result};

/// How long `qemu-nbd` may take to listen on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a refused connection waits to see whether `qemu-nbd` is exiting.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The exit status of `child` if it exits within `grace`.
fn exit_within(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if started.elapsed() >= grace {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `qemu-nbd` process and its private directory: killed, reaped and removed when dropped.
#[derive(Debug)]
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Gone already (it exited on its own) is fine; either way it is reaped here.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` removes itself (socket, stderr log) after this.
    }
}

/// A disk image served read-only by a `qemu-nbd` of its own, on a unix socket in a private
/// temporary directory, and read through one [`NbdSource`] connection. A [`BlockSource`]
/// itself (the image's size, its allocated clusters as data extents, reads of the guest's
/// view of the disk); dropping it closes the connection, kills and reaps `qemu-nbd` and
/// removes the directory.
#[derive(Debug)]
pub struct QemuNbd {
    // Field order is drop order: the connection says goodbye to a live server first.
    source: NbdSource,
    server: Server,
    image: PathBuf,
    format: DiskFormat,
}

impl QemuNbd {
    /// Starts `qemu-nbd --read-only --persistent --shared=8 --format=FORMAT` for `image` on a
    /// private socket, waits until it listens (10 s at most) and connects to it.
    ///
    /// Errors: [`Error::NotFound`] for a missing image, [`Error::Missing`] when
    /// `qemu-nbd` is not installed, [`Error::QemuNbd`] (with qemu-nbd's own words) when it
    /// refuses the image (a corrupt or truncated qcow2) or does not listen in time. No
    /// process is left behind on any error.
    pub fn start(image: &Path, format: DiskFormat) -> Result<QemuNbd> {
        QemuNbd::start_with(image, format, None)
    }

    /// [`QemuNbd::start`], also exporting the persistent dirty bitmap `bitmap` of the image
    /// (`qemu-nbd -B BITMAP`) for [`QemuNbd::dirty_extents`]. qemu-nbd refuses a bitmap the
    /// image lacks, or one left inconsistent (`in-use`): [`Error::QemuNbd`] in its words.
    pub fn start_with(image: &Path, format: DiskFormat, bitmap: Option<&str>) -> Result<QemuNbd> {
        QemuNbd::start_from(image, image, format, bitmap)
    }

    /// [`QemuNbd::start_with`] for `image`, a copy of the disk `home` kept elsewhere (its
    /// reflink clone in the snapshot tier; pass `image` itself otherwise): read with the
    /// disk's own backing chain, a relative backing name resolved against `home`'s directory,
    /// never against the copy's (see `chain.rs`).
    ///
    /// Errors as [`QemuNbd::start_with`]'s, and: [`Error::BackingMissing`] naming the file of
    /// the chain that is missing, [`Error::Unsupported`] for an encrypted qcow2. Nothing is
    /// left running on any error.
    pub fn start_from(
        image: &Path,
        home: &Path,
        format: DiskFormat,
        bitmap: Option<&str>,
    ) -> Result<QemuNbd> {
        if !image.exists() {
            return Err(Error::NotFound {
                path: image.to_owned(),
            });
        }
        check_readable(image, format)?;
        let target = if image == home {
            vec![format!("--format={}", format.key()).into(), image.into()]
        } else {
            image_opts(image, home, format)?
        };
        match QemuNbd::spawn(image, format, bitmap, target) {
            Err(e @ Error::QemuNbd { .. }) => match missing_backing(image, home, format) {
                // The chain QEMU could not open: which file, in words a user can act on.
                Ok(Some((of, missing))) => Err(Error::BackingMissing {
                    image: of,
                    backing: missing,
                }),
                _ => Err(e),
            },
            started => started,
        }
    }

    /// Starts qemu-nbd for `image` opened as `target` says (`--format=F IMAGE`, or
    /// `--image-opts OPTS`).
    fn spawn(
        image: &Path,
        format: DiskFormat,
        bitmap: Option<&str>,
        target: Vec<OsString>,
    ) -> Result<QemuNbd> {
        let dir = tempfile::Builder::new()
            .prefix("blockvault-qemu-nbd-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
        // Only this user reaches the socket (whatever the umask made of the directory).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir.path(), e))?;
        let socket = dir.path().join("nbd.sock");
        let log_path = dir.path().join("stderr");
        let log = File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        let mut command = Command::new("qemu-nbd");
        if let Some(bitmap) = bitmap {
            command.arg("-B").arg(bitmap);
        }
        let child = command
            .arg("--read-only")
            .arg("--persistent")
            .arg(format!("--socket={}", socket.display()))
            .arg("--shared=8")
            .args(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::Missing { tool: "qemu-nbd" },
                _ => Error::QemuNbd {
                    image: image.to_owned(),
                    reason: format!("cannot start qemu-nbd: {e}"),
                },
            })?;
        let mut server = Server { child, dir };
        let failed = |what: String| {
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            let said = said.trim();
            Error::QemuNbd {
                image: image.to_owned(),
                reason: if said.is_empty() {
                    what
                } else {
                    format!("{what}: {said}")
                },
            }
        };
        let started = Instant::now();
        let options = NbdOptions {
            name: Some(image.to_owned()),
            dirty_bitmap: bitmap.map(str::to_owned),
            ..NbdOptions::default()
        };
        let source = loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(failed(format!("qemu-nbd exited ({status})")));
            }
            if socket.exists() {
                // Bound but maybe not yet listening: a refused connect is tried again.
                match NbdSource::connect(NbdAddress::unix(&socket, ""), options.clone()) {
                    Ok(source) => break source,
                    Err(blockvault_source::Error::NbdConnect { .. })
                        if started.elapsed() < START_TIMEOUT => {}
                    Err(e) => {
                        // qemu-nbd may listen before it opens the image, then exit on a
                        // corrupt one: its exit and its stderr are the reason, not the
                        // reset connection.
                        let reason = match exit_within(&mut server.child, EXIT_GRACE) {
                            Some(status) => format!("qemu-nbd exited ({status})"),
                            None => e.to_string(),
                        };
                        return Err(failed(reason));
                    }
                }
            }
            if started.elapsed() >= START_TIMEOUT {
                return Err(failed(format!(
                    "qemu-nbd did not listen within {} s",
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(QemuNbd {
            source,
            server,
            image: image.to_owned(),
            format,
        })
    }

    /// The connection to the export.
    pub fn source(&self) -> &NbdSource {
        &self.source
    }

    /// The byte ranges the dirty bitmap this server was started with marks dirty, ascending
    /// and merged, at the bitmap's granularity (see [`NbdSource::dirty_extents`]); an error
    /// when it was started without one.
    pub fn dirty_extents(&self) -> Result<Vec<Range<u64>>> {
        Ok(self.source.dirty_extents()?)
    }

    /// The image being served.
    pub fn image(&self) -> &Path {
        &self.image
    }

    pub fn format(&self) -> DiskFormat {
        self.format
    }

    /// The process id of the `qemu-nbd` serving the image.
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }

    /// The private directory holding the socket (removed on drop).
    pub fn socket_dir(&self) -> &Path {
        self.server.dir.path()
    }
}

/// qemu-nbd's arguments for `image`, a copy of `home`, opened with `home`'s backing chain:
/// `--image-opts` with the backing file given explicitly when it has one.
fn image_opts(image: &Path, home: &Path, format: DiskFormat) -> Result<Vec<OsString>> {
    let plain = || vec![format!("--format={}", format.key()).into(), image.into()];
    let Some(backing) = backing_as(image, home, Some(format))? else {
        return Ok(plain());
    };
    // A name that is not a file (json:, nbd://) is the same from anywhere.
    let Some(base) = backing.path else {
        return Ok(plain());
    };
    if !base.try_exists().map_err(|e| Error::io(&base, e))? {
        return Err(Error::BackingMissing {
            image: home.to_owned(),
            backing: base,
        });
    }
    let base_format = backing.format.ok_or_else(|| Error::QemuNbd {
        image: image.to_owned(),
        reason: format!(
            "the format of its backing file {} is unknown",
            base.display()
        ),
    })?;
    let mut opts = OsString::from(format!(
        "driver={},file.driver=file,file.filename=",
        format.key()
    ));
    opts.push(escape(image.as_os_str()));
    // QEMU's `file` driver refuses a block device (an LV holding the base): `host_device`.
    let base_driver = match std::fs::metadata(&base) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()) => "host_device",
        _ => "file",
    };
    opts.push(format!(
        ",backing.driver={},backing.file.driver={base_driver},backing.file.filename=",
        escape_str(&base_format)
    ));
    opts.push(escape(base.as_os_str()));
    Ok(vec!["--image-opts".into(), opts])
}

/// `value` as one value of QEMU's `key=value,...` options: every comma doubled.
fn escape(value: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn escape_str(value: &str) -> String {
    value.replace(',', ",,")
}

impl BlockSource for QemuNbd {
    fn path(&self) -> &Path {
        &self.image
    }

    fn size(&self) -> u64 {
        self.source.size()
    }

    fn current_size(&self) -> blockvault_source::Result<u64> {
        self.source.current_size()
    }

    fn data_extents(&self) -> blockvault_source::Result<Vec<Range<u64>>> {
        self.source.data_extents()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> blockvault_source::Result<usize> {
        self.source.read_at(offset, buf)
    }
}
