"""Offline mode (``--offline`` / ``MODEL_MANAGER_OFFLINE=1``): the sidecar answers from
what is on this machine and never opens a connection. Installed models keep working;
anything that needs the repository fails at once, saying so, instead of waiting through
retries that cannot succeed."""

from __future__ import annotations

from datetime import UTC, datetime

from sidecar.core.listing import version_key
from sidecar.errors import RepositoryUnavailable
from sidecar.store.registry import Registry
from sidecar.wire import InstallResult, TaskState

OFFLINE = "offline"
HOW_TO = "start without --offline (or unset MODEL_MANAGER_OFFLINE) to reach the repository"


def offline_error(what: str) -> RepositoryUnavailable:
    return RepositoryUnavailable(f"{what}: working offline; {HOW_TO}", reason=OFFLINE)


def install_offline(registry: Registry, model_id: str, version: str | None) -> InstallResult:
    """``install`` without the repository: an installed, intact version is the answer
    (as online); anything else would need a download."""
    model = registry.document.models.get(model_id)
    ready = sorted(
        (v for v, entry in (model.versions if model else {}).items() if entry.state == "ready"),
        key=version_key,
    )
    chosen = version if version is not None else (ready[-1] if ready else None)
    if chosen is not None and chosen in ready:
        return InstallResult(task_id=None, model_id=model_id, version=chosen, state=TaskState.READY)
    shown = f"{model_id}@{version}" if version else model_id
    raise offline_error(f"cannot install {shown}, which is not installed")


def fetched_at_text(epoch: float) -> str | None:
    """When the cached catalog was fetched, as the app shows it (None: never)."""
    if epoch <= 0:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
