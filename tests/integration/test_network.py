"""The real network, on loopback: nginx over TLS with a test CA (trustme), a real
forward proxy (tinyproxy), and CDN-style signed redirects that expire mid-download."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.faults import Fault, Redirect
from tests.support.proxy import Tinyproxy, tinyproxy_binary
from tests.support.repo_helpers import Nginx, nginx_binary, publish_files
from tests.support.repo_server import RepoHandler, RepoServer
from tests.support.sidecar_proc import RpcError, Sidecar

NGINX = nginx_binary()
TINYPROXY = tinyproxy_binary()
needs_nginx = pytest.mark.skipif(NGINX is None and not os.environ.get("CI"), reason="no nginx")
needs_proxy = pytest.mark.skipif(
    TINYPROXY is None and not os.environ.get("CI"), reason="no tinyproxy"
)

BIG = os.urandom(40 * 1024 * 1024)  # segmented: several connections per file
FILES = {"w.bin": BIG, "config.json": b'{"dim": 8}'}
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    publish_files(root, "tls-model", "1.0.0", FILES)
    return root


def tls_nginx(ca: trustme.CA, storage: Path, folder: Path) -> Nginx:
    folder.mkdir(parents=True, exist_ok=True)
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = folder / "chain.pem", folder / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    assert NGINX is not None
    return Nginx(NGINX, storage, folder / "nginx", tls=(chain, key)).start()


@pytest.fixture
def https_repo(ca: trustme.CA, storage: Path, tmp_path: Path) -> Iterator[Nginx]:
    server = tls_nginx(ca, storage, tmp_path / "tls")
    yield server
    server.stop()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def run(home: Path, repo: str, args: list[str] | None = None, **env: str) -> Sidecar:
    return Sidecar(home=home, repositories=[repo], args=args, env=env).start()


def installed(home: Path) -> dict[str, bytes]:
    root = home / "models" / "tls-model" / "1.0.0"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- TLS ---------------------------------------------------------------------------------


@needs_nginx
def test_https_with_a_private_ca_given_as_ca_bundle(https_repo: Nginx, ca_file: Path, home: Path):
    sidecar = run(home, https_repo.url, ["--ca-bundle", str(ca_file)])
    try:
        task = sidecar.install_and_wait("tls-model")
        assert task["state"] == "ready", task
        assert installed(home) == FILES
    finally:
        sidecar.cleanup()


@needs_nginx
def test_https_with_the_ca_in_the_platform_store(https_repo: Nginx, ca_file: Path, home: Path):
    """On Linux the platform's store is OpenSSL's default, which SSL_CERT_FILE names."""
    sidecar = run(home, https_repo.url, SSL_CERT_FILE=str(ca_file))
    try:
        assert sidecar.install_and_wait("tls-model")["state"] == "ready"
        assert installed(home) == FILES
    finally:
        sidecar.cleanup()


@needs_nginx
def test_https_with_the_ca_in_the_platform_store_directory(
    https_repo: Nginx, ca_file: Path, home: Path, tmp_path: Path
):
    """SSL_CERT_DIR: a folder of certificates named by subject hash, as c_rehash and
    update-ca-certificates leave /etc/ssl/certs."""
    import subprocess

    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    folder = tmp_path / "certs"
    folder.mkdir()
    (folder / f"{subject_hash}.0").write_bytes(ca_file.read_bytes())
    sidecar = run(
        home, https_repo.url, SSL_CERT_DIR=str(folder), SSL_CERT_FILE=str(tmp_path / "none.pem")
    )
    try:
        assert sidecar.install_and_wait("tls-model")["state"] == "ready"
        assert installed(home) == FILES
    finally:
        sidecar.cleanup()


@needs_nginx
def test_the_trust_store_is_read_once_not_per_connection(
    https_repo: Nginx, ca_file: Path, monkeypatch: pytest.MonkeyPatch
):
    """Reading the platform's store takes ~25 ms here; read per handshake (and under a
    lock, as truststore does on Linux) it serialises every file's connections."""
    import ssl

    import urllib3

    from sidecar.transfer.network import Network, ssl_context

    reads = []
    read = ssl.SSLContext.set_default_verify_paths

    def counted(self: ssl.SSLContext) -> None:
        reads.append(1)
        read(self)

    monkeypatch.setattr(ssl.SSLContext, "set_default_verify_paths", counted)
    ssl_context.cache_clear()
    try:
        network = Network(None, ca_file, 16)
        assert network.ssl is not None and not reads  # nothing read before a handshake
        url = f"{https_repo.url}/storage/models/tls-model/1.0.0/config.json"
        for _ in range(4):  # a new connection each time
            reply = network.pool_for(url).urlopen("GET", url, headers={"Connection": "close"})
            assert reply.status == 200, reply.status
            assert isinstance(reply, urllib3.BaseHTTPResponse)
        network.close()
    finally:
        ssl_context.cache_clear()
    assert len(reads) == 1


