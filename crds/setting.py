"""PipelineSetting: one per project namespace, named ``default``; how that project's pipelines run."""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from pydantic import Field, field_validator

from crds.meta import (
    AGE_COLUMN,
    CrdInfo,
    CustomResource,
    KubeModel,
    PrinterColumn,
    SecretReference,
)
from crds.notifiers import NotificationSettings, Notifier
from crds.pipeline_file import Duration, Quantity
from crds.reasons import JenkinsMode
from crds.status import HasConditions

DEFAULT_SETTING_NAME: Final = "default"
DEFAULT_EXECUTOR_QUOTA: Final = 2
DEFAULT_POLL_INTERVAL: Final = "2s"
DEFAULT_PROJECT_LABEL: Final = "devops.cubepaas.io/project"


class ExecutorResources(KubeModel):
    """CPU and memory of each step container of the build agent (per step, unless the step overrides); also
    the defaults of a LimitRange in the pipeline namespace for containers that set none."""

    cpu_request: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_request: Quantity | None = None
    memory_limit: Quantity | None = None

    def default_requests(self) -> dict[str, str]:
        return {k: v for k, v in (("cpu", self.cpu_request), ("memory", self.memory_request)) if v}

    def default_limits(self) -> dict[str, str]:
        return {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}


class ResourceQuotaSettings(KubeModel):
    """A ResourceQuota on the pipeline namespace: what the project's builds (and, in Managed mode, its
    Jenkins, registry and object store) may use at once; a pod beyond it is refused with the quota's
    message."""

    requests_cpu: Quantity | None = None
    requests_memory: Quantity | None = None
    limits_cpu: Quantity | None = None
    limits_memory: Quantity | None = None
    pods: int | None = Field(default=None, ge=0)
    """Pods at once (each build is one agent pod)."""

    def hard(self) -> dict[str, str]:
        """``spec.hard`` of the ResourceQuota (empty: no quota)."""
        hard = {
            "requests.cpu": self.requests_cpu,
            "requests.memory": self.requests_memory,
            "limits.cpu": self.limits_cpu,
            "limits.memory": self.limits_memory,
            "pods": None if self.pods is None else str(self.pods),
        }
        return {k: v for k, v in hard.items() if v is not None}


class CacheSettings(KubeModel):
    """Step caches: hostPath directories on build nodes, reused by pinning runs to recent nodes."""

    enabled: bool = True
    """Whether steps' cache paths are mounted at all."""
    host_path_root: str = Field(default="/var/lib/cubepaas-devops/cache", pattern=r"^/")
    """Directory on the nodes under which caches live (one subdirectory per pipeline and path)."""
    node_history_size: int = Field(default=3, ge=0, le=100)
    """How many recently used nodes of a pipeline are preferred for its next run."""


class JenkinsSettings(KubeModel):
    """The Jenkins that runs this project's builds."""

    mode: JenkinsMode = JenkinsMode.MANAGED
    """Managed: deployed in the pipeline namespace by the engine; External: the Jenkins at url."""
    url: str | None = None
    """Base URL of an External Jenkins (optional for Managed: defaults to its in-cluster Service)."""
    credentials_secret_ref: SecretReference | None = None
    """Secret with keys username and token (API token) for Jenkins."""


class ObjectStoreSettings(KubeModel):
    """S3-compatible storage for step logs (a MinIO in the pipeline namespace when unset)."""

    endpoint: str | None = None
    """host:port of the object store; empty = the managed MinIO of the pipeline namespace."""
    bucket: str = Field(default="pipeline-logs", min_length=3, max_length=63)
    secure: bool = False
    """Use TLS."""
    credentials_secret_ref: SecretReference | None = None
    """Secret with keys accessKey and secretKey."""
    log_retention_days: int = Field(default=30, ge=0, le=36500)
    """Step logs older than this many days are deleted by the daily retention sweep; 0 = keep forever."""


class RegistrySettings(KubeModel):
    """The image registry publishImage steps push to by default."""

    host: str | None = None
    """Registry host[:port] (CICD_LOCAL_REGISTRY); empty = the managed registry of the pipeline namespace."""
    credentials_secret_ref: SecretReference | None = None
    """Secret of type kubernetes.io/dockerconfigjson (key .dockerconfigjson) with the auths of the registries
    publishImage steps push to (this one and pushRemote ones); bound as a Jenkins credential, never in a
    script. Empty: the managed registry's own credentials, or none for a registry named by host."""
    insecure: bool = False
    """Plain HTTP or unverified TLS to this registry (buildah --tls-verify=false), for pulls and pushes."""


class WebhookSettings(KubeModel):
    """How the webhook receiver authenticates image-push notifications of this project."""

    image_token_secret_ref: SecretReference | None = None
    """Secret with key ``token``: registries send it as ``Authorization: Bearer <token>`` (Docker Hub,
    which cannot set headers, as ``?token=``). Unset: image-push notifications are refused."""


