"""The one small Kubernetes access module for activities.

client-go splits access into a typed ClientSet (built-in kinds) and a DynamicClient (anything by
group/version/resource). This module keeps that split, small:

- **Typed clients** for built-in kinds are available as :attr:`Kube.core`, :attr:`Kube.apps`,
  :attr:`Kube.rbac`, :attr:`Kube.networking` (wrap calls in :func:`kube_errors`), and every built-in
  kind listed in :data:`BUILTIN_KINDS` can be read, listed, applied and deleted as plain dicts
  (``read_object``/``find_object``/``list_objects``/``apply``/``ensure``/``delete_object``).
- **Custom resources** (``devops.cubepaas.io/v1alpha1``) go in and out as the pydantic models of
  :mod:`crds`: ``get``/``find``/``list_resources``/``create``/``replace``/``patch``/``patch_status``/
  ``delete``. The plural comes from the model's ``crd`` facts.

Every request goes through one place (:meth:`Kube._request`), which classifies failures exactly once
(:func:`classify`): 404 -> :class:`KubeNotFoundError`, 409 -> :class:`KubeConflictError` (transient),
400/422 -> :class:`KubeInvalidError`, 401/403 -> :class:`KubeForbiddenError`, 408/410/429/5xx,
timeouts and connection errors -> :class:`KubeTransientError`. It also counts every write by kind in
:attr:`Kube.writes`, so tests can prove that a correct state costs only reads.

Raw JSON is used for built-in kinds (not the generated model classes): the apiserver's answer can be
compared with the desired manifest field by field (:func:`differs`) without a lossy round trip.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from activities.errors import (
    DataPlaneUnavailableError,
    DevopsError,
    KubeConflictError,
    KubeForbiddenError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeTransientError,
)
from crds.meta import CustomResource
from crds.reasons import Reason

FIELD_MANAGER = "cubepaas-devops"
"""The server-side apply field manager of everything this product writes."""

#: (connect, read) seconds for every request; a hung apiserver becomes a transient error.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)

#: Idle connections kept per apiserver. The client's default (5 per CPU) is below the worker's threads
#: (activities, local activities, the follow's helper threads): each connection the pool had no room for
#: was closed after its request, and the next one paid a TLS handshake on both ends (over a thousand in a
#: burst of 200 runs).
POOL_SIZE = 64


def api_client(cfg: k8s.Configuration) -> k8s.ApiClient:
    """The one way this product makes a Kubernetes ApiClient: with a pool as large as its threads."""
    cfg.connection_pool_maxsize = POOL_SIZE
    return k8s.ApiClient(cfg)


CR = TypeVar("CR", bound=CustomResource)
Obj = dict[str, Any]


@dataclass(frozen=True)
class KindInfo:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        elif self.namespaced and name is not None:
            raise ValueError(f"{self.kind} {name} needs a namespace")
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


def _kinds(*infos: KindInfo) -> dict[tuple[str, str], KindInfo]:
    return {(i.api_version, i.kind): i for i in infos}


BUILTIN_KINDS: dict[tuple[str, str], KindInfo] = _kinds(
    KindInfo("v1", "Namespace", "namespaces", namespaced=False),
    KindInfo("v1", "ServiceAccount", "serviceaccounts"),
    KindInfo("v1", "Secret", "secrets"),
    KindInfo("v1", "ConfigMap", "configmaps"),
    KindInfo("v1", "Service", "services"),
    KindInfo("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    KindInfo("v1", "Pod", "pods"),
    KindInfo("v1", "ResourceQuota", "resourcequotas"),
    KindInfo("v1", "LimitRange", "limitranges"),
    KindInfo("v1", "Event", "events"),
    KindInfo("apps/v1", "Deployment", "deployments"),
    KindInfo("apps/v1", "StatefulSet", "statefulsets"),
    KindInfo("rbac.authorization.k8s.io/v1", "Role", "roles"),
    KindInfo("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    KindInfo("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False),
    KindInfo("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    KindInfo("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
)
"""The built-in kinds this product reads and writes as dicts (extend when a new kind is needed)."""


def _custom_kinds() -> dict[tuple[str, str], KindInfo]:
    found: dict[tuple[str, str], KindInfo] = {}
    pending: list[type[CustomResource]] = list(CustomResource.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        crd = getattr(cls, "crd", None)
        if crd is None:
            continue
        api_version = cls.model_fields["api_version"].default
        info = KindInfo(api_version, cls.kind_name(), crd.plural, crd.scope == "Namespaced")
        found[(info.api_version, info.kind)] = info
    return found


def kind_info(api_version: str, kind: str) -> KindInfo:
    """The REST location of a built-in kind or of one of our custom resources."""
    info = BUILTIN_KINDS.get((api_version, kind)) or _custom_kinds().get((api_version, kind))
    if info is None:
        raise ValueError(f"unknown kind {api_version}/{kind}: add it to activities.kube.BUILTIN_KINDS")
    return info


def _model_info(model_cls: type[CustomResource]) -> KindInfo:
    crd = model_cls.crd
    api_version = model_cls.model_fields["api_version"].default
    return KindInfo(api_version, model_cls.kind_name(), crd.plural, crd.scope == "Namespaced")


# --------------------------------------------------------------------------------------------------
# Error classification: the only place an apiserver or transport failure becomes a DevopsError.


def _server_message(body: bytes | str | None) -> tuple[str, str]:
    """``(reason, message)`` from a ``metav1.Status`` body, or the raw text."""
    if body is None:
        return "", ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(text)
    except ValueError:
        return "", text.strip()[:500]
    if not isinstance(status, dict):
        return "", text.strip()[:500]
    return str(status.get("reason") or ""), str(status.get("message") or "")


def classify_status(status: int, what: str, body: bytes | str | None = None) -> DevopsError:
    """The error for an HTTP status answered by the apiserver."""
    api_reason, message = _server_message(body)
    text = (
        f"{what}: HTTP {status}"
        + (f" {api_reason}" if api_reason else "")
        + (f": {message}" if message else "")
    )
    if status == 404:
        return KubeNotFoundError(text)
    if status == 409:
        return KubeConflictError(text)
    if status in (401, 403):
        return KubeForbiddenError(text)
    if status in (408, 410, 429) or status >= 500 or status == 0:
        # 410 Gone: an expired resourceVersion (re-list); 0: the client could not talk TLS/HTTP.
        return KubeTransientError(text)
    return KubeInvalidError(text)


def classify(exc: BaseException, what: str) -> DevopsError:
    """Classify any failure of a Kubernetes call (ApiException, urllib3, socket) exactly once."""
    if isinstance(exc, DevopsError):
        return exc
    if isinstance(exc, ApiException):
        return classify_status(int(exc.status or 0), what, exc.body or exc.reason)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        # MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError, ConnectionError, TimeoutError
        return KubeTransientError(f"{what}: {type(exc).__name__}: {exc}")
    raise exc


@contextmanager
def kube_errors(what: str) -> Iterator[None]:
    """Classify failures of direct typed-client calls: ``with kube_errors("read pod x"): kube.core...``."""
    try:
        yield
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise classify(exc, what) from exc


# --------------------------------------------------------------------------------------------------
# Comparing desired with live state: only the fields we set are compared.


def contains(live: Any, desired: Any) -> bool:
    """True when every field set in ``desired`` has the same value in ``live``.

    Maps: each desired key must be present and contained (extra live keys — server defaults, other
    managers' fields — are ignored). Lists: same length, element by element (so an added or removed
    container or port counts as drift). Scalars: equal. Write desired manifests in the canonical
    form the apiserver returns (``"500m"`` not ``0.5``) so a correct object compares equal.
    """
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(lv, dv) for lv, dv in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def owned_fields(manifest: Mapping[str, Any]) -> Obj:
    """The part of a manifest compared with the live object: all but identity, plus labels/annotations."""
    meta = manifest.get("metadata") or {}
    out: Obj = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    kept = {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}
    if kept:
        out["metadata"] = kept
    return out


def differs(manifest: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """True when applying ``manifest`` would change ``live`` (or ``live`` does not exist)."""
    return live is None or not contains(live, owned_fields(manifest))


def _dig(obj: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


class Outcome(StrEnum):
    """What :meth:`Kube.ensure` did."""

    CREATED = "created"
    UPDATED = "updated"
    RECREATED = "recreated"
    UNCHANGED = "unchanged"

    @property
    def wrote(self) -> bool:
        return self is not Outcome.UNCHANGED


#: Fields the apiserver refuses to change: a difference there means delete and create.
IMMUTABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "RoleBinding": ("roleRef",),
    "ClusterRoleBinding": ("roleRef",),
    "Deployment": ("spec.selector",),
    "StatefulSet": ("spec.selector",),
}


# --------------------------------------------------------------------------------------------------


class Kube:
    """Kubernetes access for activities: typed and dynamic, errors classified, writes counted.

    Thread-safe (activities run in a thread pool and share one instance): the underlying urllib3
    pool is thread-safe and the write counter is guarded by a lock.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        field_manager: str = FIELD_MANAGER,
        request_timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        plane: str | None = None,
    ) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.request_timeout = request_timeout
        #: The data-plane cluster this client talks to (None: the management cluster). A data plane
        #: that does not answer is a :class:`DataPlaneUnavailableError`, which the workflow waits out
        #: saying so, instead of an activity retrying in silence.
        self.plane = plane
        #: Write requests sent (create/update/patch/apply/delete), by kind.
        self.writes: Counter[str] = Counter()
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, context: str | None = None) -> Kube:
        """From a kubeconfig file (``$KUBECONFIG`` or ``~/.kube/config`` when ``path`` is None)."""
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=cfg
        )
        return cls(api_client(cfg))

    @classmethod
    def in_cluster(cls) -> Kube:
        """From the pod's ServiceAccount (token, CA and ``KUBERNETES_SERVICE_*``)."""
        cfg = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        return cls(api_client(cfg))

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    # -- typed clients (ClientSet) ----------------------------------------------------------------

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> Any:
        return k8s.AppsV1Api(self.api_client)

    @property
    def rbac(self) -> Any:
        return k8s.RbacAuthorizationV1Api(self.api_client)

    @property
    def networking(self) -> Any:
        return k8s.NetworkingV1Api(self.api_client)

    @property
    def custom(self) -> Any:
        return k8s.CustomObjectsApi(self.api_client)

    # -- the one request path ---------------------------------------------------------------------

    @property
    def total_writes(self) -> int:
        with self._lock:
            return sum(self.writes.values())

    def _count_write(self, kind: str) -> None:
        with self._lock:
            self.writes[kind] += 1

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        kind: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        if method != "GET":
            self._count_write(kind)
        url_path = path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            request = self.api_client.param_serialize(
                method=method,
                resource_path=url_path,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(*request, _request_timeout=self.request_timeout)
            data = response.read()  # type: ignore[no-untyped-call]
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._plane_error(classify(exc, what)) from exc
        if not 200 <= response.status <= 299:
            raise self._plane_error(classify_status(response.status, what, data))
        return json.loads(data) if data else None

    def _plane_error(self, err: DevopsError) -> DevopsError:
        """A data plane's fault, named by its cluster: one that does not answer (or, just restarted,
        refuses while it is not ready yet) is waited for; refused credentials are permanent."""
        if self.plane is None or isinstance(err, KubeConflictError):
            return err
        where = f"data-plane cluster {self.plane}"
        if isinstance(err, KubeTransientError) and err.reason is None:
            return DataPlaneUnavailableError(f"{where}: {err.message}", reason=Reason.DATA_PLANE_UNAVAILABLE)
        if isinstance(err, KubeForbiddenError):
            if not self._ready():
                return DataPlaneUnavailableError(
                    f"{where} is not ready yet: {err.message}", reason=Reason.DATA_PLANE_UNAVAILABLE
                )
            return KubeForbiddenError(f"{where} refused: {err.message}", reason=Reason.DATA_PLANE_INVALID)
        return err

    def _ready(self) -> bool:
        """The apiserver's ``/readyz`` (an apiserver that just started refuses requests with 403 until
        its RBAC caches synced)."""
        try:
            request = self.api_client.param_serialize(
                method="GET", resource_path="/readyz", header_params={}, auth_settings=["BearerToken"]
            )
            response = self.api_client.call_api(*request, _request_timeout=self.request_timeout)
            response.read()  # type: ignore[no-untyped-call]
        except (ApiException, urllib3.exceptions.HTTPError, OSError):
            return False
        return bool(response.status == 200)

    # -- built-in kinds as dicts (DynamicClient-like) ---------------------------------------------

    def read_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        """GET one object; :class:`KubeNotFoundError` when it does not exist."""
        info = kind_info(api_version, kind)
        result: Obj = self._request(
            "GET", info.path(namespace, name), what=f"read {kind} {_ref(namespace, name)}", kind=kind
        )
        return result

    def find_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """GET one object, or None when it does not exist."""
        try:
            return self.read_object(api_version, kind, name, namespace)
        except KubeNotFoundError:
            return None

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        """One LIST call (all namespaces when ``namespace`` is None); items carry apiVersion and kind."""
        info = kind_info(api_version, kind)
        query = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        where = f" in {namespace}" if namespace else ""
        answer = self._request(
            "GET", info.path(namespace), what=f"list {info.plural}{where}", kind=kind, query=query
        )
        items: list[Obj] = answer.get("items") or []
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(
        self, manifest: Mapping[str, Any], *, field_manager: str | None = None, force: bool = True
    ) -> Obj:
        """Server-side apply (``application/apply-patch+yaml``): creates or updates, as ``field_manager``.

        ``force=True`` takes over fields another manager set (we are the authority for what we apply);
        with ``force=False`` such a conflict is a :class:`KubeConflictError`. Applying an unchanged
        manifest is a no-op on the server (no new resourceVersion), but it is still a write request:
        use :meth:`ensure` to skip it when nothing differs.
        """
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        meta = manifest.get("metadata") or {}
        name, namespace = meta["name"], meta.get("namespace")
        info = kind_info(api_version, kind)
        query = {"fieldManager": field_manager or self.field_manager}
        if force:
            query["force"] = "true"
        result: Obj = self._request(
            "PATCH",
            info.path(namespace, name),
            what=f"apply {kind} {_ref(namespace, name)}",
            kind=kind,
            query=query,
            body=dict(manifest),
            content_type="application/apply-patch+yaml",
        )
        return result

    def create_object(self, manifest: Mapping[str, Any]) -> Obj:
        """POST a new object (409 :class:`KubeConflictError` when the name is taken): cheaper for the
        apiserver than an apply, which computes the object's field ownership from the manifest."""
        api_version, kind = manifest["apiVersion"], manifest["kind"]
        meta = manifest.get("metadata") or {}
        name, namespace = meta["name"], meta.get("namespace")
        result: Obj = self._request(
            "POST",
            kind_info(api_version, kind).path(namespace),
            what=f"create {kind} {_ref(namespace, name)}",
            kind=kind,
            body=dict(manifest),
        )
        return result

    def merge_patch_object(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> Obj:
        """JSON merge patch (RFC 7386) of an object or of a subresource such as ``status``."""
        info = kind_info(api_version, kind)
        sub = f"/{subresource}" if subresource else ""
        result: Obj = self._request(
            "PATCH",
            info.path(namespace, name, subresource),
            what=f"patch {kind} {_ref(namespace, name)}{sub}",
            kind=kind,
            body=dict(patch),
            content_type="application/merge-patch+json",
        )
        return result

    def delete_object(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        missing_ok: bool = False,
    ) -> None:
        """DELETE, optionally only if the object is still the one we saw (preconditions -> 409)."""
        info = kind_info(api_version, kind)
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if preconditions:
            body["preconditions"] = preconditions
        try:
            self._request(
                "DELETE",
                info.path(namespace, name),
                what=f"delete {kind} {_ref(namespace, name)}",
                kind=kind,
                body=body,
            )
        except KubeNotFoundError:
            if not missing_ok:
                raise

    def ensure(
        self,
        manifest: Mapping[str, Any],
        *,
        live: Mapping[str, Any] | None = None,
        read: bool = True,
        immutable: Sequence[str] | None = None,
    ) -> Outcome:
        """Make one object match ``manifest``, costing a single read when it already does.

        Reads the live object (unless given as ``live``, or ``read=False`` for an object known to be
        absent), compares the fields the manifest sets (:func:`differs`) and server-side applies only
        when they differ. A difference in an immutable field (:data:`IMMUTABLE_FIELDS`, e.g. a
        RoleBinding's ``roleRef``) deletes the object (guarded by its uid) and creates it again.
        """
        meta = manifest.get("metadata") or {}
        if live is None and read:
            live = self.find_object(
                manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace")
            )
        if live is None:
            self.apply(manifest)
            return Outcome.CREATED
        if not differs(manifest, live):
            return Outcome.UNCHANGED
        fields = IMMUTABLE_FIELDS.get(manifest["kind"], ()) if immutable is None else immutable
        if any(
            _dig(manifest, f) is not None and not contains(_dig(live, f), _dig(manifest, f)) for f in fields
        ):
            self.delete_object(
                manifest["apiVersion"],
                manifest["kind"],
                meta["name"],
                meta.get("namespace"),
                uid=(live.get("metadata") or {}).get("uid"),
                missing_ok=True,
            )
            self.apply(manifest)
            return Outcome.RECREATED
        self.apply(manifest)
        return Outcome.UPDATED

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, base64-decoded to text (:class:`KubeNotFoundError` when absent)."""
        secret = self.read_object("v1", "Secret", name, namespace)
        return decode_secret_data(secret)

    # -- custom resources as pydantic models ------------------------------------------------------

    def get(self, model_cls: type[CR], namespace: str | None, name: str) -> CR:
        """Read one custom resource as its model (:class:`KubeNotFoundError` when absent)."""
        info = _model_info(model_cls)
        raw = self._request(
            "GET",
            info.path(namespace, name),
            what=f"read {info.kind} {_ref(namespace, name)}",
            kind=info.kind,
        )
        return _to_model(model_cls, raw, info)

    def find(self, model_cls: type[CR], namespace: str | None, name: str) -> CR | None:
        """Read one custom resource, or None when it does not exist."""
        try:
            return self.get(model_cls, namespace, name)
        except KubeNotFoundError:
            return None

    def list_resources(
        self, model_cls: type[CR], namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[CR]:
        """One LIST call (all namespaces when ``namespace`` is None)."""
        info = _model_info(model_cls)
        query = {"labelSelector": label_selector} if label_selector else None
        where = f" in {namespace}" if namespace else ""
        answer = self._request(
            "GET", info.path(namespace), what=f"list {info.plural}{where}", kind=info.kind, query=query
        )
        return [_to_model(model_cls, item, info) for item in answer.get("items") or []]

    def create(self, obj: CR) -> CR:
        """POST a new custom resource (409 :class:`KubeConflictError` when the name is taken)."""
        info = _model_info(type(obj))
        ns = obj.metadata.namespace
        raw = self._request(
            "POST",
            info.path(ns),
            what=f"create {info.kind} {_ref(ns, obj.metadata.name or obj.metadata.generate_name or '')}",
            kind=info.kind,
            body=obj.to_dict(),
        )
        return _to_model(type(obj), raw, info)

    def replace(self, obj: CR) -> CR:
        """PUT with the object's ``resourceVersion``: a compare-and-swap; a stale one is a 409."""
        if not obj.metadata.resource_version:
            raise ValueError(
                f"replace {obj.kind} {obj.metadata.name}: metadata.resourceVersion is required (CAS)"
            )
        info = _model_info(type(obj))
        ns, name = obj.metadata.namespace, obj.name
        raw = self._request(
            "PUT",
            info.path(ns, name),
            what=f"replace {info.kind} {_ref(ns, name)}",
            kind=info.kind,
            body=obj.to_dict(),
        )
        return _to_model(type(obj), raw, info)

    def patch(
        self,
        model_cls: type[CR],
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any] | BaseModel,
        *,
        resource_version: str | None = None,
    ) -> CR:
        """JSON merge patch of the main resource (spec, metadata); ``resource_version`` makes it a CAS."""
        return self._merge_patch(model_cls, namespace, name, _patch_body(patch, None, resource_version), None)

    def patch_status(
        self,
        model_cls: type[CR],
        namespace: str | None,
        name: str,
        status: Mapping[str, Any] | BaseModel,
        *,
        resource_version: str | None = None,
    ) -> CR:
        """JSON merge patch of ``status`` through the status subresource (spec is never touched).

        With ``resource_version`` the patch only applies to that version (409 otherwise).
        ``None`` values in a mapping remove fields (merge-patch semantics); a model is sent without
        its ``None`` fields.
        """
        return self._merge_patch(
            model_cls, namespace, name, _patch_body(status, "status", resource_version), "status"
        )

    def _merge_patch(
        self, model_cls: type[CR], namespace: str | None, name: str, body: Obj, subresource: str | None
    ) -> CR:
        info = _model_info(model_cls)
        sub = f"/{subresource}" if subresource else ""
        raw = self._request(
            "PATCH",
            info.path(namespace, name, subresource),
            what=f"patch {info.kind} {_ref(namespace, name)}{sub}",
            kind=info.kind,
            body=body,
            content_type="application/merge-patch+json",
        )
        return _to_model(model_cls, raw, info)

    def delete(
        self,
        model_cls: type[CR],
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        missing_ok: bool = True,
    ) -> None:
        """DELETE a custom resource (by default a missing one is fine)."""
        info = _model_info(model_cls)
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._request(
                "DELETE",
                info.path(namespace, name),
                what=f"delete {info.kind} {_ref(namespace, name)}",
                kind=info.kind,
                body=body,
            )
        except KubeNotFoundError:
            if not missing_ok:
                raise


def decode_secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    """``data`` of a Secret object, base64-decoded (UTF-8, invalid bytes replaced)."""
    data = secret.get("data") or {}
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}


