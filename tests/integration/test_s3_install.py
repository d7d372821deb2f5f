"""The real sidecar installing from a real object store (SeaweedFS): through the
reference server's signed redirects (``serve --redirect s3``) and straight from a
public-read bucket URL, with Range resume after a kill -9 and signed URLs that expire
before the download ends.

A TCP proxy stands where a CDN or a slow line would be: presigned URLs are signed for
its address, it paces the bytes so a download lasts, and it records what the sidecar
sent to the store (no bearer token may ever reach it)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from model_repo.background import BackgroundServer
from model_repo.s3 import S3Location, Store
from tests.support.faults import assert_installed_exactly, parts_of
from tests.support.seaweed import PRIVATE_BUCKET, PUBLIC_BUCKET, SeaweedFS, publish_dir
from tests.support.sidecar_proc import Sidecar
from tests.support.tcpproxy import TcpProxy

TOKEN = "repo-token-never-forwarded"
MiB = 1 << 20
_prefixes = itertools.count()


@pytest.fixture
def proxy(seaweed: SeaweedFS) -> Iterator[TcpProxy]:
    server = TcpProxy(seaweed.s3_port)
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)


def make_store(seaweed: SeaweedFS, bucket: str) -> Store:
    prefix = f"install-{os.getpid()}-{next(_prefixes)}"
    return Store(S3Location(bucket, prefix, seaweed.endpoint), seaweed.client())


@pytest.fixture
def redirecting(
    seaweed: SeaweedFS, proxy: TcpProxy, tmp_path: Path, s3_env: None
) -> Iterator[Callable[..., tuple[BackgroundServer, Store]]]:
    servers: list[BackgroundServer] = []

    def start(expiry: int = 300) -> tuple[BackgroundServer, Store]:
        store = make_store(seaweed, PRIVATE_BUCKET)
        location = S3Location(
            PRIVATE_BUCKET, store.location.prefix, seaweed.endpoint, public_endpoint=proxy.url
        )
        server = BackgroundServer(
            location, token=TOKEN, usage_db=tmp_path / "usage.sqlite3", presign_expiry=expiry
        ).start()
        servers.append(server)
        return server, store

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def start(repository: str, token: str | None = TOKEN) -> Sidecar:
        env = {"MODEL_MANAGER_TOKEN": token} if token else {}
        sidecar = Sidecar(tmp_path / "home", [repository], env=env).start()
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.cleanup()
        assert not sidecar.bad_lines


def store_gets(proxy: TcpProxy, name: str) -> list:
    return [r for r in proxy.requests if r.method == "GET" and name in r.target]


def assert_token_never_reached_the_store(proxy: TcpProxy) -> None:
    assert proxy.requests
    for request in proxy.requests:
        assert "authorization" not in request.headers, request
        assert TOKEN not in request.target


def test_install_through_signed_redirects(redirecting, sidecars, proxy, tmp_path: Path):
    server, store = redirecting()
    big = {"model.bin": os.urandom(40 * MiB), "config.json": b'{"layers": 12}'}
    publish_dir(store, tmp_path, "whisper", "1.0.0", big, requires=())
    # The server checks the token; the store is never asked without a signature.
    assert httpx.get(f"{server.url}/api/models").status_code == 401
    file_url = f"{server.url}/storage/models/whisper/1.0.0/model.bin"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    reply = httpx.get(file_url, headers=auth)
    assert reply.status_code == 302 and "X-Amz-Signature=" in reply.headers["Location"]
    assert reply.headers["Cache-Control"] == "no-store"
    head = httpx.head(file_url, headers=auth, follow_redirects=True)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == 40 * MiB
    catalog = httpx.get(f"{server.url}/api/models", headers=auth)
    revalidate = auth | {"If-None-Match": catalog.headers["ETag"]}
    again = httpx.get(f"{server.url}/api/models", headers=revalidate)
    assert again.status_code == 304

    proxy.requests.clear()
    sidecar = sidecars(server.url)
    task = sidecar.install_and_wait("whisper", timeout=120)
    assert task["state"] == "ready", (task, sidecar.stderr()[-3000:])
    assert_installed_exactly(tmp_path / "home", "whisper", "1.0.0", big)
    assert store_gets(proxy, "model.bin"), "the bytes did not come from the store"
    assert all("X-Amz-Signature=" in r.target for r in store_gets(proxy, "/storage/"))
    assert_token_never_reached_the_store(proxy)


def wait_for_part(home: Path, model_id: str, name: str, at_least: int, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        part = parts_of(home, model_id).get(name)
        if part is not None and part.exists() and part.stat().st_size >= at_least:
            return part.stat().st_size
        time.sleep(0.05)
    raise TimeoutError(f"no {at_least} bytes of {name} on disk")


def kill_and_resume(sidecars, proxy: TcpProxy, repository: str, home: Path, files, token):
    """Kill -9 half-way through model.bin, then a new sidecar finishes the same task."""
    size = len(files["model.bin"])
    proxy.rate = 8 * MiB
    first = sidecars(repository, token)
    first.call("install", {"modelId": "whisper"})
    kept = wait_for_part(home, "whisper", "model.bin", size // 4)
    first.kill()
    proxy.rate = None
    proxy.requests.clear()
    second = sidecars(repository, token)
    task = second.install_and_wait("whisper", timeout=120)
    assert task["state"] == "ready", (task, second.stderr()[-3000:])
    assert_installed_exactly(home, "whisper", "1.0.0", files)
    ranges = [r.headers.get("range", "") for r in store_gets(proxy, "model.bin")]
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranges if r.startswith("bytes=")]
    assert starts and min(starts) >= kept * 0.9, (kept, ranges)  # resumed, not restarted
    return second


def test_kill_9_mid_download_resumes_through_fresh_redirects(
    redirecting, sidecars, proxy, tmp_path: Path
):
    server, store = redirecting()
    files = {"model.bin": os.urandom(24 * MiB)}  # one stream: below the segmented size
    publish_dir(store, tmp_path, "whisper", "1.0.0", files)
    kill_and_resume(sidecars, proxy, server.url, tmp_path / "home", files, TOKEN)
    assert_token_never_reached_the_store(proxy)


def test_install_straight_from_a_public_bucket(seaweed, sidecars, proxy, tmp_path: Path):
    store = make_store(seaweed, PUBLIC_BUCKET)
    files = {"model.bin": os.urandom(24 * MiB), "vocab.json": b"{}"}
    publish_dir(store, tmp_path, "whisper", "1.0.0", files)
    base = f"{proxy.url}/{PUBLIC_BUCKET}/{store.location.prefix}"
    assert httpx.get(f"{base}/api/models").json()[0]["id"] == "whisper"  # anonymous read
    kill_and_resume(sidecars, proxy, base, tmp_path / "home", files, token=None)


def test_signed_urls_expiring_before_the_download_ends(
    redirecting, sidecars, proxy, tmp_path: Path
):
    """A 2 s signature (X-Amz-Date has whole seconds: 1-2 s in practice) against a
    download of several seconds whose connections are cut after 3 MiB: every request
    after a cut must go back to the server for a fresh URL."""
    server, store = redirecting(expiry=2)
    files = {"model.bin": os.urandom(40 * MiB)}
    publish_dir(store, tmp_path, "whisper", "1.0.0", files)
    proxy.rate = 6 * MiB
    proxy.cut_after = 3 * MiB  # less than a 4 MiB segment: every segment is cut once
    sidecar = sidecars(server.url)
    task = sidecar.install_and_wait("whisper", timeout=180)
    assert task["state"] == "ready", (task, sidecar.stderr()[-3000:])
    assert_installed_exactly(tmp_path / "home", "whisper", "1.0.0", files)
    gets = store_gets(proxy, "model.bin")
    assert gets[-1].at - gets[0].at > 3, "the download did not outlast the signature"
    assert len({g.target for g in gets}) > 1, "one signed URL served the whole download"


def test_a_signed_url_that_expired_in_transit_is_resolved_again(
    redirecting, sidecars, proxy, tmp_path: Path
):
    """The first request to the store arrives after its 1 s signature expired (held by
    a slow proxy): the store answers 403, and the sidecar must ask the server again."""
    server, store = redirecting(expiry=1)
    files = {"model.bin": os.urandom(2 * MiB)}
    publish_dir(store, tmp_path, "whisper", "1.0.0", files)
    proxy.hold_requests, proxy.hold_seconds = 1, 2.5
    sidecar = sidecars(server.url)
    task = sidecar.install_and_wait("whisper", timeout=120)
    assert task["state"] == "ready", (task, sidecar.stderr()[-3000:])
    assert_installed_exactly(tmp_path / "home", "whisper", "1.0.0", files)


def test_a_store_refusing_the_server_is_a_503_not_a_traceback(
    seaweed: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name, value in {**seaweed.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}.items():
        monkeypatch.setenv(name, value)
    location = S3Location(PRIVATE_BUCKET, "anything", seaweed.endpoint)
    with BackgroundServer(location, usage_db=tmp_path / "usage.sqlite3") as server:
        reply = httpx.get(f"{server.url}/api/models")
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "5"
    assert reply.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
    assert "not-the-secret" not in reply.text
