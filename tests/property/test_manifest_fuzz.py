"""Hostile manifests served by a real repository to ONE long-lived sidecar: random paths
with .., absolute ones, drive letters, NUL, backslashes, duplicates, case clashes, huge
or nonsensical sizes, unsafe ids. An install never writes outside the home: it answers
UNSAFE_MANIFEST (or INSUFFICIENT_DISK_SPACE for sizes no disk holds) or installs the
exact files strictly inside models/<id>/<version>/."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.faults import tree
from tests.support.repo_server import RepoServer, sha256
from tests.support.sidecar_proc import RpcError, Sidecar

REFUSED = {"UNSAFE_MANIFEST", "INSUFFICIENT_DISK_SPACE"}


def segments(outside: Path) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                "..",
                ".",
                "",
                "~",
                "C:",
                "c:\\x",
                "a",
                "b.bin",
                "CON",
                "nul.txt",
                "..\\..\\x",
                " ",
                "x ",
                "x.",
                "\x00",
                "a\x00b",
                "\\\\server\\share",
                "%2e%2e",
                "..%2f",
                "\u202e",
                "\uff21",
                "é",
                "a:b",
                str(outside),
                "weights.bin",
            ]
        ),
        st.text(min_size=1, max_size=10),
    )


def paths(outside: Path) -> st.SearchStrategy[str]:
    escapes = st.sampled_from(
        [
            str(outside / "abs.bin"),
            "../" * 6 + "outside/rel.bin",
            "a/../../../../../../outside/x.bin",
            "C:/outside/x.bin",
            "C:\\outside\\x.bin",
            "\\\\?\\C:\\x",
            "./x/./y",
            "x//y",
            "x/",
        ]
    )
    return escapes | st.lists(segments(outside), min_size=1, max_size=4).map("/".join)


sizes = st.one_of(
    st.just(None),  # None: the real size of the data
    st.sampled_from([-1, 2**40 + 1, 2**63, 2**64, 1 << 39, "12", 1.5, None, True]),
)


@st.composite
def manifests(draw: st.DrawFn, outside: Path) -> dict[str, Any]:
    entries = []
    for path in draw(st.lists(paths(outside), min_size=1, max_size=4)):
        variant = draw(st.sampled_from(["plain", "plain", "duplicate", "case", "prefix"]))
        entries.append(path)
        if variant == "duplicate":
            entries.append(path)
        elif variant == "case":
            entries.append(path.swapcase())
        elif variant == "prefix":
            entries.append(path + "/inner.bin")
    data = {p: draw(st.binary(min_size=0, max_size=64)) for p in entries}
    files = []
    for path in entries:
        size = draw(sizes) if draw(st.integers(0, 5)) == 0 else None
        files.append(
            {
                "path": path,
                "size_bytes": len(data[path]) if size is None else size,
                "sha256": sha256(data[path]),
            }
        )
    version = draw(st.sampled_from(["1", "1", "1", "..", "../x", "v/1", "", "C:", "a\x00"]))
    model_id = draw(st.sampled_from(["ok", "ok", "ok", "..", "a/b", ".hidden", "CON", "x" * 200]))
    return {"files": files, "data": data, "version": version, "id": model_id}


def outside_writes(root: Path, home: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if home not in p.parents and p != home and not p.name.startswith("sidecar-")
    ]


def test_hostile_manifests_never_write_outside_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    outside = tmp_path / "outside"
    repo = RepoServer().start()
    sidecar = Sidecar(home, [repo.url], args=["--network-patience", "1", "--retries", "1"])
    sidecar.start()
    counter = itertools.count()
    try:
        sidecar.call("getInfo")

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
        )
        @given(manifests(outside))
        def check(manifest: dict[str, Any]) -> None:
            n = next(counter)
            model_id = f"h{n}" if manifest["id"] == "ok" else manifest["id"]
            version = manifest["version"]
            stored = repo.add(f"h{n}", version, manifest["data"])
            stored.manifest_overrides = {"files": manifest["files"]}
            entry = repo.models[f"h{n}"].entry()
            entry["id"] = model_id
            repo.raw_entries[model_id] = entry
            try:
                answer = sidecar.call("install", {"modelId": model_id}, timeout=20)
            except RpcError as exc:
                if exc.code == -32602:  # the id is not even a name (empty, too long)
                    assert not (1 <= len(model_id) <= 128), exc
                else:
                    assert exc.data["code"] in REFUSED, (exc.data, manifest)
                answer = None
            if answer is not None and answer["taskId"] is not None:
                task = sidecar.wait_task(answer["taskId"], {"ready", "failed"}, timeout=20)
                if task["state"] == "failed":
                    assert task["error"]["code"] in REFUSED, (task["error"], manifest)
                else:
                    folder = home / "models" / model_id / version
                    expected = {f["path"]: manifest["data"][f["path"]] for f in manifest["files"]}
                    assert tree(folder) == expected, manifest
                    for path in expected:
                        resolved = Path(os.path.realpath(folder / path))
                        assert folder.resolve() in resolved.parents, path
            elif answer is not None:
                raise AssertionError(f"nothing to install for a new model: {answer}")
            assert outside_writes(tmp_path, home) == [], manifest
            repo.raw_entries.pop(model_id, None)

        check()
        assert sidecar.process is not None and sidecar.process.poll() is None
        assert not sidecar.bad_lines
    finally:
        sidecar.cleanup()
        repo.stop()


def test_a_part_that_is_a_symlink_is_not_followed_out_of_the_home(tmp_path: Path) -> None:
    """Someone (or something) left a symlink where a .part will go: the download must not
    write through it, truncate its target, or install the link instead of a file."""
    home = tmp_path / "home"
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious" * 1000)
    repo = RepoServer().start()
    data = os.urandom(50_000)
    repo.add("sym", "1", {"w.bin": data})
    (home / "temp").mkdir(parents=True)
    (home / "temp" / "sym@1@w.bin.part").symlink_to(outside)
    sidecar = Sidecar(home, [repo.url]).start()
    try:
        task = sidecar.install_and_wait("sym", timeout=20)
        assert outside.read_bytes() == b"precious" * 1000, "the symlink's target was written"
        if task["state"] == "ready":
            installed = home / "models" / "sym" / "1" / "w.bin"
            assert not installed.is_symlink(), "a symlink was installed as the model file"
            assert installed.read_bytes() == data
        else:
            assert task["error"]["code"] in REFUSED, task
    finally:
        sidecar.cleanup()
        repo.stop()
