"""Base models shared by every custom resource: camelCase JSON, ObjectMeta, references, CRD facts.

Conventions:

- Python attributes are snake_case; JSON/YAML names are camelCase (``alias_generator``), and both are
  accepted on input (``populate_by_name``). Emit with :meth:`KubeModel.to_dict` (aliases, no ``None``).
- Models of objects read from the apiserver ignore unknown fields (a newer CRD version may add some);
  the pipeline-file models (:mod:`crds.pipeline_file`) forbid them instead.
- Each kind declares its CRD facts (plural, short names, printer columns...) in a ``crd`` class
  variable; :mod:`crds.generate` turns the model plus those facts into the CRD YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "devops.cubepaas.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "cubepaas"

Timestamp = AwareDatetime
"""A timezone-aware time; serialized as RFC 3339 (``2024-05-01T12:00:00Z``)."""


class KubeModel(BaseModel):
    """Base of every model: camelCase aliases, snake_case attributes, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=True,
        validate_assignment=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict with camelCase keys and without ``None`` values (for the apiserver)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        return cls.model_validate(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


class OwnerReference(KubeModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(KubeModel):
    """The subset of Kubernetes ObjectMeta this product reads and writes (managedFields are dropped)."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list)
    finalizers: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        # Empty collections mean "not set" in Kubernetes; omitting them keeps diffs and patches small.
        return {k: v for k, v in data.items() if v not in ({}, [])}


class LocalObjectReference(KubeModel):
    """A reference to an object in the same namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the referenced object."""


class SecretReference(KubeModel):
    """A Secret in the same namespace as the referring object (or in ``namespace`` when given)."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret."""
    namespace: str | None = Field(default=None, max_length=63)
    """Namespace of the Secret; defaults to the namespace of the referring object."""


class SecretKeyReference(KubeModel):
    """One key of a Secret in the same namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the Secret's data."""


@dataclass(frozen=True)
class PrinterColumn:
    """An ``additionalPrinterColumns`` entry."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class CrdInfo:
    """Facts about a kind that are not in its schema."""

    plural: str
    short_names: tuple[str, ...] = ()
    scope: Literal["Namespaced", "Cluster"] = "Namespaced"
    printer_columns: tuple[PrinterColumn, ...] = (AGE_COLUMN,)
    categories: tuple[str, ...] = (CATEGORY,)
    validations: tuple[dict[str, str], ...] = field(default=())
    """``x-kubernetes-validations`` on the root of the schema."""


class CustomResource(KubeModel):
    """Base of every kind: ``apiVersion``, ``kind``, ``metadata``; subclasses add ``spec``/``status``."""

    crd: ClassVar[CrdInfo]

    api_version: str = API_VERSION
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @classmethod
    def kind_name(cls) -> str:
        return cls.__name__

    @classmethod
    def plural(cls) -> str:
        return cls.crd.plural

    @classmethod
    def crd_name(cls) -> str:
        """``<plural>.<group>``, the CustomResourceDefinition's name."""
        return f"{cls.crd.plural}.{GROUP}"

    @property
    def name(self) -> str:
        """``metadata.name`` (raises if the object has none yet)."""
        if not self.metadata.name:
            raise ValueError(f"{self.kind} has no metadata.name")
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` (raises if unset)."""
        if not self.metadata.namespace:
            raise ValueError(f"{self.kind} {self.metadata.name} has no metadata.namespace")
        return self.metadata.namespace

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["metadata"] = self.metadata.to_dict()
        return data


__all__ = [
    "AGE_COLUMN",
    "API_VERSION",
    "CATEGORY",
    "GROUP",
    "VERSION",
    "CrdInfo",
    "CustomResource",
    "KubeModel",
    "LocalObjectReference",
    "ObjectMeta",
    "OwnerReference",
    "PrinterColumn",
    "SecretKeyReference",
    "SecretReference",
    "Timestamp",
]
