"""Errors as the user reads them: each names the model (and version, and for a
dependency the model that requires it) and what to change, never an internal file
name or a URL path. The layers below speak of parts and URLs; these helpers say it
again in the user's words at the place that knows which model is meant."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from sidecar.errors import (
    ChecksumMismatch,
    ModelManagerError,
    ModelNotFound,
    RepositoryUnavailable,
    VersionNotFound,
)
from sidecar.manifest import CatalogModel

_URL_PATH = re.compile(r"(https?://[^/\s]+)/\S*")  # a URL, to be cut to its origin
HOW_TO_SET_REPOSITORY = (
    "set one with --repository URL (or the MODEL_MANAGER_REPOSITORY environment "
    "variable; model-manager takes --repository too)"
)


def ref(model_id: str, version: str | None) -> str:
    return f"{model_id}@{version}" if version else model_id


def no_repository(
    what: str, model_id: str | None = None, version: str | None = None
) -> RepositoryUnavailable:
    """Nothing to ask: no repository URL was given at all."""
    data = {"modelId": model_id} if model_id else {}
    if model_id and version:
        data["version"] = version
    return RepositoryUnavailable(
        f"cannot {what}: no repository configured; {HOW_TO_SET_REPOSITORY}",
        configure="repository",
        **data,
    )


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: where it points, without its path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def api_suffix_hint(bases: Sequence[str]) -> str:
    """A repository URL that ends in ``/api`` makes every lookup a 404: say so."""
    wrong = [b for b in bases if urlsplit(b).path.rstrip("/").endswith("/api")]
    if not wrong:
        return ""
    fixed = wrong[0].rstrip("/").removesuffix("/api")
    return (
        f"; the repository URL {wrong[0]} ends in /api, but the repository URL is the "
        f"server's base: use {fixed} instead"
    )


def model_not_found(
    model_id: str, bases: Sequence[str], version: str | None = None
) -> ModelNotFound:
    where = ", ".join(origin(b) for b in bases)
    data = {"modelId": model_id}
    if version:
        data["version"] = version
    return ModelNotFound(
        f"{model_id} is not in the repository ({where}){api_suffix_hint(bases)}",
        **data,
    )


def version_not_found(
    model: CatalogModel, version: str | None, required_by: str | None = None
) -> VersionNotFound:
    """``version`` (None: the default) of ``model`` does not exist; the ones that do."""
    available = [v.version for v in model.versions]
    asked = f"{model.id}@{version}" if version else f"a default version of {model.id}"
    if available:
        exists = f"{model.id} has {', '.join(available)}"
    else:
        exists = f"{model.id} has no published version"
    if required_by:
        lead = f"{required_by} requires {asked}, which does not exist"
    else:
        lead = f"{asked} does not exist"
    data: dict[str, object] = {"modelId": model.id, "availableVersions": available}
    if version:
        data["version"] = version
    if required_by:
        data["requiredBy"] = required_by
    return VersionNotFound(f"{lead}: {exists}", **data)


def dependency_error(
    exc: ModelManagerError, required_by: str, model_id: str, version: str | None
) -> ModelManagerError:
    """A requirement that could not be looked up, naming the model that requires it."""
    wanted = ref(model_id, version)
    if isinstance(exc, ModelNotFound):
        message = f"{required_by} requires {wanted}, which is not in the repository"
    else:
        message = f"{required_by} requires {wanted}: {exc.message}"
    data: dict[str, object] = {"modelId": model_id, "requiredBy": required_by}
    if version:
        data["version"] = version
    return exc.reworded(message, **data)


def file_error(exc: ModelManagerError, model_id: str, version: str, path: str) -> ModelManagerError:
    """A download's failure, said of the model's file instead of the part on disk."""
    what = f"{path} of {model_id}@{version}"
    detail = _URL_PATH.sub(r"\1", exc.message)
    if isinstance(exc, ChecksumMismatch):
        message = (
            f"the downloaded {what} does not match the checksum in the repository's "
            f"manifest, downloaded twice ({detail}): the repository serves other bytes "
            "than it lists"
        )
    else:
        message = f"cannot download {what}: {detail}"
    return exc.reworded(message, modelId=model_id, version=version, file=path)
