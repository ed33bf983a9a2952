#!/usr/bin/env bash
# docker26.sh — run a second, current Docker engine (Docker 26.1 / API 1.45)
# beside the machine's own Docker daemon, for weaveproxy's tests.
#
# The machine's own daemon (Docker 20.10 on /var/run/docker.sock) must never be
# disturbed, so everything this engine owns is private to $DOCKER26_DIR:
# socket, data-root, exec-root, pidfiles, its own containerd, its own
# daemon.json, its own pre-created bridge, its own cgroup parent and logs.
#
# Binaries come from Debian trixie (docker.io 26.1.5, containerd 1.7.24,
# docker-cli 26.1.5, docker-compose 2.26 = Compose v2), fetched with apt-get
# against a private source list / lists / cache (nothing under /etc/apt is
# touched) and unpacked with dpkg-deb -x; nothing is installed with dpkg.
# trixie's runc needs a newer glibc than this machine has, so it is never
# downloaded: the machine's own runc is used (and docker-init from tini).
#
# Usage: scripts/docker26.sh install|start|stop|status|compose|cli|env|purge
#   install  download + extract into $DOCKER26_DIR (skips if already there)
#   start    install if needed, start containerd + dockerd if not running,
#            wait until the API answers; prints ONE line: unix://<socket>
#   stop     kill its containers, stop dockerd and containerd (by pidfile),
#            remove the bridge this script created and the br-* bridges of
#            its user-defined networks; keeps the download cache and images
#   status   exit 0 (and print the socket URL) if the engine answers
#   compose  print the path of the Compose v2 `docker-compose` binary
#   cli      print the path of the Docker 26 `docker` CLI binary
#   env      print `export DOCKER26_...=...` lines (eval "$(... env)")
#   purge    stop, then delete data-root/state (images, containers), keep debs
#
# Environment (all optional):
#   DOCKER26_DIR             cache/state dir   (/var/cache/weave-test/docker26)
#   DOCKER26_BRIDGE          bridge name       (wv26br0)
#   DOCKER26_BRIDGE_CIDR     bridge address    (172.30.99.1/24)
#   DOCKER26_STORAGE_DRIVER  force a storage driver (default: dockerd chooses)
#   DOCKER26_SUITE           Debian suite to fetch from (trixie)
#   DOCKER26_MIRROR          Debian mirror (http://deb.debian.org/debian)
#   DOCKER26_START_TIMEOUT   seconds to wait for the API (60)
set -euo pipefail

DIR="${DOCKER26_DIR:-/var/cache/weave-test/docker26}"
BRIDGE="${DOCKER26_BRIDGE:-wv26br0}"
BRIDGE_CIDR="${DOCKER26_BRIDGE_CIDR:-172.30.99.1/24}"
SUITE="${DOCKER26_SUITE:-trixie}"
MIRROR="${DOCKER26_MIRROR:-http://deb.debian.org/debian}"
START_TIMEOUT="${DOCKER26_START_TIMEOUT:-60}"
# docker-cli is not strictly needed (the machine has a CLI) but gives a client
# that matches the engine; runc is deliberately absent (see header).
PACKAGES=(docker.io docker-cli containerd docker-compose)

ROOT="$DIR/root"       # dpkg-deb -x tree
BIN="$DIR/bin"         # put first on the daemons' PATH (host runc lives here)
RUN="$DIR/run"         # sockets + pidfiles
LOG="$DIR/log"
SOCK="$RUN/docker.sock"
CTR_SOCK="$RUN/containerd.sock"
DOCKERD_PID="$RUN/dockerd.pid"          # written by dockerd (--pidfile)
DOCKERD_SPAWNED="$RUN/dockerd.spawned"  # written by us at launch
CTR_PID="$RUN/containerd.pid"
BRIDGE_MARK="$RUN/bridge.created"
COMPOSE="$ROOT/usr/libexec/docker/cli-plugins/docker-compose"
CLI="$ROOT/usr/bin/docker"
STAMP="$ROOT/.docker26-complete"

