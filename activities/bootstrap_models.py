"""Inputs and outputs of the namespace bootstrap and RoleBinding activities.

Plain pydantic models (to move into :mod:`crds.messages`). No secret value travels here: the result
names the Secrets (and their keys) that hold the generated credentials.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROJECT_LABEL = "devops.cubepaas.io/project"
"""Label on a namespace naming the project (namespace) it belongs to."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class BootstrapInput(_Msg):
    """What the pipeline namespace of one project must contain."""

    project_namespace: str
    """The project's namespace (where its PipelineSetting and Pipelines live)."""
    pipeline_namespace: str
    """The namespace that runs Jenkins, the registry and MinIO for the project."""
    jenkins_mode: Literal["Managed", "External"] = "Managed"
    """``External``: the setting names a Jenkins elsewhere; no Jenkins workload is created."""
    persistent_volumes: bool = False
    """Back Jenkins home, the registry and MinIO with PersistentVolumeClaims (else emptyDir)."""
    storage_class: str | None = None
    """StorageClass of the claims (None: the cluster's default)."""
    jenkins_volume_size: str = "10Gi"
    registry_volume_size: str = "20Gi"
    minio_volume_size: str = "20Gi"
    project_label: str = PROJECT_LABEL
    """Namespaces labelled ``<project_label>=<project_namespace>`` may reach the pipeline namespace."""
    allowed_ingress_namespaces: list[str] = Field(default_factory=list)
    """Further namespaces allowed by the NetworkPolicy (e.g. the worker's)."""
    agents_cluster_role: str = "edit"
    """ClusterRole bound to the jenkins ServiceAccount in the pipeline namespace (agent pods)."""
    ready_timeout_seconds: int = Field(default=300, ge=0)
    """Deadline for every Deployment to become available."""
    ready_poll_seconds: float = Field(default=2.0, gt=0)
    jenkins_image: str = "jenkins/jenkins:2.492.3-lts-jdk17"
    registry_image: str = "registry:2.8.3"
    minio_image: str = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
    htpasswd_image: str = "httpd:2.4-alpine"
    """Runs ``htpasswd -B`` in the registry's init container (bcrypt stays out of Python)."""


class BootstrapResult(_Msg):
    """What the bootstrap did and where the services are."""

    pipeline_namespace: str
    applied: int = 0
    """Objects created or changed by this run."""
    unchanged: int = 0
    """Objects that already matched (they cost one read each)."""
    writes: int = 0
    """Write requests sent (applies and deletes); 0 for a correct namespace."""
    applied_objects: list[str] = Field(default_factory=list)
    """``Kind/name`` of each object created or changed, in order."""
    jenkins_url: str | None = None
    """In-cluster URL of the managed Jenkins (None in External mode)."""
    jenkins_credentials_secret: str | None = None
    """Secret with keys ``username``, ``password``, ``token`` (None in External mode)."""
    registry_host: str = ""
    registry_credentials_secret: str = ""
    """Secret with keys ``username`` and ``password``."""
    object_store_endpoint: str = ""
    object_store_credentials_secret: str = ""
    """Secret with keys ``accessKey`` and ``secretKey``."""


class RoleBindingInput(_Msg):
    """Grant the jenkins ServiceAccount a ClusterRole in each of the project's namespaces."""

    project_namespace: str
    pipeline_namespace: str
    cluster_role: str = "admin"
    project_label: str = PROJECT_LABEL
    service_account: str = "jenkins"


class RoleBindingResult(_Msg):
    created: int = 0
    updated: int = 0
    """Changed in place, or deleted and created again when the roleRef changed."""
    deleted: int = 0
    """Stale RoleBindings removed from namespaces that are no longer the project's."""
    unchanged: int = 0
    writes: int = 0
    namespaces: list[str] = Field(default_factory=list)
    """The project's namespaces, sorted."""
