"""Proofs: RFC 8785 canonical JSON, CIDv1 (raw, sha2-256, base32) and verification."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.packs.agri.errors import ProofError
from conveyor.packs.agri.proofs import (
    FORMULAS_VERSION,
    canonical,
    cid_of,
    digest_of,
    evidence_document,
    verify,
)

# `ipfs add --cid-version=1 --raw-leaves` of an empty file: the CID every IPFS node agrees on.
EMPTY_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_cid_of_empty_matches_ipfs() -> None:
    assert cid_of(b"") == EMPTY_CID


def test_cid_layout_by_hand() -> None:
    data = b"hello proofs"
    cid = cid_of(data)
    assert cid.startswith("b") and cid == cid.lower() and "=" not in cid
    raw = base64.b32decode(cid[1:].upper() + "=" * (-len(cid[1:]) % 8))
    assert raw[:4] == bytes([0x01, 0x55, 0x12, 0x20])
    assert raw[4:] == hashlib.sha256(data).digest()
    assert digest_of(cid) == hashlib.sha256(data).digest()


def test_verify_true_false() -> None:
    document = canonical({"a": 1})
    cid = cid_of(document)
    assert verify(document, cid)
    assert not verify(canonical({"a": 2}), cid)
    assert not verify(document + b" ", cid)


@pytest.mark.parametrize(
    ("cid", "why"),
    [
        ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "CIDv0"),
        ("zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA", "starts with 'b'"),
        ("b", "characters"),
        (EMPTY_CID[:-1], "characters"),
        (EMPTY_CID.upper().replace("B", "b", 1), "lower case"),
        ("b" + "1" * 58, "base32"),
        # dag-pb (0x70) instead of raw
        (
            "b"
            + base64.b32encode(bytes([1, 0x70, 0x12, 0x20]) + bytes(32))
            .decode()
            .lower()
            .rstrip("="),
            "codec",
        ),
        (
            "b"
            + base64.b32encode(bytes([1, 0x55, 0x13, 0x20]) + bytes(32))
            .decode()
            .lower()
            .rstrip("="),
            "sha2-256",
        ),
    ],
)
def test_malformed_cid_is_a_clear_error(cid: str, why: str) -> None:
    with pytest.raises(ProofError, match=why):
        verify(b"", cid)


def test_canonical_is_rfc8785() -> None:
    # Keys sorted, no whitespace, numbers in ECMAScript form (1.0 -> 1, 1e21 -> 1e+21).
    assert canonical({"b": 1.0, "a": [1e21, 0.1, "é"]}) == '{"a":[1e+21,0.1,"é"],"b":1}'.encode()
    # RFC 8785 §3.2.3: keys sorted by UTF-16 code units.
    assert canonical({"\u20ac": 1, "\r": 2, "1": 3}) == '{"\\r":2,"1":3,"€":1}'.encode()


def test_canonical_writes_money_dates_and_ids_as_strings() -> None:
    value = {
        "amount": Decimal("1250.50"),
        "day": date(2026, 3, 1),
        "at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        "id": UUID(int=1),
        "pair": (1, 2),
    }
    assert canonical(value) == (
        b'{"amount":"1250.50","at":"2026-03-01T12:00:00+00:00","day":"2026-03-01",'
        b'"id":"00000000-0000-0000-0000-000000000001","pair":[1,2]}'
    )


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), Decimal("NaN"), {1: "x"}, object(), b"bytes", 2**80],
)
def test_canonical_refuses_what_json_cannot_hold(bad: object) -> None:
    with pytest.raises(ProofError):
        canonical({"v": bad})


def test_canonical_refuses_deep_nesting() -> None:
    value: object = 1
    for _ in range(100):
        value = [value]
    with pytest.raises(ProofError, match="deeper"):
        canonical(value)


def test_evidence_document_round_trip() -> None:
    document = evidence_document(
        plot={"id": "p1", "area_ha": 1.5},
        policy={"policy_number": "P-1", "sum_insured": Decimal("1000.00")},
        period={"start": date(2026, 3, 1), "end": date(2026, 3, 31)},
        weather={"drought": {"deficit_pct": 62.5}},
        ndvi=None,
        result={"payout": Decimal("390.00")},
        generated_at=datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert document["formulas_version"] == FORMULAS_VERSION
    assert document["policy"]["sum_insured"] == "1000.00"
    data = canonical(document)
    assert verify(data, cid_of(data))
    # Key order of the input does not matter: the same evidence gives the same CID.
    assert cid_of(canonical(dict(reversed(list(document.items()))))) == cid_of(data)


def test_evidence_document_needs_an_aware_time() -> None:
    with pytest.raises(ProofError, match="time zone"):
        evidence_document(
            plot={},
            policy={},
            period={},
            weather={},
            ndvi=None,
            result={},
            generated_at=datetime(2026, 4, 1),
        )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_has_a_verifiable_cid(value: object) -> None:
    data = canonical(value)
    assert canonical(value) == data
    assert verify(data, cid_of(data))


@given(st.text(max_size=80))
def test_garbage_cid_is_false_or_a_proof_error(text: str) -> None:
    with contextlib.suppress(ProofError):
        assert verify(b"doc", text) is False
