#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building and testing weaveproxy, and makes sure
# a Docker daemon answers. Idempotent: does nothing on a machine that already has everything.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "prereqs: $*" >&2; }

missing=()
command -v docker >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v tmux >/dev/null || missing+=(tmux)
command -v script >/dev/null || missing+=(bsdutils)
command -v ip >/dev/null || missing+=(iproute2)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
command -v file >/dev/null || missing+=(file)
command -v curl >/dev/null || missing+=(curl)
command -v iptables >/dev/null || missing+=(iptables)
command -v nsenter >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# A daemon that is running but does not answer (a deadlocked one) would hang every test: say so.
rc=0
timeout 60 docker info >/dev/null 2>&1 || rc=$?
if ((rc == 124)); then
    log "the Docker daemon does not answer within 60s: restart it (systemctl restart docker)"
    exit 1
fi
# A machine where the engine is installed but not started (CI images start it; others may not).
if ((rc != 0)); then
    log "starting dockerd"
    mkdir -p /var/log/weave-test
    nohup dockerd >/var/log/weave-test/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/weave-test/dockerd.log"; exit 1; }
fi

# The second engine (Docker 26) and Compose v2 the suite also runs against.
scripts/docker26.sh install >&2

# etcd 3.5 (from trixie) for the etcd crate's tests: real members on loopback.
scripts/etcd.sh install >/dev/null

# The test runner: nextest gives each test a time limit and runs the tests that share the host's
# weave (one bridge, one socket, port 6784) one at a time; `cargo test` would do neither.
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest >&2
fi
