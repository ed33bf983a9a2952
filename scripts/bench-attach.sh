#!/usr/bin/env bash
# The cost of attaching: `docker run --rm busybox true` through weaveproxy (with weaver, so every
# container gets ethwe) against the same command straight to the daemon, interleaved A-B-B-A in
# one run; and the start request alone (POST /containers/{id}/start, which the proxy answers once
# ethwe is up) against the daemon's own start. Prints a markdown section on stdout.
#
#   scripts/bench-attach.sh WEAVEPROXY WEAVER WEAVEWAIT_DIR DOCKER_HOST [RUNS]
# Called by scripts/bench.sh; needs the busybox test image (scripts/test.sh builds it).
set -euo pipefail
proxy_bin=$1 weaver_bin=$2 weavewait_dir=$3 host=$4 runs=${5:-50}
socket=${host#unix://}
log() { echo "bench-attach.sh: $*" >&2; }

if ! DOCKER_HOST=$host docker image inspect busybox:latest >/dev/null 2>&1; then
    echo
    echo "### Attach"
    echo
    echo "Not measured: the busybox test image is missing on $host (scripts/test.sh builds it)."
    exit 0
fi

work=$(mktemp -d /tmp/weave-bench-attach.XXXXXX)
bridge=wvb$$
bridge=${bridge:0:15}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
label=weave-bench-attach=$$
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    local left
    left=$(DOCKER_HOST=$host docker ps -aq --filter "label=$label" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -z $left ]] || DOCKER_HOST=$host docker rm -f $left >/dev/null 2>&1 || true
    "$weaver_bin" reset --weave-bridge "$bridge" --data-dir "$work/weaver" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/weaver" "$work/proxy"
"$weaver_bin" --http-addr "127.0.0.1:$port" --weave-bridge "$bridge" --data-dir "$work/weaver" \
    --docker-api "$host" --log-level warn 2>"$work/weaver.log" &
pids+=($!)
for _ in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/status") == 200 ]] && break
    sleep 0.1
done
"$proxy_bin" -H "unix://$work/proxy.sock" --docker-api "$host" --router-addr "127.0.0.1:$port" \
    --weave-bridge "$bridge" --weavewait-dir "$weavewait_dir" --data-dir "$work/proxy" \
    --log-level warn 2>"$work/proxy.log" &
pids+=($!)
for _ in $(seq 1 100); do
    DOCKER_HOST=unix://$work/proxy.sock docker version >/dev/null 2>&1 && break
    sleep 0.1
done
direct=$host proxied=unix://$work/proxy.sock

# ms_of COMMAND...: wall time in milliseconds, failing loudly if the command fails.
ms_of() {
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null || { log "failed: $*"; tail -n 5 "$work/proxy.log" >&2; exit 1; }
    end=$(date +%s%N)
    echo $(((end - start) / 1000))
}
run_true() { DOCKER_HOST=$1 docker run --rm --label "$label" busybox true; }
start_one() { # start_one HOST: create, then time the start request alone
    local id
    id=$(DOCKER_HOST=$1 docker create --label "$label" busybox sleep 600)
    curl -s -o /dev/null -w '%{time_total} %{http_code}\n' --unix-socket "${1#unix://}" \
        -X POST "http://docker/containers/$id/start" >"$work/start.out"
    [[ $(cut -d' ' -f2 "$work/start.out") == 204 ]] || { log "start via $1 failed"; exit 1; }
    awk '{ printf "%d\n", $1 * 1000000 }' "$work/start.out"
    DOCKER_HOST=$host docker rm -f "$id" >/dev/null
}

# quantiles FILE: "p50 p99" of microsecond samples, in milliseconds with one decimal.
quantiles() {
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
        printf "%.1f %.1f\n", p50 / 1000, p99 / 1000 }'
}

log "warming up"
for _ in 1 2 3; do run_true "$direct" >/dev/null; run_true "$proxied" >/dev/null; done
: >"$work/run.direct"; : >"$work/run.proxied"; : >"$work/start.direct"; : >"$work/start.proxied"
log "$runs runs each way against $host"
for i in $(seq 1 "$runs"); do
    if ((i % 2)); then order=(direct proxied); else order=(proxied direct); fi
    for side in "${order[@]}"; do
        ms_of run_true "${!side}" >>"$work/run.$side"
        start_one "${!side}" >>"$work/start.$side"
    done
done
addrs_left=$(curl -s "http://127.0.0.1:$port/ip")

read -r run_d50 run_d99 < <(quantiles "$work/run.direct")
read -r run_p50 run_p99 < <(quantiles "$work/run.proxied")
read -r st_d50 st_d99 < <(quantiles "$work/start.direct")
read -r st_p50 st_p99 < <(quantiles "$work/start.proxied")
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
p50_added=$(added "$run_d50" "$run_p50")
verdict=$(awk -v x="$p50_added" 'BEGIN { print (x < 50 ? "met" : "missed") }')

echo
echo "### Attach: \`docker run --rm busybox true\`, $runs runs each way, interleaved"
echo
echo "| measure | daemon p50 | proxy p50 | added p50 | daemon p99 | proxy p99 | added p99 | ratio p50 | target |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "| \`docker run --rm busybox true\` (ms) | $run_d50 | $run_p50 | $p50_added | $run_d99 | $run_p99 | $(added "$run_d99" "$run_p99") | $(ratio "$run_d50" "$run_p50") | < 50 ms added at p50: $verdict (the original: +276 ms) |"
echo "| start request until answered (ms); through the proxy that is until \`ethwe\` is up | $st_d50 | $st_p50 | $(added "$st_d50" "$st_p50") | $st_d99 | $st_p99 | $(added "$st_d99" "$st_p99") | $(ratio "$st_d50" "$st_p50") | |"
echo
echo "Addresses still allocated after the run (expected none): \`$addrs_left\`."
