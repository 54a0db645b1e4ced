"""Bootstrap a project's pipeline namespace and reconcile the jenkins ServiceAccount's RoleBindings.

Two activities (steps 3 and 4 of the execution workflow), both idempotent and drift-repairing:

``devops.namespace.bootstrap``
    Every run converges the pipeline namespace on the desired objects — unlike Rancher, which
    skipped bootstrap once the namespace existed, so deleted or broken workloads never came back.
    Each object is read once and server-side applied (field manager ``cubepaas-devops``, forced)
    only when a field we set differs (:meth:`activities.kube.Kube.ensure`), so a correct namespace
    costs only reads and zero writes. Generated credentials are created once and never rotated: a
    Secret that exists keeps its values; only missing keys are generated. PersistentVolumeClaims
    are created when absent and otherwise left alone (their spec is mostly immutable, and a claim
    resized by an operator must not be shrunk back). Then every Deployment's status is polled until
    it is available, heartbeating, with a deadline that raises a transient error naming the
    Deployment that is not ready.

``devops.rbac.reconcile``
    A RoleBinding ``cubepaas-jenkins`` granting the configured ClusterRole to the jenkins
    ServiceAccount in every namespace labelled ``<project_label>=<project>``. Two LIST calls with
    label selectors whatever the cluster's size (the project's namespaces; our RoleBindings of this
    project cluster-wide), then writes only for what differs: missing -> created, changed ->
    updated (a changed ``roleRef`` is immutable: deleted and created again), in a namespace no
    longer the project's -> deleted.

Both are made once per worker for the runs that ask at the same time, and a call completed less than
the TTL ago stands for the runs that ask after it (:mod:`activities.verified`): such a run returns that
call's result marked ``shared``, having sent no request. So a burst of a project's runs converges its
namespace once, and a drifted one is repaired by the first run after the TTL.

Errors are classified by :mod:`activities.kube` and translated once, here at the activity boundary.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from kubernetes.utils import parse_quantity
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.dataplane import DataPlanes
from activities.errors import DevopsError, KubeConflictError, KubeTransientError, to_application_error
from activities.heartbeat import heartbeating, seconds_left
from activities.kube import Kube, Outcome, encode_secret_data
from activities.verified import Flights, VerifiedRecently, input_key
from crds.messages import (
    Activity,
    BootstrapInput,
    BootstrapResult,
    NamespaceCheckInput,
    NamespaceCheckResult,
    RoleBindingInput,
    RoleBindingResult,
)
from crds.reasons import ConditionStatus, Reason
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting, PipelineSettingStatus

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "cubepaas-devops"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PIPELINE_NAMESPACE_OF_LABEL = "devops.cubepaas.io/pipeline-namespace-of"
ROLEBINDING_PROJECT_LABEL = "devops.cubepaas.io/project"
"""Label on our RoleBindings naming the project they were made for (the stale-cleanup selector)."""

SERVICE_ACCOUNT = "jenkins"
ROLEBINDING_NAME = "cubepaas-jenkins"
AGENTS_ROLEBINDING_NAME = "cubepaas-jenkins-agents"
NETWORK_POLICY_NAME = "cubepaas-pipeline"
EXECUTORS_NAME = "cubepaas-executors"
"""Name of the ResourceQuota and the LimitRange of the pipeline namespace."""
JENKINS_SECRET = "jenkins-admin"
REGISTRY_SECRET = "registry-credentials"
MINIO_SECRET = "minio-credentials"
JENKINS, REGISTRY, MINIO = "jenkins", "registry", "minio"
JENKINS_PORT, JENKINS_AGENT_PORT, REGISTRY_PORT, MINIO_PORT = 8080, 50000, 5000, 9000

RBAC = "rbac.authorization.k8s.io/v1"

Manifest = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Desired state: pure functions of the input (unit-testable, no I/O).


def _labels(inp: BootstrapInput, app: str | None = None) -> dict[str, str]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY, PART_OF_LABEL: "cubepaas-devops"}
    if app:
        labels[NAME_LABEL] = app
    return labels


def _meta(inp: BootstrapInput, name: str, app: str | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": inp.pipeline_namespace, "labels": _labels(inp, app)}


def namespace_manifest(inp: BootstrapInput) -> Manifest:
    labels = {MANAGED_BY_LABEL: MANAGED_BY, PIPELINE_NAMESPACE_OF_LABEL: inp.project_namespace}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": inp.pipeline_namespace, "labels": labels},
    }


def service_account_manifest(inp: BootstrapInput) -> Manifest:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(inp, SERVICE_ACCOUNT, JENKINS)}


def agents_rolebinding_manifest(inp: BootstrapInput) -> Manifest:
    """Lets Jenkins (its kubernetes plugin) run agent pods in its own namespace."""
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": _meta(inp, AGENTS_ROLEBINDING_NAME, JENKINS),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": inp.agents_cluster_role,
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": inp.pipeline_namespace}
        ],
    }


def secret_manifest(inp: BootstrapInput, name: str, data: Mapping[str, str], app: str) -> Manifest:
    """``data`` is already base64 (values read back from the live Secret are kept byte for byte)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(inp, name, app), "data": dict(data)}


