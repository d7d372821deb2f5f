"""``model-manager-repo``: publish models into a storage tree, rebuild its catalog, serve it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import portalocker

from model_repo import catalog
from model_repo.layout import StorageLayout
from model_repo.publish import (
    LOCK_TIMEOUT,
    PublishError,
    PublishRequest,
    parse_requirement,
    publish,
)


def _storage_arg(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("MODEL_REPO_STORAGE")
    parser.add_argument(
        "--storage",
        type=Path,
        default=Path(default) if default else None,
        required=default is None,
        help="repository storage folder (env MODEL_REPO_STORAGE)",
    )


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-manager-repo",
        description="Publish models into a static repository tree, rebuild its catalog, "
        "and serve it (the reference server; use deploy/nginx in production).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    pub = commands.add_parser("publish", help="publish a folder as one version of a model")
    pub.add_argument("source", type=Path, help="folder holding the model's files")
    pub.add_argument("--id", dest="model_id", required=True, help="model id, e.g. whisper-small")
    pub.add_argument("--version", required=True, help="version, e.g. 1.0.0 (immutable)")
    pub.add_argument(
        "--requires",
        action="append",
        default=[],
        metavar="ID[@V]",
        help="a model installed with this one (repeatable; no @V means its default)",
    )
    pub.add_argument("--name", default="", help="display name (default: the id)")
    pub.add_argument("--task", default="", help="e.g. asr, translation, alignment")
    pub.add_argument(
        "--languages", type=_csv, action="extend", default=[], help="comma-separated, e.g. zh,en"
    )
    pub.add_argument("--extra", default="{}", help="JSON object stored as the version's extra")
    pub.add_argument(
        "--force", action="store_true", help="replace an already published, different version"
    )
    pub.add_argument(
        "--no-default",
        action="store_true",
        help="keep the model's current default version (default: this one becomes it)",
    )
    _storage_arg(pub)

    index = commands.add_parser("index", help="rebuild the catalog from the storage tree")
    _storage_arg(index)

    serve = commands.add_parser("serve", help="serve the tree and the usage API over HTTP")
    _storage_arg(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--usage-db", type=Path, default=None, help="SQLite file (default: <storage>/usage.sqlite3)"
    )
    serve.add_argument(
        "--throttle",
        type=float,
        default=None,
        metavar="BYTES_PER_SECOND",
        help="slow every file response down (to watch progress)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _publish(args: argparse.Namespace) -> int:
    try:
        extra = json.loads(args.extra)
        if not isinstance(extra, dict):
            raise PublishError("--extra must be a JSON object")
        request = PublishRequest(
            source=args.source,
            model_id=args.model_id,
            version=args.version,
            requires=tuple(parse_requirement(r) for r in args.requires),
            name=args.name,
            task=args.task,
            languages=tuple(args.languages),
            extra=extra,
            force=args.force,
            make_default=not args.no_default,
        )
        result = publish(args.storage, request)
    except (PublishError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    version = result.manifest.versions[0]
    print(
        f"{result.status}: {args.model_id}@{args.version} "
        f"({len(version.files)} files, {version.size_bytes} bytes) at {result.path}"
    )
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _index(args: argparse.Namespace) -> int:
    layout = StorageLayout(args.storage)
    if not layout.models.is_dir():
        print(f"error: no published models under {layout.models}", file=sys.stderr)
        return 1
    # The same lock as publish: a rebuild never interleaves with a publish's.
    with portalocker.Lock(layout.lock_file, timeout=LOCK_TIMEOUT):
        report = catalog.rebuild(layout)
    versions = sum(len(m.versions) for m in report.models)
    print(f"catalog: {len(report.models)} models, {versions} versions")
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # the optional "repo" extra; publish and index do not need it

    from model_repo.server import create_app

    app = create_app(
        args.storage,
        token=os.environ.get("MODEL_REPO_TOKEN") or None,
        usage_db=args.usage_db,
        bytes_per_second=args.throttle,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, lifespan="off")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    handlers = {"publish": _publish, "index": _index, "serve": _serve}
    sys.exit(handlers[args.command](args))


if __name__ == "__main__":
    main()
