"""Every fault of a real repository, CDN, proxy or network, one test each: the sidecar
ends `ready` with the exact bytes, or `failed` with the right code, nothing wrong in
models/, the .part kept where a resume makes sense, and no hang."""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults import (
    ChangeFile,
    Drop,
    Fault,
    Gzip,
    HtmlPage,
    HttpStatus,
    IgnoreRange,
    Outage,
    Redirect,
    ResetAfter,
    ShortBody,
    Stall,
    WrongBytes,
    assert_installed_exactly,
    assert_nothing_installed,
    assert_part_is_prefix,
    chain,
    etag_of,
    free_port,
    parts_of,
    registry_agrees_with_disk,
)
from tests.support.repo_server import RepoServer, sha256
from tests.support.sidecar_proc import RpcError, Sidecar

BIG = os.urandom(3_000_000)
FILES = {"w.bin": BIG, "conf/c.json": b'{"dim": 384}'}
SIZE = len(BIG)
W_PATH = "/storage/models/m/1/w.bin"
ARGS = ["--retries", "3", "--network-patience", "2"]


@pytest.fixture
def model(repo: RepoServer) -> RepoServer:
    repo.add("m", "1", FILES)
    return repo


@pytest.fixture(autouse=True)
def _release_faults(repo: RepoServer) -> Iterator[None]:
    yield
    fault = repo.fault
    repo.fault = None
    if fault is not None and hasattr(fault, "release"):
        fault.release()


def w_requests(repo: RepoServer) -> list[dict[str, str]]:
    return [headers for _, path, headers in repo.file_requests("m") if path == W_PATH]


def range_starts(repo: RepoServer) -> list[int | None]:
    starts: list[int | None] = []
    for headers in w_requests(repo):
        value = headers.get("Range")
        starts.append(int(value.split("=")[1].split("-")[0]) if value else None)
    return starts


def install(sidecar: Sidecar, timeout: float = 40.0) -> dict:
    return sidecar.install_and_wait("m", timeout=timeout)


def assert_ready(task: dict, home: Path) -> None:
    assert task["state"] == "ready", task
    assert task["bytesDone"] == task["bytesTotal"] == SIZE + len(FILES["conf/c.json"])
    assert_installed_exactly(home, "m", "1", FILES)
    assert not parts_of(home, "m"), "parts left behind after ready"
    registry_agrees_with_disk(home)


def assert_failed(task: dict, codes: set[str] | str, home: Path) -> None:
    codes = {codes} if isinstance(codes, str) else codes
    assert task["state"] == "failed", task
    assert task["error"]["code"] in codes, task["error"]
    assert_nothing_installed(home, "m")
    for path, part in parts_of(home, "m").items():
        assert_part_is_prefix(part, FILES[path])


# --- connection reset --------------------------------------------------------------------


