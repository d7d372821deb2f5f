"""The ASGI entry for ``serve`` (and ``uvicorn --factory model_repo.asgi:app_from_env``):
the app built from the options ``serve`` put in the environment, so every worker
process builds the same one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

ASGI_OPTIONS = "MODEL_REPO_SERVE_OPTIONS"


def app_from_env() -> ASGIApp:
    from model_repo.s3 import S3Location
    from model_repo.server import EVENT_RATE, create_app

    options: dict[str, Any] = json.loads(os.environ.get(ASGI_OPTIONS) or "{}")
    storage_text = options.get("storage") or os.environ["MODEL_REPO_STORAGE"]
    storage: Path | S3Location
    if storage_text.startswith("s3://"):
        storage = S3Location.parse(
            storage_text,
            endpoint=options.get("s3_endpoint"),
            region=options.get("s3_region"),
            public_endpoint=options.get("s3_public_endpoint"),
        )
    else:
        storage = Path(storage_text)
    return create_app(
        storage,
        token=os.environ.get("MODEL_REPO_TOKEN") or None,
        usage_db=options.get("usage_db"),
        bytes_per_second=options.get("throttle"),
        presign_expiry=int(options.get("presign_expiry") or 300),
        event_rate=float(options.get("event_rate", EVENT_RATE)),
    )