def _token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


#: Generated credentials: Secret -> key -> generator. Only missing keys are ever generated.
SECRET_GENERATORS: dict[str, dict[str, Callable[[], str]]] = {
    JENKINS_SECRET: {
        "username": lambda: "admin",
        "password": _token,
        # Jenkins' own API tokens are "11" + 32 hex digits; the managed Jenkins is seeded with this one.
        "token": lambda: "11" + secrets.token_hex(16),
    },
    REGISTRY_SECRET: {"username": lambda: "cubepaas", "password": _token},
    MINIO_SECRET: {"accessKey": lambda: "cubepaas-" + secrets.token_hex(6), "secretKey": lambda: _token(30)},
}


def pvc_manifest(inp: BootstrapInput, name: str, size: str, app: str) -> Manifest:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if inp.storage_class:
        spec["storageClassName"] = inp.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(inp, name, app),
        "spec": spec,
    }


def _env_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _http_probe(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 10, "failureThreshold": 6}


def _data_volume(inp: BootstrapInput, name: str, claim: str) -> dict[str, Any]:
    if inp.persistent_volumes:
        return {"name": name, "persistentVolumeClaim": {"claimName": claim}}
    return {"name": name, "emptyDir": {}}


def _deployment(inp: BootstrapInput, app: str, pod_spec: dict[str, Any]) -> Manifest:
    selector = {NAME_LABEL: app, PART_OF_LABEL: "cubepaas-devops"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(inp, app, app),
        "spec": {
            "replicas": 1,
            # One replica on a ReadWriteOnce volume: the old pod must go before the new one starts.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": _labels(inp, app)}, "spec": pod_spec},
        },
    }


def jenkins_deployment(inp: BootstrapInput) -> Manifest:
    container = {
        "name": JENKINS,
        "image": inp.jenkins_image,
        "ports": [
            {"name": "http", "containerPort": JENKINS_PORT},
            {"name": "agent", "containerPort": JENKINS_AGENT_PORT},
        ],
        "env": [
            {"name": "JAVA_OPTS", "value": "-Djenkins.install.runSetupWizard=false"},
            _env_secret("JENKINS_ADMIN_USER", JENKINS_SECRET, "username"),
            _env_secret("JENKINS_ADMIN_PASSWORD", JENKINS_SECRET, "password"),
            _env_secret("JENKINS_ADMIN_TOKEN", JENKINS_SECRET, "token"),
        ],
        "readinessProbe": _http_probe("/login", JENKINS_PORT),
        "volumeMounts": [{"name": "jenkins-home", "mountPath": "/var/jenkins_home"}],
    }
    pod = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "securityContext": {"fsGroup": 1000},
        "containers": [container],
        "volumes": [_data_volume(inp, "jenkins-home", "jenkins-home")],
    }
    return _deployment(inp, JENKINS, pod)


