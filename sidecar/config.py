"""Settings from flags and environment. Environment names are fixed by the app."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

APP_NAME = "ModelManager"
# 1 TiB/s: far above any link, and far below what a float holds (10**400 bytes/s once
# took every later download down with an OverflowError). The wire schema has the same bound.
MAX_BYTES_PER_SECOND = 1 << 40


@dataclass(frozen=True)
class Settings:
    home: Path
    repositories: tuple[str, ...] = ()
    scheduler: str | None = None
    token: str | None = field(default=None, repr=False)  # never logged
    max_concurrent_tasks: int = 2
    max_files_per_task: int = 3
    max_connections_per_file: int = 16
    max_connections_total: int = 48
    max_bytes_per_second: int | None = None
    retries_per_file: int = 3
    stall_timeout: float = 30.0
    network_patience: float = 300.0
    catalog_ttl: float = 300.0
    ranking_timeout: float = 2.0
    # A reply that trickles in never stalls: the whole request must end by then.
    request_deadline: float = 60.0
    max_dependency_depth: int = 16
    max_dependencies: int = 64
    lock_timeout_ms: int = 30 * 60 * 1000
    lock_refresh: float = 10.0
    parent_pid: int | None = None
    log_level: str = "INFO"
    max_line_bytes: int = 16 * 1024 * 1024
    proxy: str | None = field(default=None, repr=False)  # None: the environment decides
    ca_bundle: Path | None = None
    max_connections_per_host: int = 16


def _split_urls(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(url.strip().rstrip("/") for url in value.split(",") if url.strip())


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    """--home, --repository, --scheduler with the app's fixed environment names; shared
    with the human CLI, which hands them on to the sidecar it launches."""
    env = os.environ.get
    parser.add_argument(
        "--home",
        default=env("MODEL_MANAGER_HOME"),
        help="data folder (env MODEL_MANAGER_HOME; default: the user data dir for the app)",
    )
    parser.add_argument(
        "--repository",
        default=env("MODEL_MANAGER_REPOSITORY"),
        help="repository base URLs, comma-separated, mirrors first (env MODEL_MANAGER_REPOSITORY)",
    )
    parser.add_argument(
        "--scheduler",
        default=env("MODEL_MANAGER_SCHEDULER"),
        help="scheduling server base URL, for the ranking (env MODEL_MANAGER_SCHEDULER)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar",
        description=(
            "ModelManager sidecar: speaks line-delimited JSON-RPC 2.0 on stdin/stdout "
            "(one message per line; logs go to stderr and <home>/logs). Exits at EOF on "
            "stdin, on the 'shutdown' method, on SIGTERM, or when its parent process dies."
        ),
    )
    env = os.environ.get
    add_location_arguments(parser)
    parser.add_argument(
        "--max-concurrent-tasks", type=int, default=2, help="models downloading at once"
    )
    parser.add_argument(
        "--max-files-per-task", type=int, default=3, help="files of one model in parallel"
    )
    parser.add_argument(
        "--max-connections-per-file",
        type=int,
        default=16,
        help="ranged connections for one large file (1: never split a file)",
    )
    parser.add_argument(
        "--max-connections", type=int, default=48, help="connections for all downloads together"
    )
    parser.add_argument(
        "--max-connections-per-host",
        type=int,
        default=16,
        help="connections to one host for all downloads together (home routers drop more)",
    )
    parser.add_argument(
        "--proxy",
        default=env("MODEL_MANAGER_PROXY"),
        help="proxy for every request, http://[user:password@]host:port, or 'direct' for "
        "none (env MODEL_MANAGER_PROXY; default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and "
        "NO_PROXY decide)",
    )
    parser.add_argument(
        "--ca-bundle",
        default=env("MODEL_MANAGER_CA_BUNDLE"),
        help="PEM file of extra certificate authorities to trust besides the system's "
        "(env MODEL_MANAGER_CA_BUNDLE)",
    )
    parser.add_argument(
        "--max-bytes-per-second",
        type=_bytes_per_second,
        default=None,
        help="bandwidth cap for all downloads together (default: none)",
    )
    parser.add_argument(
        "--retries", type=int, default=3, help="attempts per file and mirror before moving on"
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=float(env("MODEL_MANAGER_STALL_TIMEOUT", "30")),
        help="seconds without a byte before a request counts as stalled "
        "(env MODEL_MANAGER_STALL_TIMEOUT)",
    )
    parser.add_argument(
        "--network-patience",
        type=float,
        default=float(env("MODEL_MANAGER_NETWORK_PATIENCE", "300")),
        help="seconds a task keeps retrying through a network outage before it fails "
        "(env MODEL_MANAGER_NETWORK_PATIENCE)",
    )
    parser.add_argument(
        "--request-deadline",
        type=_positive_seconds,
        default=env("MODEL_MANAGER_REQUEST_DEADLINE", "60"),  # a string: checked by type
        help="seconds a request for the catalog, a manifest or the ranking may take in all, "
        "however steadily its bytes come (env MODEL_MANAGER_REQUEST_DEADLINE)",
    )
    parser.add_argument(
        "--max-dependency-depth",
        type=int,
        default=16,
        help="levels of 'requires' an install follows before it refuses the model",
    )
    parser.add_argument(
        "--max-dependencies",
        type=int,
        default=64,
        help="requirements one install may pull in before it refuses the model",
    )
    parser.add_argument(
        "--catalog-ttl", type=float, default=300.0, help="seconds the cached catalog stays fresh"
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=float(env("MODEL_MANAGER_LOCK_TIMEOUT", "1800")),
        help="seconds after which an unrefreshed task lock counts as stale "
        "(env MODEL_MANAGER_LOCK_TIMEOUT)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process dies (default: the process that started us)",
    )
    parser.add_argument(
        "--log-level",
        default=env("MODEL_MANAGER_LOG_LEVEL", "INFO").upper(),
        type=str.upper,  # --log-level debug works too
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level for stderr and the log file (env MODEL_MANAGER_LOG_LEVEL)",
    )
    return parser


def _bytes_per_second(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_BYTES_PER_SECOND:
        raise argparse.ArgumentTypeError(f"from 0 (no cap) to {MAX_BYTES_PER_SECOND}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("a positive number of seconds")
    return value


def _token(parser: argparse.ArgumentParser) -> str | None:
    """The bearer token without the line break or spaces a file or a shell leaves around
    it. Anything unprintable left inside is refused at start-up, in a message that never
    shows the token (an HTTP library would echo it in every request's error)."""
    token = os.environ.get("MODEL_MANAGER_TOKEN", "").strip()
    for position, char in enumerate(token, 1):
        if not " " <= char <= "~":
            kind = "a control character" if char.isascii() else "a non-ASCII character"
            parser.error(
                f"MODEL_MANAGER_TOKEN has {kind} at position {position}; "
                "a bearer token is printable ASCII: set the variable to the token alone "
                "(its value is not shown here)"
            )
    return token or None


def settings_from_args(argv: list[str] | None = None) -> Settings:
    parser = build_parser()
    args = parser.parse_args(argv)
    home = Path(args.home) if args.home else Path(platformdirs.user_data_dir(APP_NAME, False))
    lock_timeout_ms = int(args.lock_timeout * 1000)
    return Settings(
        home=home.expanduser().resolve(),
        repositories=_split_urls(args.repository),
        scheduler=(args.scheduler or "").rstrip("/") or None,
        token=_token(parser),
        max_concurrent_tasks=max(1, args.max_concurrent_tasks),
        max_files_per_task=max(1, args.max_files_per_task),
        max_connections_per_file=max(1, args.max_connections_per_file),
        max_connections_total=max(1, args.max_connections),
        max_bytes_per_second=args.max_bytes_per_second or None,
        retries_per_file=max(1, args.retries),
        stall_timeout=args.stall_timeout,
        network_patience=args.network_patience,
        catalog_ttl=args.catalog_ttl,
        request_deadline=args.request_deadline,
        max_dependency_depth=max(1, args.max_dependency_depth),
        max_dependencies=max(1, args.max_dependencies),
        lock_timeout_ms=lock_timeout_ms,
        lock_refresh=max(0.05, min(10.0, lock_timeout_ms / 3000)),
        parent_pid=args.parent_pid,
        log_level=args.log_level,
        proxy=args.proxy or None,
        ca_bundle=Path(args.ca_bundle).expanduser().resolve() if args.ca_bundle else None,
        max_connections_per_host=max(1, args.max_connections_per_host),
    )
