"""Settings from flags and environment. Environment names are fixed by the app."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

APP_NAME = "ModelManager"
# 1 TiB/s: far above any link, and far below what a float holds (10**400 bytes/s once
# took every later download down with an OverflowError). The wire schema has the same bound.
MAX_BYTES_PER_SECOND = 1 << 40
SignaturePolicyName = Literal["off", "warn", "enforce"]
SIGNATURE_POLICIES: tuple[SignaturePolicyName, ...] = ("off", "warn", "enforce")


@dataclass(frozen=True)
class Option:
    """One tuning option: its flag, its environment variable, its default and bounds.
    The table below drives argparse, the defaults of ``Settings`` and the bounds that
    ``setLimits`` checks at run time, so they can never disagree."""

    name: str  # the Settings field
    flag: str
    kind: type[int] | type[float]
    default: int | float
    low: int | float
    high: int | float
    help: str
    env: str | None = None
    switch: bool = False  # the flag alone means 1 (``--offline``); ``--offline 0`` too

    def parse(self, text: str) -> int | float:
        """For argparse (flag or environment): a number within the bounds."""
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        finite = isinstance(value, int) or math.isfinite(value)  # a huge int is no float
        if not (finite and self.low <= value <= self.high):
            raise argparse.ArgumentTypeError(f"from {self.low} to {self.high}")
        return value


OPTIONS: tuple[Option, ...] = (
    Option("max_concurrent_tasks", "--max-concurrent-tasks", int, 2, 1, 16,
           "models downloading at once"),
    Option("max_files_per_task", "--max-files-per-task", int, 3, 1, 64,
           "files of one model in parallel"),
    Option("max_connections_per_file", "--max-connections-per-file", int, 16, 1, 64,
           "ranged connections for one large file (1: never split a file)"),
    Option("max_connections_total", "--max-connections", int, 48, 1, 256,
           "connections for all downloads together"),
    Option("max_connections_per_host", "--max-connections-per-host", int, 16, 1, 256,
           "connections to one host for all downloads together (home routers drop more)"),
    Option("max_bytes_per_second", "--max-bytes-per-second", int, 0, 0, MAX_BYTES_PER_SECOND,
           "bandwidth cap for all downloads together, bytes a second (0: none)"),
    Option("retries_per_file", "--retries", int, 3, 1, 100,
           "attempts per file and mirror before moving on"),
    Option("stall_timeout", "--stall-timeout", float, 30.0, 0.1, 3600.0,
           "seconds without a byte before a request counts as stalled",
           "MODEL_MANAGER_STALL_TIMEOUT"),
    Option("min_speed", "--min-speed", int, 1024, 0, 1 << 30,
           "bytes a second below which a download connection is dropped and retried, "
           "judged over --min-speed-window (0: never; off while a bandwidth cap is set)"),
    Option("min_speed_window", "--min-speed-window", float, 60.0, 1.0, 3600.0,
           "seconds over which --min-speed is judged"),
    Option("network_patience", "--network-patience", float, 300.0, 0.0, 7 * 86400.0,
           "seconds a task keeps retrying through a network outage before it fails",
           "MODEL_MANAGER_NETWORK_PATIENCE"),
    Option("request_deadline", "--request-deadline", float, 60.0, 0.001, 3600.0,
           "seconds a request for the catalog, a manifest or the ranking may take in all, "
           "however steadily its bytes come", "MODEL_MANAGER_REQUEST_DEADLINE"),
    Option("max_dependency_depth", "--max-dependency-depth", int, 16, 1, 1000,
           "levels of 'requires' an install follows before it refuses the model"),
    Option("max_dependencies", "--max-dependencies", int, 64, 1, 10_000,
           "requirements one install may pull in before it refuses the model"),
    Option("catalog_ttl", "--catalog-ttl", float, 300.0, 0.0, 7 * 86400.0,
           "seconds the cached catalog stays fresh"),
    Option("lock_timeout", "--lock-timeout", float, 1800.0, 0.5, 7 * 86400.0,
           "seconds after which an unrefreshed task lock counts as stale",
           "MODEL_MANAGER_LOCK_TIMEOUT"),
    Option("max_store_bytes", "--max-store-bytes", int, 0, 0, 1 << 60,
           "quota for installed models plus partial downloads, bytes; an install past it "
           "evicts the least recently used versions that are neither pinned nor in use "
           "(0: none)", "MODEL_MANAGER_MAX_STORE_BYTES"),
    Option("offline", "--offline", int, 0, 0, 1,
           "1: never touch the network (catalog, manifests, ranking, downloads); answer "
           "from the cached catalog and the installed models", "MODEL_MANAGER_OFFLINE",
           switch=True),
)  # fmt: skip
OPTION = {option.name: option for option in OPTIONS}
_DEFAULT: dict[str, Any] = {option.name: option.default for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    home: Path
    repositories: tuple[str, ...] = ()
    scheduler: str | None = None
    token: str | None = field(default=None, repr=False)  # never logged
    max_concurrent_tasks: int = _DEFAULT["max_concurrent_tasks"]
    max_files_per_task: int = _DEFAULT["max_files_per_task"]
    max_connections_per_file: int = _DEFAULT["max_connections_per_file"]
    max_connections_total: int = _DEFAULT["max_connections_total"]
    max_connections_per_host: int = _DEFAULT["max_connections_per_host"]
    max_bytes_per_second: int | None = None  # None: no cap (0 on the command line)
    retries_per_file: int = _DEFAULT["retries_per_file"]
    stall_timeout: float = _DEFAULT["stall_timeout"]
    min_speed: int = _DEFAULT["min_speed"]
    min_speed_window: float = _DEFAULT["min_speed_window"]
    network_patience: float = _DEFAULT["network_patience"]
    # A reply that trickles in never stalls: the whole request must end by then.
    request_deadline: float = _DEFAULT["request_deadline"]
    max_dependency_depth: int = _DEFAULT["max_dependency_depth"]
    max_dependencies: int = _DEFAULT["max_dependencies"]
    catalog_ttl: float = _DEFAULT["catalog_ttl"]
    ranking_timeout: float = 2.0
    lock_timeout_ms: int = int(_DEFAULT["lock_timeout"] * 1000)
    max_store_bytes: int = _DEFAULT["max_store_bytes"]  # 0: no quota
    lock_refresh: float = 10.0
    parent_pid: int | None = None
    log_level: str = "INFO"
    max_line_bytes: int = 16 * 1024 * 1024
    proxy: str | None = field(default=None, repr=False)  # None: the environment decides
    ca_bundle: Path | None = None
    offline: bool = False  # --offline: no network call at all (sidecar.core.offline)
    # Public keys (ed25519:<base64>) whose signatures make a catalog trusted, and what
    # happens to one they do not vouch for: off, warn or enforce (sidecar.core.signatures).
    trusted_keys: tuple[str, ...] = ()
    signatures: SignaturePolicyName = "off"


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
    for option in OPTIONS:
        from_env = os.environ.get(option.env) if option.env else None
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.parse,
            nargs="?" if option.switch else None,
            const=1 if option.switch else None,
            metavar="N" if option.kind is int else "SECONDS",
            default=from_env if from_env is not None else option.default,  # parsed if text
            help=option.help
            + (f" (env {option.env})" if option.env else "")
            + f"; default {option.default}",
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
        "--trusted-key",
        dest="trusted_keys",
        action="append",
        default=None,
        metavar="KEY",
        help="public key (ed25519:<base64>, as model-manager-repo keygen prints it) whose "
        "signatures the catalog and manifests must carry; repeatable, so a new key can be "
        "added before the old one is retired (env MODEL_MANAGER_TRUSTED_KEYS, comma-separated)",
    )
    parser.add_argument(
        "--signatures",
        choices=SIGNATURE_POLICIES,
        default=env("MODEL_MANAGER_SIGNATURES"),
        help="what an unsigned or wrongly signed catalog or manifest gets: refused "
        "(enforce), a warning in the log (warn), or no check (off) (env "
        "MODEL_MANAGER_SIGNATURES; default: enforce with a trusted key, else off)",
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


def _signing(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The trusted keys (flags win over the environment) and the policy, checked now:
    a mistyped key stops the start rather than every later install."""
    keys = args.trusted_keys
    if keys is None:
        keys = os.environ.get("MODEL_MANAGER_TRUSTED_KEYS", "").split(",")
    keys = [key.strip() for key in keys if key.strip()]
    if keys:
        _check_keys(parser, keys)
    policy = args.signatures or ("enforce" if keys else "off")
    if policy not in SIGNATURE_POLICIES:
        parser.error(f"MODEL_MANAGER_SIGNATURES must be one of {', '.join(SIGNATURE_POLICIES)}")
    if policy != "off" and not keys:
        parser.error(f"--signatures {policy} needs a --trusted-key (MODEL_MANAGER_TRUSTED_KEYS)")
    return {"trusted_keys": tuple(keys), "signatures": policy}


