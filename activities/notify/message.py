"""What a notification says: the run's variables, the rendered text, and each channel's payload.

Pure functions (unit-tested). The message template uses the pipeline file's ``${CICD_...}`` syntax;
unknown references stay as written. Every message ends with the links to the run.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from crds.execution import PipelineExecution
from crds.messages import ExecutionContext
from crds.reasons import ExecutionPhase

DEFAULT_TEMPLATE: Final = (
    "${CICD_PIPELINE_NAME} #${CICD_EXECUTION_SEQUENCE} (${CICD_GIT_BRANCH}): ${CICD_EXECUTION_STATE}"
    " after ${CICD_EXECUTION_DURATION}. ${CICD_EXECUTION_MESSAGE}"
)
CLOUDEVENT_CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
EVENT_TYPE_PREFIX: Final = "dev.cubepaas.pipelineexecution"
_REF: Final = re.compile(r"\$\{(CICD_[A-Z_]+)\}")
_EVENT_VERB: Final = {
    ExecutionPhase.SUCCESS: "succeeded",
    ExecutionPhase.FAILED: "failed",
    ExecutionPhase.ABORTED: "aborted",
    ExecutionPhase.DENIED: "denied",
}


def describe_command(namespace: str, name: str) -> str:
    return f"devopsctl describe execution {name} -n {namespace}"


def run_variables(ctx: ExecutionContext, pe: PipelineExecution) -> dict[str, str]:
    """The variables a message template can use (the Jenkinsfile's CICD_* plus the run's outcome)."""
    st = pe.status
    phase = str(st.phase) if st and st.phase else ""
    return {
        "CICD_PROJECT_ID": ctx.execution.namespace,
        "CICD_PIPELINE_NAME": ctx.pipeline,
        "CICD_PIPELINE_ID": f"{ctx.execution.namespace}:{ctx.pipeline}",
        "CICD_EXECUTION_NAME": ctx.execution.name,
        "CICD_EXECUTION_SEQUENCE": str(ctx.run),
        "CICD_EXECUTION_STATE": phase,
        "CICD_EXECUTION_DURATION": (st.duration if st and st.duration else "0s"),
        "CICD_EXECUTION_MESSAGE": (st.message if st and st.message else ""),
        "CICD_EXECUTION_URL": (st.workflow.ui_url if st and st.workflow and st.workflow.ui_url else ""),
        "CICD_DESCRIBE_COMMAND": describe_command(ctx.execution.namespace, ctx.execution.name),
        "CICD_GIT_URL": ctx.repository_url,
        "CICD_GIT_BRANCH": ctx.branch,
        "CICD_GIT_REF": ctx.ref,
        "CICD_GIT_COMMIT": ctx.commit,
        "CICD_EVENT": ctx.event,
        "CICD_TRIGGER_TYPE": ctx.triggered_by,
        "CICD_TRIGGER_USER": ctx.trigger_user,
    }


def render(template: str | None, variables: dict[str, str]) -> str:
    """``template`` (default :data:`DEFAULT_TEMPLATE`) with its known ``${CICD_...}`` references replaced."""
    text = template if template else DEFAULT_TEMPLATE
    return _REF.sub(lambda m: variables.get(m.group(1), m.group(0)), text).strip()


def message_text(template: str | None, variables: dict[str, str]) -> str:
    """The rendered template followed by the links to the run (Temporal UI, ``devopsctl describe``)."""
    lines = [render(template, variables), ""]
    if variables.get("CICD_EXECUTION_URL"):
        lines.append(f"Temporal UI: {variables['CICD_EXECUTION_URL']}")
    lines.append(f"Details: {variables['CICD_DESCRIBE_COMMAND']}")
    return "\n".join(lines)


def subject(variables: dict[str, str]) -> str:
    return (
        f"[{variables['CICD_PROJECT_ID']}] {variables['CICD_PIPELINE_NAME']} "
        f"#{variables['CICD_EXECUTION_SEQUENCE']}: {variables['CICD_EXECUTION_STATE']}"
    )


def event_type(phase: ExecutionPhase) -> str:
    """``dev.cubepaas.pipelineexecution.<succeeded|failed|aborted|denied>.v1``."""
    return f"{EVENT_TYPE_PREFIX}.{_EVENT_VERB.get(phase, phase.value.lower())}.v1"


def cloud_event(
    pe: PipelineExecution,
    variables: dict[str, str],
    *,
    event_id: str,
    recipient: str,
    text: str,
    now: datetime,
) -> dict[str, Any]:
    """A CloudEvents 1.0 event in structured JSON mode; ``data`` is the execution."""
    st = pe.status
    assert st is not None and st.phase is not None
    data = {
        "namespace": pe.namespace,
        "name": pe.name,
        "uid": pe.metadata.uid,
        "pipeline": pe.spec.pipeline_name,
        "run": pe.spec.run,
        "phase": str(st.phase),
        "message": st.message,
        "started": st.started.isoformat() if st.started else None,
        "ended": st.ended.isoformat() if st.ended else None,
        "duration": st.duration,
        "branch": variables.get("CICD_GIT_BRANCH") or None,
        "commit": variables.get("CICD_GIT_COMMIT") or None,
        "event": variables.get("CICD_EVENT") or None,
        "triggeredBy": variables.get("CICD_TRIGGER_TYPE") or None,
        "stages": [{"name": s.name, "state": str(s.state)} for s in st.stages],
        "uiUrl": variables.get("CICD_EXECUTION_URL") or None,
        "describe": variables["CICD_DESCRIBE_COMMAND"],
        "text": text,
    }
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/apis/devops.cubepaas.io/v1alpha1/namespaces/{pe.namespace}/pipelineexecutions/{pe.name}",
        "type": event_type(ExecutionPhase(st.phase)),
        "subject": pe.name,
        "time": now.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "recipient": recipient,
        "data": data,
    }


def slack_payload(text: str, channel: str) -> dict[str, Any]:
    """A Slack incoming-webhook body (``channel`` is honoured by legacy webhooks, ignored by others)."""
    return {"text": text, "channel": channel}


def teams_payload(title: str, text: str, recipient: str, ok: bool) -> dict[str, Any]:
    """A Microsoft Teams incoming-webhook MessageCard."""
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title,
        "themeColor": "2EB886" if ok else "D00000",
        "title": f"{title} ({recipient})",
        "text": text.replace("\n", "<br>"),
    }


__all__ = [
    "CLOUDEVENT_CONTENT_TYPE",
    "DEFAULT_TEMPLATE",
    "cloud_event",
    "describe_command",
    "event_type",
    "message_text",
    "render",
    "run_variables",
    "slack_payload",
    "subject",
    "teams_payload",
]
