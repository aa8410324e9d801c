use std::ops::Range;
use std::path::Path;

use crate::Result;

/// A disk as the scanner reads it: a size, the extents that may hold data, and positional
/// reads. [`RawFile`](crate::RawFile) (a raw image file or block device),
/// [`NbdSource`](crate::NbdSource) (an NBD export) and `QemuNbd` (blockvault-qemu) (a qcow2
/// image through a `qemu-nbd` of its own) implement it.
///
/// A source only reports what it sees; the scan over it keeps the consistency rules for every
/// source alike: a read that comes back short of the recorded size is
/// [`Error::Truncated`](crate::Error::Truncated), and a size that differs after the scan is
/// [`Error::SizeChanged`](crate::Error::SizeChanged), so a disk that shrinks or grows while it
/// is read never yields a block map.
///
/// `Send + Sync`: the scan reads one source from many rayon workers at once, so `read_at`
/// takes `&self` and must not depend on a shared cursor.
pub trait BlockSource: Send + Sync {
    /// The disk as the user named it (the image's path, or the disk a source that is not a
    /// file stands for), for messages and errors.
    fn path(&self) -> &Path;

    /// The disk's size in bytes, recorded when the source was opened. A scan covers exactly
    /// this many bytes.
    fn size(&self) -> u64;

    /// The size now, asked again; the scan compares it with [`BlockSource::size`] once it has
    /// read everything. A source whose size cannot change (an NBD export fixes it at the
    /// handshake) returns [`BlockSource::size`].
    fn current_size(&self) -> Result<u64>;

    /// The byte ranges that may hold data, ascending and within the disk. Everything else is a
    /// hole that reads as zeros and is never read. When the source cannot tell, the whole disk
    /// is one range: reporting too much costs reads, reporting too little a wrong map.
    fn data_extents(&self) -> Result<Vec<Range<u64>>>;

    /// Reads up to `buf.len()` bytes at `offset` into `buf` and returns how many it read, as
    /// `pread` does: fewer only where the disk ends (0 at or after its end). Safe to call from
    /// many threads at once.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize>;
}

/// A boxed source is a source: a caller can hold `Box<dyn BlockSource>` (a file or an NBD
/// export, chosen at run time) and scan it as it is.
impl<S: BlockSource + ?Sized> BlockSource for Box<S> {
    fn path(&self) -> &Path {
        (**self).path()
    }

    fn size(&self) -> u64 {
        (**self).size()
    }

    fn current_size(&self) -> Result<u64> {
        (**self).current_size()
    }

    fn data_extents(&self) -> Result<Vec<Range<u64>>> {
        (**self).data_extents()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        (**self).read_at(offset, buf)
    }
}