def _check_keys(parser: argparse.ArgumentParser, keys: list[str]) -> None:
    # Here, not at the top: only those who configure keys load their module at start.
    from sidecar.signature import SignatureFormatError, parse_public_key

    for key in keys:
        try:
            parse_public_key(key)
        except SignatureFormatError as exc:
            parser.error(f"--trusted-key {key[:60]!r}: {exc}")


def settings_from_args(argv: list[str] | None = None) -> Settings:
    parser = build_parser()
    args = parser.parse_args(argv)
    home = Path(args.home) if args.home else Path(platformdirs.user_data_dir(APP_NAME, False))
    lock_timeout_ms = int(args.lock_timeout * 1000)
    tuning = {option.name: getattr(args, option.name) for option in OPTIONS}
    del tuning["lock_timeout"]
    tuning["max_bytes_per_second"] = tuning["max_bytes_per_second"] or None
    tuning["offline"] = bool(tuning["offline"])
    return Settings(
        home=home.expanduser().resolve(),
        repositories=_split_urls(args.repository),
        scheduler=(args.scheduler or "").rstrip("/") or None,
        token=_token(parser),
        lock_timeout_ms=lock_timeout_ms,
        lock_refresh=max(0.05, min(10.0, lock_timeout_ms / 3000)),
        parent_pid=args.parent_pid,
        log_level=args.log_level,
        proxy=args.proxy or None,
        ca_bundle=Path(args.ca_bundle).expanduser().resolve() if args.ca_bundle else None,
        **_signing(parser, args),
        **tuning,
    )
