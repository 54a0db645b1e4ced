"""A Pipeline job's config.xml: parameters and the `// cubepaas-plan:` comment (docs/jenkins-plan.md)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

PLAN_PREFIX = "// cubepaas-plan:"
NO_PLAN_MESSAGE = "ERROR: jenkins-lite: no cubepaas-plan comment in the pipeline script"

# Parameter definition classes Jenkins core knows and the value class each produces.
PARAM_VALUE_CLASS = {
    "hudson.model.StringParameterDefinition": "hudson.model.StringParameterValue",
    "hudson.model.TextParameterDefinition": "hudson.model.TextParameterValue",
    "hudson.model.BooleanParameterDefinition": "hudson.model.BooleanParameterValue",
    "hudson.model.ChoiceParameterDefinition": "hudson.model.StringParameterValue",
    "hudson.model.PasswordParameterDefinition": "hudson.model.PasswordParameterValue",
}


class ConfigError(ValueError):
    pass


@dataclass
class ParamDef:
    cls: str
    name: str
    default: str
    description: str = ""
    choices: list[str] = field(default_factory=list)

    @property
    def value_class(self) -> str:
        return PARAM_VALUE_CLASS.get(self.cls, "hudson.model.StringParameterValue")

    @property
    def type_name(self) -> str:
        return self.cls.rsplit(".", 1)[-1]


@dataclass
class JobConfig:
    script: str
    params: list[ParamDef]
    concurrent: bool
    description: str


def parse_config(xml_text: str) -> JobConfig:
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise ConfigError(f"Failed to parse config.xml: {e}") from e
    script_el = root.find("./definition/script")
    script = (script_el.text or "") if script_el is not None else ""
    params: list[ParamDef] = []
    for prop in root.iter("hudson.model.ParametersDefinitionProperty"):
        defs = prop.find("parameterDefinitions")
        if defs is None:
            continue
        for d in defs:
            name = (d.findtext("name") or "").strip()
            if not name:
                continue
            choices = (
                [c.text or "" for c in d.iter("string")]
                if d.tag.endswith("ChoiceParameterDefinition")
                else []
            )
            default = d.findtext("defaultValue")
            if default is None:
                default = choices[0] if choices else ""
            if d.tag.endswith("BooleanParameterDefinition"):
                default = "true" if default.strip() == "true" else "false"
            params.append(ParamDef(d.tag, name, default, d.findtext("description") or "", choices))
    concurrent = (
        root.find(".//org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty")
        is None
    )
    return JobConfig(script, params, concurrent, root.findtext("description") or "")


def extract_plan(script: str) -> dict[str, Any]:
    """The plan from the script's first line; raises ConfigError with the console message."""
    first = script.split("\n", 1)[0].rstrip("\r")
    if not first.startswith(PLAN_PREFIX):
        raise ConfigError(NO_PLAN_MESSAGE)
    try:
        plan = json.loads(first[len(PLAN_PREFIX) :])
    except json.JSONDecodeError as e:
        raise ConfigError(f"ERROR: jenkins-lite: the cubepaas-plan comment is not valid JSON: {e}") from e
    if not isinstance(plan, dict) or plan.get("version") != 1 or not isinstance(plan.get("stages"), list):
        raise ConfigError(
            "ERROR: jenkins-lite: unsupported cubepaas-plan (want an object with version 1 and stages)"
        )
    for stage in plan["stages"]:
        if not isinstance(stage, dict) or not isinstance(stage.get("steps", []), list):
            raise ConfigError("ERROR: jenkins-lite: malformed stage in cubepaas-plan")
        for step in stage.get("steps", []):
            if not isinstance(step, dict) or not isinstance(step.get("script", ""), str):
                raise ConfigError("ERROR: jenkins-lite: malformed step in cubepaas-plan")
    return plan
