#!/usr/bin/env bash
# Benchmarks weaveproxy against the Docker daemon it fronts, in the same run, and rewrites the
# results section of BENCHMARKS.md (everything below its "results" marker; the method above it is
# kept). Builds the proxy and the bench binary in release mode first.
#
#   scripts/bench.sh                  the machine's daemon, then Docker 26 (scripts/docker26.sh)
#   scripts/bench.sh --no-docker26    the machine's daemon only
#   scripts/bench.sh ping streams     only those parts (ping, list, streams, load, attach); prints
#                                     the tables and leaves BENCHMARKS.md alone
#
# Docker 26 is started if it is not running and stopped again afterwards only if this script
# started it, so a test run using it at the same time is not disturbed.
set -euo pipefail
cd "$(dirname "$0")/.."

docker26=1
parts=()
for arg in "$@"; do
    case "$arg" in
        --no-docker26) docker26= ;;
        ping | list | streams | load | attach) parts+=("$arg") ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p' >&2; exit 2 ;;
    esac
done

log() { echo "bench.sh: $*" >&2; }

scripts/prereqs.sh

work=$(mktemp -d /tmp/weave-bench.XXXXXX)
work_ww=$work/weavewait
log "building weaveproxy, weaver, weavewait and bench (release)"
# weavewait too: the proxy refuses to start without the builds it mounts into containers.
build_json=$(cargo build --release --locked -p weaveproxy -p router -p weavewait -p weave-tests --bins \
    --message-format=json-render-diagnostics)
executable() { # the path cargo reports for binary $1
    grep -o "\"executable\":\"[^\"]*/$1\"" <<<"$build_json" | tail -n 1 | cut -d'"' -f4
}
bench=$(executable bench)
proxy=$(executable weaveproxy)
weaver=$(executable weaver)
[[ -x "$bench" && -x "$proxy" && -x "$weaver" ]] || { log "cargo did not report the binaries"; exit 1; }
scripts/build-weavewait.sh "$work_ww" 2>/dev/null

started_26=
current_host=
current_run=

# If the bench dies before its own cleanup, stop its proxy (by the pid it wrote, and only if that
# pid is still a weaveproxy) and remove its containers (by the label unique to this run).
cleanup() {
    local pidfile=$work/proxy.pid pid
    if [[ -s $pidfile ]]; then
        pid=$(cat "$pidfile")
        if [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */weaveproxy ]]; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    fi
    if [[ -n $current_run ]]; then
        local left
        left=$(DOCKER_HOST=$current_host docker ps -aq --filter "label=weave-bench=$current_run" 2>/dev/null || true)
        if [[ -n $left ]]; then
            log "removing containers left by an interrupted run"
            # shellcheck disable=SC2086
            DOCKER_HOST=$current_host docker rm -f -v $left >/dev/null 2>&1 || true
        fi
    fi
    if [[ -n $started_26 ]]; then
        scripts/docker26.sh stop >&2 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# run_bench HOST OUTFILE: one full bench against the daemon at HOST.
run_bench() {
    current_host=$1
    current_run=bench-$$-$RANDOM
    log "benchmarking against $current_host"
    local bench_parts=() part attach=1
    if ((${#parts[@]})); then
        attach=
        for part in "${parts[@]}"; do
            if [[ $part == attach ]]; then attach=1; else bench_parts+=("$part"); fi
        done
    fi
    : >"$2"
    if ((${#bench_parts[@]})) || ((${#parts[@]} == 0)); then
        WEAVE_TEST_DOCKER=$current_host WEAVEPROXY_BIN=$proxy \
            WEAVE_BENCH_RUN=$current_run WEAVE_BENCH_PIDFILE=$work/proxy.pid \
            "$bench" "${bench_parts[@]}" >"$2"
    fi
    current_run=
    if [[ -n $attach ]]; then
        scripts/bench-attach.sh "$proxy" "$weaver" "$work_ww" "$current_host" >>"$2"
    fi
}

server_version() { # server_version HOST
    DOCKER_HOST=$1 docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
machine_host=unix:///var/run/docker.sock
run_bench "$machine_host" "$work/machine.md"

have_26=
if [[ -n $docker26 ]]; then
    scripts/docker26.sh status >/dev/null 2>&1 || started_26=1
    if host_26=$(scripts/docker26.sh start); then
        run_bench "$host_26" "$work/docker26.md"
        have_26=1
    else
        log "Docker 26 did not start; its results are left out"
        started_26=
    fi
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

if ((${#parts[@]})); then
    cat "$work"/*.md
    exit 0
fi

marker='<!-- results: everything below this line is written by scripts/bench.sh -->'
{
    if grep -qF "$marker" BENCHMARKS.md 2>/dev/null; then
        awk -v marker="$marker" '{ print } $0 == marker { exit }' BENCHMARKS.md
    else
        printf '# Benchmarks\n\n%s\n' "$marker"
    fi
    echo
    echo "## Results"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench.sh\` at commit" \
        "\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git diff --quiet HEAD -- proxy 2>/dev/null || echo ' (proxy/ modified)')."
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPUs (\`nproc\`) | $(nproc) × $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1) |"
    echo "| memory (\`free -g\`) | $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}') |"
    echo "| kernel | $(uname -sr) |"
    echo "| Docker CLI | $(docker version --format '{{.Client.Version}}' 2>/dev/null) |"
    echo "| Docker daemon (machine) | $(server_version "$machine_host") |"
    [[ -n $have_26 ]] && echo "| Docker daemon (second engine) | $(server_version "$host_26") |"
    echo "| load average (1, 5, 15 min) | before $load_before, after $load_after |"
    echo "| weaveproxy | release build, \`--log-level warn\`, unix socket in front of a unix socket |"
    echo
    echo "## Against the machine's daemon, Docker $(server_version "$machine_host")"
    cat "$work/machine.md"
    if [[ -n $have_26 ]]; then
        echo
        echo "## Against Docker $(server_version "$host_26")"
        cat "$work/docker26.md"
    fi
} >"$work/BENCHMARKS.md"
mv "$work/BENCHMARKS.md" BENCHMARKS.md
log "wrote BENCHMARKS.md"
