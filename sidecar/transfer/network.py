"""How the sidecar reaches hosts: TLS trust, proxies and the per-host connection cap,
the same for catalog calls (httpx) and file bodies (urllib3, ``sidecar.transfer.connection``).

Trust: the operating system's store (``truststore``: Windows and macOS APIs; elsewhere
OpenSSL's default paths, which ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` point to, read once)
plus an optional ``--ca-bundle``. Verification is never turned off.

Proxies: an explicit one (``--proxy`` or ``setNetwork``, e.g. what Chromium resolved)
wins; without one the standard variables (``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, ``NO_PROXY``) decide per URL; ``direct`` means none at all.
"""

from __future__ import annotations

import functools
import ssl
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import anyio

if TYPE_CHECKING:
    import urllib3

DIRECT = "direct"
# NO_PROXY as the standard library reads it (absent from typeshed).
_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
POOL_SIZE = 64  # connections kept per host; the cap below is what limits them


class NetworkConfigError(ValueError):
    """A proxy or CA bundle that cannot be used (said in the user's terms)."""


# Where distributions keep their bundle, for an OpenSSL whose default paths hold none (a
# Python built elsewhere): truststore's list.
SYSTEM_BUNDLES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)


@functools.cache
def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    if sys.platform in ("win32", "darwin"):
        import truststore  # here, not at start-up: the first answers need no network

        context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    else:
        context = OpenSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise NetworkConfigError(
                f"cannot use the CA bundle {ca_bundle}: {exc}. Give a PEM file of "
                "certificates with --ca-bundle or MODEL_MANAGER_CA_BUNDLE"
            ) from exc
    return context


class OpenSSLContext(ssl.SSLContext):
    """OpenSSL's default store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), read at the first
    handshake and kept. truststore reads it on every handshake, holding a lock through
    the handshake: 24 ms per connection here, 16 connections in 449 ms against 19
    (docs/decisions.md). Not before the first handshake: the store takes 1.7 MiB, which
    a process that only speaks plain HTTP never pays."""

    _store_lock = threading.Lock()
    _store_read = False

    def _read_store(self) -> None:
        with self._store_lock:
            if self._store_read:
                return
            self.load_default_certs()
            paths = ssl.get_default_verify_paths()
            capath_has_certs = paths.capath and any(Path(paths.capath).glob("*.[0-9]"))
            if paths.cafile is None and not capath_has_certs:
                found = next((f for f in SYSTEM_BUNDLES if Path(f).is_file()), None)
                if found is not None:
                    self.load_verify_locations(cafile=found)
            self._store_read = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if not self._store_read:
            self._read_store()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if not self._store_read:
            self._read_store()
        return super().wrap_bio(*args, **kwargs)


def check_proxy(proxy: str | None) -> str | None:
    """Normalise an explicit proxy: None (use the environment), ``direct``, or a URL."""
    if proxy is None:
        return None
    proxy = proxy.strip()
    if proxy in ("", DIRECT):
        return DIRECT
    if "://" not in proxy:
        proxy = "http://" + proxy  # "host:port", as Chromium's PROXY entries say it
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkConfigError(
            f"unusable proxy {redact_proxy(proxy)}: give http://[user:password@]host:port"
        )
    return proxy


def redact_proxy(proxy: str | None) -> str | None:
    """The proxy as it may be shown: a password never leaves the process."""
    if proxy is None or "@" not in proxy:
        return proxy
    parts = urlsplit(proxy)
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, "", ""))


class Network:
    """The current network settings and the connections made under them."""

    def __init__(self, proxy: str | None, ca_bundle: Path | None, max_per_host: int) -> None:
        self.proxy = check_proxy(proxy)
        self.ca_bundle = ca_bundle
        self.max_per_host = max_per_host
        self._pools: dict[str | None, urllib3.PoolManager] = {}
        self._host_slots: dict[str, anyio.CapacityLimiter] = {}
        self._lock = threading.Lock()

    @property
    def ssl(self) -> ssl.SSLContext:
        """Loaded on first use: the trust store takes tens of milliseconds to read."""
        return ssl_context(self.ca_bundle)

    def set_proxy(self, proxy: str | None) -> None:
        """Connections opened from now on use it; open ones finish their request."""
        self.proxy = check_proxy(proxy)

    def proxy_for(self, url: str) -> str | None:
        if self.proxy == DIRECT:
            return None
        if self.proxy is not None:
            return self.proxy
        parts = urlsplit(url)
        found = urllib.request.getproxies_environment()
        if parts.hostname and _bypass(parts.hostname, found):
            return None
        chosen = found.get(parts.scheme) or found.get("all")
        return check_proxy(chosen) if chosen else None

    def host_slots(self, url: str) -> anyio.CapacityLimiter:
        """At most ``max_per_host`` connections to one host, whatever asks: many
        connections knock over home routers and get clients throttled."""
        host = urlsplit(url).netloc.rsplit("@", 1)[-1].lower()
        slots = self._host_slots.get(host)
        if slots is None:
            slots = self._host_slots[host] = anyio.CapacityLimiter(self.max_per_host)
        return slots

    def pool_for(self, url: str) -> urllib3.PoolManager:
        """Blocking-safe: the pool manager for ``url`` under the current proxy."""
        proxy = self.proxy_for(url)
        with self._lock:
            pool = self._pools.get(proxy)
            if pool is None:
                pool = self._pools[proxy] = self._make_pool(proxy)
            return pool

    def _make_pool(self, proxy: str | None) -> urllib3.PoolManager:
        import urllib3

        if proxy is None:
            return urllib3.PoolManager(maxsize=POOL_SIZE, ssl_context=self.ssl)
        parts = urlsplit(proxy)
        headers = {}
        if parts.username is not None:
            credentials = f"{parts.username}:{parts.password or ''}"
            headers = urllib3.make_headers(proxy_basic_auth=credentials)
        bare = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], "", "", ""))
        return urllib3.ProxyManager(
            bare,
            proxy_headers=headers,
            maxsize=POOL_SIZE,
            ssl_context=self.ssl,
            proxy_ssl_context=self.ssl,
        )

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.clear()