log() { printf 'docker26: %s\n' "$*" >&2; }
# fetch_debs: packages from another suite, unpacked beside the machine's.
. "$(dirname "${BASH_SOURCE[0]}")/debian-fetch.sh"
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (bridges, mounts, daemons)"
[ "$BRIDGE" != docker0 ] || die "DOCKER26_BRIDGE must not be the machine's docker0"

# The daemons must see the extracted tree first (trixie's containerd-shim-runc-v2
# and docker-proxy, not the machine's older ones), then $BIN (host runc link),
# then the normal system dirs for everything else (docker-init, ip, mount...).
DAEMON_PATH="$BIN:$ROOT/usr/sbin:$ROOT/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Serialise concurrent invocations (parallel test binaries may all call start).
# spawn() closes fd 9 for the daemons so they never hold the lock.
with_lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "could not take $DIR/.lock"
}

# Install a Debian package of the MACHINE's own suite if a command is missing.
need_cmd() { # need_cmd COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing missing prerequisite $2 (for $1)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2
  fi
  command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

host_runc() {
  local r
  for r in /usr/sbin/runc /usr/bin/runc /usr/local/sbin/runc /usr/local/bin/runc; do
    [ -x "$r" ] && { echo "$r"; return 0; }
  done
  return 1
}

# ---------------------------------------------------------------- install ---
do_install() {
  need_cmd apt-get apt
  need_cmd dpkg-deb dpkg
  need_cmd flock util-linux
  [ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || {
    log "installing debian-archive-keyring"
    DEBIAN_FRONTEND=noninteractive apt-get install -y debian-archive-keyring >&2
  }
  # Runtime prerequisites from the machine's own suite.
  need_cmd ip iproute2
  host_runc >/dev/null || need_cmd runc runc
  # dockerd's `--init` binary is "docker-init" on PATH: the machine's (from
  # its docker.io, a link to tini-static) or else tini-static from `tini`.
  command -v docker-init >/dev/null 2>&1 || need_cmd tini-static tini

  if [ -f "$STAMP" ] && [ -x "$ROOT/usr/sbin/dockerd" ] && [ -x "$COMPOSE" ]; then
    log "already installed in $ROOT"
  else
    local t0
    t0=$(date +%s)
    fetch_debs "$DIR" "$SUITE" "$MIRROR" "${PACKAGES[@]}"
    # Never let a runc from the tree shadow the machine's own runc.
    find "$ROOT" -name runc -type f -delete
    "$ROOT/usr/sbin/dockerd" --version >&2
    "$ROOT/usr/bin/containerd" --version >&2
    "$COMPOSE" version >&2
    touch "$STAMP"
    log "installed in $(( $(date +%s) - t0 ))s"
  fi

  # $BIN/runc -> the machine's runc: containerd's shim finds "runc" via PATH.
  mkdir -p "$BIN"
  ln -sfn "$(host_runc)" "$BIN/runc"
  ln -sfn "$(command -v docker-init || command -v tini-static)" "$BIN/docker-init"
}

# ------------------------------------------------------------------ state ---
pid_alive() { # pid_alive PIDFILE EXE-BASENAME  -> prints pid if that process runs
  local pf=$1 name=$2 pid exe
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # Guard against pid reuse: it must be OUR binary from the extracted tree.
  case "$exe" in "$ROOT"/*/"$name"|"$ROOT"/*/"$name (deleted)") echo "$pid"; return 0 ;; esac
  return 1
}

api_up() {
  local cli=docker
  [ -x "$CLI" ] && cli="$CLI"
  "$cli" -H "unix://$SOCK" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1
}

ensure_bridge() {
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    # Re-use (e.g. left by an earlier start); make sure it is up and addressed.
    # `replace` is idempotent. A test with `ip addr show | grep -q` is not:
    # under pipefail, grep quitting at the first match can kill `ip` with
    # SIGPIPE, the pipeline "fails", and `ip addr add` then dies with
    # "Address already assigned" (a clean-clone CI run failed so).
    :
  else
    log "creating bridge $BRIDGE ($BRIDGE_CIDR)"
    ip link add name "$BRIDGE" type bridge
    touch "$BRIDGE_MARK"
  fi
  ip addr replace "$BRIDGE_CIDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# Guard for the machine's docker0: remember it before we start/stop dockerd,
# and if it vanished afterwards (a dockerd code path we did not foresee),
# recreate it as it was (MAC + IPv4 addresses) — the machine's daemon looks the
# bridge up by name, so this restores it — and complain loudly.
HOST_BRIDGE=docker0
snapshot_host_bridge() {
  HOST_BRIDGE_SNAP=""
  ip link show "$HOST_BRIDGE" >/dev/null 2>&1 || return 0
  HOST_BRIDGE_SNAP="$(ip -o link show "$HOST_BRIDGE" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')"
  HOST_BRIDGE_ADDRS="$(ip -o -4 addr show dev "$HOST_BRIDGE" | awk '{print $4}')"
}
check_host_bridge() {
  [ -n "${HOST_BRIDGE_SNAP:-}" ] || return 0
  ip link show "$HOST_BRIDGE" >/dev/null 2>&1 && return 0
  log "WARNING: $HOST_BRIDGE disappeared while docker26 ran; recreating it"
  ip link add name "$HOST_BRIDGE" address "$HOST_BRIDGE_SNAP" type bridge
  local a
  for a in $HOST_BRIDGE_ADDRS; do ip addr add "$a" brd + dev "$HOST_BRIDGE"; done
  ip link set "$HOST_BRIDGE" up
}

write_configs() {
  mkdir -p "$RUN" "$LOG" "$DIR/data" "$DIR/exec" "$DIR/containerd/root" "$DIR/containerd/state"
  # containerd: own root/state/sockets; CRI off (unused, noisy, wants CNI).
  cat >"$DIR/containerd.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
EOF
  # dockerd: an explicit (near-empty) config file, because by default dockerd
  # reads /etc/docker/daemon.json — the machine's, which sets data-root
  # /var/lib/docker and would make both engines share one store.
  local sd=""
  [ -n "${DOCKER26_STORAGE_DRIVER:-}" ] && sd="\"storage-driver\": \"$DOCKER26_STORAGE_DRIVER\","
  cat >"$DIR/daemon.json" <<EOF
{
  $sd
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"}
}
EOF
}

# ------------------------------------------------------------------ start ---
# spawn LOGFILE CMD... — start a daemon detached from the caller: own session
# (setsid) so it outlives this script and the caller's process group, stdin
# from /dev/null, output appended to LOGFILE, and EVERY other inherited fd
# closed (our lock on fd 9, and any pipe a test harness passed down, which
# would otherwise keep e.g. `$(docker26.sh start)` or a CI log reader waiting
# for EOF forever). The subshell execs setsid which execs the daemon without
# forking (a background job of a script is not a group leader), so $! is the
# daemon's pid.
spawn() {
  local logfile=$1; shift
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec env PATH="$DAEMON_PATH" setsid "$@" </dev/null >>"$logfile" 2>&1
  ) &
}

do_start() {
  do_install
  local t0 t0ms pid
  t0=$(date +%s)
  t0ms=$(date +%s%3N)

  if pid_alive "$DOCKERD_PID" dockerd >/dev/null && api_up; then
    log "already running"
    echo "unix://$SOCK"
    return 0
  fi

  write_configs
  snapshot_host_bridge
  ensure_bridge
  # The machine's runc needs to be the one found; show which (debugging aid).
  log "runc: $(readlink "$BIN/runc")"

  if pid=$(pid_alive "$CTR_PID" containerd); then
    log "containerd already running (pid $pid)"
  else
    rm -f "$CTR_PID" "$CTR_SOCK" "$CTR_SOCK.ttrpc"
    log "starting containerd (log $LOG/containerd.log)"
    spawn "$LOG/containerd.log" \
      "$ROOT/usr/bin/containerd" --config "$DIR/containerd.toml"
    echo $! >"$CTR_PID"
    local i
    for ((i = 0; i < 100; i++)); do
      [ -S "$CTR_SOCK" ] && break
      # Only liveness here: right after the spawn the pid is still the shell on its way to
      # exec'ing containerd, so the binary check of pid_alive would fail spuriously.
      kill -0 "$(cat "$CTR_PID")" 2>/dev/null || { tail -n 30 "$LOG/containerd.log" >&2; die "containerd exited"; }
      sleep 0.2
    done
    [ -S "$CTR_SOCK" ] || die "containerd socket $CTR_SOCK did not appear"
  fi

  if pid=$(pid_alive "$DOCKERD_PID" dockerd) || pid=$(pid_alive "$DOCKERD_SPAWNED" dockerd); then
    log "dockerd already running (pid $pid), waiting for the API"
  else
    rm -f "$DOCKERD_PID" "$DOCKERD_SPAWNED" "$SOCK"
    log "starting dockerd (log $LOG/dockerd.log)"
    # Why each flag:
    #  --config-file      not the machine's /etc/docker/daemon.json
    #  -H/--data-root/--exec-root/--pidfile   nothing shared with the host daemon
    #  --containerd       our own containerd (not the host's, not a managed one)
    #  -b BRIDGE          pre-created bridge; NEVER --bridge=none, which makes
    #                     dockerd delete the host's docker0
    #  (no --default-address-pool / "default-address-pools", deliberately: on
    #  every start after the first, moby's configureNetworking deletes the
    #  stale default network and, when address pools are configured and
    #  live-restore is off, calls removeDefaultBridgeInterface() — which
    #  deletes the HOST's docker0. User-defined networks therefore come from
    #  the stock pools; dockerd skips subnets already routed on the host, so
    #  they do not collide with the machine daemon's networks.)
    #  --iptables=false --ip-masq=false   leave the host daemon's rules alone
    #  --ip-forward=false do not touch the host's sysctls
    #  --cgroup-parent    containers under /docker26, not the host's /docker
    #  --mtu 1400         match eth0 (as the machine's daemon does)
    spawn "$LOG/dockerd.log" "$ROOT/usr/sbin/dockerd" \
      --config-file "$DIR/daemon.json" \
      -H "unix://$SOCK" \
      --data-root "$DIR/data" \
      --exec-root "$DIR/exec" \
      --pidfile "$DOCKERD_PID" \
      --containerd "$CTR_SOCK" \
      --bridge "$BRIDGE" \
      --iptables=false --ip-masq=false --ip6tables=false --ip-forward=false \
      --exec-opt native.cgroupdriver=cgroupfs \
      --cgroup-parent /docker26 \
      --mtu 1400
    # dockerd writes --pidfile itself (and refuses to start if that file names
    # a live process), so the pid we launched goes to a separate file that
    # `stop` also honours, e.g. when dockerd hangs before writing its own.
    echo $! >"$DOCKERD_SPAWNED"
  fi

  local deadline=$((t0 + START_TIMEOUT))
  trap check_host_bridge EXIT
  until api_up; do
    # Liveness only, for the same reason as containerd's above.
    local spawned
    spawned=$(cat "$DOCKERD_SPAWNED" 2>/dev/null || true)
    if ! { [ -n "$spawned" ] && kill -0 "$spawned" 2>/dev/null; } \
      && ! pid_alive "$DOCKERD_PID" dockerd >/dev/null; then
      tail -n 40 "$LOG/dockerd.log" >&2
      die "dockerd exited during start (see $LOG/dockerd.log)"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 40 "$LOG/dockerd.log" >&2; die "API did not answer within ${START_TIMEOUT}s"; }
    sleep 0.25
  done
  check_host_bridge
  log "up in $(( $(date +%s%3N) - t0ms )) ms: API $("${CLI}" -H "unix://$SOCK" version --format '{{.Server.APIVersion}}' 2>/dev/null || echo '?')"
  echo "unix://$SOCK"
}

