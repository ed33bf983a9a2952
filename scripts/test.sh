#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the end-to-end suite run twice, against
# the machine's Docker daemon and against Docker 26 (API 1.45) started beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The run has one time budget, below CI's own limit of 90 minutes. Every long step gets what is
# left of it, so that a hang ends in a failure that says where it hung, not in a silent timeout.
budget=${WEAVE_TEST_BUDGET:-4800}
deadline=$((SECONDS + budget))
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

# step NAME COMMAND...: runs COMMAND within the budget and says how long it took. Its output
# reaches ours through a file, so that a process it leaves behind (a test killed in the middle
# of its work) cannot hold our output open after we are done. With WATCH_DOCKER set to a daemon
# address, the daemon is watched while the step runs (see watch_daemon).
step() {
    local name=$1 left=$((deadline - SECONDS)) started=$SECONDS rc=0 out pid watcher=
    shift
    echo "== $name"
    if ((left < 60)); then
        echo "== out of time (budget ${budget}s) before: $name"
        return 124
    fi
    out=$(mktemp /tmp/weave-test-step.XXXXXX)
    timeout --kill-after=30 "$left" "$@" >"$out" 2>&1 </dev/null &
    pid=$!
    if [[ -n "${WATCH_DOCKER:-}" ]]; then
        watch_daemon "$WATCH_DOCKER" "$pid" &
        watcher=$!
    fi
    tail -n +1 -f --pid="$pid" "$out"
    wait "$pid" || rc=$?
    [[ -n "$watcher" ]] && { kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; }
    rm -f "$out"
    if ((rc == 124 || rc == 137)); then
        echo "== out of time (budget ${budget}s) in: $name"
    fi
    echo "== $name: $((SECONDS - started))s, exit $rc"
    return "$rc"
}

# Docker 20.10 up to 20.10.26 can deadlock in libnetwork under container churn (moby/moby#46661),
# and then every call to it hangs. A daemon that has not answered for three minutes stops the
# step at once, with the daemon's goroutines printed, instead of every test waiting out its limit.
watch_daemon() { # watch_daemon HOST PID
    local host=$1 pid=$2 misses=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 15
        if timeout 30 docker -H "$host" info >/dev/null 2>&1; then
            misses=0
        else
            misses=$((misses + 1))
        fi
        if ((misses >= 4)); then
            echo "== the daemon at $host has not answered for over 3 minutes: stopping the tests"
            dump_daemons
            kill "$pid" 2>/dev/null || true
            return
        fi
    done
}

# Asks every dockerd for its goroutines (SIGUSR1 only makes it write them to a file) and prints
# those that have waited minutes on a lock or a channel send, which is what a deadlock looks like.
dump_daemons() {
    local marker
    marker=$(mktemp)
    pkill -USR1 -x dockerd || true
    sleep 3
    find /var/run/docker /var/cache/weave-test -maxdepth 3 -name 'goroutine-stacks-*' \
        -newer "$marker" 2>/dev/null | while read -r dump; do
        echo "== goroutines stuck on a lock, from $dump"
        awk -v RS= '/^goroutine [0-9]+ \[(semacquire|sync\.(RW)?Mutex[^,]*|chan send), [0-9]+ minutes\]/' \
            "$dump" | head -n 400
    done
    rm -f "$marker"
}

# What a killed step can leave running: this checkout's own binaries (tests, proxies, routers).
reap() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        [[ "$exe" == "$target_dir/"* ]] && { kill -9 "${p#/proc/}" 2>/dev/null || true; }
    done
    return 0
}

started_26=
cleanup() {
    reap
    if [[ -n "$started_26" ]]; then
        timeout 120 scripts/docker26.sh stop >&2 || true
    fi
}
trap cleanup EXIT

step "prerequisites" scripts/prereqs.sh
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings

compose_v2=$(scripts/docker26.sh compose)
profile=default
[[ -n "${CI:-}" ]] && profile=ci
run_tests=(cargo nextest run --workspace --locked --profile "$profile")

machine_docker=${DOCKER_HOST:-unix:///var/run/docker.sock}
WATCH_DOCKER="$machine_docker" step "the weaveworks/weaveexec image (weave launch runs it)" scripts/build-image.sh
version=$(timeout 60 docker version --format '{{.Server.Version}} API {{.Server.APIVersion}}')
# The libnetwork deadlock (see watch_daemon) needs two containers joining or leaving a network at
# the same moment: against a daemon that has it, fewer tests run at once.
machine_threads=()
IFS='.+~- ' read -r major minor patch _ <<<"$version"
if [[ "$major.$minor.$patch" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] &&
    ((major < 20 || (major == 20 && minor == 10 && patch < 27))); then
    machine_threads=(--test-threads 2)
fi
WATCH_DOCKER="$machine_docker" WEAVE_TEST_COMPOSE_V2="$compose_v2" \
    step "tests against the machine's daemon ($version)" "${run_tests[@]}" "${machine_threads[@]}"

if ! scripts/docker26.sh status >/dev/null 2>&1; then
    started_26=1
fi
docker26=$(timeout 300 scripts/docker26.sh start)
DOCKER_HOST="$docker26" WATCH_DOCKER="$docker26" step "the image, on Docker 26" scripts/build-image.sh
WATCH_DOCKER="$docker26" WEAVE_TEST_DOCKER="$docker26" WEAVE_TEST_COMPOSE_V2="$compose_v2" \
    step "tests against Docker 26 ($docker26)" "${run_tests[@]}"
