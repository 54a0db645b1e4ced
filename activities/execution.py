"""Activities that read and write the PipelineExecution and Pipeline custom resources."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from temporalio import activity

from activities.errors import (
    ConfigError,
    DevopsError,
    KubeConflictError,
    KubeNotFoundError,
    to_application_error,
)
from activities.events import EventRecorder, status_events
from activities.gitfile import PIPELINE_FILE, read_file_at, resolve_revision
from activities.heartbeat import heartbeating
from activities.kube import Kube
from activities.locks import KeyedLocks
from crds.execution import PIPELINE_LABEL, PipelineExecution, PipelineExecutionStatus, pipeline_selector
from crds.messages import (
    Activity,
    ExecutionContext,
    ExecutionRef,
    LoadExecutionInput,
    UpdatePipelineInput,
    WriteStatusInput,
    WriteStatusResult,
)
from crds.parse import PipelineFileError, parse_pipeline_file
from crds.pipeline import Pipeline
from crds.pipeline_file import PipelineConfig
from crds.reasons import ConditionStatus, ExecutionPhase, Reason, ScmConditionType, ScmReason
from crds.setting import DEFAULT_SETTING_NAME, PipelineSetting
from crds.sourcecode import SourceCodeCredential

logger = logging.getLogger(__name__)

#: Status fields the workflow owns; ``workflow`` too once the workflow sets it (runs of versions before
#: it left that link to the bridge, and a status without one must not clear the bridge's).
WORKFLOW_OWNED = (
    "phase", "conditions", "started", "ended", "duration", "stages", "jenkins", "message",
    "pendingGate", "paused",
)  # fmt: skip
LINK = "workflow"
CAS_ATTEMPTS = 8
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
MAX_CACHED_FILES = 512
MAX_REMEMBERED_RUNS = 4096


def git_credentials(kube: Kube, namespace: str, credential_name: str | None) -> tuple[str, str]:
    """(username, token) of a SourceCodeCredential, read from its Secret; ("", "") for none."""
    if not credential_name:
        return "", ""
    cred = kube.find(SourceCodeCredential, namespace, credential_name)
    if cred is None:
        raise ConfigError(
            f"SourceCodeCredential {namespace}/{credential_name} not found", reason=Reason.CONFIG_INVALID
        )
    refused = _refusal(cred)
    if refused:
        raise ConfigError(
            f"SourceCodeCredential {namespace}/{credential_name} was refused by its provider: {refused}",
            reason=Reason.CREDENTIAL_REFUSED,
        )
    ref = cred.spec.token_secret_ref
    try:
        data = kube.read_secret(namespace, ref.name)
    except KubeNotFoundError as err:
        raise ConfigError(
            f"Secret {namespace}/{ref.name} of credential {credential_name} not found",
            reason=Reason.CONFIG_INVALID,
        ) from err
    if ref.key not in data:
        raise ConfigError(
            f"Secret {namespace}/{ref.name} has no key {ref.key!r}", reason=Reason.CONFIG_INVALID
        )
    return cred.spec.git_login_name or cred.spec.login_name, data[ref.key]


def _refusal(cred: SourceCodeCredential) -> str | None:
    """The provider's words when its last verification refused the token (a wrong or revoked one):
    the run says so, instead of failing later with git's "Authentication failed"."""
    ready = cred.status.condition(ScmConditionType.READY) if cred.status else None
    if ready is None or ready.status != ConditionStatus.FALSE:
        return None
    if ready.reason not in (ScmReason.TOKEN_REFUSED.value, ScmReason.WRONG_ACCOUNT.value):
        return None
    return ready.message or ready.reason


