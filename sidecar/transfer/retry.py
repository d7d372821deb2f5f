"""Retry policy around ``fetch_once``: retries with backoff per URL, then the next
mirror, and patience through a network outage before giving up."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import anyio

from sidecar.config import Settings
from sidecar.errors import ChecksumMismatch, NetworkError, RepositoryUnavailable, TlsError
from sidecar.redact import redact_url
from sidecar.transfer.connection import Source, SpeedFloor
from sidecar.transfer.fetch import discard_part, fetch_once, read_record
from sidecar.transfer.http import (
    ConnectionFailed,
    ServerRefused,
    SourceFailed,
    TlsFailed,
    TransientError,
    auth_headers,
)
from sidecar.transfer.network import Network
from sidecar.transfer.piecefetch import finish_pieces
from sidecar.transfer.pieces import PieceBook, host_of
from sidecar.transfer.ranged import RangesUnsupported
from sidecar.transfer.segmented import Limits, SegmentedFetch
from sidecar.transfer.target import FileTarget, Notice, Progress, SizeLearned

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
SEGMENTED_MIN_SIZE = 32 * 1024 * 1024  # below this one connection is as fast
_no_ranges: set[str] = set()  # URLs whose server ignored Range this run


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, 120.0)
    return float(min(MAX_BACKOFF, 0.5 * 2**attempt) * (0.5 + random.random() / 2))


async def fetch_from(
    network: Network,
    source: Source,
    target: FileTarget,
    settings: Settings,
    progress: Progress,
    limits: Limits,
    size_learned: SizeLearned | None = None,
    book: PieceBook | None = None,
    others: Sequence[Source] = (),
) -> str:
    """Several ranged connections for a large file, one stream otherwise; with piece
    hashes, then the bad pieces again, from ``others`` first."""
    digest = await _one_pass(
        network, source, target, settings, progress, limits, size_learned, book
    )
    if book is None:
        return digest
    return await finish_pieces(
        network, [source, *others], book, limits.rate, settings.stall_timeout
    )


async def _one_pass(
    network: Network,
    source: Source,
    target: FileTarget,
    settings: Settings,
    progress: Progress,
    limits: Limits,
    size_learned: SizeLearned | None,
    book: PieceBook | None,
) -> str:
    size = target.expected_size
    url = source.url
    floor = SpeedFloor(
        settings.min_speed,
        settings.min_speed_window,
        capped=lambda: limits.rate.bytes_per_second is not None,
    )
    if (
        size is not None
        and size >= SEGMENTED_MIN_SIZE
        and limits.max_connections > 1
        and url not in _no_ranges
    ):
        try:
            return await SegmentedFetch(
                network, source, target, progress, limits, settings.stall_timeout, floor, book
            ).run()
        except RangesUnsupported as exc:
            log.info("%s: %s; using one connection", redact_url(url), exc)
            if len(_no_ranges) > 1000:
                _no_ranges.clear()
            _no_ranges.add(url)
    return await fetch_once(
        network, source, target, progress, limits.rate, settings.stall_timeout, size_learned,
        floor, book,
    )  # fmt: skip


async def download_file(
    network: Network,
    urls: Sequence[str],
    target: FileTarget,
    settings: Settings,
    progress: Progress,
    limits: Limits,
    size_learned: SizeLearned | None = None,
    notice: Notice | None = None,
) -> str:
    """Fill ``target.part`` from the first URL that can; return its SHA-256.

    With piece hashes the part's verified pieces are kept whichever URL serves next, a
    bad piece is fetched again alone (from another URL first), and a URL that sends
    ``BAD_PIECES_PER_SOURCE`` bad pieces is dropped for this file.

    Each URL gets ``retries_per_file`` attempts, counted afresh whenever an attempt
    added bytes (a flaky link that makes progress is not failing). When every URL's
    last attempt found nothing listening, the network is down: the task waits, its
    part kept, for up to ``network_patience`` seconds before it fails. When every
    URL's last answer was the server's (an HTTP error, a page that is not the file),
    the repository is unavailable; anything else (resets, stalls) is the network.
    """
    sources = {url: Source.of(url, auth_headers(settings, url)) for url in urls}
    book = None
    if target.pieces is not None and target.expected_size is not None:
        book = PieceBook(target, notice)
        book.adopt(await anyio.to_thread.run_sync(read_record, target))
    try:
        return await _download(network, urls, sources, target, settings, progress, limits,
                               size_learned, book)  # fmt: skip
    finally:
        if book is not None:
            book.flush()


async def _download(
    network: Network,
    urls: Sequence[str],
    sources: dict[str, Source],
    target: FileTarget,
    settings: Settings,
    progress: Progress,
    limits: Limits,
    size_learned: SizeLearned | None,
    book: PieceBook | None,
) -> str:
    tls_failure: TlsFailed | None = None
    checksum_retried = False
    patience_deadline: float | None = None
    high_water = -1

    def tracking(size: int) -> None:
        nonlocal high_water
        high_water = max(high_water, size)
        progress(size)

    while True:
        network_down = bool(urls)
        only_source_failures = True
        last_problem = "no repository configured (--repository, MODEL_MANAGER_REPOSITORY)"
        for url in urls:
            if book is not None and book.is_dropped(url):
                last_problem = f"{host_of(url)} sent pieces that do not match the manifest"
                continue
            attempt = 0
            url_down = False
            server_answered = True  # the last failure was the server's answer, not the line
            while attempt < settings.retries_per_file:
                before = high_water
                try:
                    others = [s for u, s in sources.items() if u != url]
                    return await fetch_from(
                        network, sources[url], target, settings, tracking, limits, size_learned,
                        book, others,
                    )  # fmt: skip
                except ChecksumMismatch:
                    await anyio.to_thread.run_sync(discard_part, target)
                    if book is not None:
                        book.forget_from(0)
                    if checksum_retried:
                        raise
                    checksum_retried = True
                    high_water = -1
                    log.warning("%s: checksum mismatch, downloading once more", target.part.name)
                    continue
                except SourceFailed as exc:
                    if book is not None:
                        book.flush()
                    if isinstance(exc, TlsFailed):
                        tls_failure = exc
                    last_problem = str(exc)
                    log.warning("%s", exc)
                    url_down = False
                    server_answered = True
                    break
                except TransientError as exc:
                    if book is not None:
                        book.flush()
                    server_answered = isinstance(exc, ServerRefused)
                    url_down = isinstance(exc, ConnectionFailed)
                    last_problem = str(exc)
                    if before >= 0 and high_water > before:
                        attempt = 0  # it moved forward: a drop, not a dead source
                        patience_deadline = None
                    delay = backoff_delay(attempt, exc.retry_after)
                    attempt += 1
                    log.warning(
                        "%s: %s (attempt %d/%d, next in %.1fs)",
                        target.part.name, exc, attempt, settings.retries_per_file, delay,
                    )  # fmt: skip
                    if attempt < settings.retries_per_file:
                        await anyio.sleep(delay)
            network_down = network_down and url_down
            only_source_failures = only_source_failures and server_answered
        if tls_failure is not None and only_source_failures:
            raise TlsError(tls_failure.host, tls_failure.reason)
        if not urls or only_source_failures:
            raise RepositoryUnavailable(f"no repository serves it: {last_problem}")
        if not network_down:
            raise NetworkError(f"download failed from every source: {last_problem}")
        now = anyio.current_time()
        patience_deadline = patience_deadline or now + settings.network_patience
        if now >= patience_deadline:
            raise NetworkError(f"network unavailable: {last_problem}")
        log.warning("%s: network down, waiting (part kept)", target.part.name)
        await anyio.sleep(min(5.0, max(0.1, patience_deadline - now)))
