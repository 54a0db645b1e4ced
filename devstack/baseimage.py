"""A small base image in the stack's registry, built from local files (no public registry is reachable).

``cubepaas/base:busybox`` is Debian's static busybox (package ``busybox-static``) with a link per applet,
as one layer made here with :mod:`tarfile` and committed and pushed by buildah (vfs storage in a temporary
directory, nothing left behind). Pipelines on the stack build ``FROM <registry>/cubepaas/base:busybox``.
Seeding is idempotent: an image already in the registry is left as it is.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

BASE_REPOSITORY: Final = "cubepaas/base"
BASE_TAG: Final = "busybox"
BUSYBOX: Final = Path("/bin/busybox")
INSTALL_HINT: Final = "apt-get install -y busybox-static buildah"
_MANIFEST_TYPES: Final = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class BaseImageError(RuntimeError):
    """The base image cannot be built or pushed (the message says what to install or what failed)."""


def base_image(registry: str) -> str:
    """The base image's reference in ``registry`` (host:port)."""
    return f"{registry}/{BASE_REPOSITORY}:{BASE_TAG}"


def manifest_digest(registry: str, repository: str, tag: str) -> str | None:
    """The digest the registry (plain HTTP, the stack's) stores for ``repository:tag``, or None."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": _MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            digest = response.headers.get("Docker-Content-Digest")
            return str(digest) if digest else None
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def _rootfs_tar(busybox: Path) -> bytes:
    """bin/busybox plus a symlink per applet, and the directories a shell expects."""
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp", "etc", "root"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        data = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def _buildah(root: Path, *args: str) -> str:
    cmd = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BaseImageError(f"buildah {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def seed_base_image(registry: str, busybox: Path = BUSYBOX) -> str:
    """Push the base image to ``registry`` unless it is there; returns its digest."""
    existing = manifest_digest(registry, BASE_REPOSITORY, BASE_TAG)
    if existing:
        return existing
    if shutil.which("buildah") is None or not busybox.is_file():
        raise BaseImageError(f"the base image needs buildah and {busybox}: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="cubepaas-base-") as tmp:
        root = Path(tmp)
        (root / "rootfs.tar").write_bytes(_rootfs_tar(busybox))
        container = _buildah(root, "from", "scratch")
        _buildah(root, "add", container, str(root / "rootfs.tar"), "/")
        _buildah(root, "config", "--cmd", "/bin/sh", "--env", "PATH=/bin", container)
        _buildah(root, "commit", "--quiet", container, f"localhost/{BASE_REPOSITORY}:{BASE_TAG}")
        _buildah(
            root,
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(root / "digest"),
            f"localhost/{BASE_REPOSITORY}:{BASE_TAG}",
            f"docker://{base_image(registry)}",
        )
        return (root / "digest").read_text().strip()


__all__ = [
    "BASE_REPOSITORY",
    "BASE_TAG",
    "BaseImageError",
    "base_image",
    "manifest_digest",
    "seed_base_image",
]
