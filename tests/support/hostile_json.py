"""Faults for ``RepoServer``'s JSON endpoints (catalog, manifests, ranking): a body
dripped a byte at a time, a gzip bomb sent although identity was asked for, JSON
nested without end, and a repository that invents a new requirement for every model
it is asked about."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
from typing import Any

from tests.support.faults import Fault, _headers
from tests.support.repo_server import RepoHandler, sha256


class Drip(Fault):
    """The reply's headers at once, then its body one byte every ``interval`` seconds:
    never silent for long, so a stall timeout alone never ends it."""

    def __init__(self, body: bytes, *, interval: float = 0.2, **kwargs: Any) -> None:
        kwargs.setdefault("match", "/api/")
        kwargs.setdefault("times", None)
        super().__init__(**kwargs)
        self.body = body
        self.interval = interval

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(self.body))}
        _headers(handler, 200, headers)
        try:
            for offset in range(len(self.body)):
                handler.wfile.write(self.body[offset : offset + 1])
                handler.wfile.flush()
                if self.released.wait(self.interval):
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True
        return True


def gzip_of_padded_json(document: Any, padding: int) -> bytes:
    """gzip of ``padding`` spaces then ``document``: valid JSON of any size once
    decompressed, about a thousandth of that compressed. Built a MiB at a time."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as stream:
        block = b" " * (1 << 20)
        for _ in range(padding >> 20):
            stream.write(block)
        stream.write(b" " * (padding & ((1 << 20) - 1)))
        stream.write(json.dumps(document).encode())
    return out.getvalue()


class Compressed(Fault):
    """``body`` with ``Content-Encoding: encoding`` whatever the request asked for."""

    def __init__(self, body: bytes, *, encoding: str = "gzip", **kwargs: Any) -> None:
        kwargs.setdefault("match", "/api/")
        kwargs.setdefault("times", None)
        super().__init__(**kwargs)
        self.body = body
        self.encoding = encoding

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": self.encoding,
            "Content-Length": str(len(self.body)),
        }
        _headers(handler, 200, headers)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(self.body)
        return True


class RawJson(Fault):
    """``body`` (any bytes) as the JSON reply."""

    def __init__(self, body: bytes, **kwargs: Any) -> None:
        kwargs.setdefault("match", "/api/")
        kwargs.setdefault("times", None)
        super().__init__(**kwargs)
        self.body = body

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(self.body))}
        _headers(handler, 200, headers)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(self.body)
        return True


def nested(depth: int, inner: Any = 0) -> str:
    """JSON text of ``inner`` inside ``depth`` arrays and objects in turn."""
    opening = "".join("[" if level % 2 == 0 else '{"k":' for level in range(depth))
    closing = "".join("]" if level % 2 == 0 else "}" for level in reversed(range(depth)))
    return opening + json.dumps(inner) + closing


def manifest_text(model_id: str, requires: list[str], extra: str = "{}") -> str:
    """One model's catalog entry as JSON text (``extra`` spliced in as is), one version
    "1" with one small file."""
    data = model_id.encode()
    file = {"path": "w.bin", "size_bytes": len(data), "sha256": sha256(data)}
    needs = json.dumps([{"model_id": r, "version": "1"} for r in requires])
    version = f'{{"version":"1","files":[{json.dumps(file)}],"requires":{needs},"extra":{extra}}}'
    return f'{{"id":{json.dumps(model_id)},"default_version":"1","versions":[{version}]}}'


class EndlessRequirements(Fault):
    """Asked for ``chain-<n>``, the manifest says it requires ``chain-<n+1>`` (and, with
    ``fan_out``, also ``side-<n>-<k>`` for k < fan_out, which require nothing); with a
    ``length``, ``chain-<length>`` requires nothing."""

    def __init__(self, *, fan_out: int = 0, length: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("match", "/api/models/")
        kwargs.setdefault("times", None)
        super().__init__(**kwargs)
        self.fan_out = fan_out
        self.length = length

    def act(self, handler: RepoHandler, path: str, range_start: int | None) -> bool:
        if match := re.fullmatch(r"/api/models/chain-(\d+)", path):
            n = int(match.group(1))
            last = self.length is not None and n >= self.length
            requires = [] if last else [f"chain-{n + 1}"]
            requires += [] if last else [f"side-{n}-{k}" for k in range(self.fan_out)]
            body = manifest_text(f"chain-{n}", requires)
        elif match := re.fullmatch(r"/api/models/(side-\d+-\d+)", path):
            body = manifest_text(match.group(1), [])
        else:
            return False
        handler.send_json(json.loads(body))
        return True
