"""Whether a catalog or manifest comes from the company: its signature by a trusted key,
its version against the highest seen (rollback), its expiry (freeze).

The policy (``--signatures``) decides what a problem costs: ``enforce`` refuses the
document (SIGNATURE_INVALID, nothing is installed from it), ``warn`` logs and goes on,
``off`` fetches no signatures at all. The highest version seen of the catalog and of each
model's manifest is kept in ``<home>/signatures.json``, so a restart does not reopen
the door to an older copy. The format itself is ``sidecar.signature``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import anyio

from sidecar.config import Settings
from sidecar.signature import (
    Envelope,
    Kind,
    PublicKey,
    SignatureFormatError,
    document_digest,
    parse_envelope,
    parse_public_key,
)
from sidecar.store.fsutil import atomic_write_json, read_json
from sidecar.store.homefs import DamagedFile, HomeFS
from sidecar.store.layout import HomeLayout

log = logging.getLogger(__name__)

# What the user can do about each refusal; the message names the host before it.
ADVICE = {
    "unsigned": "this app accepts only catalogs signed with its trusted keys: the repository "
    "must publish with --sign-key, or run the sidecar with --signatures warn (or off)",
    "unknown_key": "if the repository changed its signing key, add the new public key with "
    "--trusted-key (MODEL_MANAGER_TRUSTED_KEYS)",
    "bad_signature": "it was changed after it was signed; check the repository URL and "
    "any proxy or mirror between this computer and the repository",
    "rollback": "a mirror or cache serves an older copy than this computer has seen; it is "
    "refused until it serves the current one",
    "expired": "the repository must re-sign its catalog (model-manager-repo index "
    "--sign-key), or this computer's clock is wrong",
}


class SignatureProblem(Exception):
    """Why one copy of a document is not trusted: a SIGNATURE_INVALID reason and what
    was wrong, for the message."""

    def __init__(self, reason: str, detail: str, mismatch: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.mismatch = mismatch  # a valid signature of other content (maybe a publish race)


def _state_key(envelope: Envelope) -> str:
    return "catalog" if envelope.model is None else f"manifest/{envelope.model}"


class Verifier:
    def __init__(self, settings: Settings, layout: HomeLayout) -> None:
        self.policy = settings.signatures
        keys = [parse_public_key(text) for text in settings.trusted_keys]
        self.keys: dict[str, PublicKey] = {key.key_id: key for key in keys}
        self.state_path = layout.signature_state
        self._seen: dict[str, int] | None = None
        self._lock = anyio.Lock()

    @property
    def enabled(self) -> bool:
        return self.policy != "off"

    @property
    def enforced(self) -> bool:
        return self.policy == "enforce"

    def check(
        self, document: Any, raw_envelope: Any | None, kind: Kind, model_id: str | None
    ) -> Envelope:
        """The envelope that vouches for ``document``, or SignatureProblem. Blocking only
        for the Ed25519 checks (tens of microseconds each)."""
        if raw_envelope is None:
            raise SignatureProblem("unsigned", "carries no signature")
        try:
            envelope = parse_envelope(raw_envelope)
        except SignatureFormatError as exc:
            raise SignatureProblem("bad_signature", f"has a malformed signature ({exc})") from exc
        if envelope.kind != kind or envelope.model != model_id:
            raise SignatureProblem("bad_signature", "carries the signature of another document")
        trusted = [s for s in envelope.signatures if s.key_id in self.keys]
        if not trusted:
            shown = ", ".join(sorted({s.key_id for s in envelope.signatures}))
            raise SignatureProblem(
                "unknown_key", f"is signed by key {shown}, which this app does not trust"
            )
        statement = envelope.statement()
        if not any(self.keys[s.key_id].verify(s.value, statement) for s in trusted):
            raise SignatureProblem("bad_signature", "has a signature that does not verify")
        try:
            digest = document_digest(document)
        except (ValueError, RecursionError):
            digest = ""
        if digest != envelope.sha256:
            raise SignatureProblem("bad_signature", "differs from what was signed", mismatch=True)
        if envelope.expires_at <= datetime.now(UTC):
            raise SignatureProblem(
                "expired", f"is signed only until {envelope.expires} (UTC), which has passed"
            )
        return envelope

    async def admit(self, envelope: Envelope) -> None:
        """Refuse an older version than seen before; else remember this one."""
        async with self._lock:
            seen = await self._load()
            key = _state_key(envelope)
            highest = seen.get(key, 0)
            if envelope.version < highest:
                raise SignatureProblem(
                    "rollback",
                    f"is version {envelope.version}, older than version {highest} seen before",
                )
            raised = {key: envelope.version} if envelope.version > highest else {}
            # The catalog vouches for the manifests it was signed with: an older one of
            # any model is a rollback from now on, fetched before or not.
            for model, version in envelope.manifests or ():
                if version > seen.get(f"manifest/{model}", 0):
                    raised[f"manifest/{model}"] = version
            if raised:
                seen.update(raised)
                await self._save(seen)

    async def _load(self) -> dict[str, int]:
        if self._seen is None:
            self._seen = await anyio.to_thread.run_sync(self._read)
        return self._seen

    def _read(self) -> dict[str, int]:
        try:
            raw = read_json(self.state_path)
        except FileNotFoundError:
            return {}
        except (OSError, DamagedFile, ValueError) as exc:
            # Lost, the marks restart from what the next catalog says: the signatures
            # and expiry still hold, only an older copy could pass once.
            log.warning("%s unreadable (%s); setting it aside", self.state_path.name, exc)
            HomeFS.of(self.state_path).set_aside(self.state_path)
            return {}
        versions = raw.get("versions") if isinstance(raw, dict) else None
        if not isinstance(versions, dict):
            return {}
        return {str(k): v for k, v in versions.items() if type(v) is int and v > 0}

    async def _save(self, seen: dict[str, int]) -> None:
        document = {"versions": dict(seen)}
        try:
            await anyio.to_thread.run_sync(atomic_write_json, self.state_path, document)
        except OSError as exc:
            # A read-only home still verifies; the mark holds for this run only.
            log.warning("cannot record the signed catalog version: %s", exc)
