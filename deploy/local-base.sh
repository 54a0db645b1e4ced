#!/usr/bin/env bash
# Makes a base image for deploy/Dockerfile without any container registry: a Debian bookworm rootfs
# from debootstrap (python3, venv, git, CA certificates), packed into an image FROM scratch.
#
#   deploy/local-base.sh [TAG]      (default localhost/cubepaas-base:bookworm; root, debootstrap)
#
# The Debian mirror is this machine's own (its apt sources), read at run time; DEBIAN_MIRROR overrides.
# An existing TAG is kept (REBUILD=1 makes it again). The engine is chosen as in deploy/build.sh.
set -euo pipefail
tag=${1:-localhost/cubepaas-base:bookworm}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/engine.sh
source "$here/engine.sh"

# The first non-security "URIs:" (deb822) or "deb URL bookworm" line of the apt sources.
apt_mirror() {
  local files
  files=$(ls /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  [ -n "$files" ] || return 1
  # shellcheck disable=SC2086
  awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}
       /^deb[ \t]/ && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' $files
}

if [ "${REBUILD:-0}" != 1 ] && engine_has_image "$tag"; then
  echo "base $tag exists (REBUILD=1 to make it again)"
  exit 0
fi
mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
[ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources*; set DEBIAN_MIRROR" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cubepaas-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "debootstrap bookworm from $mirror"
debootstrap --variant=minbase --arch=amd64 \
  --include=python3,python3-venv,git,ca-certificates \
  bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# The image's own apt sources name the same mirror, so apt-get works in builds FROM it.
echo "deb $mirror bookworm main" >"$work/rootfs/etc/apt/sources.list"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
mkdir -p "$work/context"
tar -C "$work/rootfs" --numeric-owner -cf "$work/context/rootfs.tar" .
printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' >"$work/context/Dockerfile"
engine_build "$work/context/Dockerfile" "$work/context" "$tag"
echo "base $tag made"
