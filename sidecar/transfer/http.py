"""What HTTP failures mean to us (the errors every transfer path raises), the status
check they share, and the client for the small JSON calls, made on first use."""

from __future__ import annotations

import email.utils
import importlib
import ssl
import time
from typing import TYPE_CHECKING, Any

import anyio

from sidecar.config import Settings
from sidecar.errors import find_cause
from sidecar.transfer.network import Network

if TYPE_CHECKING:
    import httpx


class TransientError(Exception):
    """A failure worth retrying on the same URL (network, 5xx, 429, bad body)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConnectionFailed(TransientError):
    """Nothing answered at all: the network (or the server) is down."""


class ServerRefused(TransientError):
    """The server answered, but not with the file (5xx, 429, a page of the wrong size):
    worth retrying, and if it lasts, the repository is unavailable, not the network."""


class SourceFailed(Exception):
    """This URL cannot serve the file (404, 403, ...); try the next mirror."""


def tls_failure(host: str, exc: BaseException) -> TlsFailed | None:
    """``TlsFailed`` for ``host`` if an SSL error is behind ``exc``: the certificate
    problem in a few words (the verify message, not the chain)."""
    error = find_cause(exc, ssl.SSLError)
    if error is None:
        return None
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return TlsFailed(host, error.verify_message)
    return TlsFailed(host, error.reason or str(error).split("(", 1)[0].strip() or "TLS failed")


class TlsFailed(SourceFailed):
    """The host's certificate could not be verified (or TLS failed): another mirror may
    do, retrying this one will not."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"TLS with {host} failed: {reason}")
        self.host = host
        self.reason = reason


def auth_headers(settings: Settings, url: str) -> dict[str, str]:
    """The token goes to the configured repositories only, never to a plain URL."""
    if settings.token and any(url.startswith(base + "/") for base in settings.repositories):
        return {"Authorization": f"Bearer {settings.token}"}
    return {}


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def check_status(status: int, url: str, retry_after: str | None) -> None:
    if status in (408, 425):  # too slow or too early: timing, not the repository
        raise TransientError(f"HTTP {status} from {url}")
    if status == 429 or status >= 500:
        raise ServerRefused(f"HTTP {status} from {url}", retry_after=parse_retry_after(retry_after))
    if status >= 400:
        raise SourceFailed(f"HTTP {status} from {url}")


class JsonClient:
    """The catalog's, manifests' and ranking's HTTP client. httpx and the trust store
    are loaded at the first call, not at start-up, where they cost more than the first
    answers may take (``sidecar.transfer.jsonreply`` does the rest)."""

    def __init__(self, settings: Settings, network: Network) -> None:
        self.settings = settings
        self.network = network
        self._client: httpx.AsyncClient | None = None

    async def get_json(
        self, url: str, *, headers: dict[str, str], max_bytes: int, deadline: float
    ) -> Any:
        """The parsed reply, or None for a 404; errors as ``sidecar.transfer.http``."""
        from sidecar.transfer import jsonreply  # the first call pays for httpx

        return await jsonreply.get_json(
            self._made(), url, headers=headers, max_bytes=max_bytes, deadline=deadline
        )

    def _made(self) -> httpx.AsyncClient:
        from sidecar.transfer import jsonreply

        if self._client is None:
            self._client = jsonreply.make_client(self.settings, self.network)
        return self._client

    async def warm_up(self) -> None:
        """Load httpx and build the client ahead of the first call, which would
        otherwise pay ~0.1 s for them: the first install of a session starts at once.
        The import runs in a thread, so answers on the loop wait at most a GIL slice."""
        await anyio.to_thread.run_sync(importlib.import_module, "sidecar.transfer.jsonreply")
        self._made()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
