"""A minimal Kubernetes REST client for jenkins-lite's agent pods: a kubeconfig's cluster, and either its
own user (client certificate or token) or a service-account bearer token."""

from __future__ import annotations

import base64
import http.client
import json
import select
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Idle connections kept open: about the builds that talk to the apiserver at once.
MAX_IDLE = 16


class KubeError(Exception):
    """An API answer other than success: ``status`` is the HTTP code, ``message`` the Status message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Cluster:
    server: str
    ca_pem: bytes


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(key)
    if path:
        p = Path(path)
        return (p if p.is_absolute() else base / p).read_bytes()
    return None


def _named(doc: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    for item in doc.get(kind) or []:
        if item.get("name") == name:
            value: dict[str, Any] = item.get(kind[:-1]) or {}
            return value
    raise ValueError(f"kubeconfig has no {kind[:-1]} named {name!r}")


class KubeClient:
    def __init__(
        self,
        cluster: Cluster,
        *,
        token: str | None = None,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.cluster = cluster
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cadata=cluster.ca_pem.decode())
        if cert_pem and key_pem:
            # ssl wants files for a client certificate: a private temporary directory, removed at once.
            with tempfile.TemporaryDirectory(prefix="jenkins-lite-kube-") as d:
                cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
                cert.write_bytes(cert_pem)
                key.touch(mode=0o600)
                key.write_bytes(key_pem)
                self._ssl.load_cert_chain(str(cert), str(key))
        url = urllib.parse.urlsplit(cluster.server)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"{cluster.server}: not an https:// apiserver address")
        self._host, self._port, self._base = url.hostname, url.port or 443, url.path.rstrip("/")
        # Idle keep-alive connections, as client-go keeps them: a new TLS handshake per request cost this
        # process and the apiserver more than the request itself.
        self._idle: list[http.client.HTTPSConnection] = []
        self._idle_lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeClient:
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a kubeconfig")
        ctx = _named(doc, "contexts", str(doc.get("current-context") or ""))
        cluster_entry = _named(doc, "clusters", str(ctx.get("cluster")))
        user = _named(doc, "users", str(ctx.get("user")))
        ca = _data_or_file(cluster_entry, "certificate-authority", path.parent)
        if ca is None:
            raise ValueError(f"{path}: the cluster has no certificate-authority")
        cluster = Cluster(str(cluster_entry["server"]).rstrip("/"), ca)
        return cls(
            cluster,
            token=user.get("token"),
            cert_pem=_data_or_file(user, "client-certificate", path.parent),
            key_pem=_data_or_file(user, "client-key", path.parent),
        )

    def as_token(self, token: str) -> KubeClient:
        """The same cluster, authenticated by ``token`` only."""
        return KubeClient(self.cluster, token=token, timeout=self.timeout)

    def _connection(self) -> tuple[http.client.HTTPSConnection, bool]:
        """An idle connection the server has not closed (reused: True), else a new one."""
        with self._idle_lock:
            while self._idle:
                conn = self._idle.pop()
                sock = conn.sock
                # Readable while idle: the server closed it (or sent something unasked); either way, gone.
                if sock is not None and not select.select([sock], [], [], 0)[0]:
                    return conn, True
                conn.close()
        conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ssl)
        return conn, False

    def _release(self, conn: http.client.HTTPSConnection, resp: http.client.HTTPResponse) -> None:
        if resp.will_close:
            conn.close()
            return
        with self._idle_lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _send(self, method: str, path: str, data: bytes | None) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.request(method, self._base + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                # A kept connection the server dropped as we sent (an idle timeout racing the request):
                # sent again once on a fresh one, unless it was a POST, which the server may have done.
                if reused and attempt == 1 and method != "POST":
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            self._release(conn, resp)
            return resp.status, raw
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        try:
            status, raw = self._send(method, path, data)
        except (OSError, http.client.HTTPException) as e:
            raise KubeError(0, f"{self.cluster.server}: {e}") from None
        if not 200 <= status <= 299:
            try:
                message = str(json.loads(raw).get("message") or raw[:300])
            except ValueError:
                message = raw[:300].decode(errors="replace")
            raise KubeError(status, message)
        return json.loads(raw) if raw else None

    def watch(self, path: str, seconds: int) -> Iterator[dict[str, Any]]:
        """The events of a watch on ``path`` (a list URL with its query), which the server ends after
        ``seconds``; its connection is kept when the watch ran to that end, closed when the caller stops
        early. Raises KubeError as :meth:`request` does."""
        sep = "&" if "?" in path else "?"
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn, _ = self._connection()
        finished = False
        try:
            conn.timeout = self.timeout + seconds  # no event for a while is normal: the server ends it
            conn.request(
                "GET", f"{self._base}{path}{sep}watch=true&timeoutSeconds={seconds}", headers=headers
            )
            resp = conn.getresponse()
            if not 200 <= resp.status <= 299:
                raw = resp.read()
                try:
                    message = str(json.loads(raw).get("message") or raw[:300])
                except ValueError:
                    message = raw[:300].decode(errors="replace")
                raise KubeError(resp.status, message)
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
            finished = True
        except (OSError, http.client.HTTPException) as e:
            raise KubeError(0, f"{self.cluster.server}: {e}") from None
        finally:
            if finished:
                conn.timeout = self.timeout
                if conn.sock is not None:
                    conn.sock.settimeout(self.timeout)
                self._release(conn, resp)
            else:
                conn.close()

    def ready(self) -> bool:
        """Whether the apiserver answers ``/readyz`` with 200. One that has just started serves requests
        before its authorizer's caches are synced and may refuse, with 403, what RBAC allows; a load
        balancer in front of a real cluster keeps clients away until this says ready."""
        try:
            status, _ = self._send("GET", "/readyz", None)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def service_account_token(
        self, namespace: str, name: str, seconds: int = 3600, bound_pod: tuple[str, str] | None = None
    ) -> str:
        """A TokenRequest for the service account, optionally bound to a pod (name, uid) as a kubelet binds
        the token it mounts: the token stops working when the pod is deleted."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if bound_pod is not None:
            name_, uid = bound_pod
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": name_, "uid": uid}
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(answer["status"]["token"])

    def kubeconfig_for_token(self, token: str, namespace: str) -> dict[str, Any]:
        """A kubeconfig (kubectl reads JSON as YAML) for ``token`` against this cluster."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubernetes",
                    "cluster": {
                        "server": self.cluster.server,
                        "certificate-authority-data": base64.b64encode(self.cluster.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "agent", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "agent",
                    "context": {"cluster": "kubernetes", "user": "agent", "namespace": namespace},
                }
            ],
            "current-context": "agent",
        }


__all__ = ["Cluster", "KubeClient", "KubeError"]