class DataPlaneSettings(KubeModel):
    """Where Jenkins, the registry and the object store run for this project."""

    namespace: str | None = Field(default=None, max_length=63)
    """The pipeline namespace; empty = <project namespace>-pipeline."""
    kubeconfig_secret_ref: SecretReference | None = None
    """Secret with key kubeconfig for a separate data-plane cluster; empty = this cluster."""


class PersistenceSettings(KubeModel):
    """Persistent volumes for the managed Jenkins, registry and object store."""

    enabled: bool = False
    """Use PersistentVolumeClaims (needs a storage class); otherwise emptyDir (lost on restart)."""
    storage_class_name: str | None = None
    jenkins_size: Quantity = "10Gi"
    object_store_size: Quantity = "20Gi"
    registry_size: Quantity = "20Gi"


class PipelineSettingSpec(KubeModel):
    """How the project's pipelines run."""

    executor_quota: int = Field(default=DEFAULT_EXECUTOR_QUOTA, ge=0, le=1000)
    """Maximum number of executions building at once; 0 = unlimited. Others wait in Queueing."""
    executor_resources: ExecutorResources = Field(default_factory=ExecutorResources)
    resource_quota: ResourceQuotaSettings = Field(default_factory=ResourceQuotaSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    jenkins: JenkinsSettings = Field(default_factory=JenkinsSettings)
    object_store: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    data_plane: DataPlaneSettings = Field(default_factory=DataPlaneSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    persistence: PersistenceSettings = Field(default_factory=PersistenceSettings)
    poll_interval: Duration = Duration(DEFAULT_POLL_INTERVAL)
    """How often a running build is polled in Jenkins."""
    keep_jenkins_jobs: int = Field(default=0, ge=0, le=1000)
    """Keep the Jenkins jobs of the last N executions (for debugging); 0 = delete each when its run ends."""
    cluster_role: str = Field(default="admin", alias="roleBindingClusterRole", min_length=1)
    """ClusterRole bound to the Jenkins ServiceAccount in each namespace of the project."""
    project_label: str = Field(default=DEFAULT_PROJECT_LABEL, min_length=1)
    """Label whose value (the project namespace's name) marks the namespaces of the project."""
    notifiers: list[Notifier] = Field(
        default_factory=list,
        max_length=50,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Named notifiers the pipeline files' notification.recipients[].notifier refer to."""
    notification: NotificationSettings = Field(default_factory=NotificationSettings)

    @field_validator("notifiers")
    @classmethod
    def _unique_notifier_names(cls, notifiers: list[Notifier]) -> list[Notifier]:
        names = [n.name for n in notifiers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate notifier names: {', '.join(duplicates)}")
        return notifiers

    def notifier(self, name: str) -> Notifier | None:
        return next((n for n in self.notifiers if n.name == name), None)

    def effective_quota(self) -> int:
        """The executor capacity: a positive number, or 0 for unlimited."""
        return max(self.executor_quota, 0)

    def jenkins_mode(self) -> Literal["Managed", "External"]:
        return "External" if self.jenkins.mode == JenkinsMode.EXTERNAL else "Managed"

    def persistent_volumes(self) -> bool:
        return self.persistence.enabled

    def role_binding_cluster_role(self) -> str:
        return self.cluster_role

    def poll_interval_seconds(self) -> float:
        return float(self.poll_interval.seconds)

    def pipeline_namespace(self, project_namespace: str) -> str:
        """The namespace where Jenkins, the registry and the object store run."""
        return self.data_plane.namespace or f"{project_namespace}-pipeline"


class PipelineSettingStatus(HasConditions):
    """Observed state of the project's pipeline infrastructure."""

    observed_generation: int | None = None
    pipeline_namespace: str | None = None
    """The pipeline namespace the engine bootstrapped."""
    jenkins_url: str | None = None
    """The URL the engine uses to reach Jenkins."""


class PipelineSetting(CustomResource):
    """Per-project settings of the CI/CD engine; one per project namespace, named ``default``."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="pipelinesettings",
        short_names=("ps",),
        printer_columns=(
            PrinterColumn(
                "Quota", ".spec.executorQuota", "integer", "Maximum concurrent executions (0 = unlimited)"
            ),
            PrinterColumn("Jenkins", ".spec.jenkins.mode"),
            PrinterColumn("Namespace", ".status.pipelineNamespace", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["PipelineSetting"] = "PipelineSetting"
    spec: PipelineSettingSpec = Field(default_factory=PipelineSettingSpec)
    status: PipelineSettingStatus | None = None


__all__ = [
    "DEFAULT_EXECUTOR_QUOTA",
    "DEFAULT_SETTING_NAME",
    "CacheSettings",
    "DataPlaneSettings",
    "ExecutorResources",
    "JenkinsSettings",
    "ObjectStoreSettings",
    "PersistenceSettings",
    "PipelineSetting",
    "PipelineSettingSpec",
    "PipelineSettingStatus",
    "RegistrySettings",
    "ResourceQuotaSettings",
    "WebhookSettings",
]
