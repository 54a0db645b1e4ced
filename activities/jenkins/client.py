"""The Jenkins engine: every call the product makes to Jenkins, via python-jenkins and the public REST API.

Methods are blocking (activities run them in a thread pool) and idempotent where the caller needs it:
``ensure_*`` converge, :meth:`JenkinsEngine.trigger` finds an execution's queued item or build before it
starts one, stop/cancel/gate calls accept "already done". Faults are classified in one place,
:func:`classify`, into :class:`~activities.errors.JenkinsTransientError` (retry) and
:class:`~activities.errors.JenkinsPermanentError` (do not). Reads (GETs) are retried inside the engine with a
small bounded backoff so one flaky answer does not fail an activity attempt; writes (POSTs) are not replayed
blindly: the operations that issue them re-check state first, and the activity retry does the rest.

REST paths used (Jenkins core, workflow-job, pipeline-input-step, credentials and Pipeline Stage View REST
API plugins; see docs/jenkins-plan.md and shared/reference/jenkins-rest.md):

- ``job/<n>/config.xml`` GET/POST, ``createItem?name=``, ``job/<n>/doDelete``, ``job/<n>/api/json``
- ``job/<n>/buildWithParameters?CUBEPAAS_EXECUTION_ID=..&delay=0sec`` (201, ``Location: queue/item/<id>/``)
- ``queue/api/json``, ``queue/item/<id>/api/json``, ``queue/cancelItem?id=``
- ``job/<n>/<b>/api/json``, ``.../stop``, ``.../term``, ``.../kill`` (WorkflowRun, all POST)
- ``job/<n>/<b>/wfapi/describe``, ``.../execution/node/<id>/wfapi/describe`` (``stageFlowNodes``)
- ``job/<n>/<b>/logText/progressiveText``, ``.../execution/node/<id>/log/logText/progressiveText``
- ``job/<n>/<b>/wfapi/pendingInputActions``, ``.../input/<Id>/proceedEmpty`` and ``.../input/<Id>/abort``
- ``credentials/store/system/domain/_/createCredentials``,
  ``.../credential/<id>/api/json``, ``.../config.xml``, ``.../doDelete``

Checked against the sources (search of jenkinsci repositories):

- A flow node's full log: workflow-api ``LogAction.getUrlName()`` is ``"log"`` and ``getLogText()`` is an
  ``AnnotatedLargeText`` (whose ``progressiveText`` serves ``X-Text-Size``/``X-More-Data``), hence
  ``execution/node/<id>/log/logText/progressiveText?start=``. The Stage View's ``FlowNodeLogExt``
  (``wfapi/log``) returns only the last ``maxReturnChars`` (10 KiB) with ``hasMore``; its ``consoleUrl`` is
  the node URL + ``log``.
- Gates: the Stage View's ``PendingInputActionsExt`` sets ``abortUrl`` = ``<run url>input/<id>/abort`` and
  ``proceedUrl`` = ``wfapi/inputSubmit?inputId=<id>`` (a form endpoint); ``InputStepExecution``'s
  ``doProceedEmpty`` and ``doAbort`` are ``@RequirePOST``. The engine uses the returned ``abortUrl`` and its
  ``proceedEmpty`` sibling.
- Stop: ``WorkflowRun.doTerm``/``doKill`` are ``@RequirePOST``; their links are printed 15 s after a stop.
- python-jenkins 1.8.3 turns 401/403/500 into ``JenkinsException`` (the ``HTTPError`` as context), 404 into
  ``NotFoundException``, re-raises other ``HTTPError``s, wraps timeouts in ``TimeoutException``, lets
  ``ConnectionError`` through; several helpers (``get_build_info``...) report any HTTP error as "does not
  exist", which is why the engine calls ``jenkins_request`` itself and classifies the status.

The engine is composed of one part per job (each a module): :mod:`~activities.jenkins.transport` (the
request path), :mod:`~activities.jenkins.errors` (classification), :mod:`~activities.jenkins.jobs`,
:mod:`~activities.jenkins.credentials`, :mod:`~activities.jenkins.builds` (trigger, queue, stop),
:mod:`~activities.jenkins.stages` (status and gates) and :mod:`~activities.jenkins.console` (logs); the
models it returns are in :mod:`~activities.jenkins.models`.
"""

from __future__ import annotations

from activities.jenkins.builds import BuildsMixin
from activities.jenkins.console import LogsMixin
from activities.jenkins.credentials import CredentialsMixin
from activities.jenkins.errors import classify, jenkins_errors
from activities.jenkins.jobs import MAX_JOB_NAME, JobsMixin, job_name
from activities.jenkins.models import (
    BuildRef,
    BuildStatus,
    CredentialKind,
    PendingInput,
    PipelineJob,
    StageStatus,
    StepStatus,
)
from activities.jenkins.stages import STEP_STAGE, StagesMixin


class JenkinsEngine(JobsMixin, CredentialsMixin, BuildsMixin, StagesMixin, LogsMixin):
    """Typed, classified, idempotent access to one Jenkins (or jenkins-lite)."""


__all__ = [
    "MAX_JOB_NAME",
    "STEP_STAGE",
    "BuildRef",
    "BuildStatus",
    "CredentialKind",
    "JenkinsEngine",
    "PendingInput",
    "PipelineJob",
    "StageStatus",
    "StepStatus",
    "classify",
    "jenkins_errors",
    "job_name",
]
