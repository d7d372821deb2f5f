"""keygen → sign → verify round trips, and what each kind of damage turns into."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from model_repo import signing
from sidecar.config import Settings, settings_from_args
from sidecar.core.signatures import SignatureProblem, Verifier
from sidecar.signature import parse_envelope, parse_public_key
from sidecar.store.layout import HomeLayout

CATALOG = [{"id": "whisper", "name": "Whisper \u4e2d", "versions": [{"version": "1.0", "x": 0.1}]}]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    signing.generate(tmp_path / "repo.key")
    return tmp_path / "repo.key"


def verifier(tmp_path: Path, *keys: Path, policy: str = "enforce") -> Verifier:
    trusted = tuple(k.with_name(k.name + ".pub").read_text().strip() for k in keys)
    settings = Settings(home=tmp_path / "home", trusted_keys=trusted, signatures=policy)
    return Verifier(settings, HomeLayout(tmp_path / "home"))


def sign(key: Path, document: Any = CATALOG, **options: Any) -> dict[str, Any]:
    signer = signing.Signer((signing.load(key),), **options)
    return signer.envelope(document, "catalog", None, None)


def reason(call: Any) -> str:
    with pytest.raises(SignatureProblem) as raised:
        call()
    return raised.value.reason


def test_keygen_files(key: Path) -> None:
    assert key.stat().st_mode & 0o777 == 0o600
    public = parse_public_key(key.with_name("repo.key.pub").read_text())
    assert signing.load(key).public == public
    with pytest.raises(signing.SigningError, match="exists"):
        signing.generate(key)


def test_round_trip_survives_reencoding(tmp_path: Path, key: Path) -> None:
    envelope = sign(key)
    # What a server or CDN may do to the bytes: other whitespace, escapes, key order.
    served = json.loads(json.dumps(CATALOG, indent=4, ensure_ascii=True, sort_keys=True))
    checked = verifier(tmp_path, key).check(served, envelope, "catalog", None)
    assert checked.version == parse_envelope(envelope).version


def test_each_damage_has_its_reason(tmp_path: Path, key: Path) -> None:
    check = verifier(tmp_path, key).check
    envelope = sign(key)
    assert reason(lambda: check(CATALOG, None, "catalog", None)) == "unsigned"
    changed = [{**CATALOG[0], "name": "evil"}]
    assert reason(lambda: check(changed, envelope, "catalog", None)) == "bad_signature"
    forged = {**envelope, "version": envelope["version"] + 1}  # statement no longer signed
    assert reason(lambda: check(CATALOG, forged, "catalog", None)) == "bad_signature"
    assert reason(lambda: check(CATALOG, envelope, "manifest", "whisper")) == "bad_signature"
    assert reason(lambda: check(CATALOG, {"format": 1}, "catalog", None)) == "bad_signature"
    expired = sign(key, clock=lambda: datetime.now(UTC) - timedelta(days=31))
    assert reason(lambda: check(CATALOG, expired, "catalog", None)) == "expired"


def test_an_unknown_key(tmp_path: Path, key: Path) -> None:
    signing.generate(tmp_path / "other.key")
    check = verifier(tmp_path, tmp_path / "other.key").check
    assert reason(lambda: check(CATALOG, sign(key), "catalog", None)) == "unknown_key"


def test_two_keys_and_two_signatures(tmp_path: Path, key: Path) -> None:
    signing.generate(tmp_path / "new.key")
    new = tmp_path / "new.key"
    both = signing.Signer((signing.load(key), signing.load(new)))
    envelope = both.envelope(CATALOG, "catalog", None, None)
    assert len(envelope["signatures"]) == 2
    for trusted in ((key,), (new,), (key, new)):
        verifier(tmp_path, *trusted).check(CATALOG, envelope, "catalog", None)
    # A signature by a trusted key that does not verify does not spoil a good one.
    envelope["signatures"][0]["signature"] = envelope["signatures"][1]["signature"]
    verifier(tmp_path, new).check(CATALOG, envelope, "catalog", None)
    assert reason(lambda: verifier(tmp_path, key).check(CATALOG, envelope, "catalog", None)) == (
        "bad_signature"
    )


def test_versions_rise_and_rollback_is_remembered(tmp_path: Path, key: Path) -> None:
    signer = signing.Signer((signing.load(key),))
    first = signer.envelope(CATALOG, "catalog", None, None, {"whisper": 5})
    second = signer.envelope(CATALOG, "catalog", None, first)
    assert second["version"] == first["version"] + 1

    async def run() -> None:
        v = verifier(tmp_path, key)
        await v.admit(v.check(CATALOG, first, "catalog", None))
        await v.admit(v.check(CATALOG, first, "catalog", None))  # the same again: fine
        await v.admit(v.check(CATALOG, second, "catalog", None))
        with pytest.raises(SignatureProblem) as raised:
            await v.admit(v.check(CATALOG, first, "catalog", None))
        assert raised.value.reason == "rollback"
        # A new process reads the marks from the home.
        again = verifier(tmp_path, key)
        with pytest.raises(SignatureProblem):
            await again.admit(again.check(CATALOG, first, "catalog", None))
        # The first catalog vouched for whisper's manifest at version 5: 4 is a rollback,
        # although this client never fetched that manifest.
        manifest = signer.envelope({"id": "whisper"}, "manifest", "whisper", None)
        manifest["version"] = 4
        with pytest.raises(SignatureProblem) as raised:
            await again.admit(parse_envelope(manifest))
        assert raised.value.reason == "rollback"
        manifest["version"] = 5
        await again.admit(parse_envelope(manifest))

    anyio.run(run)


def test_a_damaged_state_file_is_set_aside(tmp_path: Path, key: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "signatures.json").write_text("{not json")

    async def run() -> None:
        v = verifier(tmp_path, key)
        await v.admit(v.check(CATALOG, sign(key), "catalog", None))

    anyio.run(run)
    assert json.loads((home / "signatures.json").read_text())["versions"]["catalog"] > 0
    assert list(home.glob("signatures.json.damaged-*"))


def test_passphrase_protected_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(signing.PASSPHRASE_ENV, "correct horse")
    signing.generate(tmp_path / "k")
    assert b"ENCRYPTED" in (tmp_path / "k").read_bytes()
    signing.load(tmp_path / "k")
    monkeypatch.setenv(signing.PASSPHRASE_ENV, "wrong")
    with pytest.raises(signing.SigningError, match="passphrase"):
        signing.load(tmp_path / "k")
    monkeypatch.delenv(signing.PASSPHRASE_ENV)
    with pytest.raises(signing.SigningError, match=signing.PASSPHRASE_ENV):
        signing.load(tmp_path / "k")


def test_not_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("hello")
    with pytest.raises(signing.SigningError, match="not a PEM"):
        signing.load(tmp_path / "k")
    with pytest.raises(signing.SigningError, match="cannot read"):
        signing.load(tmp_path / "missing")


def test_sidecar_options(key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_HOME", "/tmp/mm-home")
    text = key.with_name("repo.key.pub").read_text().strip()
    assert settings_from_args([]).signatures == "off"
    configured = settings_from_args(["--trusted-key", text])
    assert (configured.signatures, configured.trusted_keys) == ("enforce", (text,))
    monkeypatch.setenv("MODEL_MANAGER_TRUSTED_KEYS", f" {text} ,{text}")
    assert settings_from_args([]).trusted_keys == (text, text)
    assert settings_from_args(["--signatures", "warn"]).signatures == "warn"
    monkeypatch.delenv("MODEL_MANAGER_TRUSTED_KEYS")
    for bad in (["--trusted-key", "ed25519:AAAA"], ["--signatures", "enforce"]):
        with pytest.raises(SystemExit):
            settings_from_args(bad)
    monkeypatch.setenv("MODEL_MANAGER_SIGNATURES", "sometimes")
    with pytest.raises(SystemExit):
        settings_from_args(["--trusted-key", text])
