"""``serve --redirect s3``: the catalog answered by the server from the object store,
every file GET answered with a 302 to a presigned URL there (as Hugging Face and
Ollama do), so the bytes never pass through the server.

The bearer token (if any) is checked by the server's guard before a URL is signed;
the signed URL carries its own short-lived authority, and clients drop the
``Authorization`` header when a redirect leaves the origin (httpx, curl, browsers).
A client resuming later asks the server again and gets a fresh URL.
"""

from __future__ import annotations

import logging

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from model_repo.s3 import REVALIDATE, S3Location, Store, describe_s3_error, make_client

log = logging.getLogger("model_repo.redirect")

DEFAULT_EXPIRY = 300  # seconds: long enough to start a download, short enough to leak little


class S3Redirects:
    def __init__(self, location: S3Location, expiry: int) -> None:
        if not 1 <= expiry <= 7 * 24 * 3600:
            raise ValueError("the presign expiry must be 1 s to 7 days (SigV4's limit)")
        self.store = Store(location)
        # Signed for the host clients reach (a public endpoint or CDN), which may differ
        # from the one this server talks to.
        self.signer = make_client(location, public=True)
        self.expiry = expiry

    async def catalog(self, request: Request, key: str, missing: Response) -> Response:
        try:
            found = await anyio.to_thread.run_sync(self.store.get, key)
        except Exception as exc:
            if not type(exc).__module__.startswith(("botocore", "boto3")):
                raise
            # The store is down or refuses us: a 503 clients retry, the cause in our log.
            log.error("object store %s: %s", self.store.location, describe_s3_error(exc))
            return JSONResponse(
                {"error": {"code": "STORAGE_UNAVAILABLE", "message": "the object store "
                           "behind this repository did not answer; try again later"}},
                status_code=503, headers={"Retry-After": "5"},
            )  # fmt: skip
        if found is None:
            return missing
        body, etag = found
        headers = {"ETag": etag, "Cache-Control": REVALIDATE}
        if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(status_code=200, headers=headers, media_type="application/json")
        return Response(body, headers=headers, media_type="application/json")

    def file(self, request: Request, model_id: str, version: str, path: str) -> Response:
        method = "head_object" if request.method == "HEAD" else "get_object"
        key = self.store.location.version_key(model_id, version, path)
        url = self.signer.generate_presigned_url(
            method,
            Params={"Bucket": self.store.location.bucket, "Key": key},
            ExpiresIn=self.expiry,
        )
        # Never cached: each client, each time, gets its own URL with a fresh expiry.
        return Response(status_code=302, headers={"Location": url, "Cache-Control": "no-store"})
