"""Publishing: the storage layout, checksums (against sha256sum), the catalog format
(against the JSON Schema in schemas/), immutability, idempotency and index rebuilds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from model_repo import catalog
from model_repo.__main__ import main as repo_main
from model_repo.layout import StorageLayout
from model_repo.publish import PublishError, PublishRequest, publish
from sidecar.manifest import parse_model
from tests.support.repo_helpers import ROOT, publish_files, write_tree

SCHEMA = json.loads((ROOT / "schemas" / "repository" / "model.json").read_text())
FILES = {
    "model.bin": os.urandom(100_000),
    "config.json": b'{"dim": 384}',
    "tokenizer/vocab.txt": b"a\nb\n",
    "tokenizer/merges.txt": b"",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_json(path: Path) -> object:
    return json.loads(path.read_bytes())


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    return tmp_path / "storage"


def test_publish_layout_and_checksums_match_sha256sum(storage: Path):
    publish_files(storage, "align", "2", {"align.bin": b"x" * 10})
    result = publish_files(storage, "whisper-small", "1.0.0", FILES, requires=("align@2",))
    assert result.status == "published"
    folder = storage / "models" / "whisper-small" / "1.0.0"
    assert folder == result.path
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert on_disk == sorted([*FILES, "checksum.sha256", "manifest.json"])
    for path, data in FILES.items():
        assert (folder / path).read_bytes() == data

    checksum_file = (folder / "checksum.sha256").read_text()
    lines = checksum_file.splitlines()
    paths = [line.split("  ", 1)[1] for line in lines]
    assert paths == sorted(FILES)
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum (coreutils) is not installed")
    # The reference tool agrees with every line and verifies the whole folder.
    expected = subprocess.run(
        ["sha256sum", *paths], cwd=folder, capture_output=True, text=True, check=True
    ).stdout
    assert checksum_file == expected
    check = subprocess.run(["sha256sum", "--check", "--strict", "checksum.sha256"], cwd=folder)
    assert check.returncode == 0


def test_catalog_matches_the_schema_and_the_client_parser(storage: Path):
    publish_files(storage, "align", "2", {"align.bin": b"x" * 10}, task="alignment")
    publish_files(
        storage, "whisper-small", "1.0.0", FILES, requires=("align@2",),
        name="Whisper Small", task="asr", languages="zh,en",
    )  # fmt: skip
    layout = StorageLayout(storage)
    validator = Draft202012Validator(SCHEMA)
    listing = read_json(layout.catalog_file)
    assert isinstance(listing, list) and [m["id"] for m in listing] == ["align", "whisper-small"]
    for entry in listing:
        validator.validate(entry)
        assert read_json(layout.entry_file(entry["id"])) == entry
        validator.validate(
            read_json(layout.version_dir(entry["id"], entry["default_version"]) / "manifest.json")
        )
        parse_model(entry)  # the sidecar's own checks accept it

    whisper = read_json(layout.entry_file("whisper-small"))
    assert isinstance(whisper, dict)
    assert whisper["name"] == "Whisper Small" and whisper["languages"] == ["zh", "en"]
    assert whisper["default_version"] == "1.0.0"
    (version,) = whisper["versions"]
    assert version["requires"] == [{"model_id": "align", "version": "2"}]
    assert version["size_bytes"] == sum(map(len, FILES.values()))
    assert version["files"] == [
        {"path": p, "size_bytes": len(FILES[p]), "sha256": sha(FILES[p])} for p in sorted(FILES)
    ]
    checksum_bytes = (layout.version_dir("whisper-small", "1.0.0") / "checksum.sha256").read_bytes()
    assert version["checksum_sha256"] == sha(checksum_bytes)


def test_publishing_again_is_a_no_op_and_changes_are_refused(storage: Path):
    publish_files(storage, "other", "1", {"o.bin": b"o"})
    first = publish_files(storage, "m", "1.0.0", FILES)
    layout = StorageLayout(storage)
    before = layout.catalog_file.read_bytes()
    again = publish_files(storage, "m", "1.0.0", FILES)
    assert again.status == "unchanged"
    assert layout.catalog_file.read_bytes() == before  # updated_at kept too
    assert again.manifest == first.manifest

    with pytest.raises(PublishError, match="immutable"):
        publish_files(storage, "m", "1.0.0", {**FILES, "model.bin": b"changed"})
    assert (layout.version_dir("m", "1.0.0") / "model.bin").read_bytes() == FILES["model.bin"]
    with pytest.raises(PublishError, match="immutable"):
        publish_files(storage, "m", "1.0.0", FILES, requires=("other",))
    assert layout.catalog_file.read_bytes() == before

    replaced = publish_files(storage, "m", "1.0.0", {"model.bin": b"new"}, force=True)
    assert replaced.status == "replaced"
    folder = layout.version_dir("m", "1.0.0")
    assert sorted(p.name for p in folder.iterdir()) == [
        "checksum.sha256",
        "manifest.json",
        "model.bin",
    ]
    assert (folder / "model.bin").read_bytes() == b"new"
    assert list(layout.staging.iterdir()) == []  # nothing left behind


@pytest.mark.parametrize(
    ("model_id", "version", "files", "problem"),
    [
        ("../escape", "1", {"a": b"1"}, "unsafe id"),
        ("m", "1/../2", {"a": b"1"}, "unsafe version"),
        ("m", "1", {"checksum.sha256": b"x"}, "written by publish"),
        ("m", "1", {"bad\\name": b"x"}, "unsafe file path"),
        ("m", "1", {}, "no files"),
    ],
)
def test_unsafe_or_reserved_input_is_refused(storage: Path, model_id, version, files, problem):
    source = write_tree(storage.parent / "src", files)
    source.mkdir(parents=True, exist_ok=True)
    with pytest.raises(PublishError, match=problem):
        publish(storage, PublishRequest(source=source, model_id=model_id, version=version))
    assert not (storage / "models").exists() or not any((storage / "models").iterdir())


def test_default_version_follows_publishes_unless_kept(storage: Path):
    publish_files(storage, "m", "1.0.0", {"a": b"1"})
    publish_files(storage, "m", "2.0.0", {"a": b"2"})
    source = write_tree(storage.parent / "patch", {"a": b"3"})
    publish(
        storage, PublishRequest(source=source, model_id="m", version="1.0.1", make_default=False)
    )
    entry = read_json(StorageLayout(storage).entry_file("m"))
    assert isinstance(entry, dict)
    assert entry["default_version"] == "2.0.0"
    assert sorted(v["version"] for v in entry["versions"]) == ["1.0.0", "1.0.1", "2.0.0"]


def test_index_rebuilds_the_catalog_from_the_tree_alone(storage: Path):
    publish_files(storage, "a", "1", {"x": b"1"})
    publish_files(storage, "b", "1", {"y": b"22"})
    layout = StorageLayout(storage)
    expected = layout.catalog_file.read_bytes()
    shutil.rmtree(layout.api)
    assert catalog.rebuild(layout).problems == []
    assert layout.catalog_file.read_bytes() == expected

    # A damaged version is left out (and said), the rest stays served.
    (layout.version_dir("b", "1") / "y").write_bytes(b"truncated!")
    report = catalog.rebuild(layout)
    assert [m.id for m in report.models] == ["a"]
    assert report.problems and "b/1" in report.problems[0]
    assert not layout.entry_file("b").exists()


def test_command_line_publish_and_index(storage: Path, capsys: pytest.CaptureFixture[str]):
    source = write_tree(storage.parent / "cli-src", {"w.bin": b"weights"})
    args = ["publish", str(source), "--storage", str(storage), "--id", "cli", "--version", "1"]
    publish_files(storage, "align", "2", {"align.bin": b"x"})
    with pytest.raises(SystemExit) as exited:
        repo_main([*args, "--requires", "align@2", "--languages", "zh,en", "--task", "asr"])
    assert exited.value.code == 0
    assert "published: cli@1" in capsys.readouterr().out
    (source / "w.bin").write_bytes(b"other")
    with pytest.raises(SystemExit) as exited:
        repo_main(args)
    assert exited.value.code == 1
    assert "immutable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        repo_main(["index", "--storage", str(storage)])
    assert exited.value.code == 0
    assert "2 models, 2 versions" in capsys.readouterr().out


def test_requires_of_a_model_or_version_not_published_is_refused(storage: Path):
    # Reported: publish --requires nope@9 was accepted; every install then failed.
    with pytest.raises(PublishError, match=r"--requires nope@9: nope is not published"):
        publish_files(storage, "whisper", "1.0.0", FILES, requires=("nope@9",))
    assert not StorageLayout(storage).version_dir("whisper", "1.0.0").exists()
    publish_files(storage, "align", "1.0.0", {"a.bin": b"a"})
    publish_files(storage, "align", "1.1.0", {"a.bin": b"b"})
    with pytest.raises(
        PublishError, match=r"align has no version 9 here \(published: 1.0.0, 1.1.0\)"
    ):
        publish_files(storage, "whisper", "1.0.0", FILES, requires=("align@9",))
    with pytest.raises(PublishError, match="cannot require itself"):
        publish_files(storage, "align", "2.0.0", FILES, requires=("align@2.0.0",))
    assert publish_files(storage, "whisper", "1.0.0", FILES, requires=("align@1.1.0",)).status == (
        "published"
    )
    assert publish_files(storage, "tok", "1", FILES, requires=("align",)).status == "published"


def test_command_line_refuses_requires_not_published(
    storage: Path, capsys: pytest.CaptureFixture[str]
):
    source = write_tree(storage.parent / "src", {"w.bin": b"weights"})
    args = ["publish", str(source), "--storage", str(storage), "--id", "w", "--version", "1"]
    with pytest.raises(SystemExit) as exited:
        repo_main([*args, "--requires", "nope@9"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "nope is not published" in err and "publish it before w@1" in err
