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
  local t0 apt a deb
  t0=$(date +%s)
  apt="$DIR/apt"
  rm -rf "$apt" "$DIR/debs" "$ROOT"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$DIR/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" \
    >"$apt/sources.list"
  # Private everything, as in docker26.sh; status=/dev/null so the machine's installed packages
  # do not influence the download.
  a=(-o "Dir::Etc::SourceList=$apt/sources.list"
     -o "Dir::Etc::SourceParts=/dev/null"
     -o "Dir::State::Lists=$apt/lists"
     -o "Dir::Cache=$apt/cache"
     -o "Dir::State::status=/dev/null"
     -o "APT::Sandbox::User=root"
     -o "Acquire::Languages=none"
     -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
     -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
     -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
     -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false")
  log "apt-get update ($SUITE, private lists in $apt)"
  apt-get "${a[@]}" -q update >&2
  # etcd-client (etcdctl) only as a debugging aid beside the server.
  log "downloading etcd-server etcd-client"
  (cd "$DIR/debs" && apt-get "${a[@]}" -q download etcd-server etcd-client >&2)
  mkdir -p "$ROOT"
  for deb in "$DIR/debs"/*.deb; do
    log "extracting $(basename "$deb")"
    dpkg-deb -x "$deb" "$ROOT"
  done
  rm -rf "$apt"
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
