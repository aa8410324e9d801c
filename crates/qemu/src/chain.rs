//! A disk's backing chain: the base images an overlay (a VM made from a template) reads
//! through, as QEMU would find them, also for a copy of the overlay kept somewhere else.
//!
//! ```text
//! backing_of(image, home)    qemu-img info of IMAGE (never opens the chain): the backing
//!                            file it names, a relative name resolved against HOME's
//!                            directory (the disk's, when IMAGE is its clone in the tier),
//!                            and its format (as recorded, else as qemu-img probes it)
//! missing_backing(image, home)  the first file of the chain that does not exist, walking
//!                            each level from its own directory (as QEMU does)
//! ```
//!
//! Why `home`: an overlay names its base relative to its own directory (`-b base.qcow2`). A
//! reflink clone of the overlay in the snapshot tier carries that name, which resolves to
//! nothing there (or to some other file). The clone must be read with the disk's own chain,
//! so the caller resolves the name against the disk's directory and hands the base to QEMU
//! explicitly ([`QemuNbd::start_from`](crate::QemuNbd::start_from)). The base itself is the
//! disk's, read where it lives: bases are shared and never written while overlays use them.

use std::path::{Path, PathBuf};

use blockvault_core::DiskFormat;

use crate::img::ImageInfo;
use crate::{Error, Result};

/// How deep a chain is walked looking for a missing file (QEMU's own limit is far higher,
/// but a chain this deep is a loop or a mistake).
const MAX_DEPTH: usize = 64;

/// The backing file an image names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backing {
    /// The name as written in the image.
    pub name: String,
    /// The file it resolves to; `None` for a name that is not a plain file (`json:{..}`,
    /// `nbd://..`): QEMU opens it as written.
    pub path: Option<PathBuf>,
    /// Its format (`qcow2`, `raw`, ...), as the image records it, else as probed; `None`
    /// when neither says (a name that is not a file).
    pub format: Option<String>,
}

/// The backing file `image` names, resolved as if `image` were the file `home` (pass the same
/// path for the image itself); `None` when it has none. The format is probed from the base
/// (`qemu-img info`) only when the image does not record it, as QEMU would.
///
/// Errors: [`Error::NotFound`] for a missing `image`, [`Error::QemuImg`] when qemu-img cannot
/// read it. A missing base is not an error here (see [`missing_backing`]).
pub fn backing_of(image: &Path, home: &Path) -> Result<Option<Backing>> {
    backing_as(image, home, None)
}

/// [`backing_of`] `image` read as `format` (probed when `None`, as below the top of a chain).
pub(crate) fn backing_as(
    image: &Path,
    home: &Path,
    format: Option<DiskFormat>,
) -> Result<Option<Backing>> {
    let info = ImageInfo::read_as(image, format)?;
    Ok(info
        .backing_file
        .map(|name| resolve(name, info.backing_format, home)))
}

/// The first link of `image`'s chain (`image` read as `format`, resolved from `home`, see
/// [`backing_of`]) whose file does not exist: the image naming it and the missing file.
/// `None` when every file is there.
pub fn missing_backing(
    image: &Path,
    home: &Path,
    format: DiskFormat,
) -> Result<Option<(PathBuf, PathBuf)>> {
    let (mut image, mut home) = (image.to_owned(), home.to_owned());
    let mut format = Some(format);
    for _ in 0..MAX_DEPTH {
        let Some(backing) = backing_as(&image, &home, format.take())? else {
            return Ok(None);
        };
        let Some(path) = backing.path else {
            return Ok(None);
        };
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) => return Ok(Some((home, path))),
            Err(e) => return Err(Error::io(&path, e)),
        }
        // Below the top, every image is read where it is.
        image = path.clone();
        home = path;
    }
    Ok(None)
}

/// `name` (with the format the image recorded, if any) resolved against `home`'s directory.
fn resolve(name: String, format: Option<String>, home: &Path) -> Backing {
    if name.starts_with("json:") || name.contains("://") {
        return Backing {
            name,
            path: None,
            format,
        };
    }
    let path = Path::new(&name);
    let path = if path.is_absolute() {
        path.to_owned()
    } else {
        let dir = home.parent().filter(|d| !d.as_os_str().is_empty());
        dir.unwrap_or(Path::new(".")).join(path)
    };
    // Not recorded (an old overlay): probed, as QEMU does.
    let format = format.or_else(|| ImageInfo::read(&path).ok().map(|info| info.format));
    Backing {
        name,
        path: Some(path),
        format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_name_resolves_against_home_and_others_stay_as_written() {
        let home = Path::new("/vms/web/disk.qcow2");
        let rel = resolve("base.qcow2".into(), Some("qcow2".into()), home);
        assert_eq!(rel.path.as_deref(), Some(Path::new("/vms/web/base.qcow2")));
        assert_eq!(rel.format.as_deref(), Some("qcow2"));
        let up = resolve("../templates/b.raw".into(), Some("raw".into()), home);
        assert_eq!(
            up.path.as_deref(),
            Some(Path::new("/vms/web/../templates/b.raw"))
        );
        let abs = resolve("/srv/base.img".into(), Some("raw".into()), home);
        assert_eq!(abs.path.as_deref(), Some(Path::new("/srv/base.img")));
        let bare = resolve(
            "b.qcow2".into(),
            Some("qcow2".into()),
            Path::new("disk.qcow2"),
        );
        assert_eq!(bare.path.as_deref(), Some(Path::new("./b.qcow2")));
        let json = resolve(r#"json:{"driver":"nbd"}"#.into(), None, home);
        assert_eq!(json.path, None);
        let url = resolve("nbd://host/x".into(), None, home);
        assert_eq!(url.path, None);
    }
}
