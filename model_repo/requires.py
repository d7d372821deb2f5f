"""``publish --requires``: a requirement must name a model (and version) this repository
already serves, or every install of the new version would fail on the client with a
missing dependency. Publish what is required first."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model_repo.layout import MANIFEST_FILE, StorageLayout
from sidecar.manifest import Requirement

# The versions published of a model id, or None when the model is not published at all.
VersionsOf = Callable[[str], Sequence[str] | None]


class MissingRequirement(ValueError):
    """A ``--requires`` that names nothing published."""


def check_published(
    requires: Sequence[Requirement], versions_of: VersionsOf, publishing: tuple[str, str]
) -> None:
    """Raise MissingRequirement for the first requirement that is not published."""
    shown_self = f"{publishing[0]}@{publishing[1]}"
    for requirement in requires:
        wanted = requirement.model_id
        if requirement.version:
            wanted += f"@{requirement.version}"
        if (requirement.model_id, requirement.version) == publishing:
            raise MissingRequirement(f"{shown_self} cannot require itself (--requires {wanted})")
        versions = versions_of(requirement.model_id)
        if not versions:
            raise MissingRequirement(
                f"--requires {wanted}: {requirement.model_id} is not published in this "
                f"repository; publish it before {shown_self}"
            )
        if requirement.version and requirement.version not in versions:
            raise MissingRequirement(
                f"--requires {wanted}: {requirement.model_id} has no version "
                f"{requirement.version} here (published: {', '.join(versions)}); publish it "
                f"before {shown_self}, or name one of those"
            )


def folder_versions(layout: StorageLayout) -> VersionsOf:
    """Versions as the folder tree holds them: each with its manifest written."""

    def versions_of(model_id: str) -> list[str] | None:
        folder = layout.model_dir(model_id)
        if not folder.is_dir():
            return None
        return sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.is_dir() and (entry / MANIFEST_FILE).is_file()
        )

    return versions_of
