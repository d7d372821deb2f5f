"""What an install pulls in: the models its version ``requires``, transitively."""

from __future__ import annotations

from collections import deque

from sidecar.config import Settings
from sidecar.core.catalog import Catalog
from sidecar.core.wording import dependency_error, version_not_found
from sidecar.errors import ModelManagerError, UnsafeManifest
from sidecar.manifest import CatalogModel


async def resolve_requirements(
    catalog: Catalog, settings: Settings, model: CatalogModel, version: str
) -> list[tuple[CatalogModel, str]]:
    """What ``requires`` names, transitively, in install order; each once. Bounded in
    depth and in count: a repository that invents a new requirement for every model
    it serves must get an answer, not an install that follows it for ever."""
    root = (model.id, version)
    came_from: dict[tuple[str, str], tuple[str, str] | None] = {root: None}
    depth = {root: 0}
    pending = deque([(model, version)])
    chain: list[tuple[CatalogModel, str]] = []
    while pending:
        current, current_version = pending.popleft()
        current_key = (current.id, current_version)
        manifest = current.find_version(current_version)
        for requirement in manifest.requires if manifest else []:
            if (requirement.model_id, requirement.version) in came_from:
                continue  # named before: no need to ask the repository again
            required_by = f"{current.id}@{current_version}"
            try:
                dependency = await catalog.get_model(requirement.model_id)
            except ModelManagerError as exc:
                raise dependency_error(
                    exc, required_by, requirement.model_id, requirement.version
                ) from exc
            dep_manifest = dependency.find_version(requirement.version)
            if dep_manifest is None:
                raise version_not_found(dependency, requirement.version, required_by)
            key = (dependency.id, dep_manifest.version)
            if key in came_from:
                continue
            came_from[key] = current_key
            depth[key] = depth[current_key] + 1
            if depth[key] > settings.max_dependency_depth:
                limit = settings.max_dependency_depth
                raise _too_many_requirements(
                    f"more than {limit} levels of requirements", key, came_from
                )
            if len(chain) >= settings.max_dependencies:
                limit = settings.max_dependencies
                raise _too_many_requirements(f"more than {limit} requirements", key, came_from)
            chain.append((dependency, dep_manifest.version))
            pending.append((dependency, dep_manifest.version))
    return chain


def _too_many_requirements(
    problem: str,
    last: tuple[str, str],
    came_from: dict[tuple[str, str], tuple[str, str] | None],
) -> UnsafeManifest:
    """The refusal, naming the chain of requirements from the model asked for to ``last``."""
    path: list[str] = []
    key: tuple[str, str] | None = last
    while key is not None:
        path.append(f"{key[0]}@{key[1]}")
        key = came_from[key]
    path.reverse()
    shown = path if len(path) <= 12 else [*path[:6], "…", *path[-5:]]
    return UnsafeManifest(
        f"{path[0]} needs {problem}: {' → '.join(shown)} "
        "(the sidecar's --max-dependency-depth and --max-dependencies set the limits)",
        field="requires",
        chain=path,
        modelId=path[0].rpartition("@")[0],
        version=path[0].rpartition("@")[2],
    )
