"""The local cluster's PKI, made with the ``openssl`` CLI (no Python crypto dependency).

Everything is ECDSA P-256 (fast to generate) and made once per state folder, then reused, so the
kubeconfigs and minted ServiceAccount tokens stay valid across ``down``/``up``. A certificate added by a
newer version of this module is made next to the existing ones (the CA is kept).

Client certificates carry the identities a kubeadm cluster gives its components (CN
``system:kube-controller-manager`` and ``system:kube-scheduler``, which the apiserver's bootstrap RBAC
policy binds), so RBAC decides what each may do, as in a cluster.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

DAYS = "3650"
_LOOPBACK_SANS = "IP:127.0.0.1,DNS:localhost"


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's subject: the user name (CN) and groups (O) the apiserver sees."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()

    def subject(self) -> str:
        return "".join(f"/O={group}" for group in self.groups) + f"/CN={self.user}"


ADMIN = ClientIdentity("admin", "devstack-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("kube-controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("kube-scheduler", "system:kube-scheduler")
# Bound by devstack to its own ClusterRole (devstack.kwok.KWOK_CLUSTER_ROLE), not to system:masters.
KWOK = ClientIdentity("kwok", "devstack:kwok")
CLIENTS: tuple[ClientIdentity, ...] = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK)
# Serving certificates of the components with a secure port besides the apiserver (loopback names only).
SERVING: tuple[str, ...] = ("kube-controller-manager-serving", "kube-scheduler-serving")


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.client_cert(ADMIN)

    @property
    def admin_key(self) -> Path:
        return self.client_key(ADMIN)

    def client_cert(self, identity: ClientIdentity) -> Path:
        return self.dir / f"{identity.file_stem}.crt"

    def client_key(self, identity: ClientIdentity) -> Path:
        return self.dir / f"{identity.file_stem}.key"

    def cert(self, stem: str) -> Path:
        return self.dir / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.dir / f"{stem}.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def files(self) -> list[Path]:
        files = [self.ca_cert, self.ca_key, self.serving_cert, self.serving_key, self.sa_key, self.sa_pub]
        for identity in CLIENTS:
            files += [self.client_cert(identity), self.client_key(identity)]
        for stem in SERVING:
            files += [self.cert(stem), self.key(stem)]
        return files

    def complete(self) -> bool:
        return all(path.is_file() for path in self.files())


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("the `openssl` command is needed to make the local apiserver's certificates")
    result = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _sign(pki: Pki, key: Path, cert: Path, subject: str, extensions: str) -> None:
    csr = cert.with_suffix(".csr")
    ext = cert.with_suffix(".ext")
    ext.write_text(extensions)
    try:
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
            "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)


_CLIENT_EXTENSIONS = (
    "basicConstraints=CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=clientAuth\n"
)


def _serving_extensions(sans: str) -> str:
    return (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n"
    )


def ensure_pki(directory: Path, ca_name: str = "devstack-ca") -> Pki:
    """Create what is missing: the CA, the serving certs, the client certs and the ServiceAccount keys.

    Each cluster of the stack has its own folder, hence its own CA (``ca_name`` is its subject's CN):
    what one cluster signed is refused by the other.
    """
    pki = Pki(directory)
    if pki.complete():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if not (pki.ca_cert.is_file() and pki.ca_key.is_file()):
        # A new CA: nothing signed by an earlier one may survive.
        for path in pki.files():
            path.unlink(missing_ok=True)
        _ec_key(pki.ca_key)
        _openssl(
            "req", "-x509", "-new", "-key", str(pki.ca_key), "-subj", f"/CN={ca_name}", "-days", DAYS,
            "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-out", str(pki.ca_cert),
        )  # fmt: skip
    if not (pki.serving_cert.is_file() and pki.serving_key.is_file()):
        sans = ",".join(
            [
                _LOOPBACK_SANS,
                "IP:10.0.0.1",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
        _ec_key(pki.serving_key)
        _sign(pki, pki.serving_key, pki.serving_cert, "/CN=kube-apiserver", _serving_extensions(sans))
    for stem in SERVING:
        if not (pki.cert(stem).is_file() and pki.key(stem).is_file()):
            _ec_key(pki.key(stem))
            _sign(pki, pki.key(stem), pki.cert(stem), f"/CN={stem}", _serving_extensions(_LOOPBACK_SANS))
    for identity in CLIENTS:
        cert, key = pki.client_cert(identity), pki.client_key(identity)
        if not (cert.is_file() and key.is_file()):
            _ec_key(key)
            _sign(pki, key, cert, identity.subject(), _CLIENT_EXTENSIONS)
    if not (pki.sa_key.is_file() and pki.sa_pub.is_file()):
        _ec_key(pki.sa_key)
        _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    return pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    pki: Pki, server: str, path: Path, identity: ClientIdentity = ADMIN, *, cluster_name: str = "devstack"
) -> None:
    """A kubeconfig for ``identity`` with the CA and client certificate embedded (self-contained).

    The cluster and context are named ``cluster_name``, so a kubeconfig says which of the stack's
    clusters it is for (``kubectl config current-context``).
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": identity.user,
                "user": {
                    "client-certificate-data": _b64(pki.client_cert(identity)),
                    "client-key-data": _b64(pki.client_key(identity)),
                },
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": identity.user}}],
        "current-context": cluster_name,
        "preferences": {},
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
