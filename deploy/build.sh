#!/usr/bin/env bash
# Builds the worker image, single-arch linux/amd64, with docker build or buildah bud (no buildx).
#
#   deploy/build.sh [TAG]                      default TAG: cubepaas/devops-worker:<version>
#
#   BASE=image        the base (build argument BASE; default python:3.11-slim from Docker Hub)
#   CA_BUNDLE=file    extra CA bundle for pip at build time only (default: $PIP_CERT when set)
#   ENGINE=docker|buildah, STORAGE_DRIVER, BUILDAH_ISOLATION: see deploy/engine.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -n 1)
tag=${1:-cubepaas/devops-worker:$version}
# shellcheck source=deploy/engine.sh
source "$here/engine.sh"

args=(--build-arg "BASE=${BASE:-python:3.11-slim}")
ca=${CA_BUNDLE:-${PIP_CERT:-}}
if [ -n "$ca" ]; then
  args+=(--secret "id=ca,src=$ca")
fi
echo "building $tag with $ENGINE (linux/amd64, base ${BASE:-python:3.11-slim})"
engine_build "$here/Dockerfile" "$root" "$tag" "${args[@]}"
echo "built $tag"
