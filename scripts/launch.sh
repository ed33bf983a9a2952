#!/usr/bin/env bash
# Builds weaveproxy (static, release) and launches it on this host in front of the Docker
# daemon, then prints how to point Docker at it. Run it again to restart with a fresh build.
#
#   scripts/launch.sh [weaveproxy flags...]     e.g. scripts/launch.sh -H tcp://127.0.0.1:12375
#   scripts/launch.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=/var/run/weave
LOG=/var/log/weave/weaveproxy.log
PIDFILE=$RUN_DIR/weaveproxy.pid

stop() {
    if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        kill -TERM "$(cat "$PIDFILE")"
        for _ in $(seq 1 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
}

if [[ "${1:-}" == stop ]]; then
    stop
    echo "weaveproxy stopped; restore your client with: unset DOCKER_HOST" >&2
    exit 0
fi

scripts/prereqs.sh
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked -p weaveproxy --target x86_64-unknown-linux-gnu >&2
bin=target/x86_64-unknown-linux-gnu/release/weaveproxy
scripts/build-weavewait.sh target/weavewait 2>/dev/null

stop
mkdir -p "$RUN_DIR" "$(dirname "$LOG")"
args=("$@")
((${#args[@]})) || args=(-H unix://$RUN_DIR/weave.sock)
# Until the router exists (it attaches containers to the weave network), only containers that
# ask for weave with -e WEAVE_CIDR=... are rewritten to wait for it; the rest pass untouched.
args+=(--weavewait-dir target/weavewait --no-default-ipalloc)
# The proxy must reach the daemon itself, not a DOCKER_HOST left pointing at an older proxy.
env -u DOCKER_HOST nohup "$bin" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

# Wait until the first listen address answers like the daemon does.
host=$(printf '%s\n' "${args[@]}" | grep -E '^(unix|tcp)://|^/' | head -n1 || true)
[[ $host == /* ]] && host="unix://$host"
host=${host:-unix://$RUN_DIR/weave.sock}
for _ in $(seq 1 100); do
    DOCKER_HOST=$host docker version >/dev/null 2>&1 && break
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -n 20 "$LOG" >&2; exit 1; }
    sleep 0.1
done
DOCKER_HOST=$host docker version >/dev/null 2>&1 || { tail -n 20 "$LOG" >&2; exit 1; }

echo "weaveproxy is running (pid $(cat "$PIDFILE"), log $LOG). Point Docker at it with:" >&2
echo "export DOCKER_HOST=${host/0.0.0.0/127.0.0.1}"