class ExecutionActivities:
    """Loads a run's context and writes its status (and the Events of its transitions)."""

    def __init__(self, kube: Kube, events: EventRecorder | None = None) -> None:
        self.kube = kube
        self.events = events or EventRecorder(kube)
        # The pipeline file at a commit never changes: runs of one commit (re-runs, a burst of triggers)
        # clone it once. Per project and credential, so no project reads through another's access.
        self._files: dict[tuple[str, str, str, str], tuple[str | None]] = {}
        # Each run's CR as this worker's last write (or its load) left it: the next write compares with it
        # and sends it as the patch's precondition instead of reading the CR first. A CR anyone else wrote
        # meanwhile fails that precondition (409), and is then read as before.
        self._last_seen: dict[tuple[str, str], PipelineExecution] = {}
        self._lock = threading.Lock()
        # Runs of one Pipeline that end together write its status in turn (no 409s among themselves).
        self._pipelines = KeyedLocks()

    def _remember(self, pe: PipelineExecution) -> None:
        key = (pe.namespace, pe.name)
        with self._lock:
            self._last_seen.pop(key, None)  # re-inserted last: the oldest entries are dropped first
            if pe.status is None or not pe.status.is_finished:
                self._last_seen[key] = pe
            while len(self._last_seen) > MAX_REMEMBERED_RUNS:
                del self._last_seen[next(iter(self._last_seen))]

    def _forget(self, ref: ExecutionRef) -> None:
        with self._lock:
            self._last_seen.pop((ref.namespace, ref.name), None)

    def _remembered(self, ref: ExecutionRef) -> PipelineExecution | None:
        with self._lock:
            pe = self._last_seen.get((ref.namespace, ref.name))
        if pe is None or (ref.uid and pe.metadata.uid != ref.uid) or not pe.metadata.resource_version:
            return None
        return pe

    def _remember_file(self, key: tuple[str, str, str, str], text: str | None) -> None:
        with self._lock:
            self._files[key] = (text,)
            while len(self._files) > MAX_CACHED_FILES:
                del self._files[next(iter(self._files))]

    # -- load ----------------------------------------------------------------------------------

    @activity.defn(name=Activity.LOAD_EXECUTION)
    @heartbeating
    def load(self, inp: LoadExecutionInput) -> ExecutionContext:
        try:
            return self._load(inp)
        except DevopsError as err:
            raise to_application_error(err) from err

    def _load(self, inp: LoadExecutionInput) -> ExecutionContext:
        ref = inp.execution
        pe = self.kube.get(PipelineExecution, ref.namespace, ref.name)
        if ref.uid and pe.metadata.uid and pe.metadata.uid != ref.uid:
            raise KubeNotFoundError(f"PipelineExecution {ref.namespace}/{ref.name} was re-created")
        pipeline = self.kube.find(Pipeline, ref.namespace, pe.spec.pipeline_name)
        if pipeline is None:
            raise ConfigError(
                f"Pipeline {ref.namespace}/{pe.spec.pipeline_name} not found", reason=Reason.CONFIG_INVALID
            )
        setting = self.kube.find(PipelineSetting, ref.namespace, DEFAULT_SETTING_NAME) or PipelineSetting()
        branch = pe.spec.branch or pipeline.spec.default_branch
        repo = pe.spec.repository_url or pipeline.spec.repository_url
        commit = pe.spec.commit
        spec_patch: dict[str, Any] = {}
        if not commit:
            # Pin the run to one commit, recorded in the CR: retries, the clone and the config all use it,
            # however the branch moves meanwhile.
            user, token = git_credentials(self.kube, ref.namespace, pipeline.spec.source_code_credential_name)
            commit = resolve_revision(repo, pe.spec.ref or branch, username=user, password=token)
            spec_patch["commit"] = commit
        config = pe.spec.pipeline_config or pipeline.spec.config
        if config is None:
            config = self._config_from_git(ref.namespace, pipeline, repo, commit)
            if not COMMIT_SHA.fullmatch(commit):
                # The file at a commit id never changes, so the id pins it (every trigger names one, and a
                # resolved head is one): a name that may move later is kept from it by a snapshot in the CR.
                spec_patch["pipelineConfig"] = config.to_dict()
        patch: dict[str, Any] = {"spec": spec_patch} if spec_patch else {}
        if pe.metadata.labels.get(PIPELINE_LABEL) != pipeline.name and pipeline_selector(pipeline.name):
            # A run created by hand: labelled, so the Pipeline's runs are found by a selector.
            patch["metadata"] = {"labels": {PIPELINE_LABEL: pipeline.name}}
        if patch:
            pe = self.kube.patch(PipelineExecution, ref.namespace, ref.name, patch)
        self._remember(pe)
        return ExecutionContext(
            execution=ref.model_copy(update={"uid": pe.metadata.uid or ref.uid}),
            pipeline=pipeline.name,
            run=pe.spec.run,
            branch=branch or "",
            ref=pe.spec.ref or "",
            commit=commit,
            event=str(pe.spec.event),
            triggered_by=str(pe.spec.triggered_by),
            trigger_user=pe.spec.trigger_user_name or "",
            repository_url=repo,
            source_code_credential=pipeline.spec.source_code_credential_name or "",
            variables=dict(pe.spec.variables),
            secrets_withheld=pe.spec.secrets_withheld,
            config=config,
            setting=setting.spec,
            pipeline_namespace=setting.spec.pipeline_namespace(ref.namespace),
            started=pe.metadata.creation_timestamp,
        )

    def _config_from_git(
        self, namespace: str, pipeline: Pipeline, repo: str, revision: str
    ) -> PipelineConfig:
        credential = pipeline.spec.source_code_credential_name or ""
        key = (namespace, credential, repo, revision)
        with self._lock:
            cached = self._files.get(key)
        if cached is not None:
            text = cached[0]
        else:
            user, token = git_credentials(self.kube, namespace, credential or None)
            text = read_file_at(repo, revision, PIPELINE_FILE, username=user, password=token)
            if COMMIT_SHA.fullmatch(revision):
                self._remember_file(key, text)
        if text is None:
            raise ConfigError(
                f"{PIPELINE_FILE} not found in {repo} at {revision}", reason=Reason.CONFIG_INVALID
            )
        try:
            return parse_pipeline_file(text, source=PIPELINE_FILE)
        except PipelineFileError as err:
            raise ConfigError(str(err), reason=Reason.CONFIG_INVALID) from err

    # -- status --------------------------------------------------------------------------------

    @activity.defn(name=Activity.WRITE_STATUS)
    @heartbeating
    def write_status(self, inp: WriteStatusInput) -> WriteStatusResult:
        try:
            return self.write(inp)
        except DevopsError as err:
            raise to_application_error(err) from err

    def write(self, inp: WriteStatusInput) -> WriteStatusResult:
        """Write the workflow-owned status fields that differ from the CR's (also used by the follow
        activity, which writes the changes it sees while following a build); raises DevopsError."""
        ref = inp.execution
        desired = _owned(inp.status)
        remembered = self._remembered(ref)
        for _ in range(CAS_ATTEMPTS):
            pe = remembered or self.kube.find(PipelineExecution, ref.namespace, ref.name)
            remembered = None  # a conflict reads the CR
            if pe is None or (ref.uid and pe.metadata.uid != ref.uid):
                logger.info("PipelineExecution %s/%s is gone; status not written", ref.namespace, ref.name)
                self._forget(ref)
                return WriteStatusResult(written=False, exists=False)
            live = _owned(pe.status or PipelineExecutionStatus(), link=LINK in desired)
            patch: dict[str, Any] = {k: v for k, v in desired.items() if v != live.get(k)}
            if pe.metadata.generation is not None and (
                pe.status is None or pe.status.observed_generation != pe.metadata.generation
            ):
                patch["observedGeneration"] = pe.metadata.generation
            if not patch:
                return WriteStatusResult(written=False)
            try:
                written = self.kube.patch_status(
                    PipelineExecution,
                    ref.namespace,
                    ref.name,
                    patch,
                    resource_version=pe.metadata.resource_version,
                )
            except KubeConflictError:
                continue  # someone else wrote meanwhile: read again and recompute the difference
            except KubeNotFoundError:
                self._forget(ref)
                return WriteStatusResult(written=False, exists=False)
            self._remember(written)
            # After the write, not before: a retried write finds nothing changed and emits nothing.
            self.events.record(pe, status_events(pe.status, inp.status))
            return WriteStatusResult(written=True)
        raise KubeConflictError(
            f"status of {ref.namespace}/{ref.name}: still conflicting after {CAS_ATTEMPTS} attempts"
        )

    @activity.defn(name=Activity.UPDATE_PIPELINE)
    @heartbeating
    def update_pipeline(self, inp: UpdatePipelineInput) -> None:
        try:
            self.set_pipeline_status(inp)
        except DevopsError as err:
            raise to_application_error(err) from err

    def set_pipeline_status(self, inp: UpdatePipelineInput) -> Pipeline | None:
        """The Pipeline's last run (unless a newer run has reported); returns the Pipeline as read (its
        spec is what the finish needs next), None when it is gone; raises DevopsError."""
        with self._pipelines.hold((inp.namespace, inp.pipeline)):
            return self._set_pipeline_status(inp)

    def _set_pipeline_status(self, inp: UpdatePipelineInput) -> Pipeline | None:
        for _ in range(CAS_ATTEMPTS):
            pipeline = self.kube.find(Pipeline, inp.namespace, inp.pipeline)
            if pipeline is None:
                return None
            status = pipeline.status
            last = status.last_execution_name if status else None
            if last and last != inp.execution and _run_of(last, inp.pipeline) > inp.run:
                return pipeline  # a newer run already reported; keep the newest
            patch = {
                "lastExecutionName": inp.execution,
                "lastRunState": ExecutionPhase(inp.state).value,
                "lastStarted": inp.started.isoformat() if inp.started else None,
            }
            if status and (status.last_execution_name, status.last_run_state, status.last_started) == (
                inp.execution,
                inp.state,
                inp.started,
            ):
                return pipeline
            try:
                self.kube.patch_status(
                    Pipeline,
                    inp.namespace,
                    inp.pipeline,
                    patch,
                    resource_version=pipeline.metadata.resource_version,
                )
                return pipeline
            except KubeConflictError:
                continue
        raise KubeConflictError(f"status of Pipeline {inp.namespace}/{inp.pipeline}: still conflicting")


def _owned(status: PipelineExecutionStatus, *, link: bool | None = None) -> dict[str, Any]:
    """The fields a status write sets; with the link when the status has one (``link`` None) or when
    asked (comparing the live CR with a status that has one)."""
    data = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    owned = {k: data.get(k) for k in WORKFLOW_OWNED}
    if (LINK in data) if link is None else link:
        owned[LINK] = data.get(LINK)
    return owned


def _run_of(execution_name: str, pipeline: str) -> int:
    suffix = execution_name.removeprefix(f"{pipeline}-")
    return int(suffix) if suffix.isdigit() else 0
