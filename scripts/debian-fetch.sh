# debian-fetch.sh — sourced by docker26.sh and etcd.sh: packages from another Debian suite,
# unpacked into a directory of their own, with the machine's apt left as it is.
#
# fetch_debs DIR SUITE MIRROR PACKAGE...
#   Downloads PACKAGEs from SUITE with apt-get against a private source list, lists and cache
#   under DIR/apt (nothing under /etc/apt is touched, nothing is installed with dpkg) and unpacks
#   them with dpkg-deb -x into DIR/root (emptied first). The caller's `log` reports progress.

fetch_debs() {
  local dir=$1 suite=$2 mirror=$3
  shift 3
  local apt="$dir/apt" a deb
  rm -rf "$apt" "$dir/debs" "$dir/root"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir/debs"
  # Signed-By the installed debian-archive-keyring (bookworm's already holds the trixie keys), so
  # no insecure-repository override is needed.
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
    >"$apt/sources.list"
  # Everything private: source list, parts dir, lists, cache; status=/dev/null so the machine's
  # installed packages do not influence the download, and the sandbox user is root because _apt
  # cannot write into $dir.
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
  log "apt-get update ($suite, private lists in $apt)"
  apt-get "${a[@]}" -q update >&2
  log "downloading $*"
  (cd "$dir/debs" && apt-get "${a[@]}" -q download "$@" >&2)
  mkdir -p "$dir/root"
  for deb in "$dir/debs"/*.deb; do
    log "extracting $(basename "$deb")"
    dpkg-deb -x "$deb" "$dir/root"
  done
  # The lists are ~10 MB and only needed for the download.
  rm -rf "$apt"
}
