#!/usr/bin/env bash
# etcd.sh — the etcd 3.5 server the etcd crate's tests (and later the multi-host router's) run.
#
# bookworm packages etcd 3.4.23; weave targets 3.5, whose JSON gateway serves /v3/... (see
# etcd/src/lib.rs). The binary comes from Debian trixie's `etcd-server`, fetched with apt-get
# against a private source list / lists / cache (nothing under /etc/apt is touched, nothing is
# installed with dpkg) and unpacked with dpkg-deb -x, as scripts/docker26.sh does. etcd is a Go
# binary that needs only libc.so.6, so trixie's runs on bookworm.
#
# Usage: scripts/etcd.sh install|path|version
#   install  download + extract into $WEAVE_ETCD_DIR (skips if already there); prints the path
#   path     print the path of the etcd binary (whether or not it is installed yet)
#   version  print `etcd --version` of the installed binary
#
# Environment (all optional):
#   WEAVE_ETCD_DIR     cache dir      (/var/cache/weave-test/etcd)
#   WEAVE_ETCD_SUITE   Debian suite   (trixie)
#   WEAVE_ETCD_MIRROR  Debian mirror  (http://deb.debian.org/debian)
set -euo pipefail

DIR="${WEAVE_ETCD_DIR:-/var/cache/weave-test/etcd}"
SUITE="${WEAVE_ETCD_SUITE:-trixie}"
MIRROR="${WEAVE_ETCD_MIRROR:-http://deb.debian.org/debian}"
ROOT="$DIR/root"
ETCD="$ROOT/usr/bin/etcd"
STAMP="$ROOT/.etcd-complete"

log() { printf 'etcd.sh: %s\n' "$*" >&2; }
# fetch_debs: packages from another suite, unpacked beside the machine's.
. "$(dirname "${BASH_SOURCE[0]}")/debian-fetch.sh"
die() { log "error: $*"; exit 1; }

# Parallel test binaries or a CI step may all ask for the install at once.
with_lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "could not take $DIR/.lock"
}

# The binary is 3.5 or it is not ours: a 3.4 would serve the gateway under other paths.
check_version() {
  local v
  v=$("$ETCD" --version 2>/dev/null | sed -n 's/^etcd Version: //p')
  case "$v" in
    3.5.*) return 0 ;;
    *) log "$ETCD reports version '${v:-none}', not 3.5.x"; return 1 ;;
  esac
}

do_install() {
  if [ -f "$STAMP" ] && [ -x "$ETCD" ] && check_version 2>/dev/null; then
    echo "$ETCD"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "must run as root (apt-get download into $DIR)"
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb"
  [ -s /usr/share/keyrings/debian-archive-keyring.gpg ] ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y debian-archive-keyring >&2
  local t0
  t0=$(date +%s)
  # etcd-client (etcdctl) only as a debugging aid beside the server.
  fetch_debs "$DIR" "$SUITE" "$MIRROR" etcd-server etcd-client
  check_version || die "the downloaded etcd does not run here"
  "$ETCD" --version >&2
  touch "$STAMP"
  log "installed in $(( $(date +%s) - t0 ))s"
  echo "$ETCD"
}

case "${1:-}" in
  install) with_lock; do_install ;;
  path)    echo "$ETCD" ;;
  version) "$ETCD" --version ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p' >&2; exit 2 ;;
esac
