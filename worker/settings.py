"""The worker's settings, read from the environment with the names ``.devstack/env`` writes.

So ``source .devstack/env && python -m worker`` just works, and so does a Deployment that sets the same
variables. Every field has an explicit environment name (its alias); secrets are ``SecretStr`` so they
never show in a log line or a ``repr``.

===========================  ====================================================================
Variable                     Meaning (default)
===========================  ====================================================================
TEMPORAL_ADDRESS             Temporal frontend ``host:port`` (``localhost:7233``)
TEMPORAL_NAMESPACE           Temporal namespace (``default``)
TEMPORAL_UI_URL              Base URL of the Temporal UI, for links in CRs (empty: no link)
TEMPORAL_TLS                 Use TLS to reach Temporal (``false``)
TEMPORAL_API_KEY             API key for Temporal Cloud-style auth (unset; implies TLS)
TEMPORAL_TLS_CERT            file of the mTLS client certificate, PEM (unset; implies TLS)
TEMPORAL_TLS_KEY             file of that certificate's private key, PEM (required with the cert)
TEMPORAL_TLS_CA              file of the CA certificates that verify the server (unset: system roots)
TEMPORAL_TLS_SERVER_NAME     name to verify in the server's certificate (unset: the address' host)
KUBECONFIG                   kubeconfig file; unset: in-cluster config, else ``~/.kube/config``
S3_ENDPOINT                  object store ``host:port`` for step logs
S3_ACCESS_KEY, S3_SECRET_KEY object store credentials (secrets)
S3_SECURE                    HTTPS to the object store (``true``)
S3_REGION                    region the object store requests are signed for (``us-east-1``; empty: ask)
S3_BUCKET                    bucket of step logs (``pipeline-logs``)
JENKINS_URL, JENKINS_USER,   the Jenkins used when a PipelineSetting names none (token: secret)
JENKINS_TOKEN
CUBEPAAS_TASK_QUEUE          Temporal task queue (``cubepaas-devops``)
CUBEPAAS_WATCH_NAMESPACES    comma list of namespaces the bridge watches (empty: all)
CUBEPAAS_HEALTH_HOST         bind address of /healthz, /readyz, /metrics (``0.0.0.0``)
CUBEPAAS_HEALTH_PORT         port of that HTTP server (``8080``)
CUBEPAAS_METRICS_PORT        port of the SDK's Prometheus endpoint on 127.0.0.1 (``9464``; 0: any free)
CUBEPAAS_MAX_ACTIVITIES      concurrent activities, and as many local ones (``100``)
CUBEPAAS_SHUTDOWN_GRACE      seconds running activities get to finish on SIGTERM (``30``)
CUBEPAAS_WORKFLOW_SANDBOX    run workflows in the SDK's sandbox, which checks every call they make at
                             run time (``false``: the tests run them in it; see worker/main.py)
CUBEPAAS_BRIDGE              run the CR -> workflow bridge in this process (``true``)
CUBEPAAS_LEADER_ELECTION     only the holder of a Lease runs the bridge (for replicas; ``false``)
CUBEPAAS_LEASE_NAME          that Lease's name (``cubepaas-worker-leader``)
CUBEPAAS_LEASE_NAMESPACE     its namespace (empty: the pod's own namespace, else ``default``)
CUBEPAAS_LEASE_DURATION      how long a lease holds without renewal, seconds or ``15s`` (15s)
CUBEPAAS_IDENTITY            this replica's name in the Lease (empty: ``<hostname>-<pid>``)
CUBEPAAS_INSTALL_CRDS        install/update the CRDs at start-up; failure is only logged (``true``)
CUBEPAAS_RETENTION_SCHEDULE  create the daily log retention Schedule (on this task queue) if missing
                             (``true``; workers on side queues, e.g. tests', set ``false``)
CUBEPAAS_LOG_LEVEL           logging level (``INFO``)
CUBEPAAS_WEBHOOK_HOST        bind address of the webhook receiver (``0.0.0.0``)
CUBEPAAS_WEBHOOK_PORT        its port (``8090``; 0: a free port, printed in its first log line)
CUBEPAAS_WEBHOOK_URL         the receiver's public base URL shown by ``devopsctl webhook`` and registered
                             at providers (empty: ``http://127.0.0.1:<CUBEPAAS_WEBHOOK_PORT>``, shown
                             but never registered: a provider cannot reach a loopback default)
CUBEPAAS_WEBHOOK_TIMEOUT     seconds a client may take to send a request (``10``)
CUBEPAAS_REGISTRY_TOKEN      token of the platform's own registry: its notifications to ``/hooks/registry``
                             with it reach every project's imagePush triggers (secret; unset: none)
CUBEPAAS_SCHEDULES           reconcile the Pipelines' cron and SCM-polling Temporal Schedules (``true``)
CUBEPAAS_SCM                 verify SourceCodeCredentials, sync their repositories and register
                             Pipelines' webhooks at the providers (``true``)
CUBEPAAS_VERIFIED_TTL        how long a pipeline namespace this worker bootstrapped vouches for itself:
                             runs of the same PipelineSetting started within it skip the bootstrap
                             and the RoleBinding reconcile (seconds or ``1m``; ``60``; 0: never skip)
CUBEPAAS_SCM_SYNC_INTERVAL   how often each credential is verified and its repositories listed,
                             seconds or ``5m`` (``300``)
===========================  ====================================================================
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crds.messages import TASK_QUEUE

if TYPE_CHECKING:
    from activities.kube import Kube

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_seconds(value: Any) -> Any:
    """``2``, ``2.5``, ``"500ms"``, ``"2s"``, ``"1m"``, ``"1h"`` -> seconds (anything else: pydantic's)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    return value


class WorkerSettings(BaseSettings):
    """Everything the worker process, the bridge and the CLI need; see the module doc for the names."""

    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, case_sensitive=False, env_ignore_empty=False
    )

    temporal_address: str = Field("localhost:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", validation_alias="TEMPORAL_NAMESPACE")
    temporal_ui_url: str = Field("", validation_alias="TEMPORAL_UI_URL")
    temporal_tls: bool = Field(False, validation_alias="TEMPORAL_TLS")
    temporal_api_key: SecretStr | None = Field(None, validation_alias="TEMPORAL_API_KEY")
    temporal_tls_cert: Path | None = Field(None, validation_alias="TEMPORAL_TLS_CERT")
    temporal_tls_key: Path | None = Field(None, validation_alias="TEMPORAL_TLS_KEY")
    temporal_tls_ca: Path | None = Field(None, validation_alias="TEMPORAL_TLS_CA")
    temporal_tls_server_name: str | None = Field(None, validation_alias="TEMPORAL_TLS_SERVER_NAME")

    kubeconfig: str | None = Field(None, validation_alias="KUBECONFIG")

    s3_endpoint: str = Field("", validation_alias="S3_ENDPOINT")
    s3_access_key: SecretStr = Field(SecretStr(""), validation_alias="S3_ACCESS_KEY")
    s3_secret_key: SecretStr = Field(SecretStr(""), validation_alias="S3_SECRET_KEY")
    s3_secure: bool = Field(True, validation_alias="S3_SECURE")
    s3_region: str = Field("us-east-1", validation_alias="S3_REGION")
    s3_bucket: str = Field("pipeline-logs", validation_alias="S3_BUCKET")

    jenkins_url: str = Field("", validation_alias="JENKINS_URL")
    jenkins_user: str = Field("", validation_alias="JENKINS_USER")
    jenkins_token: SecretStr = Field(SecretStr(""), validation_alias="JENKINS_TOKEN")

    task_queue: str = Field(TASK_QUEUE, min_length=1, validation_alias="CUBEPAAS_TASK_QUEUE")
    watch_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="CUBEPAAS_WATCH_NAMESPACES"
    )
    health_host: str = Field("0.0.0.0", validation_alias="CUBEPAAS_HEALTH_HOST")
    health_port: int = Field(8080, ge=0, le=65535, validation_alias="CUBEPAAS_HEALTH_PORT")
    metrics_port: int = Field(9464, ge=0, le=65535, validation_alias="CUBEPAAS_METRICS_PORT")
    max_activities: int = Field(100, ge=1, validation_alias="CUBEPAAS_MAX_ACTIVITIES")
    shutdown_grace: float = Field(30.0, ge=0, validation_alias="CUBEPAAS_SHUTDOWN_GRACE")
    workflow_sandbox: bool = Field(False, validation_alias="CUBEPAAS_WORKFLOW_SANDBOX")
    bridge_enabled: bool = Field(True, validation_alias="CUBEPAAS_BRIDGE")
    leader_election: bool = Field(False, validation_alias="CUBEPAAS_LEADER_ELECTION")
    lease_name: str = Field("cubepaas-worker-leader", min_length=1, validation_alias="CUBEPAAS_LEASE_NAME")
    lease_namespace: str = Field("", validation_alias="CUBEPAAS_LEASE_NAMESPACE")
    lease_duration: float = Field(15.0, ge=3, validation_alias="CUBEPAAS_LEASE_DURATION")
    identity: str = Field("", validation_alias="CUBEPAAS_IDENTITY")
    install_crds: bool = Field(True, validation_alias="CUBEPAAS_INSTALL_CRDS")
    retention_schedule: bool = Field(True, validation_alias="CUBEPAAS_RETENTION_SCHEDULE")
    log_level: str = Field("INFO", validation_alias="CUBEPAAS_LOG_LEVEL")
    webhook_host: str = Field("0.0.0.0", validation_alias="CUBEPAAS_WEBHOOK_HOST")
    webhook_port: int = Field(8090, ge=0, le=65535, validation_alias="CUBEPAAS_WEBHOOK_PORT")
    webhook_url: str = Field("", validation_alias="CUBEPAAS_WEBHOOK_URL")
    webhook_timeout: float = Field(10.0, gt=0, validation_alias="CUBEPAAS_WEBHOOK_TIMEOUT")
    registry_token: SecretStr = Field(SecretStr(""), validation_alias="CUBEPAAS_REGISTRY_TOKEN")
    schedules_enabled: bool = Field(True, validation_alias="CUBEPAAS_SCHEDULES")
    scm_enabled: bool = Field(True, validation_alias="CUBEPAAS_SCM")
    scm_sync_interval: float = Field(300.0, ge=1, validation_alias="CUBEPAAS_SCM_SYNC_INTERVAL")
    verified_ttl: float = Field(60.0, ge=0, validation_alias="CUBEPAAS_VERIFIED_TTL")

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "shutdown_grace",
        "lease_duration",
        "webhook_timeout",
        "scm_sync_interval",
        "verified_ttl",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return parse_seconds(value)

    @field_validator(
        "kubeconfig",
        "temporal_api_key",
        "temporal_tls_cert",
        "temporal_tls_key",
        "temporal_tls_ca",
        "temporal_tls_server_name",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _client_certificate_has_its_key(self) -> WorkerSettings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS needs both)")
        return self

    @field_validator("temporal_ui_url", "webhook_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @classmethod
    def load(cls, env_file: str | Path | None = None, **overrides: Any) -> WorkerSettings:
        """Settings from the environment; ``env_file`` (``.devstack/env`` style) fills what it leaves unset.

        ``overrides`` (field or variable names) win over both.
        """
        values: dict[str, Any] = {}
        if env_file is not None:
            present = {k.upper() for k in os.environ}
            values = {k: v for k, v in load_env_file(env_file).items() if k.upper() not in present}
        values.update(overrides)
        return cls(**values)

    def kube(self) -> Kube:
        """A Kubernetes client: ``KUBECONFIG`` when set, else in-cluster, else ``~/.kube/config``."""
        from activities.kube import Kube

        if self.kubeconfig:
            return Kube.from_kubeconfig(self.kubeconfig)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return Kube.in_cluster()
        return Kube.from_kubeconfig(None)

    def safe_summary(self) -> str:
        """One log line describing where this worker talks to (no secret values)."""
        namespaces = ",".join(self.watch_namespaces) or "<all>"
        return (
            f"temporal={self.temporal_address} namespace={self.temporal_namespace} "
            f"task_queue={self.task_queue} kubeconfig={self.kubeconfig or '<in-cluster/default>'} "
            f"watch={namespaces} s3={self.s3_endpoint or '-'} bucket={self.s3_bucket} "
            f"jenkins={self.jenkins_url or '-'}"
        )


def load_env_file(path: str | Path) -> dict[str, str]:
    """Variables of a ``.devstack/env``-style file: ``export K=V`` (or ``K=V``) lines, shell-quoted.

    Comments and blank lines are skipped. Nothing is written to ``os.environ``.
    """
    values: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, rest = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            continue
        parts = shlex.split(rest, comments=True)
        values[name] = parts[0] if parts else ""
    return values


__all__ = ["WorkerSettings", "load_env_file", "parse_seconds"]