@needs_nginx
def test_the_catalog_client_reads_the_trust_store_off_the_event_loop(
    https_repo: Nginx, ca_file: Path, monkeypatch: pytest.MonkeyPatch
):
    """Reading the store takes tens of milliseconds: on the loop it would hold up every
    getModelPath answer behind the first catalog call over HTTPS. (anyio calls the
    ``wrap_bio`` of a context that is not the standard library's own in a thread.)"""
    import ssl
    import threading

    import anyio
    import httpx

    from sidecar.transfer.jsonreply import RoutingTransport
    from sidecar.transfer.network import Network, ssl_context

    threads: list[threading.Thread] = []
    read = ssl.SSLContext.set_default_verify_paths

    def recorded(self: ssl.SSLContext) -> None:
        threads.append(threading.current_thread())
        read(self)

    async def fetch(network: Network) -> int:
        async with httpx.AsyncClient(transport=RoutingTransport(network)) as client:
            url = f"{https_repo.url}/storage/models/tls-model/1.0.0/config.json"
            return (await client.get(url)).status_code

    monkeypatch.setattr(ssl.SSLContext, "set_default_verify_paths", recorded)
    ssl_context.cache_clear()
    try:
        assert anyio.run(fetch, Network(None, ca_file, 16)) == 200
    finally:
        ssl_context.cache_clear()
    assert threads and threading.main_thread() not in threads


@needs_nginx
def test_an_untrusted_certificate_is_a_typed_tls_error(https_repo: Nginx, home: Path):
    sidecar = run(home, https_repo.url)
    try:
        with pytest.raises(RpcError) as raised:
            sidecar.call("install", {"modelId": "tls-model"})
        data = raised.value.data
        assert data["code"] == "TLS_ERROR"
        assert data["host"] == "127.0.0.1"
        assert "--ca-bundle" in raised.value.message
        assert "Traceback" not in sidecar.stderr()
        assert not (home / "models" / "tls-model").exists()
    finally:
        sidecar.cleanup()


@needs_nginx
def test_a_file_host_with_an_untrusted_certificate_is_a_typed_tls_error(
    repo: RepoServer, ca: trustme.CA, storage: Path, tmp_path: Path, home: Path
):
    """The catalog is trusted, the CDN its files redirect to is not."""
    cdn = tls_nginx(ca, storage, tmp_path / "cdn")
    try:
        repo.add("tls-model", "1.0.0", FILES)
        repo.fault = Redirect(cdn.url, times=None)
        sidecar = run(home, repo.url)
        try:
            task = sidecar.install_and_wait("tls-model")
            assert task["state"] == "failed"
            assert task["error"]["code"] == "TLS_ERROR", task
        finally:
            sidecar.cleanup()
    finally:
        cdn.stop()


# --- proxies -----------------------------------------------------------------------------


@pytest.fixture(params=[None, ("mm-user", "pr0xy-pass")], ids=["open", "auth"])
def proxy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tinyproxy]:
    assert TINYPROXY is not None
    server = Tinyproxy(TINYPROXY, tmp_path / "proxy", credentials=request.param).start()
    yield server
    server.stop()


@needs_nginx
@needs_proxy
def test_every_request_of_a_plain_http_install_goes_through_the_proxy(
    storage: Path, tmp_path: Path, home: Path, proxy: Tinyproxy
):
    assert NGINX is not None
    nginx = Nginx(NGINX, storage, tmp_path / "nginx").start()
    try:
        sidecar = run(home, nginx.url, HTTP_PROXY=proxy.url, NO_PROXY="")
        try:
            assert sidecar.install_and_wait("tls-model")["state"] == "ready"
            assert installed(home) == FILES
        finally:
            sidecar.cleanup()
        served = nginx.access_log()
        assert served and all("(tinyproxy/" in line for line in served), served
        through = [r for r in proxy.requests() if "/storage/models/" in r]
        assert len(through) == sum("/storage/models/" in line for line in served)
        assert proxy.credentials is None or proxy.credentials[1] not in sidecar.stderr()
    finally:
        nginx.stop()


@needs_nginx
@needs_proxy
def test_https_goes_through_connect_and_the_token_stays_in_the_tunnel(
    https_repo: Nginx, ca_file: Path, home: Path, proxy: Tinyproxy
):
    sidecar = run(
        home,
        https_repo.url,
        ["--ca-bundle", str(ca_file)],
        HTTPS_PROXY=proxy.url,
        NO_PROXY="",
        MODEL_MANAGER_TOKEN=TOKEN,
    )
    try:
        assert sidecar.install_and_wait("tls-model")["state"] == "ready"
    finally:
        sidecar.cleanup()
    asked = proxy.requests()
    assert asked and all(r.startswith("CONNECT 127.0.0.1:") for r in asked), asked
    assert TOKEN not in proxy.log()
    assert all(f'auth="Bearer {TOKEN}"' in line for line in https_repo.access_log())


