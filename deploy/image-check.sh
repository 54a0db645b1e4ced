#!/usr/bin/env bash
# Proves the image works with no container registry: makes a Debian base locally (local-base.sh),
# builds the worker image FROM it (build.sh), then inside the image runs `python -m worker --help`
# and starts the worker to read its /healthz (no Temporal needed for liveness).
#
#   deploy/image-check.sh          (root; buildah, or docker with a daemon; debootstrap)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=${BASE:-localhost/cubepaas-base:bookworm}
tag=${TAG:-localhost/cubepaas/devops-worker:check}
# shellcheck source=deploy/engine.sh
source "$here/engine.sh"

timed() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "==> $name: $((SECONDS - start))s"
}

timed "base image" "$here/local-base.sh" "$base"
BASE=$base timed "worker image" "$here/build.sh" "$tag"

# Inside the image: --help names the settings; a worker with an unreachable Temporal still answers
# /healthz (alive) while /readyz says 503 (not ready).
probe='
set -e
python3 -m worker --help | grep -q TEMPORAL_ADDRESS
TEMPORAL_ADDRESS=127.0.0.1:9 CUBEPAAS_HEALTH_HOST=127.0.0.1 CUBEPAAS_HEALTH_PORT=18080 \
  CUBEPAAS_METRICS_PORT=0 python3 -m worker >/tmp/worker.log 2>&1 &
pid=$!
python3 - <<PY
import time, urllib.error, urllib.request
for _ in range(100):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:18080/healthz", timeout=1).read()
        break
    except OSError:
        time.sleep(0.2)
else:
    raise SystemExit("no /healthz from the worker in the image:\n" + open("/tmp/worker.log").read())
assert body == b"ok\n", body
try:
    urllib.request.urlopen("http://127.0.0.1:18080/readyz", timeout=1)
    raise SystemExit("/readyz answered 200 without Temporal")
except urllib.error.HTTPError as err:
    assert err.code == 503, err.code
print("worker in the image: --help ok, /healthz ok, /readyz 503 without Temporal")
PY
kill -TERM $pid
wait $pid
'
case $ENGINE in
  docker) docker run --rm --platform linux/amd64 --network none --entrypoint /bin/sh "$tag" -c "$probe" ;;
  buildah)
    ctr=$(buildah from --pull-never "$tag")
    trap 'buildah rm "$ctr" >/dev/null' EXIT
    # No network namespace of its own under chroot isolation: the probe's port is on loopback.
    buildah run --user 10001 "$ctr" -- /bin/sh -c "$probe"
    ;;
esac
arch=$(case $ENGINE in docker) docker image inspect -f '{{.Os}}/{{.Architecture}}' "$tag" ;;
  buildah) buildah inspect --type image -f '{{.OCIv1.OS}}/{{.OCIv1.Architecture}}' "$tag" ;; esac)
[ "$arch" = linux/amd64 ] || { echo "image is $arch, not linux/amd64" >&2; exit 1; }
echo "image $tag ($arch) checked"
