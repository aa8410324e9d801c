//! What the catalog's tests share: a catalog in a temp dir, times and names from text.

use blockvault_core::VmName;
use jiff::Timestamp;

use super::Catalog;

pub(super) fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

pub(super) fn vm(name: &str) -> VmName {
    name.parse().expect("vm")
}

pub(super) fn catalog() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(dir.path().join("catalog.sqlite")).expect("open");
    (dir, catalog)
}