def registry_deployment(inp: BootstrapInput) -> Manifest:
    htpasswd = {
        "name": "htpasswd",
        "image": inp.htpasswd_image,
        "command": ["sh", "-c", 'htpasswd -Bbn "$REGISTRY_USERNAME" "$REGISTRY_PASSWORD" > /auth/htpasswd'],
        "env": [
            _env_secret("REGISTRY_USERNAME", REGISTRY_SECRET, "username"),
            _env_secret("REGISTRY_PASSWORD", REGISTRY_SECRET, "password"),
        ],
        "volumeMounts": [{"name": "auth", "mountPath": "/auth"}],
    }
    container = {
        "name": REGISTRY,
        "image": inp.registry_image,
        "ports": [{"name": "http", "containerPort": REGISTRY_PORT}],
        "env": [
            {"name": "REGISTRY_AUTH", "value": "htpasswd"},
            {"name": "REGISTRY_AUTH_HTPASSWD_REALM", "value": "cubepaas-registry"},
            {"name": "REGISTRY_AUTH_HTPASSWD_PATH", "value": "/auth/htpasswd"},
            {"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"},
        ],
        "readinessProbe": _http_probe("/", REGISTRY_PORT),
        "volumeMounts": [
            {"name": "auth", "mountPath": "/auth", "readOnly": True},
            {"name": "data", "mountPath": "/var/lib/registry"},
        ],
    }
    pod = {
        "initContainers": [htpasswd],
        "containers": [container],
        "volumes": [{"name": "auth", "emptyDir": {}}, _data_volume(inp, "data", "registry-data")],
    }
    return _deployment(inp, REGISTRY, pod)


def minio_deployment(inp: BootstrapInput) -> Manifest:
    container = {
        "name": MINIO,
        "image": inp.minio_image,
        "args": ["server", "/data", "--console-address", ":9001"],
        "ports": [{"name": "api", "containerPort": MINIO_PORT}, {"name": "console", "containerPort": 9001}],
        "env": [
            _env_secret("MINIO_ROOT_USER", MINIO_SECRET, "accessKey"),
            _env_secret("MINIO_ROOT_PASSWORD", MINIO_SECRET, "secretKey"),
        ],
        "readinessProbe": _http_probe("/minio/health/ready", MINIO_PORT),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    pod = {"containers": [container], "volumes": [_data_volume(inp, "data", "minio-data")]}
    return _deployment(inp, MINIO, pod)


def service_manifest(inp: BootstrapInput, app: str, ports: list[tuple[str, int]]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(inp, app, app),
        "spec": {
            "type": "ClusterIP",
            "selector": {NAME_LABEL: app, PART_OF_LABEL: "cubepaas-devops"},
            "ports": [{"name": n, "port": p, "targetPort": p, "protocol": "TCP"} for n, p in ports],
        },
    }


def network_policy_manifest(inp: BootstrapInput) -> Manifest:
    """Ingress only from the pipeline namespace itself, the project's namespaces and listed ones."""
    peers: list[dict[str, Any]] = [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {inp.project_label: inp.project_namespace}}},
    ]
    for ns in sorted({inp.project_namespace, *inp.allowed_ingress_namespaces}):
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(inp, NETWORK_POLICY_NAME),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": peers}]},
    }


def resource_quota_manifest(inp: BootstrapInput) -> Manifest | None:
    """The PipelineSetting's resource quota on the pipeline namespace (None: no quota)."""
    if not inp.resource_quota:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(inp, EXECUTORS_NAME),
        "spec": {"hard": dict(sorted(inp.resource_quota.items()))},
    }


def limit_range_manifest(inp: BootstrapInput) -> Manifest | None:
    """Container defaults from executorResources, so pods that set none still fit a requests/limits quota."""
    if not (inp.default_requests or inp.default_limits):
        return None
    limit: dict[str, Any] = {"type": "Container"}
    if inp.default_requests:
        limit["defaultRequest"] = dict(sorted(inp.default_requests.items()))
    if inp.default_limits:
        limit["default"] = dict(sorted(inp.default_limits.items()))
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(inp, EXECUTORS_NAME),
        "spec": {"limits": [limit]},
    }


