"""Every error the sidecar reports, each carrying its wire code and name.

    ModelManagerError
    ├── ModelNotAvailable        1001  getModelPath: not installed / not ready yet
    ├── ModelNotFound            1002  the catalog has no such model
    ├── VersionNotFound          1003  the model has no such version
    ├── RepositoryUnavailable    1004  no repository mirror answered usefully
    ├── ChecksumMismatch         1005  bytes on disk differ from the manifest
    ├── InsufficientDiskSpace    1006  not enough room under the home
    ├── TaskNotFound             1007  unknown taskId
    ├── UnsafeManifest           1008  a manifest that would escape the home or is malformed
    ├── InvalidState             1009  e.g. resume a task that is not paused
    ├── SchedulerUnavailable     1010  no ranking and no cached one
    ├── NetworkError             1011  transport failures after retries
    ├── TlsError                 1012  a host's TLS certificate could not be verified
    ├── PermissionDenied         1013  the home (or a folder in it) is not writable by us
    ├── HomeUnavailable          1014  the home is damaged where we must write: a link,
    │                                  a file where a folder belongs, a folder gone
    ├── SignatureInvalid         1015  a catalog or manifest not signed by a trusted key,
                                       an older one than seen before, or an expired one
    └── InvalidOption            1021  the sidecar was started with a bad option or
                                       setting: it answers every request with this

Lower-level errors (httpx, OSError) are translated at the boundaries in
``sidecar.transfer.http`` and ``sidecar.store.diskspace``; the RPC layer turns these into
JSON-RPC error objects, so nothing below it knows about JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from sidecar.redact import redact_text


class ModelManagerError(Exception):
    code: ClassVar[int] = 1000
    name: ClassVar[str] = "MODEL_MANAGER_ERROR"

    def __init__(self, message: str, **data: Any) -> None:
        # Every typed error reaches the app (and often a log): no URL secret in it.
        message = redact_text(message)
        data = {k: redact_text(v) if isinstance(v, str) else v for k, v in data.items()}
        super().__init__(message)
        self.message = message
        self.extra = data

    def to_data(self) -> dict[str, Any]:
        return {"code": self.name, **self.extra}

    def concerning(self, model_id: str, version: str | None) -> ModelManagerError:
        """This error, its data naming the model (and version) it concerns unless it
        names one already (a dependency's error keeps the dependency)."""
        if "modelId" not in self.extra:
            self.extra["modelId"] = model_id
            if version is not None:
                self.extra.setdefault("version", version)
        return self

    def reworded(self, message: str, **data: Any) -> ModelManagerError:
        """The same error (class, code, data) with a message for the user and more data."""
        copy = type(self).__new__(type(self))
        ModelManagerError.__init__(copy, message, **{**self.extra, **data})
        return copy


class ModelNotAvailable(ModelManagerError):
    code = 1001
    name = "MODEL_NOT_AVAILABLE"

    def __init__(self, model_id: str, version: str | None, reason: str) -> None:
        shown = f"{model_id}@{version}" if version else model_id
        super().__init__(
            f"{shown} is not available: {reason}",
            modelId=model_id,
            version=version,
            reason=reason,
        )


class ModelNotFound(ModelManagerError):
    code = 1002
    name = "MODEL_NOT_FOUND"


class VersionNotFound(ModelManagerError):
    code = 1003
    name = "VERSION_NOT_FOUND"


class RepositoryUnavailable(ModelManagerError):
    code = 1004
    name = "REPOSITORY_UNAVAILABLE"


class ChecksumMismatch(ModelManagerError):
    code = 1005
    name = "CHECKSUM_MISMATCH"


class InsufficientDiskSpace(ModelManagerError):
    code = 1006
    name = "INSUFFICIENT_DISK_SPACE"


class TaskNotFound(ModelManagerError):
    code = 1007
    name = "TASK_NOT_FOUND"


class UnsafeManifest(ModelManagerError):
    code = 1008
    name = "UNSAFE_MANIFEST"


class InvalidState(ModelManagerError):
    code = 1009
    name = "INVALID_STATE"


class SchedulerUnavailable(ModelManagerError):
    code = 1010
    name = "SCHEDULER_UNAVAILABLE"


class NetworkError(ModelManagerError):
    code = 1011
    name = "NETWORK_ERROR"


class TlsError(ModelManagerError):
    code = 1012
    name = "TLS_ERROR"

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(
            f"cannot verify the TLS certificate of {host} ({reason}). If your network uses "
            "its own certificate authority, add it to the system's trust store or name "
            "its PEM file with --ca-bundle (MODEL_MANAGER_CA_BUNDLE)",
            host=host,
            reason=reason,
        )


class PermissionDenied(ModelManagerError):
    code = 1013
    name = "PERMISSION_DENIED"


class HomeUnavailable(ModelManagerError):
    code = 1014
    name = "HOME_UNAVAILABLE"


class SignatureInvalid(ModelManagerError):
    code = 1015
    name = "SIGNATURE_INVALID"

    def __init__(
        self, message: str, *, reason: str, host: str, model_id: str | None = None,
        version: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message, reason=reason, host=host, modelId=model_id, version=version)


class InvalidOption(ModelManagerError):
    code = 1021
    name = "INVALID_OPTION"


ALL_ERRORS: tuple[type[ModelManagerError], ...] = (
    ModelNotAvailable,
    ModelNotFound,
    VersionNotFound,
    RepositoryUnavailable,
    ChecksumMismatch,
    InsufficientDiskSpace,
    TaskNotFound,
    UnsafeManifest,
    InvalidState,
    SchedulerUnavailable,
    NetworkError,
    TlsError,
    PermissionDenied,
    HomeUnavailable,
    SignatureInvalid,
    InvalidOption,
)


E = TypeVar("E", bound=BaseException)


def find_cause(
    exc: BaseException, kind: type[E], matches: Callable[[E], bool] = lambda _: True
) -> E | None:
    """The first ``kind`` error behind ``exc`` that ``matches``: ``exc`` itself, one
    inside an exception group, or a cause or context of another error, so a secondary
    error (a failed cleanup, a library's wrapper) never hides what went wrong first."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind) and matches(current):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None
