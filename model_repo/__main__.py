"""``model-manager-repo``: publish models into a storage tree, rebuild its catalog, serve it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import portalocker

from model_repo import catalog
from model_repo.asgi import ASGI_OPTIONS, app_from_env
from model_repo.layout import StorageLayout
from model_repo.publish import (
    LOCK_TIMEOUT,
    PublishError,
    PublishRequest,
    parse_requirement,
    publish,
)
from model_repo.redirect import DEFAULT_EXPIRY
from model_repo.s3 import S3Location, StorageError, Store, describe_s3_error
from model_repo.s3publish import index_s3, publish_s3
from model_repo.server import EVENT_BURST, EVENT_RATE
from model_repo.signing import DEFAULT_VALID_DAYS, PASSPHRASE_ENV, Signer, SigningError
from sidecar.manifest import DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, MIN_PIECE_SIZE


def _signing_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "signing", f"private keys from keygen (passphrase: env {PASSPHRASE_ENV})"
    )
    group.add_argument(
        "--sign-key",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="sign the catalog and every model entry with this key (repeatable: during a "
        "key rotation, sign with the old and the new key)",
    )
    group.add_argument(
        "--sign-valid-days",
        type=float,
        default=DEFAULT_VALID_DAYS,
        metavar="DAYS",
        help="clients refuse the signed catalog this long after signing, unless it is "
        f"re-signed (index --sign-key) before (default {DEFAULT_VALID_DAYS:g})",
    )


def _signer(args: argparse.Namespace) -> Signer | None:
    from datetime import timedelta

    from model_repo import signing

    if not args.sign_key:
        return None
    if not 0 < args.sign_valid_days <= 3650:
        raise SigningError("--sign-valid-days is from a fraction of a day to 3650")
    keys = tuple(signing.load(path) for path in args.sign_key)
    return Signer(keys, timedelta(days=args.sign_valid_days))


def _storage_arg(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("MODEL_REPO_STORAGE")
    parser.add_argument(
        "--storage",
        default=default,
        required=default is None,
        help="storage folder, or s3://bucket/prefix (env MODEL_REPO_STORAGE)",
    )
    s3 = parser.add_argument_group(
        "S3 storage", "credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
    )
    s3.add_argument(
        "--s3-endpoint",
        default=None,
        help="S3 API endpoint, e.g. http://seaweedfs:8333 (default: AWS_ENDPOINT_URL, or AWS)",
    )
    s3.add_argument("--s3-region", default=None, help="region (default: AWS_REGION)")


def _location(args: argparse.Namespace) -> Path | S3Location:
    if str(args.storage).startswith("s3://"):
        return S3Location.parse(
            args.storage,
            endpoint=args.s3_endpoint,
            region=args.s3_region,
            public_endpoint=getattr(args, "s3_public_endpoint", None),
        )
    return Path(args.storage)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-manager-repo",
        description="Publish models into a static repository tree, rebuild its catalog, "
        "and serve it (the reference server; use deploy/nginx in production).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    pub.add_argument(
        "--piece-size",
        type=_piece_size,
        default=DEFAULT_PIECE_SIZE,
        metavar="SIZE",
        help="files larger than this list a SHA-256 per piece of this size, e.g. 16M, 256K, "
        "or 0 for none (default 16M)",
    )
    _storage_arg(pub)
    _signing_args(pub)

    index = commands.add_parser("index", help="rebuild the catalog from the storage tree")
    _storage_arg(index)
    _signing_args(index)

    keygen = commands.add_parser(
        "keygen", help="make an Ed25519 signing key: FILE (private) and FILE.pub"
    )
    keygen.add_argument("file", type=Path, help="where the private key goes (mode 0600)")

    serve = commands.add_parser("serve", help="serve the tree and the usage API over HTTP")
    _storage_arg(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--usage-db",
        default=os.environ.get("MODEL_REPO_USAGE_DB"),
        help="SQLite file or postgresql://user@host/db (env MODEL_REPO_USAGE_DB; "
        "default: <storage>/usage.sqlite3)",
    )
    serve.add_argument(
        "--redirect",
        choices=["s3"],
        default=None,
        help="answer file GETs with a 302 to a presigned URL (needs s3:// storage)",
    )
    serve.add_argument(
        "--presign-expiry",
        type=int,
        default=DEFAULT_EXPIRY,
        metavar="SECONDS",
        help=f"lifetime of a presigned URL (default {DEFAULT_EXPIRY})",
    )
    serve.add_argument(
        "--s3-public-endpoint",
        default=None,
        help="the S3 endpoint clients reach, if not --s3-endpoint (URLs are signed for it)",
    )
    serve.add_argument(
        "--event-rate",
        type=float,
        default=EVENT_RATE,
        help=f"usage events per second per client address and worker; 0: no limit "
        f"(default {EVENT_RATE:g}, bursts of {EVENT_BURST:g})",
    )
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes (uvicorn workers; default 1)"
    )
    serve.add_argument(
        "--throttle",
        type=float,
        default=None,
        metavar="BYTES_PER_SECOND",
        help="slow every file response down (to watch progress)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="uvicorn's log level (default info)",
    )
    return parser


def _piece_size(text: str) -> int | None:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16M, 256K)")
    size = int(number) * scale
    if size == 0:
        return None
    if not MIN_PIECE_SIZE <= size <= MAX_PIECE_SIZE:
        raise argparse.ArgumentTypeError(
            f"a piece size is {MIN_PIECE_SIZE >> 10} KiB to {MAX_PIECE_SIZE >> 30} GiB"
        )
    return size


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
            piece_size=args.piece_size,
        )
        signer = _signer(args)
        location = _location(args)
        if isinstance(location, S3Location):
            result = publish_s3(Store(location), request, signer=signer)
        else:
            result = publish(location, request, signer=signer)
    except (PublishError, StorageError, SigningError, ValueError) as exc:
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
    from model_repo.signing import is_signed, require_signer

    try:
        signer = _signer(args)
        location = _location(args)
        if isinstance(location, S3Location):
            return _index_report(index_s3(Store(location), signer))
        layout = StorageLayout(location)
        if not layout.models.is_dir():
            print(f"error: no published models under {layout.models}", file=sys.stderr)
            return 1
        require_signer(is_signed(layout), signer, str(location))
    except (PublishError, SigningError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # The same lock as publish: a rebuild never interleaves with a publish's.
    with portalocker.Lock(layout.lock_file, timeout=LOCK_TIMEOUT):
        report = catalog.rebuild(layout, signer)
    return _index_report(report)


def _keygen(args: argparse.Namespace) -> int:
    from model_repo import signing

    try:
        public = signing.generate(args.file)
    except SigningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"private key: {args.file} (keep it secret: whoever has it can sign models)")
    print(f"public key:  {args.file}.pub")
    print(f"give the sidecar: --trusted-key {public.text()}")
    return 0


def _index_report(report: catalog.IndexReport) -> int:
    versions = sum(len(m.versions) for m in report.models)
    print(f"catalog: {len(report.models)} models, {versions} versions")
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


def _storage_problem(storage: Path) -> str | None:
    """A storage folder that does not exist is a typo, not an empty repository: refused.
    One with nothing published is served, with a warning (a fresh repository)."""
    if not storage.is_dir():
        what = "is not a folder" if storage.exists() else "does not exist"
        return (
            f"the storage folder {storage} {what}; check the path, or publish a model into "
            f"it first (model-manager-repo publish SOURCE --storage {storage} --id ID "
            "--version V)"
        )
    layout = StorageLayout(storage)
    if not layout.catalog_file.is_file() and not layout.models.is_dir():
        print(
            f"warning: {storage} holds no published models: the catalog is empty until "
            "something is published into it",
            file=sys.stderr,
        )
    return None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # the optional "repo" extra; publish and index do not need it

    location = _location(args)
    if isinstance(location, S3Location) != (args.redirect == "s3"):
        print("error: --redirect s3 and s3:// storage go together", file=sys.stderr)
        return 2
    if isinstance(location, Path) and (problem := _storage_problem(location)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    options = {
        "storage": str(args.storage),
        "s3_endpoint": args.s3_endpoint,
        "s3_region": args.s3_region,
        "s3_public_endpoint": args.s3_public_endpoint,
        "usage_db": args.usage_db,
        "throttle": args.throttle,
        "presign_expiry": args.presign_expiry,
        "event_rate": args.event_rate,
    }
    # Workers are separate processes: each builds the app from these options.
    os.environ[ASGI_OPTIONS] = json.dumps(options)
    try:
        app = app_from_env()  # bad options fail here, once (and migrations run once)
    except (StorageError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    common = {"host": args.host, "port": args.port, "log_level": args.log_level}
    if args.workers > 1:
        del app
        uvicorn.run(
            "model_repo.asgi:app_from_env", factory=True, lifespan="off", workers=args.workers,
            **common,
        )  # fmt: skip
    else:
        uvicorn.run(app, lifespan="off", **common)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    handlers = {"publish": _publish, "index": _index, "serve": _serve, "keygen": _keygen}
    try:
        code = handlers[args.command](args)
    except Exception as exc:
        # The object store's refusals (credentials, bucket, network) in one line.
        if not type(exc).__module__.startswith(("botocore", "boto3")):
            raise
        print(f"error: object store {args.storage}: {describe_s3_error(exc)}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
