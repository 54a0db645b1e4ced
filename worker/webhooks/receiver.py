"""One delivery, end to end: authenticate, parse, decide, create the run (once), answer.

The order matters for what an outsider can learn: the Pipeline and its secret are looked up and the
signature checked BEFORE the body is parsed, and an unknown namespace/pipeline, a Pipeline without a
webhook secret and a wrong or missing signature all get the same 401 with the same body. Only a
verified body can earn a 400. Nothing of the body, the headers' values or the secret is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from activities.errors import KubeNotFoundError
from activities.gitfile import read_file_at
from activities.kube import Kube
from crds.parse import parse_pipeline_file
from crds.pipeline import Pipeline
from crds.pipeline_file import PipelineConfig
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting
from worker.runs import create_delivered_run, delivery_key
from worker.webhooks import mapping, protocol, registry, scm
from worker.webhooks.events import HookKind, MalformedPayload, Outcome, Provider
from worker.webhooks.payload import decode
from worker.webhooks.secrets import read_image_token, read_webhook_secret
from worker.webhooks.signatures import bearer_matches, verify

logger = logging.getLogger("worker.webhooks")

UNAUTHORIZED_MESSAGE = "signature verification failed"


@dataclass
class Answer:
    """The HTTP answer to a delivery, and what to count it as."""

    status: int
    outcome: Outcome
    event: str = ""
    body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.body = {"outcome": self.outcome.value, **self.body}


def _unauthorized() -> Answer:
    return Answer(401, Outcome.UNAUTHORIZED, body={"message": UNAUTHORIZED_MESSAGE})


def repository_config(pipeline: Pipeline, commit: str) -> PipelineConfig | None:
    """The pipeline file at ``commit``: inline config, else read from a public repository; None if unknown."""
    if pipeline.spec.config is not None:
        return pipeline.spec.config
    if pipeline.spec.source_code_credential_name or not commit:
        return None  # private repositories: the run reads it (the receiver holds no git credentials)
    try:
        text = read_file_at(pipeline.spec.repository_url, commit, timeout=15.0)
        return parse_pipeline_file(text) if text is not None else None
    except Exception as err:  # unreadable or invalid: the run reports it where the user looks
        logger.info(
            "pipeline file of %s/%s at %s not checked: %s",
            pipeline.namespace,
            pipeline.name,
            commit[:12],
            type(err).__name__,
        )
        return None


class Receiver:
    """Turns deliveries into runs through :func:`worker.runs.create_delivered_run`."""

    def __init__(
        self,
        kube: Kube,
        load_config: mapping.ConfigLoader = repository_config,
        *,
        registry_token: bytes = b"",
    ) -> None:
        self.kube = kube
        self.load_config = load_config
        #: The platform registry's token: its notifications (to /hooks/registry) reach every project.
        self.registry_token = registry_token

    # -- source-code providers -------------------------------------------------------------------

    def git(
        self, provider: Provider, namespace: str, name: str, headers: Mapping[str, str], body: bytes
    ) -> Answer:
        event = protocol.event_name(provider, headers)
        pipeline = self.kube.find(Pipeline, namespace, name) if namespace and name else None
        secret = read_webhook_secret(self.kube, namespace, name) if pipeline is not None else b""
        if pipeline is None or not verify(provider, headers, secret, body):
            return _unauthorized()  # the event header of an unverified request is not even counted
        try:
            hook = scm.PARSERS[provider](event, decode(body))
        except MalformedPayload as err:
            return Answer(400, Outcome.MALFORMED, event, {"message": str(err)})
        if hook.kind is HookKind.PING:
            return Answer(200, Outcome.PONG, event, {"message": "pong"})
        decision = mapping.git_run(pipeline, hook, self.load_config)
        if isinstance(decision, mapping.Skip):
            outcome = Outcome.IGNORED if hook.kind is HookKind.IGNORED else Outcome.SKIPPED
            return Answer(200, outcome, event, {"reason": decision.reason})
        key = delivery_key(provider.value, protocol.delivery_id(provider, headers, body))
        try:
            delivered = create_delivered_run(self.kube, namespace, name, key, decision)
        except KubeNotFoundError:  # deleted between the look-up and the run
            return _unauthorized()
        run = delivered.execution
        logger.info(
            "%s %s for %s/%s: run %s (%s)",
            provider.value,
            event,
            namespace,
            name,
            run.name,
            "created" if delivered.created else "redelivery",
        )
        return Answer(
            201 if delivered.created else 200,
            Outcome.CREATED if delivered.created else Outcome.DUPLICATE,
            event,
            {
                "run": run.name,
                "namespace": namespace,
                "event": decision.event,
                "ref": decision.ref,
                "commit": decision.commit,
            },
        )

    # -- image registries ------------------------------------------------------------------------

    def image(self, namespace: str, headers: Mapping[str, str], query_token: str, body: bytes) -> Answer:
        presented = headers.get("authorization") or query_token
        if not namespace and bearer_matches(presented, self.registry_token):
            allowed = sorted(
                {p.namespace for p in self.kube.list_resources(Pipeline) if p.spec.triggers.image_push}
            )
        else:
            namespaces = [namespace] if namespace else self._registry_namespaces()
            allowed = [ns for ns in namespaces if bearer_matches(presented, read_image_token(self.kube, ns))]
            if not allowed:
                return _unauthorized()
        try:
            hook = registry.parse(decode(body))
        except MalformedPayload as err:
            return Answer(400, Outcome.MALFORMED, "", {"message": str(err)})
        runs: list[dict[str, str]] = []
        created = 0
        for ns in allowed:
            pipelines = self.kube.list_resources(Pipeline, ns)
            for push in hook.pushes:
                for pipeline in pipelines:
                    if not mapping.image_matches(pipeline, push):
                        continue
                    key = delivery_key("registry", f"{push.event_id}:{push.repository}:{push.tag}")
                    delivered = create_delivered_run(
                        self.kube, ns, pipeline.name, key, mapping.image_run(pipeline, push)
                    )
                    created += delivered.created
                    runs.append(
                        {
                            "namespace": ns,
                            "run": delivered.execution.name,
                            "image": f"{push.repository}:{push.tag}",
                            "outcome": (Outcome.CREATED if delivered.created else Outcome.DUPLICATE).value,
                        }
                    )
        if not runs:
            reason = (
                f"no pipeline's imagePush matches ({len(hook.pushes)} tag pushes, "
                f"{hook.ignored} other events)"
                if hook.pushes
                else f"no tag push of a manifest ({hook.ignored} other events)"
            )
            return Answer(200, Outcome.SKIPPED, hook.event, {"reason": reason})
        outcome = Outcome.CREATED if created else Outcome.DUPLICATE
        logger.info("image push (%s): %d runs, %d new", hook.event, len(runs), created)
        return Answer(201 if created else 200, outcome, hook.event, {"runs": runs})

    def _registry_namespaces(self) -> list[str]:
        """Projects whose PipelineSetting names an image-push token (for ``/hooks/registry`` without one)."""
        return [
            s.namespace
            for s in self.kube.list_resources(PipelineSetting)
            if s.name == DEFAULT_SETTING_NAME and s.spec.webhook.image_token_secret_ref is not None
        ]


__all__ = ["UNAUTHORIZED_MESSAGE", "Answer", "Receiver", "repository_config"]
