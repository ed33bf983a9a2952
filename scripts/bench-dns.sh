#!/usr/bin/env bash
# Benchmarks weaveDNS (release build): answer latency and queries per second for a name it
# holds, against a name it forwards to an upstream server, in the same run. Prints a markdown
# table (copied into BENCHMARKS.md by hand). Needs root (the routers create bridges) and Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
build_json=$(cargo build --release --locked -p router -p weave-tests --bin weaver --bin dnsbench \
    --message-format=json-render-diagnostics)
executable() { # the path cargo reports for binary $1
    grep -o "\"executable\":\"[^\"]*/$1\"" <<<"$build_json" | tail -n 1 | cut -d'"' -f4
}
WEAVER_BIN=$(executable weaver) exec "$(executable dnsbench)"
