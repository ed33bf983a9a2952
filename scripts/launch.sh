#!/usr/bin/env bash
# Builds the weaveworks/weaveexec image and the weave command, launches weave's router and proxy
# as containers with `weave launch`, and prints how to point Docker at the proxy (`weave env`):
#
#   eval "$(scripts/launch.sh)"                   launch (again: a fresh build; addresses stay)
#   eval "$(scripts/launch.sh -H tcp://127.0.0.1:12375)" flags go to `weave launch`
#   scripts/launch.sh stop | reset                `weave stop` | `weave reset`
#
# The weave command is installed as /usr/local/bin/weave.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
stop | reset)
    exec weave "$1"
    ;;
esac

scripts/prereqs.sh >&2
image=$(scripts/build-image.sh)
install -m 0755 target/x86_64-unknown-linux-gnu/release/weave /usr/local/bin/weave
echo "built $image; weave is /usr/local/bin/weave" >&2

# A second run replaces the running containers with the new build; containers keep their
# addresses (the router reclaims them from the running containers).
weave stop >/dev/null 2>&1 || true
weave launch "$@" >&2
weave status >&2
echo "Point Docker at the proxy with: eval \"\$(weave env)\"  (undo: eval \"\$(weave env --restore)\")" >&2
weave env
