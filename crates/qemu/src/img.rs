//! `qemu-img`, for an image no QEMU has open: what the image is ([`ImageInfo`]: format,
//! virtual size, cluster size, dirty bitmaps) and adding and removing blockvault's persistent
//! dirty bitmaps.
//!
//! ```text
//! ImageInfo::read(image)        qemu-img info --output=json --force-share IMAGE
//!                               (the qcow2 bitmaps: `in-use` -> inconsistent, `auto` ->
//!                               recording; a bitmap stored in a qcow2 is persistent)
//! add_bitmap(image, name)       qemu-img bitmap --add -g 64K -f qcow2 IMAGE NAME
//! remove_bitmap(image, name)    qemu-img bitmap --remove -f qcow2 IMAGE NAME
//! ```
//!
//! Reading the info shares the image (`--force-share`), so it also works while a QEMU has it
//! open (its bitmaps then show `in-use`). Adding and removing a bitmap writes the image and
//! needs its write lock: an image a QEMU has open is [`Error::ImageLocked`] (a running VM's
//! bitmaps are QEMU's to change, over QMP). Each call is one short `qemu-img` process;
//! qemu-img's own words are in every error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use blockvault_core::DiskFormat;
use serde::Deserialize;

use crate::bitmap::{BITMAP_GRANULARITY, BitmapState};
use crate::{Error, Result};

/// What `qemu-img info` says of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub path: PathBuf,
    /// The format as QEMU names it (`qcow2`, `raw`, `vmdk`, ...), probed from the image.
    pub format: String,
    /// The guest's disk size in bytes.
    pub virtual_size: u64,
    /// The format's cluster size (qcow2: 64 KiB by default); `None` for formats without one.
    pub cluster_size: Option<u64>,
    /// The persistent dirty bitmaps stored in the image (qcow2 only; empty for others).
    pub bitmaps: Vec<BitmapState>,
    /// The backing file the image names, as written in it (relative names are relative to
    /// the image's directory), and its format when the image records it.
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
}

/// `qemu-img info --output=json`, the fields read here.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct InfoJson {
    format: String,
    virtual_size: u64,
    #[serde(default)]
    cluster_size: Option<u64>,
    #[serde(default)]
    format_specific: Option<FormatSpecific>,
    #[serde(default)]
    backing_filename: Option<String>,
    #[serde(default)]
    backing_filename_format: Option<String>,
}

#[derive(Deserialize)]
struct FormatSpecific {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<Qcow2Data>,
}

#[derive(Deserialize)]
struct Qcow2Data {
    #[serde(default)]
    bitmaps: Vec<BitmapJson>,
}

#[derive(Deserialize)]
struct BitmapJson {
    name: String,
    granularity: u32,
    #[serde(default)]
    flags: Vec<String>,
}

impl ImageInfo {
    /// `qemu-img info` of `image` (shared: an image a QEMU has open is read all the same).
    ///
    /// Errors: [`Error::NotFound`] for a missing image, [`Error::Missing`] when qemu-img is
    /// not installed, [`Error::QemuImg`] with qemu-img's words when it cannot read the image,
    /// or says what this build cannot parse.
    pub fn read(image: &Path) -> Result<ImageInfo> {
        ImageInfo::read_as(image, None)
    }

