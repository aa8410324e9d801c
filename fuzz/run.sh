#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each with cargo fuzz (libFuzzer, address
# sanitizer), one after the other, from seed corpora made of the format fixtures in
# testdata/formats and freshly encoded values; then says which targets found something.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 seconds, every target)
#
# cargo fuzz needs a nightly Rust toolchain. Without one, this script says so and exits 2:
# on stable, `cargo check --manifest-path fuzz/Cargo.toml --no-default-features` checks that
# the targets compile (scripts/test.sh does), and the mutation test
# (`cargo test -p blockvault-core --test mutations`, BLOCKVAULT_MUTATIONS=N for more cases)
# checks the same properties on mutated encodings. cargo-fuzz is installed with
# `cargo install` when missing.
#
# A crash leaves its input in fuzz/artifacts/TARGET/; replay it with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`. The corpora grow in
# fuzz/corpus/TARGET/ (not committed) and are reused by the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
    echo "usage: fuzz/run.sh [SECONDS] [TARGET...]; $seconds is not a number of seconds" >&2
    exit 64
fi
all=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^blockvault-fuzz$')
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets <<<"$all"
fi
for target in "${targets[@]}"; do
    if ! grep -qx "$target" <<<"$all"; then
        echo "no fuzz target $target; the targets are:" $all >&2
        exit 64
    fi
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    cat >&2 <<'EOF'
fuzz/run.sh: cargo fuzz needs a nightly Rust toolchain, and there is none here
(`rustup toolchain list` shows the toolchains; `rustup toolchain install nightly` adds one
where the network allows it). Nothing was fuzzed.

What runs on stable instead:
  cargo check --manifest-path fuzz/Cargo.toml --no-default-features   # the targets compile
  BLOCKVAULT_MUTATIONS=100000 cargo test -p blockvault-core --test mutations
EOF
    exit 2
fi
echo "nightly: $(cargo +nightly --version)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

# Seed corpora: the encodings the mutation test starts from (fixtures and fresh values).
echo "writing the seed corpora into fuzz/corpus/"
BLOCKVAULT_FUZZ_SEEDS="$PWD/fuzz/corpus" \
    cargo test --quiet -p blockvault-core --test mutations write_fuzz_seeds -- \
    --exact >/dev/null
# The streaming target's input starts with its cuts and size hint: none, and the true size.
mkdir -p fuzz/corpus/block_map_stream
for seed in fuzz/corpus/block_map/*; do
    { printf '\0\0'; cat "$seed"; } >"fuzz/corpus/block_map_stream/$(basename "$seed")"
done

failed=()
for target in "${targets[@]}"; do
    echo
    echo "== $target: ${seconds}s"
    if ! cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
    fi
done

echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: found something in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz/run.sh: ${#targets[@]} targets, ${seconds}s each, nothing found"