# ------------------------------------------------------------------- stop ---
stop_pid() { # stop_pid PIDFILE NAME TIMEOUT
  local pf=$1 name=$2 timeout=$3 pid i
  if pid=$(pid_alive "$pf" "$name"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 5; i++)); do
      [ -d "/proc/$pid" ] || break
      sleep 0.2
    done
    if [ -d "/proc/$pid" ]; then
      log "$name did not stop in ${timeout}s, killing"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$pf"
}

do_stop() {
  local cli=docker p b
  [ -x "$CLI" ] && cli="$CLI"
  snapshot_host_bridge
  trap check_host_bridge EXIT
  if pid_alive "$DOCKERD_PID" dockerd >/dev/null && api_up; then
    # dockerd keeps the bridges of user-defined networks (br-<id>, e.g. compose
    # projects' *_default) across restarts; note OUR ones so they can go once
    # dockerd is down (it recreates them on the next start).
    "$cli" -H "unix://$SOCK" network ls -q --filter driver=bridge 2>/dev/null |
      while read -r id; do echo "br-${id:0:12}"; done >"$RUN/bridges" || true
    # On SIGTERM dockerd would give each container its full stop timeout (10 s
    # for a PID 1 that ignores SIGTERM, like `sleep`); this is a throw-away test
    # engine, so kill them at once to keep `stop` quick.
    "$cli" -H "unix://$SOCK" ps -q 2>/dev/null | xargs -r "$cli" -H "unix://$SOCK" kill >/dev/null 2>&1 || true
  fi
  stop_pid "$DOCKERD_PID" dockerd 40
  stop_pid "$DOCKERD_SPAWNED" dockerd 40
  # Shims of our containerd (only if dockerd was killed with containers up):
  # matched by OUR containerd socket in their command line, killed by pid.
  for p in /proc/[0-9]*; do
    [ -r "$p/cmdline" ] || continue
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -F -- "-address $CTR_SOCK " >/dev/null; then
      log "killing leftover shim ${p#/proc/}"
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  stop_pid "$CTR_PID" containerd 20
  # Anything still mounted under our dir (overlay layers, netns, shm) would
  # block a later purge; lazily unmount, deepest first. Only OUR dir.
  awk -v d="$DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ -f "$BRIDGE_MARK" ]; then
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
      log "removing bridge $BRIDGE"
      ip link del "$BRIDGE" || true
    fi
    rm -f "$BRIDGE_MARK"
  fi
  if [ -f "$RUN/bridges" ]; then
    while read -r b; do
      # Only br-<12 hex> names that our own daemon reported.
      [[ "$b" =~ ^br-[0-9a-f]{12}$ ]] || continue
      ip link show "$b" >/dev/null 2>&1 && { log "removing network bridge $b"; ip link del "$b" || true; }
    done <"$RUN/bridges"
    rm -f "$RUN/bridges"
  fi
  # Our (empty) cgroup-parent dirs; rmdir refuses if anything is still inside.
  for p in /sys/fs/cgroup/*/docker26; do
    if [ -d "$p" ]; then rmdir "$p" 2>/dev/null || true; fi
  done
  rm -f "$SOCK" "$CTR_SOCK" "$CTR_SOCK.ttrpc"
  log "stopped"
}

do_purge() {
  do_stop
  log "removing data and state (keeping downloads)"
  rm -rf "$DIR/data" "$DIR/exec" "$DIR/containerd" "$RUN" "$LOG"
}

do_env() {
  # %q so the lines are safe to eval even if $DOCKER26_DIR has odd characters.
  printf 'export DOCKER26_DIR=%q\n' "$DIR"
  printf 'export DOCKER26_HOST=%q\n' "unix://$SOCK"
  printf 'export DOCKER26_SOCK=%q\n' "$SOCK"
  printf 'export DOCKER26_API_VERSION=%q\n' "1.45"
  printf 'export DOCKER26_CLI=%q\n' "$CLI"
  printf 'export DOCKER26_COMPOSE=%q\n' "$COMPOSE"
  printf 'export DOCKER26_BRIDGE=%q\n' "$BRIDGE"
}

cmd="${1:-}"
case "$cmd" in
  install) with_lock; do_install ;;
  start)   with_lock; do_start ;;
  stop)    with_lock; do_stop ;;
  purge)   with_lock; do_purge ;;
  status)
    if pid_alive "$DOCKERD_PID" dockerd >/dev/null && api_up; then echo "unix://$SOCK"; else log "not running"; exit 1; fi ;;
  compose) [ -x "$COMPOSE" ] || { with_lock; do_install; }; echo "$COMPOSE" ;;
  cli)     [ -x "$CLI" ] || { with_lock; do_install; }; echo "$CLI" ;;
  env)     do_env ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p' >&2; exit 2 ;;
esac
