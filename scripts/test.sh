#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the end-to-end suite run twice, against
# the machine's Docker daemon and against Docker 26 (API 1.45) started beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prereqs.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

compose_v2=$(scripts/docker26.sh compose)
if cargo nextest --version >/dev/null 2>&1; then
    profile=default
    [[ -n "${CI:-}" ]] && profile=ci
    run_tests=(cargo nextest run --workspace --locked --profile "$profile")
else
    run_tests=(cargo test --workspace --locked)
fi

# Each half is bounded, so that a hang ends in a failure with its output rather than in silence.
bounded() { timeout --kill-after=60 40m "$@"; }

echo "== the weaveworks/weaveexec image (weave launch runs it)"
scripts/build-image.sh >/dev/null

echo "== tests against the machine's daemon ($(docker version --format '{{.Server.Version}} API {{.Server.APIVersion}}'))"
SECONDS=0
WEAVE_TEST_COMPOSE_V2="$compose_v2" bounded "${run_tests[@]}"
echo "== ... took ${SECONDS}s"

started_26=
if ! scripts/docker26.sh status >/dev/null 2>&1; then
    started_26=1
fi
docker26=$(scripts/docker26.sh start)
cleanup() { [[ -n "$started_26" ]] && timeout 120 scripts/docker26.sh stop >&2 || true; }
trap cleanup EXIT
DOCKER_HOST="$docker26" scripts/build-image.sh >/dev/null
echo "== tests against Docker 26 ($docker26)"
SECONDS=0
WEAVE_TEST_DOCKER="$docker26" WEAVE_TEST_COMPOSE_V2="$compose_v2" bounded "${run_tests[@]}"
echo "== ... took ${SECONDS}s"
