"""Pins and damaged marks reach each version's metadata file, so a registry rebuilt
from the model folders (registry.json lost) keeps them; metadata written before
there were pins still loads, unpinned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.store.layout import HomeLayout
from sidecar.store.registry import Registry, write_metadata
from sidecar.wire_files import InstalledVersion, RegistryDocument, RegistryFile


def entry(version: str = "1.0.0", **update: object) -> InstalledVersion:
    made = InstalledVersion(
        version=version,
        state="ready",
        installed_at="2026-01-01T00:00:00+00:00",
        size_bytes=3,
        files=[RegistryFile(path="w.bin", size_bytes=3, sha256="0" * 64)],
    )
    return made.model_copy(update=update)


def install(layout: HomeLayout, registry: Registry, model_id: str = "m") -> InstalledVersion:
    """As the runner does: metadata, then the folder, then the registry."""
    made = entry()
    write_metadata(layout, model_id, "M", "asr", made)
    folder = layout.model_dir(model_id, made.version)
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(b"abc")
    registry.record(model_id, "M", "asr", made)
    return made


def set_pin(registry: Registry, model_id: str, version: str, pinned: bool) -> None:
    """As StoreKeeper.pin does."""

    def mutate(document: RegistryDocument) -> None:
        versions = document.models[model_id].versions
        versions[version] = versions[version].model_copy(update={"pinned": pinned})

    registry.update(mutate)


def rebuilt(layout: HomeLayout) -> InstalledVersion | None:
    """registry.json lost: what a fresh load makes of the folders."""
    layout.registry.unlink(missing_ok=True)
    again = Registry(layout)
    again.load()
    return again.installed("m", "1.0.0")


@pytest.fixture
def layout(tmp_path: Path) -> HomeLayout:
    made = HomeLayout(tmp_path / "home")
    assert made.create() == []
    return made


def test_pin_and_unpin_survive_a_rebuild(layout: HomeLayout) -> None:
    registry = Registry(layout)
    registry.load()
    install(layout, registry)
    set_pin(registry, "m", "1.0.0", True)
    assert (found := rebuilt(layout)) is not None and found.pinned

    registry = Registry(layout)
    registry.load()
    set_pin(registry, "m", "1.0.0", False)
    assert (found := rebuilt(layout)) is not None and not found.pinned


def test_a_damaged_mark_survives_a_rebuild_and_a_repair_clears_it(layout: HomeLayout) -> None:
    registry = Registry(layout)
    registry.load()
    install(layout, registry)
    set_pin(registry, "m", "1.0.0", True)
    registry.set_state("m", "1.0.0", "damaged")
    assert (found := rebuilt(layout)) is not None
    assert (found.state, found.pinned) == ("damaged", True)

    registry = Registry(layout)
    registry.load()
    repaired = entry(installed_at="2026-02-02T00:00:00+00:00")  # the runner's, unpinned
    write_metadata(layout, "m", "M", "asr", repaired)
    registry.record("m", "M", "asr", repaired)
    assert (found := rebuilt(layout)) is not None
    assert (found.state, found.pinned) == ("ready", True)
    assert found.installed_at == repaired.installed_at


def test_a_repair_cut_short_before_the_registry_keeps_the_pin(layout: HomeLayout) -> None:
    registry = Registry(layout)
    registry.load()
    install(layout, registry)
    set_pin(registry, "m", "1.0.0", True)
    write_metadata(layout, "m", "M", "asr", entry())  # then a crash: never recorded
    assert (found := rebuilt(layout)) is not None and found.pinned


def test_metadata_is_written_before_the_registry(
    layout: HomeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(layout)
    registry.load()
    install(layout, registry)

    def crash(self: Registry, document: RegistryDocument) -> None:
        raise OSError("killed before registry.json was written")

    monkeypatch.setattr(Registry, "_write", crash)
    with pytest.raises(OSError):
        set_pin(registry, "m", "1.0.0", True)
    monkeypatch.undo()
    # registry.json still says what was last acknowledged; a rebuild, what was asked.
    kept = RegistryDocument.model_validate_json(layout.registry.read_bytes())
    assert kept.models["m"].versions["1.0.0"].pinned is False
    assert (found := rebuilt(layout)) is not None and found.pinned


def test_metadata_from_before_pins_loads_unpinned_and_takes_a_pin(layout: HomeLayout) -> None:
    old = entry().wire()
    del old["pinned"]
    path = layout.metadata_file("m", "1.0.0")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"name": "M", "task": "asr", "entry": old}))
    layout.model_dir("m", "1.0.0").mkdir(parents=True)
    assert (found := rebuilt(layout)) is not None and not found.pinned

    registry = Registry(layout)
    registry.load()
    set_pin(registry, "m", "1.0.0", True)
    assert json.loads(path.read_text())["entry"]["pinned"] is True
    assert (found := rebuilt(layout)) is not None and found.pinned
