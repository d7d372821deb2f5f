"""Whatever a hostile server puts in a signature file or an operator in a key, parsing
either returns a checked value or raises SignatureFormatError; the verifier turns any
of it into a SignatureProblem with one of its five reasons, never another exception,
and never accepts a document it was not given a valid signature for."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_repo import signing
from sidecar.config import Settings
from sidecar.core.signatures import SignatureProblem, Verifier
from sidecar.signature import (
    SignatureFormatError,
    envelope_document,
    parse_envelope,
    parse_public_key,
)
from sidecar.store.layout import HomeLayout

REASONS = {"unsigned", "bad_signature", "unknown_key", "rollback", "expired"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


KEY = signing.SigningKey.create()
DOCUMENT = [{"id": "m", "versions": []}]
GOOD = signing.Signer((KEY,)).envelope(DOCUMENT, "catalog", None, None, {"m": 3})
# check() never writes: the home is only named.
VERIFIER = Verifier(
    Settings(
        home=Path("/nonexistent/home"), trusted_keys=(KEY.public.text(),), signatures="enforce"
    ),
    HomeLayout(Path("/nonexistent/home")),
)


@st.composite
def mutated(draw: Any) -> Any:
    """The good envelope with one field replaced by any JSON, or removed."""
    envelope = json.loads(json.dumps(GOOD))
    field = draw(st.sampled_from([*envelope, "extra"]))
    if draw(st.booleans()):
        envelope.pop(field, None)
    else:
        envelope[field] = draw(JSON)
    return envelope


ENVELOPES = st.one_of(JSON, st.just(GOOD), mutated())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENVELOPES)
def test_parse_envelope_checks_or_refuses(raw: Any) -> None:
    try:
        envelope = parse_envelope(raw)
    except SignatureFormatError:
        return
    # Accepted: it reads back as itself, and the verifier's verdict is typed.
    assert parse_envelope(envelope_document(envelope)) == envelope
    try:
        VERIFIER.check(DOCUMENT, raw, "catalog", None)
    except SignatureProblem as problem:
        assert problem.reason in REASONS
        assert raw != GOOD
    else:
        # Only the untouched signature's statement verifies.
        assert envelope.statement() == parse_envelope(GOOD).statement()


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_any_document_against_the_good_signature(document: Any) -> None:
    try:
        VERIFIER.check(document, GOOD, "catalog", None)
    except SignatureProblem as problem:
        assert problem.reason == "bad_signature"
        assert document != DOCUMENT
    else:
        assert json.dumps(document, sort_keys=True) == json.dumps(DOCUMENT, sort_keys=True)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: "ed25519:" + base64.b64encode(b).decode())))
def test_parse_public_key_checks_or_refuses(text: str) -> None:
    try:
        key = parse_public_key(text)
    except SignatureFormatError:
        return
    assert len(key.raw) == 32
    assert parse_public_key(key.text()) == key


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=64, max_size=64), st.integers(0, 63))
def test_a_random_or_flipped_signature_never_verifies(random: bytes, bit: int) -> None:
    envelope = json.loads(json.dumps(GOOD))
    real = base64.b64decode(envelope["signatures"][0]["signature"])
    flipped = bytearray(real)
    flipped[bit] ^= 1 << (bit % 8)
    for value in (random, bytes(flipped)):
        envelope["signatures"][0]["signature"] = base64.b64encode(value).decode()
        try:
            VERIFIER.check(DOCUMENT, envelope, "catalog", None)
        except SignatureProblem as problem:
            assert problem.reason == "bad_signature"
        else:
            raise AssertionError("a forged signature verified")
