"""What ``getModelPath`` answers, as plain data: for each model the engine knows of,
the path of each ready version and why the others are not available.

The engine builds it from its state (``Library.availability``) and answers from it;
it also sends it, whenever it changes, to the front process (``sidecar.front``),
which answers ``getModelPath`` from its copy. Standard library only: the front
imports it and stays small."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.errors import ModelNotAvailable

NOT_INSTALLED = "not_installed"


@dataclass(frozen=True)
class ModelAvailability:
    ready: dict[str, dict[str, Any]]  # version -> the getModelPath result, as on the wire
    newest_ready: str | None  # what a request without a version gets
    reason: str  # why nothing is available, for a request without a version
    reasons: dict[str, str]  # why each known version that is not ready is not available

    def lookup(self, model_id: str, version: str | None) -> dict[str, Any]:
        if version is None:
            if self.newest_ready is not None:
                return self.ready[self.newest_ready]
            raise ModelNotAvailable(model_id, None, self.reason)
        if version in self.ready:
            return self.ready[version]
        raise ModelNotAvailable(model_id, version, self.reasons.get(version, NOT_INSTALLED))

    def wire(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "newestReady": self.newest_ready,
            "reason": self.reason,
            "reasons": self.reasons,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ModelAvailability:
        return cls(data["ready"], data["newestReady"], data["reason"], data["reasons"])


@dataclass(frozen=True)
class Availability:
    models: dict[str, ModelAvailability]

    def lookup(self, model_id: str, version: str | None) -> dict[str, Any]:
        """The getModelPath result; raises ModelNotAvailable."""
        model = self.models.get(model_id)
        if model is None:
            raise ModelNotAvailable(model_id, version, NOT_INSTALLED)
        return model.lookup(model_id, version)

    def wire(self) -> dict[str, Any]:
        return {model_id: model.wire() for model_id, model in self.models.items()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Availability:
        return cls({model_id: ModelAvailability.from_wire(m) for model_id, m in data.items()})
