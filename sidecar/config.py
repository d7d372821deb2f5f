"""Settings from flags and environment. Environment names are fixed by the app."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

APP_NAME = "ModelManager"


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
        type=int,
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


def settings_from_args(argv: list[str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    home = Path(args.home) if args.home else Path(platformdirs.user_data_dir(APP_NAME, False))
    lock_timeout_ms = int(args.lock_timeout * 1000)
    return Settings(
        home=home.expanduser().resolve(),
        repositories=_split_urls(args.repository),
        scheduler=(args.scheduler or "").rstrip("/") or None,
        token=os.environ.get("MODEL_MANAGER_TOKEN") or None,
        max_concurrent_tasks=max(1, args.max_concurrent_tasks),
        max_files_per_task=max(1, args.max_files_per_task),
        max_connections_per_file=max(1, args.max_connections_per_file),
        max_connections_total=max(1, args.max_connections),
        max_bytes_per_second=args.max_bytes_per_second or None,
        retries_per_file=max(1, args.retries),
        stall_timeout=args.stall_timeout,
        network_patience=args.network_patience,
        catalog_ttl=args.catalog_ttl,
        lock_timeout_ms=lock_timeout_ms,
        lock_refresh=max(0.05, min(10.0, lock_timeout_ms / 3000)),
        parent_pid=args.parent_pid,
        log_level=args.log_level,
        proxy=args.proxy or None,
        ca_bundle=Path(args.ca_bundle).expanduser().resolve() if args.ca_bundle else None,
        max_connections_per_host=max(1, args.max_connections_per_host),
    )
