"""Any path the manifest check accepts stays inside the model folder."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import UnsafeManifest
from sidecar.manifest import check_relative_path
from sidecar.store.layout import HomeLayout

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


names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._+-]{0,20}\Z").filter(
    lambda n: not n.endswith(".") and ".." not in n
)
files = st.lists(st.sampled_from(["a", "b", "_", ".", "-", "@", "x.y"]), min_size=1, max_size=6)


@given(names, names, files.map("".join), names, names, files.map("".join))
def test_temp_names_of_different_downloads_never_meet(
    id_a: str, version_a: str, file_a: str, id_b: str, version_b: str, file_b: str
) -> None:
    """Cancelling one download deletes by prefix: it must never match another's parts."""
    layout = HomeLayout(Path("/srv/home"))
    if (id_a, version_a) != (id_b, version_b):
        assert not layout.part(id_b, version_b, file_b).name.startswith(
            layout.part_prefix(id_a, version_a)
        )
        assert layout.staging_dir(id_a, version_a) != layout.staging_dir(id_b, version_b)
        assert layout.task_lock(id_a, version_a) != layout.task_lock(id_b, version_b)
    if (id_a, version_a, file_a) != (id_b, version_b, file_b):
        assert layout.part(id_a, version_a, file_a) != layout.part(id_b, version_b, file_b)


long_paths = st.text(st.characters(codec="utf-8"), min_size=1, max_size=300) | st.text(
    st.characters(codec="utf-8", min_codepoint=0x80), min_size=20, max_size=120
)


@given(names, names, long_paths, long_paths)
def test_part_names_fit_in_one_file_name_and_stay_apart(
    model_id: str, version: str, file_a: str, file_b: str
) -> None:
    """Percent-encoding can make a path of 80 characters 250 bytes long."""
    layout = HomeLayout(Path("/srv/home"))
    part_a = layout.part(model_id, version, file_a)
    assert len((part_a.name + ".json").encode()) <= 255
    assert part_a.name.startswith(layout.part_prefix(model_id, version))
    if file_a != file_b:
        assert part_a != layout.part(model_id, version, file_b)
