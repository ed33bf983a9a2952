#!/usr/bin/env bash
# Measures the control plane of a weave network of many hosts (issue 13): namespace hosts on one
# underlay, three etcd members, a router each (tests/src/bin/bench-mesh.rs). Prints markdown
# tables (copied into BENCHMARKS.md by hand). Needs root (namespaces, bridges) and etcd 3.5
# (`scripts/etcd.sh install`). Arguments go to the bench: --hosts N (32) --joins N (8)
# --names N (50) --containers N (100) --ping-from N (4; 0 for none).
#
# Debug builds, as the test suites use: the bench's harness cleans up on a panic only when it
# unwinds, and the release profile aborts.
set -euo pipefail
cd "$(dirname "$0")/.."
build_json=$(cargo build --locked -p router -p weave-tests --bin weaver --bin bench-mesh \
    --message-format=json-render-diagnostics)
executable() { # the path cargo reports for binary $1
    grep -o "\"executable\":\"[^\"]*/$1\"" <<<"$build_json" | tail -n 1 | cut -d'"' -f4
}
WEAVER_BIN=$(executable weaver) exec "$(executable bench-mesh)" "$@"
