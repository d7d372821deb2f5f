"""Any path the manifest check accepts stays inside the model folder."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import UnsafeManifest
from sidecar.manifest import check_relative_path

segments = st.one_of(
    st.sampled_from(["..", ".", "", "~", "C:", "a", "b.bin", "con", "..\\x", " ", "\x00"]),
    st.text(min_size=1, max_size=12),
)
paths = st.lists(segments, min_size=1, max_size=6).map("/".join) | st.text(max_size=40)


@given(paths)
def test_accepted_paths_resolve_inside_the_folder(path: str) -> None:
    root = Path("/srv/home/models/m/1")
    try:
        check_relative_path(path)
    except UnsafeManifest:
        return
    resolved = Path(os.path.normpath(root.joinpath(*path.split("/"))))
    assert root in resolved.parents
    assert "\\" not in path and "\x00" not in path and ":" not in path
