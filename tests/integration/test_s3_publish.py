"""Publishing into a real S3-compatible store (SeaweedFS on loopback): the same tree
under URL-shaped keys, immutable versions, concurrent publishers that keep each
other's catalog entries, readers that never see a version with missing files, and
``index`` rebuilding the catalog from the manifests."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from model_repo.publish import PublishError
from model_repo.s3 import S3Location, StorageError, Store
from model_repo.s3publish import index_s3
from sidecar.manifest import Requirement
from tests.support.repo_helpers import write_tree
from tests.support.seaweed import PRIVATE_BUCKET, SeaweedFS, publish_dir

_prefixes = itertools.count()


@pytest.fixture
def store(seaweed: SeaweedFS) -> Store:
    location = S3Location(PRIVATE_BUCKET, f"repo-{os.getpid()}-{next(_prefixes)}", seaweed.endpoint)
    return Store(location, seaweed.client())


def repo_tool(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_repo", *args], capture_output=True, text=True,
        timeout=120, env={**os.environ, **env}, check=False,
    )  # fmt: skip


def catalog_of(store: Store) -> list[dict]:
    found = store.get_json(store.location.list_key)
    return found[0] if found else []


def test_publish_writes_url_shaped_keys_and_is_immutable(store: Store, tmp_path: Path):
    files = {"model.bin": os.urandom(200_000), "tok/vocab.json": b"{}"}
    result = publish_dir(store, tmp_path, "whisper", "1.0.0", files, task="asr")
    assert result.status == "published"
    keys = store.list(store.location.prefix + "/")
    root = store.location.prefix
    assert keys[f"{root}/storage/models/whisper/1.0.0/model.bin"] == 200_000
    assert f"{root}/storage/models/whisper/1.0.0/manifest.json" in keys
    assert f"{root}/storage/models/whisper/1.0.0/checksum.sha256" in keys
    entry = store.get_json(store.location.entry_key("whisper"))[0]
    assert entry["default_version"] == "1.0.0" and entry["task"] == "asr"
    assert [m["id"] for m in catalog_of(store)] == ["whisper"]
    # The same content again changes nothing; other content is refused without --force.
    same = publish_dir(store, tmp_path, "whisper", "1.0.0", files, task="asr")
    assert same.status == "unchanged"
    with pytest.raises(PublishError, match="immutable"):
        publish_dir(store, tmp_path, "whisper", "1.0.0", {"model.bin": b"other"})
    replaced = publish_dir(store, tmp_path, "whisper", "1.0.0", {"model.bin": b"x"}, force=True)
    assert replaced.status == "replaced"
    assert store.get_json(store.location.entry_key("whisper"))[0]["versions"][0]["size_bytes"] == 1


def test_the_store_honours_conditional_writes(store: Store):
    """What the catalog's compare-and-swap rests on, checked on SeaweedFS itself."""
    store.check_conditional_writes()  # raises StorageError if If-Match were ignored
    key = store.location.key("cas")
    store.update_json(key, lambda doc: {"n": 1})
    with pytest.raises(Exception, match="PreconditionFailed"):
        store.put(key, b"{}", "application/json", "no-cache", IfNoneMatch="*")
    with pytest.raises(Exception, match="PreconditionFailed"):
        store.put(key, b"{}", "application/json", "no-cache", IfMatch='"not-the-etag"')


