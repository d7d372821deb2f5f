"""Signing what a repository serves: ``model-manager-repo keygen``, and the signature
files ``publish`` / ``index --sign-key`` write beside the catalog and each model entry.

Keys are Ed25519 through ``cryptography`` (PyCA; the private key a PKCS#8 PEM file,
encrypted when ``MODEL_REPO_SIGN_KEY_PASSPHRASE`` is set). The signature format and its
checks are ``sidecar.signature``, shared with the sidecar that verifies them.

Every signing of a document raises its version: the previous signature's version plus
one, and never less than the Unix time of the signing, so versions keep rising even
when the old signature files are lost or two machines publish.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from model_repo.layout import StorageLayout
from sidecar.signature import (
    Envelope,
    Kind,
    PublicKey,
    Signature,
    SignatureFormatError,
    document_digest,
    envelope_document,
    format_expires,
    parse_envelope,
)
from sidecar.store.fsutil import atomic_write_bytes

PASSPHRASE_ENV = "MODEL_REPO_SIGN_KEY_PASSPHRASE"
# A catalog nobody re-signs stops being accepted after this: long enough for a quiet
# month, short enough that a frozen copy cannot be replayed for long. Re-sign from cron.
DEFAULT_VALID_DAYS = 30.0


class SigningError(Exception):
    """A key that cannot be made or read, or a signed repository asked to go unsigned."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    public: PublicKey

    @classmethod
    def create(cls) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        return cls(private, _public(private))

    def sign(self, message: bytes) -> Signature:
        return Signature(self.public.key_id, self.private.sign(message))


def _public(private: Ed25519PrivateKey) -> PublicKey:
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return PublicKey(raw)


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def generate(path: Path) -> PublicKey:
    """A new private key at ``path`` (mode 0600, never over an existing file) and its
    public key at ``path.pub``; the public key is also returned, to print."""
    private = SigningKey.create().private
    passphrase = _passphrase()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public = _public(private)
    pub_path = path.with_name(path.name + ".pub")
    for existing in (path, pub_path):
        if existing.exists():
            raise SigningError(f"{existing} exists; choose another name (keys are never replaced)")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise SigningError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    pub_path.write_text(public.text() + "\n")
    return public


def load(path: Path) -> SigningKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    try:
        private = serialization.load_pem_private_key(pem, password=_passphrase())
    except TypeError as exc:  # encrypted without a passphrase, or the reverse
        raise SigningError(f"{path}: {exc} (passphrase: env {PASSPHRASE_ENV})") from exc
    except ValueError as exc:
        raise SigningError(f"{path} is not a PEM private key, or the passphrase is wrong") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningError(f"{path} is not an Ed25519 key (make one with keygen)")
    return SigningKey(private, _public(private))


def previous_version(raw: Any) -> int:
    try:
        return parse_envelope(raw).version
    except SignatureFormatError:
        return 0


@dataclass(frozen=True)
class Signer:
    keys: tuple[SigningKey, ...]
    valid_for: timedelta = timedelta(days=DEFAULT_VALID_DAYS)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def envelope(
        self,
        document: Any,
        kind: Kind,
        model: str | None,
        previous: Any | None,
        manifests: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """The signature file for ``document``, one version above ``previous`` (the
        signature file it replaces, or None). A catalog's names the version of each
        model's manifest signature (``manifests``)."""
        now = self.clock()
        version = max(previous_version(previous) + 1, int(now.timestamp()))
        expires = format_expires(now + self.valid_for)
        listed = tuple(sorted((manifests or {}).items())) if kind == "catalog" else None
        digest = document_digest(document)
        unsigned = Envelope(kind, model, version, expires, digest, (), listed)
        statement = unsigned.statement()
        signatures = tuple(key.sign(statement) for key in self.keys)
        signed = Envelope(kind, model, version, expires, digest, signatures, listed)
        return envelope_document(signed)


def encode(document: Any) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def sign_file(
    signer: Signer,
    document_path: Path,
    signature_path: Path,
    kind: Kind,
    model: str | None,
    manifests: dict[str, int] | None = None,
) -> int:
    """Sign a written catalog file as it will be served (parsed back from its bytes);
    the signature's version."""
    document = json.loads(document_path.read_bytes())
    envelope = signer.envelope(document, kind, model, _read_json(signature_path), manifests)
    signature_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(signature_path, encode(envelope))
    return int(envelope["version"])


def is_signed(layout: StorageLayout) -> bool:
    return layout.catalog_signature.exists()


def require_signer(signed: bool, signer: Signer | None, where: str) -> None:
    """A signed repository stays signed: an unsigned write would leave signatures that
    no longer match, and every client that enforces them would refuse the catalog."""
    if signed and signer is None:
        raise SigningError(
            f"{where} is signed: give --sign-key (to stop signing, delete its "
            "api/signatures first, and the clients' --trusted-key)"
        )
