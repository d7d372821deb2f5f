"""The repository's signature format (shared with ``model_repo``): Ed25519 over a small,
canonical statement about one catalog document.

A signature file sits beside the catalog list (``/api/signatures/models``) and beside
each model's entry (``/api/signatures/models/<id>``)::

    {"format": "model-manager-signature/1", "kind": "catalog" | "manifest",
     "model": null | "<id>", "version": 17, "expires": "2026-01-31T00:00:00Z",
     "sha256": "<digest of the document>",
     "manifests": {"<id>": <version of its manifest signature>, ...}   (catalog only)
     "signatures": [{"keyId": "<16 hex>", "signature": "<base64 of 64 bytes>"}]}

What is signed is ``statement()``: every field but ``signatures``, in canonical JSON. The
digest is over the document *as parsed* (``document_digest``: sorted keys, no spaces,
ASCII escapes), so it covers exactly what the sidecar acts on, whatever whitespace or
encoding a server or CDN used. ``version`` rises with every signing of that document
(rollback protection), ``expires`` bounds how long a frozen copy can be replayed, and
the catalog's ``manifests`` names the version of each model's manifest signature when the
catalog was signed: a manifest older than that is a rollback, even one the client never
fetched before. Several
signatures (one per key) let a repository sign with an old and a new key during a key
rotation. Public keys are written ``ed25519:<base64 of the 32 raw bytes>``.

Everything here is pure and bounded: ``parse_envelope`` and ``parse_public_key`` take
anything a hostile server sends and either return a checked value or raise
``SignatureFormatError`` (a ValueError).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

FORMAT = "model-manager-signature/1"
KEY_PREFIX = "ed25519:"
MAX_SIGNATURES = 16  # one per key a repository signs with; rotations need two
MAX_VERSION = (1 << 53) - 1  # exact in every JSON reader
MAX_MODELS = 100_000  # entries of a catalog's "manifests"
Kind = Literal["catalog", "manifest"]
_EXPIRES = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = {"format", "kind", "model", "version", "expires", "sha256", "manifests", "signatures"}


class SignatureFormatError(ValueError):
    """A signature file or a public key that is not in the format above."""


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    def text(self) -> str:
        return KEY_PREFIX + base64.b64encode(self.raw).decode()

    def verify(self, signature: bytes, message: bytes) -> bool:
        # Imported here: the sidecar answers its first calls before it needs this.
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signature:
    key_id: str
    value: bytes


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    model: str | None
    version: int
    expires: str  # as written; ``expires_at`` is the parsed time
    sha256: str
    signatures: tuple[Signature, ...]
    manifests: tuple[tuple[str, int], ...] | None = None  # sorted; the catalog's only

    @property
    def expires_at(self) -> datetime:
        return datetime.strptime(self.expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    def statement(self) -> bytes:
        manifests = None if self.manifests is None else dict(self.manifests)
        return statement(self.kind, self.model, self.version, self.expires, self.sha256, manifests)


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _b64(text: Any, size: int, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 4 * size:
        raise SignatureFormatError(f"{what} is not base64 of {size} bytes")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SignatureFormatError(f"{what} is not base64 of {size} bytes") from None
    if len(raw) != size:
        raise SignatureFormatError(f"{what} is not base64 of {size} bytes")
    return raw


def parse_public_key(text: str) -> PublicKey:
    """``ed25519:<base64>``, as ``model-manager-repo keygen`` prints it."""
    if not isinstance(text, str) or not text.strip().startswith(KEY_PREFIX):
        raise SignatureFormatError(f"a public key is written {KEY_PREFIX}<base64 of 32 bytes>")
    return PublicKey(_b64(text.strip()[len(KEY_PREFIX) :], 32, "the public key"))


def document_digest(document: Any) -> str:
    """SHA-256 of the canonical JSON of a parsed document."""
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def statement(
    kind: Kind,
    model: str | None,
    version: int,
    expires: str,
    sha256: str,
    manifests: dict[str, int] | None = None,
) -> bytes:
    body = {
        "expires": expires,
        "format": FORMAT,
        "kind": kind,
        "manifests": manifests,
        "model": model,
        "sha256": sha256,
        "version": version,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def format_expires(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_envelope(raw: Any) -> Envelope:
    """A parsed signature file, checked field by field."""
    if not isinstance(raw, dict):
        raise SignatureFormatError("a signature file is a JSON object")
    if raw.get("format") != FORMAT:
        raise SignatureFormatError(f"not a {FORMAT} signature file")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise SignatureFormatError(f"unknown fields: {', '.join(sorted(map(str, unknown)))[:200]}")
    kind = raw.get("kind")
    if kind not in ("catalog", "manifest"):
        raise SignatureFormatError("kind is neither catalog nor manifest")
    model = raw.get("model")
    if (kind == "catalog") != (model is None) or not (model is None or isinstance(model, str)):
        raise SignatureFormatError("model names the model of a manifest, and only there")
    if isinstance(model, str) and not 0 < len(model) <= 128:
        raise SignatureFormatError("model is not a model id")
    version = raw.get("version")
    if type(version) is not int or not 1 <= version <= MAX_VERSION:
        raise SignatureFormatError(f"version is not an integer from 1 to {MAX_VERSION}")
    expires = raw.get("expires")
    if not isinstance(expires, str) or not _EXPIRES.match(expires):
        raise SignatureFormatError("expires is not a UTC time like 2026-01-31T00:00:00Z")
    try:
        datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise SignatureFormatError("expires is not a valid time") from None
    sha256 = raw.get("sha256")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise SignatureFormatError("sha256 is not 64 lowercase hex digits")
    manifests = _parse_manifests(kind, raw.get("manifests"))
    signatures = _parse_signatures(raw.get("signatures"))
    return Envelope(kind, model, version, expires, sha256, signatures, manifests)


def _parse_manifests(kind: str, raw: Any) -> tuple[tuple[str, int], ...] | None:
    if kind == "manifest":
        if raw is not None:
            raise SignatureFormatError("manifests belongs to the catalog's signature only")
        return None
    if not isinstance(raw, dict) or len(raw) > MAX_MODELS:
        raise SignatureFormatError(f"manifests is an object of at most {MAX_MODELS} entries")
    for model, version in raw.items():
        if not 0 < len(model) <= 128:
            raise SignatureFormatError("manifests names something that is not a model id")
        if type(version) is not int or not 1 <= version <= MAX_VERSION:
            raise SignatureFormatError(f"manifests gives {model[:128]!r} no valid version")
    return tuple(sorted(raw.items()))


def _parse_signatures(raw: Any) -> tuple[Signature, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SIGNATURES:
        raise SignatureFormatError(f"signatures is a list of 1 to {MAX_SIGNATURES} entries")
    found = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) != {"keyId", "signature"}:
            raise SignatureFormatError("a signature is {keyId, signature}")
        if not isinstance(entry["keyId"], str) or not _KEY_ID.match(entry["keyId"]):
            raise SignatureFormatError("keyId is not 16 lowercase hex digits")
        found.append(Signature(entry["keyId"], _b64(entry["signature"], 64, "a signature")))
    return tuple(found)


def envelope_document(envelope: Envelope) -> dict[str, Any]:
    """The JSON object of a signature file (what ``parse_envelope`` reads back)."""
    return {
        "format": FORMAT,
        "kind": envelope.kind,
        "model": envelope.model,
        "version": envelope.version,
        "expires": envelope.expires,
        "sha256": envelope.sha256,
        **({} if envelope.manifests is None else {"manifests": dict(envelope.manifests)}),
        "signatures": [
            {"keyId": s.key_id, "signature": base64.b64encode(s.value).decode()}
            for s in envelope.signatures
        ],
    }
