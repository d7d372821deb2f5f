"""An S3-compatible object store as repository storage: where keys live, the client,
and the one write that must not lose a concurrent publisher's work (compare-and-swap
with ``If-Match`` / ``If-None-Match``).

Keys under ``s3://<bucket>/<prefix>/`` are the URL paths the sidecar requests, so a
public-read bucket (or a CDN in front of it) serves the tree with no server at all:

    <prefix>/api/models                             → GET /api/models
    <prefix>/api/models/<id>                        → GET /api/models/<id>
    <prefix>/storage/models/<id>/<v>/<path>         → GET /storage/models/<id>/<v>/<path>
    <prefix>/storage/models/<id>/<v>/manifest.json  (the version's entry; index reads these)

Credentials, endpoint and region come from the usual ``AWS_*`` variables (or profile),
unless the options give endpoint and region.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sidecar.manifest import check_safe_name

CATALOG_TYPE = "application/json"
# Versions are immutable: caches keep their files; the catalog is revalidated every time.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
CAS_ATTEMPTS = 100


class StorageError(Exception):
    """The object store refused or failed in a way the operator must fix."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "a/b" (no slashes at the ends)
    endpoint: str | None = None
    region: str | None = None
    public_endpoint: str | None = None  # the host clients reach, for presigned URLs

    @classmethod
    def parse(cls, url: str, **options: str | None) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise StorageError(f"not an s3://bucket/prefix location: {url}")
        prefix = parts.path.strip("/")
        if prefix and any(s in {"", ".", ".."} for s in prefix.split("/")):
            raise StorageError(f"the prefix of {url} has empty or dot segments")
        return cls(bucket=parts.netloc, prefix=prefix, **options)

    def key(self, *path: str) -> str:
        return "/".join(p for p in (self.prefix, *path) if p)

    @property
    def list_key(self) -> str:
        return self.key("api", "models")

    def entry_key(self, model_id: str) -> str:
        check_safe_name(model_id, "model id")
        return self.key("api", "models", model_id)

    def signature_key(self, model_id: str | None = None) -> str:
        """The signature of the list (no id) or of one model's entry."""
        if model_id is None:
            return self.key("api", "signatures", "models")
        check_safe_name(model_id, "model id")
        return self.key("api", "signatures", "models", model_id)

    def version_key(self, model_id: str, version: str, path: str = "") -> str:
        return self.key("storage", "models", model_id, version, path)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def make_client(location: S3Location, *, public: bool = False) -> Any:
    """A boto3 client; ``public`` signs for the endpoint clients reach (presigning)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - the "repo" extra brings it
        raise StorageError("S3 storage needs boto3: pip install 'model-manager[repo]'") from exc
    endpoint = (location.public_endpoint if public else None) or location.endpoint
    # Custom endpoints (SeaweedFS, MinIO, Ceph) want path-style; AWS takes virtual hosts.
    style = "path" if endpoint or _env_endpoint() else "virtual"
    config = Config(
        s3={"addressing_style": style},
        signature_version="s3v4",
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=32,
    )
    # A session of its own: boto3's default one keeps the first credentials it found.
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=location.region or None, config=config
    )


def _env_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


def describe_s3_error(exc: BaseException) -> str:
    """One line for the user: the store's code and message, never the signature."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error:
        return f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def is_conflict(exc: BaseException) -> bool:
    return error_code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _is_missing(exc: BaseException) -> bool:
    return error_code(exc) in {"NoSuchKey", "404", "NotFound"}


class Store:
    """The few object operations publish, index and the server need."""

    def __init__(self, location: S3Location, client: Any | None = None) -> None:
        self.location = location
        self.client = client if client is not None else make_client(location)
        self._conditional_checked = False

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when there is none."""
        try:
            reply = self.client.get_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        return reply["Body"].read(), reply["ETag"]

    def get_json(self, key: str) -> tuple[Any, str] | None:
        found = self.get(key)
        if found is None:
            return None
        body, etag = found
        try:
            return json.loads(body), etag
        except ValueError as exc:
            raise StorageError(f"{self.location}: {key} is not JSON") from exc

    def put(self, key: str, body: bytes, content_type: str, cache: str, **condition: str) -> str:
        reply = self.client.put_object(
            Bucket=self.location.bucket, Key=key, Body=body, ContentType=content_type,
            CacheControl=cache, **condition,
        )  # fmt: skip
        return str(reply.get("ETag", ""))

    def upload_file(self, key: str, path: str, content_type: str) -> None:
        from boto3.s3.transfer import TransferConfig

        self.client.upload_file(
            path, self.location.bucket, key,
            ExtraArgs={"ContentType": content_type, "CacheControl": IMMUTABLE},
            Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20),
        )  # fmt: skip

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.location.bucket, Key=key)

    def list(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size."""
        found: dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = int(item["Size"])
        return found

    def check_conditional_writes(self) -> None:
        """Refuse to publish into a store that ignores If-Match: concurrent publishers
        would silently drop each other's catalog entries there."""
        if self._conditional_checked:
            return
        key = self.location.key(".conditional-write-probe")
        self.put(key, b"probe", "text/plain", REVALIDATE)
        try:
            self.put(key, b"must not land", "text/plain", REVALIDATE, IfMatch='"0"')
        except Exception as exc:
            if not is_conflict(exc):
                raise
        else:
            raise StorageError(
                f"{self.location.bucket}: the object store ignores If-Match on PUT, so "
                "concurrent publishes could lose catalog entries; use a store with "
                "conditional writes (AWS S3, SeaweedFS 3.80+, MinIO, R2)"
            )
        finally:
            self.delete(key)
        self._conditional_checked = True

    def update_json(self, key: str, change: Callable[[Any | None], Any | None]) -> Any | None:
        """Read-modify-write ``key`` with compare-and-swap, retried on conflict.

        ``change`` gets the current document (None when absent) and returns the new one,
        or None to leave the object as it is. It may run more than once."""
        absent_but_refused = 0
        for attempt in range(CAS_ATTEMPTS):
            found = self.get_json(key)
            current, etag = found if found is not None else (None, None)
            document = change(current)
            if document is None:
                return current
            body = json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            if etag is None and absent_but_refused >= 3:
                # Filer-backed stores (SeaweedFS) count the implied folder "api/models/"
                # as an object "api/models", so create-only never succeeds once entries
                # exist. Only ``index`` after a lost list gets here (publish creates the
                # list before the first entry); from the next write on, If-Match holds.
                condition = {}
            try:
                self.put(key, body, CATALOG_TYPE, REVALIDATE, **condition)
                return document
            except Exception as exc:
                if not is_conflict(exc):
                    raise
                absent_but_refused = absent_but_refused + 1 if etag is None else 0
            time.sleep(random.uniform(0.01, 0.05) * min(attempt + 1, 10))
        raise StorageError(f"{key}: still changing under other publishers; try again")
