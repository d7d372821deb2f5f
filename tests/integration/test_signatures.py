"""Signed catalogs and manifests end to end: a tree published with --sign-key, served by
the reference server (and nginx), and the real sidecar over real pipes trusting one key,
two keys, or the wrong one. Every refusal is SIGNATURE_INVALID with its reason, installs
nothing and leaves what is installed answering getModelPath."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from model_repo import catalog, signing
from model_repo.background import BackgroundServer
from model_repo.layout import StorageLayout
from model_repo.publish import PublishRequest, parse_requirement, publish
from tests.support.repo_helpers import Nginx, nginx_binary, write_tree
from tests.support.sidecar_proc import RpcError, Sidecar

ALIGN = {"align.bin": os.urandom(20_000)}
WHISPER = {"model.bin": os.urandom(50_000), "config.json": b'{"layers": 12}'}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("old", "new", "stranger"):
        signing.generate(folder / name)
    return {name: folder / name for name in ("old", "new", "stranger")}


def public(path: Path) -> str:
    return path.with_name(path.name + ".pub").read_text().strip()


def signer(*paths: Path, clock: Callable[[], datetime] | None = None) -> signing.Signer:
    loaded = tuple(signing.load(p) for p in paths)
    if clock is None:
        return signing.Signer(loaded)
    return signing.Signer(loaded, clock=clock)


def publish_signed(
    storage: Path,
    model_id: str,
    version: str,
    files: dict[str, bytes],
    by: signing.Signer,
    requires: tuple[str, ...] = (),
) -> None:
    source = write_tree(storage.parent / f"src-{model_id}-{version}", files)
    needs = tuple(parse_requirement(r) for r in requires)
    publish(storage, PublishRequest(source, model_id, version, requires=needs), signer=by)


@pytest.fixture
def storage(tmp_path: Path, keys: dict[str, Path]) -> Path:
    storage = tmp_path / "storage"
    publish_signed(storage, "align-zh", "1.0.0", ALIGN, signer(keys["old"]))
    publish_signed(storage, "whisper-small", "1.0.0", WHISPER, signer(keys["old"]))
    return storage


@pytest.fixture
def server(storage: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(storage) as server:
        yield server


@pytest.fixture
def start(tmp_path: Path, server: BackgroundServer) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def start(*trusted: Path, policy: str | None = None, url: str | None = None) -> Sidecar:
        args = [arg for key in trusted for arg in ("--trusted-key", public(key))]
        if policy is not None:
            args += ["--signatures", policy]
        sidecar = Sidecar(tmp_path / "home", [url or server.url], args=args).start()
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.cleanup()
        assert not sidecar.bad_lines


def refused(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(RpcError) as raised:
        call()
    assert raised.value.code == 1015, raised.value.data
    data: dict[str, Any] = raised.value.data
    assert data["code"] == "SIGNATURE_INVALID"
    assert data["host"].startswith("127.0.0.1:")
    message = raised.value.message
    assert data["host"] in message
    # The user's language: what was refused and what to configure, no file names.
    assert "signatures.json" not in message and ".sig" not in message
    return {**data, "message": message}


def assert_nothing_installed(sidecar: Sidecar, model_id: str) -> None:
    assert [t for t in sidecar.call("listTasks")["tasks"] if t["modelId"] == model_id] == []
    assert not (sidecar.home / "models" / model_id).exists()
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": model_id})
    assert raised.value.data["code"] == "MODEL_NOT_AVAILABLE"


def assert_still_usable(sidecar: Sidecar) -> None:
    """align-zh, installed before the refusal, still answers."""
    path = Path(sidecar.call("getModelPath", {"modelId": "align-zh"})["path"])
    assert (path / "align.bin").read_bytes() == ALIGN["align.bin"]


def edit_json(path: Path, change: Callable[[Any], None]) -> None:
    document = json.loads(path.read_bytes())
    change(document)
    path.write_text(json.dumps(document))


def test_signed_install_and_the_recorded_version(start, keys, storage: Path) -> None:
    sidecar = start(keys["old"])
    task = sidecar.install_and_wait("whisper-small")
    assert task["state"] == "ready", task
    listed = sidecar.call("listModels", {"refresh": True})
    assert not listed["stale"]
    seen = json.loads((sidecar.home / "signatures.json").read_bytes())["versions"]
    layout = StorageLayout(storage)
    on_server = json.loads(layout.catalog_signature.read_bytes())["version"]
    assert seen["catalog"] == on_server
    assert seen["manifest/whisper-small"] >= 1


def test_tampered_catalog(start, keys, storage: Path) -> None:
    sidecar = start(keys["old"])
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"
    layout = StorageLayout(storage)
    edit_json(layout.catalog_file, lambda models: models[0].update(name="evil"))
    data = refused(lambda: sidecar.call("listModels", {"refresh": True}))
    assert data["reason"] == "bad_signature"
    assert data["modelId"] is None
    # Without an explicit refresh the app still lists what it has, marked stale.
    assert sidecar.call("listModels")["stale"]
    assert_still_usable(sidecar)


def test_tampered_manifest(start, keys, storage: Path) -> None:
    sidecar = start(keys["old"])
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"
    entry = StorageLayout(storage).entry_file("whisper-small")
    edit_json(entry, lambda model: model["versions"][0]["files"][0].update(sha256="0" * 64))
    data = refused(lambda: sidecar.call("install", {"modelId": "whisper-small"}))
    assert data["reason"] == "bad_signature"
    assert (data["modelId"], data["version"]) == ("whisper-small", None)
    assert "manifest of whisper-small" in data["message"]
    assert_nothing_installed(sidecar, "whisper-small")
    assert_still_usable(sidecar)


def test_a_tampered_requirement_stops_the_whole_install(start, keys, storage: Path) -> None:
    publish_signed(
        storage, "pipeline", "1.0.0", {"p.bin": b"p"}, signer(keys["old"]), ("whisper-small",)
    )
    sidecar = start(keys["old"])
    entry = StorageLayout(storage).entry_file("whisper-small")
    edit_json(entry, lambda model: model.update(name="evil"))
    data = refused(lambda: sidecar.call("install", {"modelId": "pipeline"}))
    assert (data["reason"], data["modelId"]) == ("bad_signature", "whisper-small")
    assert_nothing_installed(sidecar, "pipeline")
    assert_nothing_installed(sidecar, "whisper-small")


def test_wrong_key(start, keys) -> None:
    sidecar = start(keys["stranger"])
    data = refused(
        lambda: sidecar.call("install", {"modelId": "whisper-small", "version": "1.0.0"})
    )
    assert data["reason"] == "unknown_key"
    assert data["version"] == "1.0.0"
    assert "--trusted-key" in data["message"]
    assert_nothing_installed(sidecar, "whisper-small")


def key_id(path: Path) -> str:
    return signing.load(path).public.key_id


def test_get_info_answers_why_a_catalog_is_refused(start, keys, storage: Path) -> None:
    """Support compares the key a refusal names with getInfo's trusted key ids: ids
    only, no key material."""
    sidecar = start(keys["stranger"], keys["new"])
    policy = sidecar.call("getInfo")["signatures"]
    trusted = [key_id(keys["stranger"]), key_id(keys["new"])]
    assert policy == {"policy": "enforce", "trustedKeyIds": trusted}
    data = refused(lambda: sidecar.call("install", {"modelId": "whisper-small"}))
    envelope = json.loads(StorageLayout(storage).catalog_signature.read_bytes())
    signed_by = envelope["signatures"][0]["keyId"]
    assert signed_by == key_id(keys["old"]) and signed_by not in trusted
    assert signed_by in data["message"]
    assert public(keys["stranger"]).split(":", 1)[1] not in json.dumps(policy)


def test_unsigned_repository(start, keys, storage: Path) -> None:
    sidecar = start(keys["old"])
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"
    shutil.rmtree(StorageLayout(storage).api / "signatures")
    data = refused(lambda: sidecar.call("install", {"modelId": "whisper-small"}))
    assert data["reason"] == "unsigned"
    assert_nothing_installed(sidecar, "whisper-small")
    assert_still_usable(sidecar)


def test_rollback_to_an_older_catalog_and_manifest(start, keys, storage: Path, tmp_path) -> None:
    layout = StorageLayout(storage)
    old_api = tmp_path / "old-api"
    shutil.copytree(layout.api, old_api)
    publish_signed(storage, "whisper-small", "1.1.0", WHISPER, signer(keys["old"]))
    sidecar = start(keys["old"])
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"
    assert sidecar.call("listModels", {"refresh": True})["stale"] is False
    # An attacker (or a stale mirror) serves the earlier, validly signed tree.
    shutil.rmtree(layout.api)
    shutil.copytree(old_api, layout.api)
    assert refused(lambda: sidecar.call("listModels", {"refresh": True}))["reason"] == "rollback"
    assert refused(lambda: sidecar.call("install", {"modelId": "align-zh"}))["reason"] == (
        "rollback"
    )
    # The highest version seen outlives the process.
    sidecar.stop()
    again = start(keys["old"])
    data = refused(lambda: again.call("install", {"modelId": "whisper-small"}))
    assert data["reason"] == "rollback"
    assert_nothing_installed(again, "whisper-small")
    assert_still_usable(again)


def test_expired_catalog(start, keys, storage: Path) -> None:
    sidecar = start(keys["old"])
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"
    # Re-signed as if 31 days ago: valid signatures, past their 30-day expiry.
    month_ago = signer(keys["old"], clock=lambda: datetime.now(UTC) - timedelta(days=31))
    catalog.rebuild(StorageLayout(storage), month_ago)
    assert refused(lambda: sidecar.call("listModels", {"refresh": True}))["reason"] == "expired"
    data = refused(lambda: sidecar.call("install", {"modelId": "whisper-small"}))
    assert data["reason"] == "expired"
    assert_nothing_installed(sidecar, "whisper-small")
    assert_still_usable(sidecar)


def test_rotated_key(start, keys, storage: Path) -> None:
    """The app trusts the old and the new key: what either signs installs; once the
    repository signs with both, an app that trusts only the new key works too."""
    sidecar = start(keys["old"], keys["new"])
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"  # old key
    catalog.rebuild(StorageLayout(storage), signer(keys["new"]))
    assert sidecar.install_and_wait("whisper-small")["state"] == "ready"  # new key
    assert sidecar.call("listModels", {"refresh": True})["stale"] is False
    sidecar.stop()
    catalog.rebuild(StorageLayout(storage), signer(keys["old"], keys["new"]))
    only_new = start(keys["new"])
    assert only_new.call("listModels", {"refresh": True})["stale"] is False
    assert_still_usable(only_new)


def test_warn_logs_and_goes_on(start, keys, storage: Path) -> None:
    entry = StorageLayout(storage).entry_file("align-zh")
    edit_json(entry, lambda model: model.update(name="changed"))
    sidecar = start(keys["stranger"], policy="warn")
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"
    assert "signature check failed (--signatures warn" in sidecar.stderr()
    trusted = [key_id(keys["stranger"])]
    assert sidecar.call("getInfo")["signatures"] == {"policy": "warn", "trustedKeyIds": trusted}


def test_off_fetches_no_signature(start, storage: Path) -> None:
    shutil.rmtree(StorageLayout(storage).api / "signatures")
    sidecar = start()
    assert sidecar.install_and_wait("align-zh")["state"] == "ready"
    assert not (sidecar.home / "signatures.json").exists()
    assert sidecar.call("getInfo")["signatures"] == {"policy": "off", "trustedKeyIds": []}


def test_a_mirror_with_a_bad_copy_is_skipped(start, keys, storage: Path, tmp_path) -> None:
    """A compromised first mirror does not block the good second one."""
    evil = tmp_path / "evil"
    shutil.copytree(storage, evil)
    edit_json(StorageLayout(evil).entry_file("align-zh"), lambda m: m.update(name="evil"))
    with BackgroundServer(evil) as bad, BackgroundServer(storage) as good:
        sidecar = Sidecar(
            tmp_path / "home",
            [bad.url, good.url],
            args=["--trusted-key", public(keys["old"])],
        ).start()
        try:
            assert sidecar.install_and_wait("align-zh")["state"] == "ready"
        finally:
            sidecar.cleanup()


NGINX = nginx_binary()


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)")
def test_nginx_serves_the_signatures(start, keys, storage: Path, tmp_path) -> None:
    assert NGINX is not None
    nginx = Nginx(NGINX, storage, tmp_path / "nginx").start()
    try:
        sidecar = start(keys["old"], url=nginx.url)
        assert sidecar.install_and_wait("align-zh")["state"] == "ready"
        assert any("/api/signatures/models/align-zh " in line for line in nginx.access_log())
        edit_json(StorageLayout(storage).entry_file("whisper-small"), lambda m: m.update(x=1))
        data = refused(lambda: sidecar.call("install", {"modelId": "whisper-small"}))
        assert data["reason"] == "bad_signature"
        assert_nothing_installed(sidecar, "whisper-small")
        assert_still_usable(sidecar)
    finally:
        nginx.stop()


def repo_tool(*args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "model_repo", *args], capture_output=True, text=True,
        timeout=60, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def test_the_command_line_workflow(tmp_path: Path) -> None:
    key = tmp_path / "secret" / "repo.key"
    key.parent.mkdir()
    made = repo_tool("keygen", str(key))
    assert made.returncode == 0, made.stderr
    trusted = public(key)
    assert f"--trusted-key {trusted}" in made.stdout
    assert repo_tool("keygen", str(key)).returncode == 1  # never over an existing key
    source = write_tree(tmp_path / "src", {"a.bin": b"a"})
    storage = tmp_path / "storage"
    common = ["--storage", str(storage), "--id", "m", "--version", "1"]
    published = repo_tool("publish", str(source), *common, "--sign-key", str(key))
    assert published.returncode == 0, published.stderr
    envelope = json.loads(StorageLayout(storage).catalog_signature.read_bytes())
    # A signed repository refuses to go unsigned by accident.
    for unsigned in (("publish", str(source), *common[:3], "m2", "--version", "1"),
                     ("index", "--storage", str(storage))):  # fmt: skip
        result = repo_tool(*unsigned)
        assert result.returncode == 1 and "--sign-key" in result.stderr, result
    resigned = repo_tool("index", "--storage", str(storage), "--sign-key", str(key))
    assert resigned.returncode == 0, resigned.stderr
    after = json.loads(StorageLayout(storage).catalog_signature.read_bytes())
    assert after["version"] > envelope["version"]
    assert after["expires"] >= envelope["expires"]
