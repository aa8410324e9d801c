//! The local snapshot tier (work in progress).
