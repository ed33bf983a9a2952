#!/usr/bin/env bash
# Builds the three static weavewait binaries and lays them out as the weavewait volume holds them:
#   OUT/w/w (ethwe up + multicast route), OUT/w-nomcast/w (ethwe up), OUT/w-noop/w (no wait).
# OUT is the first argument, default target/weavewait. CARGO_TARGET_DIR is honoured, so a caller
# that must not contend for the main build directory's lock (the test suite) can use its own.
# glibc is linked in statically (crt-static); naming the target keeps proc-macros dynamic.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/weavewait}
target_dir=${CARGO_TARGET_DIR:-target}
triple=x86_64-unknown-linux-gnu

RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked -p weavewait --target "$triple" --bins

release="$target_dir/$triple/release"
for pair in w:weavewait w-nomcast:weavewait-nomcast w-noop:weavewait-noop; do
    dir=${pair%%:*}
    bin=${pair#*:}
    mkdir -p "$out/$dir"
    # Copy, then rename into place: a container may be running the previous copy (bind-mounted),
    # and a rename leaves that inode alone where an in-place write would fail or corrupt it.
    install -m 0755 "$release/$bin" "$out/$dir/.w.$$"
    mv -f "$out/$dir/.w.$$" "$out/$dir/w"
done
ls -l "$out"/*/w >&2
