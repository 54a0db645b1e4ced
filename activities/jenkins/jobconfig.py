"""config.xml of the Pipeline job that runs one execution.

A ``flow-definition`` (workflow-job plugin) with a ``CpsFlowDefinition`` script (workflow-cps plugin, Groovy
sandbox on) and one string parameter, :data:`EXECUTION_ID_PARAM`, by which the engine recognises the
execution's queued item or build. Builds are not resumed across a controller restart
(``DisableResumeJobProperty``): the workflow decides what to do with an interrupted build.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

#: The build parameter that carries ``<namespace>/<execution-name>/<uid>``.
EXECUTION_ID_PARAM = "CUBEPAAS_EXECUTION_ID"

_TEMPLATE = """<?xml version='1.1' encoding='UTF-8'?>
<flow-definition plugin="workflow-job">
  <description>{description}</description>
  <keepDependencies>false</keepDependencies>
  <properties>
    <org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty/>
    <org.jenkinsci.plugins.workflow.job.properties.DisableResumeJobProperty/>
    <hudson.model.ParametersDefinitionProperty>
      <parameterDefinitions>
        <hudson.model.StringParameterDefinition>
          <name>{param}</name>
          <description>The PipelineExecution this build belongs to (namespace/name/uid).</description>
          <defaultValue></defaultValue>
          <trim>true</trim>
        </hudson.model.StringParameterDefinition>
      </parameterDefinitions>
    </hudson.model.ParametersDefinitionProperty>
  </properties>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition" plugin="workflow-cps">
    <script>{script}</script>
    <sandbox>true</sandbox>
  </definition>
  <triggers/>
  <disabled>false</disabled>
</flow-definition>
"""


def _xml_text(value: str) -> str:
    # XML 1.0/1.1 cannot carry most C0 control characters even escaped in 1.0; the generator only emits
    # printable ASCII and newlines, so refuse anything else rather than corrupt the script silently.
    bad = [c for c in value if ord(c) < 0x20 and c not in "\n\t\r"]
    if bad:
        raise ValueError(f"control character U+{ord(bad[0]):04X} cannot be stored in config.xml")
    # A raw CR would be normalized to LF by any XML parser; a character reference keeps it.
    return escape(value).replace("\r", "&#13;")


def pipeline_job_config(script: str, description: str = "") -> str:
    """The config.xml of a Pipeline job running ``script`` with the execution-id parameter."""
    return _TEMPLATE.format(
        description=_xml_text(description), param=EXECUTION_ID_PARAM, script=_xml_text(script)
    )


def normalize_script(script: str) -> str:
    """What two scripts must share to count as the same: line endings and trailing blanks don't matter."""
    lines = script.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def parse_job_config(config_xml: str) -> tuple[str | None, set[str]]:
    """The script and the parameter names of a job's config.xml (``None`` when it has no inline script)."""
    text = config_xml.lstrip("\ufeff")
    if text.startswith("<?xml"):
        # Jenkins writes XML 1.1 declarations; the content is what matters here.
        text = text[text.index("?>") + 2 :]
    root = ET.fromstring(text)
    script_el = root.find("./definition/script")
    script = (script_el.text or "") if script_el is not None else None
    params = {
        el.text or ""
        for el in root.findall(
            "./properties/hudson.model.ParametersDefinitionProperty/parameterDefinitions/*/name"
        )
    }
    return script, params


def config_matches(config_xml: str, script: str) -> bool:
    """True when the job's config already runs ``script`` (normalized) and carries the execution parameter."""
    try:
        current, params = parse_job_config(config_xml)
    except ET.ParseError:
        return False
    if current is None or EXECUTION_ID_PARAM not in params:
        return False
    return normalize_script(current) == normalize_script(script)
