"""JSON-RPC messages as bytes: strict parsing, one-line encoding and the standard
errors the transport gives itself. Standard library only, for the front process."""

from __future__ import annotations

import json
import math
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


def parse_json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would come back out as Infinity: not JSON
        raise ValueError(f"{text} is out of range")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode_message(message: Any) -> bytes:
    # ensure_ascii: no raw U+2028/U+2029 (or any non-ASCII) that a line reader might split on.
    return (
        json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode(
            "ascii"
        )
        + b"\n"
    )


def error_message(code: int, message: str, data: Any, request_id: Any = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "error": {"code": code, "message": message, "data": data},
        "id": request_id,
    }


def too_long_error(limit: int) -> dict[str, Any]:
    return error_message(INVALID_REQUEST, "Invalid Request", f"line longer than {limit} bytes")