@needs_nginx
@needs_proxy
def test_no_proxy_bypasses_the_proxy(storage: Path, tmp_path: Path, home: Path, proxy: Tinyproxy):
    assert NGINX is not None
    nginx = Nginx(NGINX, storage, tmp_path / "nginx").start()
    try:
        sidecar = run(home, nginx.url, HTTP_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1")
        try:
            assert sidecar.install_and_wait("tls-model")["state"] == "ready"
        finally:
            sidecar.cleanup()
        assert proxy.requests() == []
        assert nginx.access_log() and all('via="-"' in line for line in nginx.access_log())
    finally:
        nginx.stop()


@needs_nginx
@needs_proxy
def test_set_network_switches_to_the_proxy_the_app_resolved(
    storage: Path, tmp_path: Path, home: Path, proxy: Tinyproxy
):
    assert NGINX is not None
    nginx = Nginx(NGINX, storage, tmp_path / "nginx").start()
    try:
        sidecar = run(home, nginx.url)
        try:
            answer = sidecar.call("setNetwork", {"proxy": proxy.url})
            if proxy.credentials:
                assert proxy.credentials[1] not in str(answer)
                assert answer["proxy"].endswith(f"@127.0.0.1:{proxy.port}")
            else:
                assert answer == {"proxy": proxy.url}
            assert sidecar.install_and_wait("tls-model")["state"] == "ready"
            assert sidecar.call("setNetwork", {"proxy": None}) == {"proxy": None}
            with pytest.raises(RpcError) as raised:
                sidecar.call("setNetwork", {"proxy": "ftp://user:hunter2@proxy"})
            assert raised.value.code == -32602
            assert "hunter2" not in str(raised.value.data) + raised.value.message
        finally:
            sidecar.cleanup()
        assert all("(tinyproxy/" in line for line in nginx.access_log())
        if proxy.credentials:
            assert proxy.credentials[1] not in sidecar.stderr()
    finally:
        nginx.stop()


# --- signed redirects ----------------------------------------------------------------------


class SignedUrls(Fault):
    """The CDN side: a signed URL (``?sig=N``) answers 403 once ``expire_after`` of its
    requests have been served, as a signature past its expiry does."""

    def __init__(self, expire_after: int, **kwargs: Any) -> None:
        super().__init__(times=None, **kwargs)
        self.expire_after = expire_after
        self.served: dict[str, int] = {}
        self.refused: list[str] = []

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        signature = handler.path.partition("?")[2]
        count = self.served.get(signature, 0)
        if count >= self.expire_after:
            self.refused.append(signature)
            body = b"<Error><Code>AccessDenied</Code>Request has expired</Error>"
            handler.send_response(403)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return True
        self.served[signature] = count + 1
        return False


def test_a_signed_url_that_expires_mid_download_is_resolved_again(repo: RepoServer, home: Path):
    cdn = RepoServer().start()
    try:
        repo.add("tls-model", "1.0.0", FILES)
        cdn.models = repo.models
        signatures = itertools.count(1)
        repo.fault = Redirect(lambda path: f"{cdn.url}{path}?sig={next(signatures)}", times=None)
        expiry = SignedUrls(expire_after=3)
        cdn.fault = expiry
        sidecar = run(home, repo.url)
        try:
            task = sidecar.install_and_wait("tls-model")
            assert task["state"] == "ready", task
            assert installed(home) == FILES
        finally:
            sidecar.cleanup()
        assert expiry.refused, "the signed URL never expired: the test proves nothing"
        assert len(set(expiry.served)) >= 2  # it was resolved again
        # Refetched: at most one segment's worth beyond the file (the 403s carry no file bytes).
        sent = cdn.storage_bytes("tls-model")
        assert sent <= len(BIG) + len(FILES["config.json"]) + 4 * 1024 * 1024, sent
    finally:
        cdn.stop()


def test_the_token_never_goes_to_the_host_a_redirect_names(repo: RepoServer, home: Path):
    cdn = RepoServer().start()
    try:
        repo.add("tls-model", "1.0.0", FILES)
        cdn.models = repo.models
        repo.fault = Redirect(cdn.url, times=None)
        sidecar = Sidecar(home=home, repositories=[repo.url], env={"MODEL_MANAGER_TOKEN": TOKEN})
        sidecar.start()
        try:
            assert sidecar.install_and_wait("tls-model")["state"] == "ready"
        finally:
            sidecar.cleanup()
        assert all(r[2].get("Authorization") == f"Bearer {TOKEN}" for r in repo.requests)
        assert cdn.requests and not any(
            "authorization" in {k.lower() for k in r[2]} for r in cdn.requests
        )
    finally:
        cdn.stop()