def test_concurrent_publishers_keep_every_entry(store: Store, tmp_path: Path):
    """Eight publishers at once (six models, one of them with three versions); a reader
    meanwhile never sees a listed version whose files are not all in the store."""
    jobs = [(f"model-{n}", "1.0.0") for n in range(6)] + [("model-0", v) for v in ("2", "3")]
    errors: list[BaseException] = []
    done = threading.Event()
    violations: list[str] = []

    def reader() -> None:
        while not done.is_set():
            for model in catalog_of(store):
                for version in model["versions"]:
                    for file in version["files"]:
                        key = store.location.version_key(
                            model["id"], version["version"], file["path"]
                        )
                        if store.get(key) is None:
                            violations.append(f"{model['id']}@{version['version']}: {key}")

    def publisher(model_id: str, version: str) -> None:
        try:
            files = {"a.bin": os.urandom(300_000), "b.txt": version.encode()}
            publish_dir(store, tmp_path, model_id, version, files, make_default=False)
        except BaseException as exc:
            errors.append(exc)

    watcher = threading.Thread(target=reader)
    watcher.start()
    threads = [threading.Thread(target=publisher, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    watcher.join(30)
    assert not errors, errors
    assert not violations, violations[:5]
    listed = {m["id"]: m for m in catalog_of(store)}
    assert sorted(listed) == [f"model-{n}" for n in range(6)]
    assert sorted(v["version"] for v in listed["model-0"]["versions"]) == ["1.0.0", "2", "3"]
    # The list holds the latest entry of each model, the same as the entry object.
    for model_id, model in listed.items():
        assert store.get_json(store.location.entry_key(model_id))[0] == model


def test_index_rebuilds_the_catalog_and_skips_broken_versions(store: Store, tmp_path: Path):
    publish_dir(store, tmp_path, "good", "1", {"a.bin": b"a" * 1000})
    publish_dir(store, tmp_path, "good", "2", {"a.bin": b"b" * 1000}, make_default=False)
    publish_dir(store, tmp_path, "broken", "1", {"a.bin": b"c" * 1000})
    before = {m["id"]: m for m in catalog_of(store)}
    store.delete(store.location.version_key("broken", "1", "a.bin"))
    store.delete(store.location.list_key)
    report = index_s3(store)
    assert any("broken/1" in p and "a.bin" in p for p in report.problems), report.problems
    after = catalog_of(store)
    assert [m["id"] for m in after] == ["good"]
    assert after[0] == before["good"]  # the default (1) and both versions kept
    assert store.get(store.location.entry_key("broken")) is None


def test_cli_publishes_to_s3_with_aws_variables(seaweed: SeaweedFS, tmp_path: Path):
    source = write_tree(tmp_path / "src", {"weights.bin": os.urandom(50_000)})
    target = f"s3://{PRIVATE_BUCKET}/cli-{os.getpid()}"
    published = repo_tool(
        "publish", str(source), "--storage", target, "--id", "tiny", "--version", "1.0.0",
        env=seaweed.env(),
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("published: tiny@1.0.0 (1 files, 50000 bytes)")
    indexed = repo_tool("index", "--storage", target, env=seaweed.env())
    assert indexed.returncode == 0, indexed.stderr
    assert "catalog: 1 models, 1 versions" in indexed.stdout
    wrong = repo_tool(
        "index", "--storage", target, env={**seaweed.env(), "AWS_SECRET_ACCESS_KEY": "wrong"}
    )
    assert wrong.returncode == 1
    assert "Traceback" not in wrong.stderr and "SECRET" not in wrong.stderr
    assert wrong.stderr.startswith("error: "), wrong.stderr


def test_bad_locations_are_refused():
    for bad in ("s3://", "s3://bucket/a//b", "s3://bucket/../x", "http://bucket/x"):
        with pytest.raises(StorageError):
            S3Location.parse(bad)
    assert S3Location.parse("s3://b/p/q/").key("api", "models") == "p/q/api/models"
    assert json.loads(json.dumps(str(S3Location.parse("s3://b")))) == "s3://b"


def test_requires_of_what_the_store_does_not_serve_is_refused(store: Store, tmp_path: Path):

    files = {"model.bin": b"weights"}
    with pytest.raises(PublishError, match="--requires nope@9: nope is not published"):
        publish_dir(
            store, tmp_path, "w", "1", files, requires=(Requirement(model_id="nope", version="9"),)
        )
    assert store.get_json(store.location.entry_key("w")) is None
    publish_dir(store, tmp_path, "align", "1.0.0", {"a.bin": b"a"})
    with pytest.raises(PublishError, match=r"align has no version 9 here \(published: 1.0.0\)"):
        publish_dir(
            store, tmp_path, "w", "1", files, requires=(Requirement(model_id="align", version="9"),)
        )
    needs = (Requirement(model_id="align", version="1.0.0"),)
    assert publish_dir(store, tmp_path, "w", "1", files, requires=needs).status == "published"