def with_live_quantities(manifest: Manifest, live: Mapping[str, Any] | None) -> Manifest:
    """``manifest`` with each quantity written the way the live object spells the same amount.

    The apiserver stores quantities canonically (``0.5`` becomes ``500m``); keeping our spelling would make
    every reconcile see a difference and write again.
    """
    if live is None:
        return manifest

    def same(ours: Any, theirs: Any) -> Any:
        if isinstance(ours, dict) and isinstance(theirs, dict):
            return {k: same(v, theirs.get(k)) for k, v in ours.items()}
        if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
            return [same(a, b) for a, b in zip(ours, theirs, strict=True)]
        if isinstance(ours, str) and isinstance(theirs, str) and ours != theirs:
            try:
                equal = parse_quantity(ours) == parse_quantity(theirs)  # type: ignore[no-untyped-call]
                return theirs if equal else ours
            except ValueError:
                return ours
        return ours

    return {**manifest, "spec": same(manifest["spec"], live.get("spec") or {})}


def desired_workloads(inp: BootstrapInput) -> list[Manifest]:
    """Deployments then Services, in apply order (Jenkins only in Managed mode)."""
    deployments = [registry_deployment(inp), minio_deployment(inp)]
    services = [
        service_manifest(inp, REGISTRY, [("http", REGISTRY_PORT)]),
        service_manifest(inp, MINIO, [("api", MINIO_PORT)]),
    ]
    if inp.jenkins_mode == "Managed":
        deployments.insert(0, jenkins_deployment(inp))
        services.insert(
            0, service_manifest(inp, JENKINS, [("http", JENKINS_PORT), ("agent", JENKINS_AGENT_PORT)])
        )
    return deployments + services


