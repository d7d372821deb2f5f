"""The reference server over real HTTP on loopback: catalog, Range, ETag, HEAD,
traversal refused in several encodings, bearer token, and the usage ranking."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_repo.background import BackgroundServer
from model_repo.layout import StorageLayout
from tests.support.repo_helpers import publish_files, raw_request

DATA = os.urandom(10_000)
FILE = "/storage/models/whisper-small/1.0.0/weights/model.bin"


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("repo") / "storage"
    publish_files(storage, "whisper-small", "1.0.0", {"weights/model.bin": DATA, "a.json": b"{}"})
    # What a traversal would be after: next to the storage, and in the usual places.
    (storage.parent / "secret.txt").write_bytes(b"TOP SECRET")
    return storage


@pytest.fixture(scope="module")
def server(storage: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(storage) as server:
        yield server


def get(server: BackgroundServer, target: str, **headers: str):
    return raw_request(server.url, "GET", target, headers)


def test_catalog_files_are_served_as_json(server: BackgroundServer, storage: Path):
    layout = StorageLayout(storage)
    listing = get(server, "/api/models")
    assert listing.status == 200
    assert listing.headers["content-type"].startswith("application/json")
    assert listing.body == layout.catalog_file.read_bytes()
    entry = get(server, "/api/models/whisper-small")
    assert json.loads(entry.body) == json.loads(layout.entry_file("whisper-small").read_bytes())
    missing = get(server, "/api/models/nope")
    assert missing.status == 404
    assert json.loads(missing.body)["error"]["code"] == "MODEL_NOT_FOUND"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),  # first
        ("bytes=5000-5999", 5000, 5999),  # middle
        ("bytes=-100", 9900, 9999),  # suffix
        ("bytes=9000-", 9000, 9999),  # open-ended, what a resume sends
    ],
)
def test_ranges(server: BackgroundServer, header: str, start: int, end: int):
    response = get(server, FILE, Range=header)
    assert response.status == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.body == DATA[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=10000-", "bytes=20000-20010", "bytes=-0"])
def test_unsatisfiable_range_is_416(server: BackgroundServer, header: str):
    response = get(server, FILE, Range=header)
    assert response.status == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


def test_etag_last_modified_head_and_conditionals(server: BackgroundServer):
    full = get(server, FILE)
    assert full.status == 200 and full.body == DATA
    etag, modified = full.headers["etag"], full.headers["last-modified"]
    assert get(server, FILE).headers["etag"] == etag  # stable
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"

    head = raw_request(server.url, "HEAD", FILE)
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(DATA)) and head.headers["etag"] == etag

    assert get(server, FILE, **{"If-None-Match": etag}).status == 304
    assert get(server, FILE, **{"If-Modified-Since": modified}).status == 304
    # If-Range: the part is still good → 206; the file changed → the whole file.
    assert get(server, FILE, Range="bytes=10-", **{"If-Range": etag}).status == 206
    stale = get(server, FILE, Range="bytes=10-", **{"If-Range": '"something-else"'})
    assert stale.status == 200 and stale.body == DATA


TRAVERSALS = [
    "/storage/models/../../secret.txt",
    "/storage/models/whisper-small/1.0.0/../../../../secret.txt",
    "/storage/models/%2e%2e/%2e%2e/secret.txt",
    "/storage/models/whisper-small/1.0.0/%2E%2E/%2E%2E/%2E%2E/secret.txt",
    "/storage/models/whisper-small/1.0.0/..%2f..%2f..%2fsecret.txt",
    "/storage/models/whisper-small/1.0.0/%252e%252e/%252e%252e/secret.txt",
    "/storage/models/whisper-small/1.0.0/..%5c..%5csecret.txt",
    "/storage/models//etc/passwd",
    "/storage/models/%2fetc%2fpasswd",
    "/storage/models/whisper-small/1.0.0/C:%5cwindows%5cwin.ini",
    "/storage/models/whisper-small/1.0.0/a.json%00.bin",
    "/api/models/..%2f..%2fsecret",
    "/api/models/%2e%2e",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_refused_with_a_json_error(server: BackgroundServer, target: str):
    response = get(server, target)
    assert response.status in (400, 404), (target, response.status)
    error = json.loads(response.body)["error"]
    assert set(error) == {"code", "message"}
    assert b"TOP SECRET" not in response.body and b"root:" not in response.body


def test_symlinks_out_of_the_storage_are_not_followed(server: BackgroundServer, storage: Path):
    folder = storage / "models" / "whisper-small" / "1.0.0"
    (folder / "leak.txt").symlink_to(storage.parent / "secret.txt")
    (folder / "outside").symlink_to(storage.parent, target_is_directory=True)
    for target in (
        f"{FILE.rsplit('/', 2)[0]}/leak.txt",
        f"{FILE.rsplit('/', 2)[0]}/outside/secret.txt",
    ):
        response = get(server, target)
        assert response.status == 404
        assert json.loads(response.body)["error"]["code"] == "NOT_FOUND"


def test_bearer_token_guards_the_repository_only(storage: Path):
    with BackgroundServer(storage, token="s3cret") as server:
        refused = get(server, "/api/models")
        assert refused.status == 401
        assert json.loads(refused.body)["error"]["code"] == "UNAUTHORIZED"
        assert get(server, FILE, Authorization="Bearer wrong").status == 401
        assert get(server, FILE, Authorization="Bearer s3cret").body == DATA
        # The usage API is the scheduler's: the sidecar calls it without the token.
        assert get(server, "/api/model-usage/ranking").status == 200


def test_ranking_from_recorded_events(server: BackgroundServer):
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        for model_id, count in {"whisper-small": 2, "marian-zh-en": 4}.items():
            for _ in range(count):
                answer = client.post(
                    "/api/model-usage/events",
                    json={"model_id": model_id, "kind": "MODEL_NOT_AVAILABLE"},
                )
                assert answer.status_code == 201
        bad = client.post("/api/model-usage/events", json={"model_id": "../x", "kind": "k"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_EVENT"
        assert client.post("/api/model-usage/events", content=b"not json").status_code == 400
        ranking = client.get("/api/model-usage/ranking")
        assert ranking.status_code == 200
        assert ranking.json() == [
            {"model_id": "marian-zh-en", "request_count": 4, "rank": 1},
            {"model_id": "whisper-small", "request_count": 2, "rank": 2},
        ]
        assert len(client.get("/api/model-usage/ranking", params={"limit": 1}).json()) == 1
        assert client.get("/api/model-usage/ranking", params={"limit": "x"}).status_code == 400
