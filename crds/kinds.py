"""Every custom resource kind, in install order (importing this module registers them all)."""

from __future__ import annotations

from typing import Final

from crds.execution import PipelineExecution
from crds.meta import CustomResource
from crds.pipeline import Pipeline
from crds.setting import PipelineSetting
from crds.sourcecode import SourceCodeCredential, SourceCodeProviderConfig, SourceCodeRepository

ALL_KINDS: Final[tuple[type[CustomResource], ...]] = (
    PipelineSetting,
    Pipeline,
    PipelineExecution,
    SourceCodeProviderConfig,
    SourceCodeCredential,
    SourceCodeRepository,
)


def kind_by_name(kind: str) -> type[CustomResource]:
    for model in ALL_KINDS:
        if model.kind_name() == kind:
            return model
    raise KeyError(kind)


__all__ = ["ALL_KINDS", "kind_by_name"]
