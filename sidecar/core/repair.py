"""Repairing a damaged version: the files of its folder are offered to the runner as
candidates for reuse, exactly like identical files of other installed versions. The
runner re-hashes each candidate against the manifest (``TaskRunner._find_identical``):
a file that still matches is linked into the new copy, one that does not is fetched
again, so only the wrong files cross the network.

Pieces: where the manifest carries piece hashes (``sidecar/transfer/``), the hook is
here: a wrong file of the right size would be copied to its part, its good pieces
written into the part record's ``done`` ranges (``PartRecord.done``), and the
segmented fetch would then get the bad ranges alone. Until then repair is per file.
"""

from __future__ import annotations

from pathlib import Path

from sidecar.store.layout import HomeLayout
from sidecar.wire_files import InstalledVersion


def repair_candidates(
    layout: HomeLayout, model_id: str, entry: InstalledVersion
) -> dict[str, tuple[Path, int]]:
    """SHA-256 → (file in the damaged version's folder, size it had when verified)."""
    folder = layout.model_dir(model_id, entry.version)
    return {
        file.sha256: (folder.joinpath(*file.path.split("/")), file.size_bytes)
        for file in entry.files
    }