def encode_secret_data(values: Mapping[str, str]) -> dict[str, str]:
    """The ``data`` map of a Secret manifest for text values."""
    return {k: base64.b64encode(v.encode()).decode("ascii") for k, v in values.items()}


def _ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _patch_body(patch: Mapping[str, Any] | BaseModel, key: str | None, resource_version: str | None) -> Obj:
    if isinstance(patch, BaseModel):
        content: Any = patch.model_dump(mode="json", by_alias=True, exclude_none=True)
    else:
        content = dict(patch)
    body: Obj = {key: content} if key else dict(content)
    if resource_version:
        body.setdefault("metadata", {})
        body["metadata"] = {**body["metadata"], "resourceVersion": resource_version}
    return body


def _to_model(model_cls: type[CR], raw: Any, info: KindInfo) -> CR:
    from pydantic import ValidationError

    try:
        return model_cls.model_validate(raw)
    except ValidationError as exc:
        meta = raw.get("metadata", {}) if isinstance(raw, dict) else {}
        ref = _ref(meta.get("namespace"), str(meta.get("name")))
        raise KubeInvalidError(f"{info.kind} {ref} does not match its model: {exc}") from exc


__all__ = [
    "BUILTIN_KINDS",
    "FIELD_MANAGER",
    "IMMUTABLE_FIELDS",
    "KindInfo",
    "Kube",
    "Outcome",
    "classify",
    "classify_status",
    "contains",
    "decode_secret_data",
    "differs",
    "encode_secret_data",
    "kind_info",
    "kube_errors",
    "owned_fields",
]
