use std::path::PathBuf;

/// What went wrong driving QEMU's tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("disk image {path} does not exist", path = path.display())]
    NotFound { path: PathBuf },

    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A QEMU tool is not installed.
    #[error(
        "{tool} is not installed: disks in QEMU formats (qcow2, vmdk, ...) need it (Debian/Ubuntu: apt-get install qemu-utils)"
    )]
    Missing { tool: &'static str },

    /// `qemu-nbd` refused the image (a corrupt or truncated qcow2), exited or did not listen.
    #[error("qemu-nbd could not serve disk image {path}: {reason}", path = image.display())]
    QemuNbd { image: PathBuf, reason: String },

    /// A file of the image's backing chain is missing: the guest's disk cannot be read
    /// whole. `image` names it (relative names are resolved against the image's directory).
    #[error(
        "disk image {image} has backing file {backing}, which does not exist: the disk \
         cannot be read without it",
        image = image.display(),
        backing = backing.display()
    )]
    BackingMissing { image: PathBuf, backing: PathBuf },

    /// The image is of a kind blockvault does not read (an encrypted qcow2, whose key it does
    /// not have): refused before anything is read or written.
    #[error("disk image {image} is not supported: {reason}", image = image.display())]
    Unsupported { image: PathBuf, reason: String },

    /// `qemu-img` failed (its own words in `reason`).
    #[error("qemu-img could not {what}: {reason}")]
    QemuImg { what: String, reason: String },
    /// The QEMU monitor (QMP) at `socket` cannot be used: nobody listens, it is not a QMP
    /// monitor, it did not answer in time or closed the connection.
    #[error("QEMU monitor {socket}: {reason}", socket = socket.display())]
    Qmp { socket: PathBuf, reason: String },

    /// QEMU refused a QMP command: its error class and its own words.
    #[error(transparent)]
    QmpCommand(Box<QmpRefusal>),

    /// A disk of a running VM cannot be fleeced: not found among QEMU's block nodes, or
    /// QEMU's graph is not what fleecing needs.
    #[error("disk {disk} of the VM at {socket}: {reason}", disk = disk.display(), socket = socket.display())]
    Fleecing {
        socket: PathBuf,
        disk: PathBuf,
        reason: String,
    },

    /// A QEMU has the image open (it holds the image's write lock): only that QEMU may change
    /// it, so a running VM's disks are backed up through its QMP socket.
    #[error(
        "a QEMU has disk image {path} open ({reason}): is its VM running? Back up a running \
         VM through its QMP socket, or stop it (a pre-hook may) before the backup",
        path = image.display()
    )]
    ImageLocked { image: PathBuf, reason: String },

    /// Reading through the NBD client failed.
    #[error(transparent)]
    Source(#[from] blockvault_source::Error),
}

/// A QMP command QEMU refused (`{"error": {"class", "desc"}}`).
#[derive(Debug, thiserror::Error)]
#[error("QEMU monitor {socket}: {command} failed: {desc} ({class})", socket = socket.display())]
pub struct QmpRefusal {
    pub socket: PathBuf,
    pub command: String,
    /// QEMU's error class: `GenericError`, `CommandNotFound`, `DeviceNotFound`, ...
    pub class: String,
    /// QEMU's own words.
    pub desc: String,
}

impl Error {
    /// The kind of this error: a missing image is not found, anything else a failure.
    pub fn kind(&self) -> blockvault_core::ErrorKind {
        use blockvault_core::ErrorKind;
        match self {
            Error::NotFound { .. } | Error::BackingMissing { .. } => ErrorKind::NotFound,
            Error::Unsupported { .. } => ErrorKind::Refused,
            Error::Source(blockvault_source::Error::NotFound { .. }) => ErrorKind::NotFound,
            _ => ErrorKind::Failure,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
