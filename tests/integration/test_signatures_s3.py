"""Signed publishing into a real S3-compatible store (SeaweedFS on loopback), served by
the reference server with --redirect s3, installed by the real sidecar: the signature
objects land beside the catalog's, concurrent signed publishers settle on matching
pairs, and a tampered entry is refused."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_repo import signing
from model_repo.background import BackgroundServer
from model_repo.publish import PublishError, PublishRequest
from model_repo.s3 import CATALOG_TYPE, S3Location, Store
from model_repo.s3publish import index_s3, publish_s3
from sidecar.config import Settings
from sidecar.core.signatures import Verifier
from sidecar.store.layout import HomeLayout
from tests.support.repo_helpers import write_tree
from tests.support.seaweed import PRIVATE_BUCKET, SeaweedFS
from tests.support.sidecar_proc import RpcError, Sidecar

_prefixes = itertools.count()
KEY = signing.SigningKey.create()
SIGNER = signing.Signer((KEY,))


@pytest.fixture
def store(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> Store:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    location = S3Location(
        PRIVATE_BUCKET, f"signed-{os.getpid()}-{next(_prefixes)}", seaweed.endpoint
    )
    return Store(location, seaweed.client())


def publish(store: Store, tmp_path: Path, model_id: str, signer: Any = SIGNER) -> None:
    source = write_tree(
        tmp_path / f"src-{model_id}-{os.urandom(4).hex()}", {"m.bin": os.urandom(5000)}
    )
    publish_s3(store, PublishRequest(source, model_id, "1.0.0"), signer=signer)


def verify_store(store: Store, tmp_path: Path) -> None:
    """Every entry and the list match their signature objects (what a client checks)."""
    settings = Settings(
        home=tmp_path / "v", trusted_keys=(KEY.public.text(),), signatures="enforce"
    )
    verifier = Verifier(settings, HomeLayout(tmp_path / "v"))
    listed = store.get_json(store.location.list_key)
    assert listed is not None
    envelope = store.get_json(store.location.signature_key())
    checked = verifier.check(listed[0], envelope and envelope[0], "catalog", None)
    for entry in listed[0]:
        model_id = entry["id"]
        document = store.get_json(store.location.entry_key(model_id))
        signature = store.get_json(store.location.signature_key(model_id))
        assert document is not None and signature is not None
        manifest = verifier.check(document[0], signature[0], "manifest", model_id)
        assert dict(checked.manifests or ())[model_id] <= manifest.version


def test_concurrent_signed_publishers_settle_on_matching_pairs(store: Store, tmp_path: Path):
    errors: list[BaseException] = []

    def run(model_id: str) -> None:
        try:
            publish(store, tmp_path, model_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"model-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    verify_store(store, tmp_path)
    # A signed store stays signed.
    with pytest.raises(PublishError, match="--sign-key"):
        publish(store, tmp_path, "unsigned", signer=None)
    index_s3(store, SIGNER)
    verify_store(store, tmp_path)


@pytest.fixture
def server(store: Store, tmp_path: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(store.location, usage_db=tmp_path / "usage.sqlite3") as server:
        yield server


def test_install_from_a_signed_store_and_refuse_a_tampered_entry(
    store: Store, server: BackgroundServer, tmp_path: Path
):
    publish(store, tmp_path, "align")
    publish(store, tmp_path, "whisper")
    sidecar = Sidecar(
        tmp_path / "home", [server.url], args=["--trusted-key", KEY.public.text()]
    ).start()
    try:
        assert sidecar.install_and_wait("align")["state"] == "ready"
        key = store.location.entry_key("whisper")
        body = store.get(key)
        assert body is not None
        store.put(key, body[0].replace(b'"1.0.0"', b'"6.6.6"'), CATALOG_TYPE, "no-cache")
        with pytest.raises(RpcError) as raised:
            sidecar.call("install", {"modelId": "whisper"})
        assert raised.value.data["code"] == "SIGNATURE_INVALID"
        assert raised.value.data["reason"] == "bad_signature"
        assert not (sidecar.home / "models" / "whisper").exists()
        assert sidecar.call("getModelPath", {"modelId": "align"})["path"]
    finally:
        sidecar.cleanup()