def test_reset_after_n_bytes_resumes_by_range(start_sidecar, model: RepoServer, home: Path):
    model.fault = ResetAfter(1_500_000, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_ready(task, home)
    starts = range_starts(model)
    assert len(starts) == 2 and starts[0] is None
    assert starts[1] is not None and 0 < starts[1] <= 1_500_000, starts
    assert w_requests(model)[1].get("If-Range") == etag_of(BIG)
    assert model.bytes_sent[W_PATH] == SIZE + 1_500_000 - starts[1]


def test_every_byte_received_before_a_drop_is_kept(start_sidecar, model: RepoServer, home: Path):
    """A connection that drops every 600 kB: each retry resumes exactly where the last
    stream ended, so a flaky link still makes progress."""
    model.fault = ResetAfter(600_000, times=2, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_ready(task, home)
    assert range_starts(model) == [None, 600_000, 1_200_000]
    assert model.bytes_sent[W_PATH] == SIZE


def test_drops_that_make_progress_do_not_use_up_the_retries(
    start_sidecar, model: RepoServer, home: Path
):
    """Five drops in a row, each after 600 kB of new bytes: the download is progressing,
    so three retries per file must not turn it into a failure."""
    model.fault = ResetAfter(600_000, times=5, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_ready(task, home)


def test_reset_before_the_first_byte_is_retried(start_sidecar, model: RepoServer, home: Path):
    model.fault = Drop(times=2, match=W_PATH)
    assert_ready(install(start_sidecar(args=ARGS)), home)
    assert len(w_requests(model)) == 3


# --- error statuses ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_once_is_retried(start_sidecar, model: RepoServer, home: Path, status):
    model.fault = HttpStatus(status, match=W_PATH)
    assert_ready(install(start_sidecar(args=ARGS)), home)
    assert len(w_requests(model)) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(start_sidecar, model: RepoServer, home: Path, status):
    fault = HttpStatus(status, retry_after=2, match=W_PATH)
    model.fault = fault
    assert_ready(install(start_sidecar(args=ARGS)), home)
    times = [
        t
        for t, (_, path, _) in zip(model.request_times, model.requests, strict=True)
        if path == W_PATH
    ]
    assert len(times) == 2
    assert times[1] - times[0] >= 1.9, f"retried after {times[1] - times[0]:.2f}s, asked 2s"


def test_persistent_server_error_fails_with_a_bounded_number_of_attempts(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = HttpStatus(503, times=None, match=W_PATH)
    began = time.monotonic()
    task = install(start_sidecar(args=ARGS))
    assert_failed(task, {"REPOSITORY_UNAVAILABLE"}, home)
    assert len(w_requests(model)) == 3
    assert time.monotonic() - began < 15


def test_persistent_error_after_partial_download_keeps_the_part_for_a_resume(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = chain(
        ResetAfter(1_500_000, match=W_PATH), HttpStatus(503, times=None, match=W_PATH)
    )
    sidecar = start_sidecar(args=ARGS)
    task = install(sidecar)
    assert_failed(task, {"REPOSITORY_UNAVAILABLE"}, home)
    kept = assert_part_is_prefix(parts_of(home, "m")["w.bin"], BIG)
    assert kept > 0, "the part of a failed download was not kept"
    with pytest.raises(RpcError) as raised:
        sidecar.call("getModelPath", {"modelId": "m"})
    assert raised.value.data["reason"] == "failed"

    model.fault = None  # the server recovers; installing again resumes
    sent_before = model.bytes_sent[W_PATH]
    assert_ready(install(sidecar), home)
    assert range_starts(model)[-1] == kept
    assert model.bytes_sent[W_PATH] - sent_before == SIZE - kept


def test_a_failing_mirror_falls_back_to_the_next(start_sidecar, model: RepoServer, home: Path):
    mirror = RepoServer().start()
    try:
        mirror.models = model.models
        mirror.fault = HttpStatus(503, times=None)
        sidecar = start_sidecar(args=ARGS, repositories=[mirror.url, model.url])
        assert_ready(install(sidecar), home)
        assert mirror.storage_bytes() == 0
        assert model.storage_bytes() == sum(map(len, FILES.values()))
    finally:
        mirror.stop()


# --- Range ignored, gzip ---------------------------------------------------------------


def test_range_ignored_starts_over_and_never_appends(start_sidecar, model: RepoServer, home: Path):
    model.fault = chain(ResetAfter(1_500_000, match=W_PATH), IgnoreRange(times=None))
    assert_ready(install(start_sidecar(args=ARGS)), home)
    starts = range_starts(model)
    assert len(starts) == 2 and starts[1] is not None
    assert model.bytes_sent[W_PATH] == 1_500_000 + SIZE


def test_gzipped_ranged_reply_is_never_written(start_sidecar, model: RepoServer, home: Path):
    model.fault = chain(ResetAfter(1_500_000, match=W_PATH), Gzip(times=None, match=W_PATH))
    assert_ready(install(start_sidecar(args=ARGS)), home)


def test_gzipped_whole_reply_is_never_decoded(start_sidecar, model: RepoServer, home: Path):
    """A body compressed against our ``identity`` is bytes of the wrong size, never
    inflated (a small gzip body can expand to gigabytes): a typed failure, nothing
    installed, no part larger than what was sent."""
    model.fault = Gzip(ranged=False, times=None, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert task["state"] == "failed"
    assert task["error"]["code"] == "REPOSITORY_UNAVAILABLE", task
    assert not (home / "models" / "m").exists()
    assert all(p.stat().st_size <= SIZE for p in (home / "temp").glob("*.part"))


@pytest.mark.parametrize("expansion", [1, 1000])
def test_a_compressed_url_body_is_kept_as_sent(
    start_sidecar, repo: RepoServer, home: Path, expansion: int
):
    """installUrl of a gzip body (a 'gzip bomb' when it expands a thousandfold) installs
    the bytes the server sent, as a browser's download would, and never inflates them."""
    plain = (os.urandom(1024) * expansion)[: 1024 * expansion]
    repo.add("bomb", "1", {"x.bin": plain})
    repo.fault = Gzip(ranged=False, times=None, match="/storage/models/bomb/1/x.bin")
    sidecar = start_sidecar(args=ARGS)
    url = f"{repo.url}/storage/models/bomb/1/x.bin"
    started = sidecar.call("installUrl", {"url": url, "modelId": "bomb"})
    task = sidecar.wait_task(started["taskId"], {"ready", "failed"})
    assert task["state"] == "ready", task
    (installed,) = (home / "models" / "bomb").rglob("x.bin")
    assert installed.read_bytes() == gzip.compress(plain, compresslevel=1, mtime=0)


# --- short and wrong bodies ------------------------------------------------------------


def test_fewer_bytes_than_content_length_resumes(start_sidecar, model: RepoServer, home: Path):
    model.fault = ShortBody(1_000_000, match=W_PATH)
    assert_ready(install(start_sidecar(args=ARGS)), home)
    starts = range_starts(model)
    assert len(starts) == 2 and starts[1] is not None and 0 < starts[1] <= SIZE - 1_000_000


def test_fewer_bytes_on_every_request_fails_and_keeps_the_part(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = ShortBody(SIZE - 1_200_000, times=None, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_failed(task, {"NETWORK_ERROR"}, home)


def test_wrong_bytes_once_are_downloaded_again(start_sidecar, model: RepoServer, home: Path):
    model.fault = WrongBytes(match=W_PATH)
    assert_ready(install(start_sidecar(args=ARGS)), home)
    assert model.bytes_sent[W_PATH] == 2 * SIZE


def test_wrong_bytes_always_fail_with_checksum_mismatch(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = WrongBytes(times=None, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_failed(task, "CHECKSUM_MISMATCH", home)
    assert "w.bin" not in parts_of(home, "m"), "a part with wrong bytes was kept"
    assert model.bytes_sent[W_PATH] == 2 * SIZE


def test_wrong_bytes_in_a_resumed_range_are_caught(start_sidecar, model: RepoServer, home: Path):
    model.fault = chain(ResetAfter(1_500_000, match=W_PATH), WrongBytes(ranged=True, match=W_PATH))
    assert_ready(install(start_sidecar(args=ARGS)), home)


def test_html_error_page_with_200_is_never_written(start_sidecar, model: RepoServer, home: Path):
    model.fault = HtmlPage(match=W_PATH)
    assert_ready(install(start_sidecar(args=ARGS)), home)
    assert model.bytes_sent[W_PATH] < 2 * SIZE


def test_html_error_page_without_length_is_never_installed(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = HtmlPage(chunked=True, match=W_PATH)
    assert_ready(install(start_sidecar(args=ARGS)), home)


def test_html_error_page_during_a_resume_keeps_the_good_part(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = chain(ResetAfter(1_500_000, match=W_PATH), HtmlPage(ranged=True, match=W_PATH))
    assert_ready(install(start_sidecar(args=ARGS)), home)
    starts = range_starts(model)
    assert len(starts) == 3 and starts[2] == starts[1] and starts[1], starts


def test_html_error_page_always_fails_without_installing_it(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = HtmlPage(times=None, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_failed(task, {"REPOSITORY_UNAVAILABLE"}, home)
    for part in (home / "temp").glob("*"):
        if part.is_file():
            assert b"<html>" not in part.read_bytes(), f"the proxy page is in {part.name}"


# --- stalls ------------------------------------------------------------------------------


STALL_ARGS = [*ARGS, "--stall-timeout", "1.5"]


def test_stall_before_the_first_byte_is_detected(start_sidecar, model: RepoServer, home: Path):
    model.fault = Stall(60, match=W_PATH)
    began = time.monotonic()
    assert_ready(install(start_sidecar(args=STALL_ARGS)), home)
    assert time.monotonic() - began < 10
    assert len(w_requests(model)) == 2


def test_stall_mid_body_is_detected_and_resumed(start_sidecar, model: RepoServer, home: Path):
    model.fault = Stall(60, after_bytes=1_500_000, match=W_PATH)
    began = time.monotonic()
    assert_ready(install(start_sidecar(args=STALL_ARGS)), home)
    assert time.monotonic() - began < 10
    starts = range_starts(model)
    assert len(starts) == 2 and starts[1], starts


def test_stall_on_every_request_fails_in_bounded_time(start_sidecar, model: RepoServer, home: Path):
    model.fault = chain(ResetAfter(1_500_000, match=W_PATH), Stall(60, times=None, match=W_PATH))
    began = time.monotonic()
    task = install(start_sidecar(args=STALL_ARGS))
    assert time.monotonic() - began < 20
    assert_failed(task, {"NETWORK_ERROR"}, home)
    assert assert_part_is_prefix(parts_of(home, "m")["w.bin"], BIG) > 0


def test_stalled_catalog_answers_within_the_stall_timeout(start_sidecar, model: RepoServer):
    model.fault = Stall(60, match="/api/models/m")
    sidecar = start_sidecar(args=STALL_ARGS)
    began = time.monotonic()
    try:
        sidecar.call("install", {"modelId": "m"}, timeout=10)
    except RpcError as exc:
        assert exc.data["code"] == "REPOSITORY_UNAVAILABLE"
    assert time.monotonic() - began < 6
    assert sidecar.call("getInfo")["pid"]


# --- the file changes on the server ------------------------------------------------------


def test_file_changed_between_two_requests_never_mixes(
    start_sidecar, model: RepoServer, home: Path
):
    new = os.urandom(SIZE)
    model.fault = chain(
        ResetAfter(1_500_000, match=W_PATH),
        ChangeFile(model, "m/1/w.bin", new, match=W_PATH),
    )
    task = install(start_sidecar(args=ARGS))
    resume = w_requests(model)[1]
    assert resume.get("Range") and resume.get("If-Range") == etag_of(BIG)
    if task["state"] == "ready":
        assert_installed_exactly(home, "m", "1", {**FILES, "w.bin": new})
    else:
        # The task holds the manifest it started with: the new bytes do not match it.
        assert_failed(task, "CHECKSUM_MISMATCH", home)
        assert not parts_of(home, "m").get("w.bin"), "a part with the wrong file was kept"


def test_file_changed_and_changed_back_ends_with_the_original(
    start_sidecar, model: RepoServer, home: Path
):
    """A mirror briefly serves another file at the path: the resume gets a 200 (If-Range
    fails) with other bytes, the hash catches it, the next download is right again."""
    other = os.urandom(SIZE)
    model.fault = chain(
        ResetAfter(1_500_000, match=W_PATH),
        ChangeFile(model, "m/1/w.bin", other, match=W_PATH),
        ChangeFile(model, "m/1/w.bin", BIG, skip=1, match=W_PATH),
    )
    model.models["m"].versions["1"].manifest_overrides = {
        "files": [
            {"path": p, "size_bytes": len(d), "sha256": sha256(d)} for p, d in sorted(FILES.items())
        ]
    }
    assert_ready(install(start_sidecar(args=ARGS)), home)


# --- redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("other_host", ["127.0.0.2", "127.0.0.1"])
def test_redirect_to_another_host_does_not_carry_the_token(
    start_sidecar, model: RepoServer, home: Path, other_host
):
    other = RepoServer(host=other_host).start()
    try:
        other.models = model.models
        other.fault = ResetAfter(1_500_000, match=W_PATH)  # the resume is redirected too
        model.fault = Redirect(other.url, times=None)
        sidecar = start_sidecar(args=ARGS, env={"MODEL_MANAGER_TOKEN": "s3cret-token"})
        assert_ready(install(sidecar), home)
        assert other.storage_bytes() > 0
        leaked = [r for r in other.requests if "Authorization" in r[2]]
        assert not leaked, f"the token followed a redirect to {other.url}: {leaked[0]}"
        assert all(r[2].get("Authorization") == "Bearer s3cret-token" for r in model.requests)
        assert "s3cret-token" not in sidecar.stderr()
    finally:
        other.stop()


def test_redirect_loop_fails_cleanly(start_sidecar, model: RepoServer, home: Path):
    model.fault = Redirect(lambda path: path, times=None, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_failed(task, {"REPOSITORY_UNAVAILABLE"}, home)


def test_redirect_loop_on_the_catalog_is_repository_unavailable(start_sidecar, model: RepoServer):
    model.fault = Redirect(lambda path: path, times=None, match="/api/")
    sidecar = start_sidecar(args=ARGS)
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "m"})
    assert raised.value.code == 1004 and raised.value.data["code"] == "REPOSITORY_UNAVAILABLE"


def test_redirect_to_a_non_http_scheme_fails_cleanly(start_sidecar, model: RepoServer, home: Path):
    model.fault = Redirect(lambda path: "file:///etc/passwd", times=None, match=W_PATH)
    task = install(start_sidecar(args=ARGS))
    assert_failed(task, {"REPOSITORY_UNAVAILABLE"}, home)


# --- connection refused ------------------------------------------------------------------


def test_repository_refusing_connections_answers_at_once(start_sidecar, home: Path):
    sidecar = start_sidecar(args=ARGS, repositories=[f"http://127.0.0.1:{free_port()}"])
    began = time.monotonic()
    with pytest.raises(RpcError) as raised:
        sidecar.call("install", {"modelId": "m"})
    assert raised.value.data["code"] == "REPOSITORY_UNAVAILABLE"
    assert time.monotonic() - began < 5
    assert not (home / "models" / "m").exists()


def test_outage_longer_than_patience_fails_keeps_the_part_and_resumes_later(
    start_sidecar, model: RepoServer, home: Path
):
    model.fault = chain(Outage(model), ResetAfter(1_500_000, match=W_PATH, on_hit=model.go_down))
    sidecar = start_sidecar(args=ARGS)
    began = time.monotonic()
    task = install(sidecar)
    assert time.monotonic() - began < 15
    assert_failed(task, "NETWORK_ERROR", home)
    kept = assert_part_is_prefix(parts_of(home, "m")["w.bin"], BIG)
    assert kept > 0

    model.come_up()
    sent_before = model.bytes_sent[W_PATH]
    assert_ready(install(sidecar), home)
    assert range_starts(model)[-1] == kept
    assert model.bytes_sent[W_PATH] - sent_before == SIZE - kept


def test_outage_shorter_than_patience_is_waited_out(start_sidecar, model: RepoServer, home: Path):
    def outage() -> None:
        model.go_down()
        threading.Timer(2.0, model.come_up).start()

    model.fault = chain(Outage(model), ResetAfter(1_500_000, match=W_PATH, on_hit=outage))
    sidecar = start_sidecar(args=["--network-patience", "20"])
    task = install(sidecar)
    assert_ready(task, home)
    states = [n["params"]["state"] for n in sidecar.notifications if n["method"] == "task.state"]
    assert "failed" not in states


def test_fault_helpers_count_like_the_server(model: RepoServer):
    """The injectors keep RepoServer's byte counters exact (other tests rely on it)."""
    import httpx

    fault: Fault = ResetAfter(1000, match=W_PATH)
    model.fault = fault
    with httpx.Client() as client, pytest.raises(httpx.HTTPError):
        client.get(model.url + W_PATH).read()
    assert model.bytes_sent[W_PATH] == 1000 and fault.exhausted
    with httpx.Client() as client:
        assert (
            client.get(model.url + W_PATH, headers={"Range": "bytes=1000-"}).content == BIG[1000:]
        )
    assert model.bytes_sent[W_PATH] == SIZE