    /// [`ImageInfo::read`] with the format said (`-f FORMAT`) rather than probed: a format
    /// whose header is not at its start (a fixed VHD) probes as raw.
    pub fn read_as(image: &Path, format: Option<DiskFormat>) -> Result<ImageInfo> {
        exists(image)?;
        let what = || format!("read the info of {}", image.display());
        let mut command = Command::new("qemu-img");
        command.args(["info", "--output=json", "--force-share"]);
        if let Some(format) = format {
            command.args(["-f", format.key()]);
        }
        let out = qemu_img(what(), command.arg(image))?;
        let failed = |reason: String| Error::QemuImg {
            what: what(),
            reason,
        };
        if !out.status.success() {
            return Err(failed(said(&out)));
        }
        let info: InfoJson = serde_json::from_slice(&out.stdout)
            .map_err(|e| failed(format!("cannot parse its JSON: {e}")))?;
        let bitmaps = match info.format_specific {
            Some(FormatSpecific {
                kind,
                data: Some(data),
            }) if kind == "qcow2" => data
                .bitmaps
                .into_iter()
                .map(|b| BitmapState {
                    recording: b.flags.iter().any(|f| f == "auto"),
                    inconsistent: b.flags.iter().any(|f| f == "in-use"),
                    // Listed in the image: stored there, so it survives QEMU restarts.
                    persistent: true,
                    name: b.name,
                    granularity: b.granularity,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(ImageInfo {
            path: image.to_owned(),
            format: info.format,
            virtual_size: info.virtual_size,
            cluster_size: info.cluster_size,
            bitmaps,
            backing_file: info.backing_filename,
            backing_format: info.backing_filename_format,
        })
    }

    /// The format as blockvault knows it; `None` for formats it does not name.
    pub fn disk_format(&self) -> Option<DiskFormat> {
        self.format.parse().ok()
    }

    /// The bitmap named `name`, if the image has it.
    pub fn bitmap(&self, name: &str) -> Option<&BitmapState> {
        self.bitmaps.iter().find(|b| b.name == name)
    }
}

/// Adds the persistent dirty bitmap `name` to the qcow2 `image`, recording from now on, at
/// [`BITMAP_GRANULARITY`].
///
/// Errors: [`Error::ImageLocked`] when a QEMU has the image open, [`Error::QemuImg`] with
/// qemu-img's words otherwise (a bitmap of that name exists already, the image is not a qcow2
/// or a qcow2 too old for bitmaps (compat 0.10)).
pub fn add_bitmap(image: &Path, name: &str) -> Result<()> {
    exists(image)?;
    let what = format!("add dirty bitmap {name} to {}", image.display());
    let out = qemu_img(
        what.clone(),
        Command::new("qemu-img")
            .args(["bitmap", "--add", "-g"])
            .arg(BITMAP_GRANULARITY.to_string())
            .args(["-f", "qcow2"])
            .arg(image)
            .arg(name),
    )?;
    if out.status.success() {
        return Ok(());
    }
    Err(refused(image, what, &out))
}

/// Removes the dirty bitmap `name` from the qcow2 `image`: `true` when it was removed,
/// `false` when the image had no bitmap of that name.
///
/// Errors as [`add_bitmap`]'s.
pub fn remove_bitmap(image: &Path, name: &str) -> Result<bool> {
    exists(image)?;
    let what = format!("remove dirty bitmap {name} from {}", image.display());
    let out = qemu_img(
        what.clone(),
        Command::new("qemu-img")
            .args(["bitmap", "--remove", "-f", "qcow2"])
            .arg(image)
            .arg(name),
    )?;
    if out.status.success() {
        return Ok(true);
    }
    let text = said(&out);
    if text.contains("not found") && text.contains(name) {
        return Ok(false);
    }
    Err(refused(image, what, &out))
}

fn exists(image: &Path) -> Result<()> {
    match image.try_exists() {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::NotFound {
            path: image.to_owned(),
        }),
        Err(e) => Err(Error::io(image, e)),
    }
}

/// Runs `cmd` (a qemu-img that is to do `what`), its output captured.
fn qemu_img(what: String, cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Missing { tool: "qemu-img" },
            _ => Error::QemuImg {
                what,
                reason: format!("cannot start qemu-img: {e}"),
            },
        })
}

/// What qemu-img said on stderr, on one line (or its exit status when it said nothing).
fn said(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        format!("qemu-img exited ({})", out.status)
    } else {
        text
    }
}

/// The error of a failed write to `image` (to do `what`): locked by a QEMU, or qemu-img's
/// reason.
fn refused(image: &Path, what: String, out: &Output) -> Error {
    let reason = said(out);
    // `Failed to get "write" lock` / `Failed to get shared "write" lock`.
    if reason.contains("Failed to get") && reason.contains("lock") {
        return Error::ImageLocked {
            image: image.to_owned(),
            reason,
        };
    }
    Error::QemuImg { what, reason }
}
