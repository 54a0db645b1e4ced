"""A delivery and a Pipeline -> the run to create, or the reason none is created (pure functions)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from crds.pipeline import Pipeline
from crds.pipeline_file import PipelineConfig
from crds.reasons import GitEvent, TriggeredBy
from worker.runs import RunDetails
from worker.webhooks.events import GitHook, HookKind, ImagePush

SKIP_CI = re.compile(r"\[(skip ci|ci skip)\]", re.IGNORECASE)

#: Loads the pipeline file a run of this commit would use (None: unknown, let the run decide).
ConfigLoader = Callable[[Pipeline, str], PipelineConfig | None]


@dataclass(frozen=True)
class Skip:
    """Nothing runs, and why (in the answer to the provider)."""

    reason: str


def git_run(pipeline: Pipeline, hook: GitHook, load_config: ConfigLoader) -> RunDetails | Skip:
    """The run a source-code delivery starts for ``pipeline``, or why it starts none."""
    if hook.kind is HookKind.IGNORED:
        return Skip(hook.note)
    if hook.kind is HookKind.PING:
        return Skip("ping")
    if hook.deleted:
        return Skip(f"{hook.ref} was deleted")
    if hook.without_commits:
        return Skip(f"the push to {hook.ref} carries no commits")
    triggers = pipeline.spec.triggers
    event = {
        HookKind.PUSH: GitEvent.PUSH,
        HookKind.TAG: GitEvent.TAG,
        HookKind.PULL_REQUEST: GitEvent.PULL_REQUEST,
    }[hook.kind]
    switch = {
        GitEvent.PUSH: ("webhookPush", triggers.webhook_push),
        GitEvent.TAG: ("webhookTag", triggers.webhook_tag),
        GitEvent.PULL_REQUEST: ("webhookPullRequest", triggers.webhook_pull_request),
    }[event]
    if not switch[1]:
        return Skip(f"triggers.{switch[0]} is off for this pipeline")
    if hook.message and SKIP_CI.search(hook.message):
        return Skip("the head commit message asks to skip CI ([skip ci])")
    branch = hook.branch or None
    config = load_config(pipeline, hook.commit)
    if config is not None and not config.applies(branch, event.value):
        return Skip(
            f"the pipeline file's branch/event constraints exclude {event.value} on {branch or hook.ref}"
        )
    withheld = event is GitEvent.PULL_REQUEST and hook.from_fork and not triggers.fork_pull_request_secrets
    return RunDetails(
        branch=hook.branch,
        triggered_by=TriggeredBy.WEBHOOK.value,
        trigger_user=hook.sender,
        event=event.value,
        commit=hook.commit,
        ref=hook.ref,
        author=hook.author,
        commit_message=hook.message,
        html_link=hook.link,
        secrets_withheld=withheld,
    )


def image_matches(pipeline: Pipeline, push: ImagePush) -> bool:
    """Whether ``triggers.imagePush`` (repository, tag globs) covers this pushed tag."""
    trigger = pipeline.spec.triggers.image_push
    if trigger is None:
        return False
    wanted = _without_registry_host(trigger.repository.strip("/"))
    repo = _without_registry_host(push.repository.strip("/"))
    if not (repo == wanted or fnmatch.fnmatchcase(repo, wanted)):
        return False
    return trigger.tag is None or trigger.tag.matches(push.tag)


def _without_registry_host(repository: str) -> str:
    """``registry.example:5000/team/app`` -> ``team/app`` (a first part with ``.`` or ``:``, or
    ``localhost``, is a host, as docker reads image names); ``team/app`` stays."""
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return rest
    return repository


def image_run(pipeline: Pipeline, push: ImagePush) -> RunDetails:
    return RunDetails(
        branch=None,
        triggered_by=TriggeredBy.IMAGE.value,
        event=GitEvent.IMAGE.value,
        variables=(
            ("CICD_IMAGE_REPO", push.repository),
            ("CICD_IMAGE_TAG", push.tag),
            ("CICD_IMAGE_DIGEST", push.digest),
        ),
    )


__all__ = ["ConfigLoader", "Skip", "git_run", "image_matches", "image_run"]
