"""verify and remove: work on installed versions (blocking: run in a thread)."""

from __future__ import annotations

from sidecar.store.layout import HomeLayout
from sidecar.transfer.hashing import sha256_file
from sidecar.wire import VerifyProblem
from sidecar.wire_files import InstalledVersion


def find_problems(
    layout: HomeLayout, model_id: str, entry: InstalledVersion
) -> list[VerifyProblem]:
    """Re-hash every file of an installed version against what was verified at install."""
    folder = layout.model_dir(model_id, entry.version)
    problems = []
    for file in entry.files:
        path = folder.joinpath(*file.path.split("/"))
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(VerifyProblem(path=file.path, problem="missing"))
            continue
        if size != file.size_bytes:
            problems.append(VerifyProblem(path=file.path, problem="size_mismatch"))
        elif sha256_file(path) != file.sha256:
            problems.append(VerifyProblem(path=file.path, problem="checksum_mismatch"))
    return problems
