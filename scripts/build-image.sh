#!/usr/bin/env bash
# Builds the weaveworks/weaveexec image (FROM scratch): the weave command, which is also the router
# weaver and the proxy weaveproxy when called by those names (links to it), and the three
# weavewait builds, all static; and etcd (Debian's, with the libc it needs) for the store. Then
# tags it weaveworks/weaveexec:<version> and :latest in the daemon DOCKER_HOST points at.
#   scripts/build-image.sh            build and tag
# CARGO_TARGET_DIR is honoured. Prints the image reference on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image=${DOCKERHUB_USER:-weaveworks}/weaveexec

RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$triple" -p weave -p weavewait --bins >&2

release="$target_dir/$triple/release"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/home/weave" "$context/w" "$context/w-nomcast" "$context/w-noop"
install -m 0755 "$release/weave" "$context/home/weave/"
ln -s weave "$context/home/weave/weaver"
ln -s weave "$context/home/weave/weaveproxy"
install -m 0755 "$release/weavewait" "$context/w/w"
install -m 0755 "$release/weavewait-nomcast" "$context/w-nomcast/w"
install -m 0755 "$release/weavewait-noop" "$context/w-noop/w"
# etcd, for the `weavestore` container a router runs when another host joins it: Debian's Go
# binary needs only libc and the loader, copied beside it from the machine the image is built on.
etcd=$(scripts/etcd.sh install)
install -D -m 0755 "$etcd" "$context/usr/bin/etcd"
for lib in $(ldd "$etcd" | grep -o '/[^ ]*'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$context$lib"
done
"$context/usr/bin/etcd" --version >/dev/null
cp image/Dockerfile "$context/Dockerfile"

previous=$(docker image inspect --format '{{.Id}}' "$image:$version" 2>/dev/null || true)
docker build -q --label "org.opencontainers.image.version=$version" \
    -t "$image:$version" -t "$image:latest" "$context" >&2
# The image this build replaced would be left behind untagged; the daemon refuses to remove it
# while a container (a launched weave) still uses it, and then it stays.
current=$(docker image inspect --format '{{.Id}}' "$image:$version")
if [[ -n "$previous" && "$previous" != "$current" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
size=$(docker image inspect --format '{{.Size}}' "$image:$version")
echo "built $image:$version ($((size / 1024)) KiB)" >&2
echo "$image:$version"
