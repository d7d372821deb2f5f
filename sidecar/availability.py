"""What ``getModelPath`` answers for one model, as plain data: the path of each ready
version and why the others are not available."""

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
