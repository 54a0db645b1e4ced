# Sourced by deploy/build.sh and deploy/local-base.sh: the image engine, docker or buildah.
# ENGINE=docker|buildah chooses; otherwise a docker whose daemon answers, else buildah.
# buildah defaults to the vfs storage driver and chroot isolation, which work as root in a container
# (STORAGE_DRIVER / BUILDAH_ISOLATION override them).
# The platform is always linux/amd64: one architecture, no buildx.

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v buildah >/dev/null; then
    ENGINE=buildah
  else
    echo "neither a working docker (daemon) nor buildah found (apt-get install buildah)" >&2
    exit 2
  fi
fi
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

engine_has_image() {
  case $ENGINE in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}

# engine_build DOCKERFILE CONTEXT TAG [extra build arguments...]
engine_build() {
  local file=$1 context=$2 tag=$3
  shift 3
  case $ENGINE in
    docker) DOCKER_BUILDKIT=1 docker build --platform linux/amd64 -f "$file" -t "$tag" "$@" "$context" ;;
    buildah) buildah bud --platform linux/amd64 --format docker --layers -f "$file" -t "$tag" "$@" "$context" ;;
    *) echo "ENGINE must be docker or buildah, not $ENGINE" >&2; return 2 ;;
  esac
}