def deployment_readiness(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """``(ready, why-not)`` from a Deployment's status, the way ``kubectl rollout status`` decides.

    Ready when the controller has observed the current generation and the updated and available
    replicas reach ``spec.replicas``.
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return False, f"generation {generation} not observed yet (observed {observed})"
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < replicas or available < replicas:
        return False, f"{available}/{replicas} available, {updated}/{replicas} updated"
    return True, ""


# --------------------------------------------------------------------------------------------------
# The activities.


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


def _raise_if_cancelled() -> None:
    if activity.in_activity() and activity.is_cancelled():
        raise CancelledError("cancelled while another run verified the same namespace")


In = TypeVar("In", bound=BaseModel)
Done = TypeVar("Done", BootstrapResult, RoleBindingResult)


@dataclass(frozen=True)
class _Outcome(Generic[Done]):
    result: Done
    shared: bool

    def shared_copy(self) -> Done:
        """The result as this run returns it: a shared one counts nothing as done by this run."""
        return self.result.as_shared() if self.shared else self.result


def _sleep(seconds: float) -> None:
    """Sleep, but wake up (and raise) if the activity is cancelled."""
    if activity.in_activity():
        activity.wait_for_cancelled_sync(seconds)
        if activity.is_cancelled():
            raise CancelledError("bootstrap cancelled while waiting for readiness")
    else:
        time.sleep(seconds)


@dataclass
class _Tally:
    applied: list[str] = field(default_factory=list)
    unchanged: int = 0
    writes: int = 0

    def record(self, manifest: Mapping[str, Any], outcome: Outcome) -> None:
        if outcome is Outcome.UNCHANGED:
            self.unchanged += 1
            return
        self.applied.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
        self.writes += 2 if outcome is Outcome.RECREATED else 1


class NamespaceActivities:
    """Steps 3 and 4 of the execution workflow; sync methods (the worker runs them in a thread pool)."""

    def __init__(
        self, kube: Kube, planes: DataPlanes | None = None, verified: VerifiedRecently | None = None
    ) -> None:
        self.kube = kube  # the management cluster: the PipelineSetting
        self.planes = planes or DataPlanes(kube)  # the pipeline namespace and the project's namespaces
        # Without one passed (a test, the bench), nothing done vouches for later calls (a TTL of 0); calls
        # made together are still made once.
        self.verified = verified or VerifiedRecently(ttl=0)
        self.flights = Flights()

    # -- devops.namespace.verified ------------------------------------------------------------------

    @activity.defn(name=Activity.NAMESPACE_VERIFIED)
    def recently_verified(self, inp: NamespaceCheckInput) -> NamespaceCheckResult:
        """No request at all: whether this worker completed this very bootstrap and RoleBinding reconcile
        (same inputs, so the same PipelineSetting) less than ``VerifiedRecently.ttl`` ago; while another
        run of this worker verifies them, after it did (see :meth:`VerifiedRecently.oldest_or_claim`)."""
        age = self.verified.oldest_or_claim(inp.bootstrap, inp.rolebindings)
        if age is None:
            return NamespaceCheckResult(verified=False)
        return NamespaceCheckResult(verified=True, age_seconds=age)

    # -- devops.namespace.bootstrap ---------------------------------------------------------------

    @activity.defn(name=Activity.BOOTSTRAP_NAMESPACE)
    @heartbeating
    def bootstrap(self, inp: BootstrapInput) -> BootstrapResult:
        try:
            return self._once(inp, BootstrapResult, self._bootstrap).shared_copy()
        except DevopsError as err:
            raise to_application_error(err) from err

    def _once(self, inp: In, kind: type[Done], call: Callable[[In], Done]) -> _Outcome[Done]:
        """``call(inp)``, unless this worker completed the same call within the TTL or is making it
        right now for another run: then that call's result, shared (this run sent no request)."""
        recent = self.verified.result(inp, kind)
        if recent is not None:
            return _Outcome(recent, shared=True)

        def completed() -> Done:
            result = call(inp)
            self.verified.record(inp, result)
            return result

        result, shared = self.flights.run(input_key(inp), completed, stop=_raise_if_cancelled)
        return _Outcome(result, shared=shared)

    def _bootstrap(self, inp: BootstrapInput) -> BootstrapResult:
        kube = self.planes.kube(inp.project_namespace, inp.data_plane)
        tally = _Tally()
        ns = inp.pipeline_namespace

        namespace = namespace_manifest(inp)
        live_ns = kube.find_object("v1", "Namespace", ns)
        if live_ns and (live_ns.get("metadata") or {}).get("deletionTimestamp"):
            raise KubeTransientError(f"namespace {ns} is being deleted; bootstrap waits for it to go")
        tally.record(namespace, kube.ensure(namespace, live=live_ns, read=False))

        for manifest in (service_account_manifest(inp), agents_rolebinding_manifest(inp)):
            tally.record(manifest, kube.ensure(manifest))
        # Quota and defaults before any workload, so the workloads' pods are admitted against them.
        self._ensure_optional(kube, "ResourceQuota", resource_quota_manifest(inp), inp, tally)
        self._ensure_optional(kube, "LimitRange", limit_range_manifest(inp), inp, tally)
        _heartbeat("objects", len(tally.applied) + tally.unchanged)

        apps = [REGISTRY, MINIO] + ([JENKINS] if inp.jenkins_mode == "Managed" else [])
        secrets_of = {JENKINS: JENKINS_SECRET, REGISTRY: REGISTRY_SECRET, MINIO: MINIO_SECRET}
        for app in apps:
            self._ensure_secret(kube, inp, secrets_of[app], app, tally)

        if inp.persistent_volumes:
            sizes = {
                JENKINS: ("jenkins-home", inp.jenkins_volume_size),
                REGISTRY: ("registry-data", inp.registry_volume_size),
                MINIO: ("minio-data", inp.minio_volume_size),
            }
            for app in apps:
                claim, size = sizes[app]
                self._ensure_absent_only(kube, pvc_manifest(inp, claim, size, app), tally)

        workloads = desired_workloads(inp)
        for manifest in workloads:
            tally.record(manifest, kube.ensure(manifest))
            _heartbeat("objects", len(tally.applied) + tally.unchanged)
        policy = network_policy_manifest(inp)
        tally.record(policy, kube.ensure(policy))

        self._wait_ready(kube, inp, [m["metadata"]["name"] for m in workloads if m["kind"] == "Deployment"])

        managed = inp.jenkins_mode == "Managed"
        result = BootstrapResult(
            pipeline_namespace=ns,
            applied=len(tally.applied),
            unchanged=tally.unchanged,
            writes=tally.writes,
            applied_objects=tally.applied,
            jenkins_url=f"http://{JENKINS}.{ns}.svc:{JENKINS_PORT}" if managed else None,
            jenkins_credentials_secret=JENKINS_SECRET if managed else None,
            registry_host=f"{REGISTRY}.{ns}.svc:{REGISTRY_PORT}",
            registry_credentials_secret=REGISTRY_SECRET,
            object_store_endpoint=f"{MINIO}.{ns}.svc:{MINIO_PORT}",
            object_store_credentials_secret=MINIO_SECRET,
        )
        self._report_to_setting(inp, result)
        return result

    def _report_to_setting(self, inp: BootstrapInput, result: BootstrapResult) -> None:
        """Show where the project's pipeline services run in its PipelineSetting's status (written only
        when it changed, so a correct project still costs no writes)."""
        setting = self.kube.find(PipelineSetting, inp.project_namespace, DEFAULT_SETTING_NAME)
        if setting is None:
            return
        status = setting.status.model_copy(deep=True) if setting.status else PipelineSettingStatus()
        status.pipeline_namespace = result.pipeline_namespace
        status.jenkins_url = result.jenkins_url or setting.spec.jenkins.url
        status.observed_generation = setting.metadata.generation
        status.set_condition(
            "Ready",
            ConditionStatus.TRUE,
            Reason.NAMESPACE_READY,
            f"pipeline namespace {result.pipeline_namespace} is ready",
            datetime.now(UTC),
        )
        if setting.status is not None and status.to_dict() == setting.status.to_dict():
            return
        with contextlib.suppress(KubeConflictError):  # a concurrent run wrote the same facts
            self.kube.patch_status(
                PipelineSetting,
                inp.project_namespace,
                DEFAULT_SETTING_NAME,
                status.to_dict(),
                resource_version=setting.metadata.resource_version,
            )

    def _ensure_secret(self, kube: Kube, inp: BootstrapInput, name: str, app: str, tally: _Tally) -> None:
        """Keep every value a live Secret has; generate only the keys that are missing."""
        live = kube.find_object("v1", "Secret", name, inp.pipeline_namespace)
        data: dict[str, str] = dict((live or {}).get("data") or {})
        missing = {key: gen() for key, gen in SECRET_GENERATORS[name].items() if key not in data}
        data.update(encode_secret_data(missing))
        keys = SECRET_GENERATORS[name].keys()
        manifest = secret_manifest(inp, name, {k: data[k] for k in keys}, app)
        tally.record(manifest, kube.ensure(manifest, live=live, read=False))

    def _ensure_optional(
        self, kube: Kube, kind: str, manifest: Manifest | None, inp: BootstrapInput, tally: _Tally
    ) -> None:
        """Our ResourceQuota or LimitRange: applied when the setting asks for it, deleted when it no longer
        does (one read either way when nothing changes)."""
        live = kube.find_object("v1", kind, EXECUTORS_NAME, inp.pipeline_namespace)
        if manifest is not None:
            manifest = with_live_quantities(manifest, live)
            tally.record(manifest, kube.ensure(manifest, live=live, read=False))
            return
        if live is None or (live.get("metadata") or {}).get("labels", {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
            return
        meta = live["metadata"]
        kube.delete_object(
            "v1", kind, EXECUTORS_NAME, inp.pipeline_namespace, uid=meta.get("uid"), missing_ok=True
        )
        tally.applied.append(f"{kind}/{EXECUTORS_NAME} (deleted)")
        tally.writes += 1

    def _ensure_absent_only(self, kube: Kube, manifest: Manifest, tally: _Tally) -> None:
        meta = manifest["metadata"]
        live = kube.find_object(manifest["apiVersion"], manifest["kind"], meta["name"], meta["namespace"])
        if live is None:
            kube.apply(manifest)
            tally.record(manifest, Outcome.CREATED)
        else:
            tally.record(manifest, Outcome.UNCHANGED)

    def _wait_ready(self, kube: Kube, inp: BootstrapInput, names: list[str]) -> None:
        # Within the attempt's own deadline, so the error below is reported rather than the attempt killed.
        timeout = seconds_left(float(inp.ready_timeout_seconds))
        deadline = time.monotonic() + timeout
        pending = list(names)
        while True:
            why: dict[str, str] = {}
            for name in pending:
                deployment = kube.read_object("apps/v1", "Deployment", name, inp.pipeline_namespace)
                ready, reason = deployment_readiness(deployment)
                if not ready:
                    why[name] = reason
            pending = [n for n in pending if n in why]
            if not pending:
                return
            if time.monotonic() >= deadline:
                name = pending[0]
                raise KubeTransientError(
                    f"Deployment {inp.pipeline_namespace}/{name} is not ready after "
                    f"{timeout:.0f}s: {why[name]}"
                    + (f" (also not ready: {', '.join(pending[1:])})" if len(pending) > 1 else ""),
                    reason=Reason.DEPLOYMENT_NOT_READY,
                )
            _heartbeat("waiting for", pending)
            _sleep(min(inp.ready_poll_seconds, max(0.05, deadline - time.monotonic())))

    # -- devops.rbac.reconcile --------------------------------------------------------------------

    @activity.defn(name=Activity.RECONCILE_ROLEBINDINGS)
    @heartbeating
    def reconcile_rolebindings(self, inp: RoleBindingInput) -> RoleBindingResult:
        try:
            return self._once(inp, RoleBindingResult, self._reconcile_rolebindings).shared_copy()
        except DevopsError as err:
            raise to_application_error(err) from err

    def _reconcile_rolebindings(self, inp: RoleBindingInput) -> RoleBindingResult:
        kube = self.planes.kube(inp.project_namespace, inp.data_plane)
        namespaces = kube.list_objects(
            "v1", "Namespace", label_selector=f"{inp.project_label}={inp.project_namespace}"
        )
        # A terminating namespace refuses new objects; it is not the project's any more.
        wanted = sorted(
            n["metadata"]["name"]
            for n in namespaces
            if not (n.get("metadata") or {}).get("deletionTimestamp")
        )
        existing = kube.list_objects(
            RBAC,
            "RoleBinding",
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY},{ROLEBINDING_PROJECT_LABEL}={inp.project_namespace}",
        )
        live_by_ns = {
            rb["metadata"]["namespace"]: rb for rb in existing if rb["metadata"]["name"] == ROLEBINDING_NAME
        }
        result = RoleBindingResult(namespaces=wanted)
        for ns in wanted:
            manifest = project_rolebinding_manifest(inp, ns)
            live = live_by_ns.get(ns)
            # Not in the labelled list: absent, or present without our labels; then ensure reads it
            # (which only happens when a write is needed anyway).
            outcome = kube.ensure(manifest, live=live)
            _heartbeat(ns, str(outcome))
            if outcome is Outcome.CREATED:
                result.created += 1
                result.writes += 1
            elif outcome is Outcome.UNCHANGED:
                result.unchanged += 1
            else:
                result.updated += 1
                result.writes += 2 if outcome is Outcome.RECREATED else 1
        wanted_set = set(wanted)
        for rb in existing:
            meta = rb["metadata"]
            if meta["namespace"] in wanted_set and meta["name"] == ROLEBINDING_NAME:
                continue
            kube.delete_object(
                RBAC, "RoleBinding", meta["name"], meta["namespace"], uid=meta["uid"], missing_ok=True
            )
            result.deleted += 1
            result.writes += 1
        return result


def project_rolebinding_manifest(inp: RoleBindingInput, namespace: str) -> Manifest:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {
            "name": ROLEBINDING_NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, ROLEBINDING_PROJECT_LABEL: inp.project_namespace},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": inp.cluster_role},
        "subjects": [
            {"kind": "ServiceAccount", "name": inp.service_account, "namespace": inp.pipeline_namespace}
        ],
    }


__all__ = [
    "NamespaceActivities",
    "deployment_readiness",
    "desired_workloads",
    "limit_range_manifest",
    "network_policy_manifest",
    "project_rolebinding_manifest",
    "resource_quota_manifest",
    "with_live_quantities",
]
