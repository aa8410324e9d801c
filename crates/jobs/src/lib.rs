//! Jobs and the catalog (work in progress).
