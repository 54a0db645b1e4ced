"""A project on the local stack: its namespace, the Secrets with the stack's Jenkins and S3 credentials,
and its PipelineSetting ``default`` pointing at them (External Jenkins = jenkins-lite, the stack's S3).

Used by the demo, the end-to-end tests and the bench; everything is idempotent.
"""

from __future__ import annotations

from activities.kube import Kube, encode_secret_data
from crds.meta import ObjectMeta, SecretReference
from crds.reasons import JenkinsMode
from crds.setting import (
    DEFAULT_SETTING_NAME,
    JenkinsSettings,
    ObjectStoreSettings,
    PipelineSetting,
    PipelineSettingSpec,
)

JENKINS_SECRET = "jenkins-credentials"
S3_SECRET = "pipeline-logs-s3"


def apply_project(
    kube: Kube,
    namespace: str,
    env: dict[str, str],
    *,
    executor_quota: int = 2,
    poll_interval: str = "1s",
    keep_jenkins_jobs: int = 0,
) -> PipelineSetting:
    """Create or update the project ``namespace`` for the stack described by ``env`` (``.devstack/env``)."""
    kube.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    secrets = {
        JENKINS_SECRET: {"username": env["JENKINS_USER"], "token": env["JENKINS_TOKEN"]},
        S3_SECRET: {"accessKey": env["S3_ACCESS_KEY"], "secretKey": env["S3_SECRET_KEY"]},
    }
    for name, data in secrets.items():
        kube.ensure(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "data": encode_secret_data(data),
            }
        )
    spec = PipelineSettingSpec.model_validate(
        {"executorQuota": executor_quota, "pollInterval": poll_interval, "keepJenkinsJobs": keep_jenkins_jobs}
    )
    spec.jenkins = JenkinsSettings(
        mode=JenkinsMode.EXTERNAL,
        url=env["JENKINS_URL"],
        credentials_secret_ref=SecretReference(name=JENKINS_SECRET),
    )
    spec.object_store = ObjectStoreSettings(
        endpoint=env["S3_ENDPOINT"],
        secure=env.get("S3_SECURE", "false") == "true",
        credentials_secret_ref=SecretReference(name=S3_SECRET),
    )
    setting = PipelineSetting(metadata=ObjectMeta(name=DEFAULT_SETTING_NAME, namespace=namespace), spec=spec)
    live = kube.find(PipelineSetting, namespace, DEFAULT_SETTING_NAME)
    if live is None:
        return kube.create(setting)
    if live.spec.to_dict() == spec.to_dict():
        return live
    setting.metadata.resource_version = live.metadata.resource_version
    return kube.replace(setting)
