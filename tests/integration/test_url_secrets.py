"""Credentials in URLs (user info, query values such as a CDN signature, fragments)
never reach stdout, stderr, the log file or any file in the home: not from installUrl,
not from a redirect to a signed URL, not from a repository URL with user:password@."""

from __future__ import annotations

import os
import string
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.repo_server import RepoServer

DATA = os.urandom(3000)  # random: a secret cannot turn up in it by chance

# "Zq" and ten more: never found in a log or a file unless it was put there.
secrets = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~!$'()*+,;:=@/ %&#?",
    min_size=10, max_size=24,
).map(lambda s: "Zq" + s)  # fmt: skip
where = st.sampled_from(["password", "user", "query", "signature", "fragment", "several"])


def secret_url(base: str, path: str, secret: str, place: str) -> str:
    coded = quote(secret, safe="")
    host = base.split("://", 1)[1]
    if place == "password":
        return f"http://someone:{coded}@{host}{path}"
    if place == "user":
        return f"http://{coded}@{host}{path}"
    if place == "query":
        return f"{base}{path}?token={coded}"
    if place == "signature":
        return f"{base}{path}?X-Amz-Expires=60&X-Amz-Signature={coded}&x=1"
    if place == "fragment":
        return f"{base}{path}#{coded}"
    return f"http://u:{coded}@{host}{path}?a=1&sig={coded}#{coded}"


def assert_nowhere(sidecar, home: Path, secret: str) -> None:
    forms = {secret, quote(secret, safe=""), quote(secret)}
    shown = b"".join(sidecar.raw_lines)
    stderr = sidecar.stderr_path.read_bytes()
    for form in forms:
        needle = form.encode()
        assert needle not in shown, f"stdout holds {form!r}"
        assert needle not in stderr, f"stderr holds {form!r}"
    # tasks.json keeps an unfinished installUrl's URL to resume it; it is rewritten just
    # after the task's final state is announced, so give that write a moment.
    sidecar.wait_for(lambda: not _holding(home, forms), what="no file in the home holding it")


def _holding(home: Path, forms: set[str]) -> list[Path]:
    return [
        path
        for path in home.rglob("*")
        if path.is_file()
        and not path.is_symlink()
        and any(form.encode() in _read(path) for form in forms)
    ]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:  # replaced while we looked
        return b""


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=secrets, place=where, exists=st.booleans(), redirect=st.booleans())
def test_install_url_secrets_never_leave_the_process(
    start_sidecar, repo: RepoServer, home: Path, secret: str, place: str, exists: bool,
    redirect: bool,
):  # fmt: skip
    if "sidecar" not in repo.__dict__:
        repo.add("host", "1", {"tiny.gguf": DATA})
        repo.__dict__["sidecar"] = start_sidecar()
    sidecar = repo.__dict__["sidecar"]
    path = "/storage/models/host/1/" + ("tiny.gguf" if exists else "missing.gguf")
    target = secret_url(repo.url, path, secret, place)
    url = target
    if redirect:  # a clean URL that redirects to a signed one, as a CDN does
        url = f"{repo.url}/go/{os.urandom(4).hex()}/tiny.gguf"

        def fault(handler, request_path, range_start):
            if not request_path.startswith("/go/"):
                return False
            handler.send_response(302)
            handler.send_header("Location", target)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True

        repo.fault = fault
    started = sidecar.call("installUrl", {"url": url, "filename": "tiny.gguf"})
    task = sidecar.wait_task(started["taskId"], {"ready", "failed"})
    repo.fault = None
    assert task["state"] == ("ready" if exists else "failed"), task
    sidecar.call("getTask", {"taskId": started["taskId"]})
    sidecar.call("listModels")
    assert_nowhere(sidecar, home, secret)


def test_a_repository_url_with_a_password_is_never_shown(
    start_sidecar, repo: RepoServer, home: Path
):
    repo.add("m", "1", {"w.bin": DATA})
    for secret in ("ZqPassw0rd-1", "Zq p@ss:w/rd?&#", "Zq%41%42"):
        coded = quote(secret, safe="")
        host = repo.url.split("://", 1)[1]
        sidecar = start_sidecar(
            repositories=[f"http://admin:{coded}@{host}", f"{repo.url}?key={coded}"]
        )
        info = sidecar.call("getInfo")
        assert info["repositories"][0] == f"http://***@{host}", info
        assert sidecar.install_and_wait("m")["state"] == "ready"
        sidecar.call("remove", {"modelId": "m"})
        sidecar.stop()
        assert_nowhere(sidecar, home, secret)
