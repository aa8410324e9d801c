#!/usr/bin/env bash
# Runs everything CI runs, from a fresh clone: formatting, lints, and the whole test suite
# (unit, property, end-to-end through the library and through the blockvault binary).
#
# Usage: scripts/test.sh
#
# Needs only the Rust toolchain (cargo, rustfmt, clippy). Tests work in temp directories and
# leave nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (workspace)"
cargo test --workspace --locked
