"""Proof documents: the evidence of an assessment as canonical JSON, named by its CIDv1.

- :func:`canonical` — the JSON Canonicalization Scheme (RFC 8785): keys sorted by UTF-16 code
  units, no whitespace, numbers in ECMAScript's shortest form. The same evidence always gives
  the same bytes, on any machine, so its hash names it.
- :func:`cid_of` — the CIDv1 of those bytes as IPFS names a file added with raw leaves
  (``ipfs add --cid-version=1 --raw-leaves`` of a file under one block, 256 KiB): version 0x01,
  codec ``raw`` 0x55, multihash sha2-256 (0x12, length 0x20, digest), multibase base32 lower
  case without padding, prefix ``b``. Anyone can recompute it with ``sha256sum`` and base32.
- :func:`verify` — recompute and compare.
- :func:`evidence_document` — what a proof holds: inputs, indices, NDVI statistics, the result
  and :data:`FORMULAS_VERSION`, so a document can be re-checked against the formulas it used.

Values JSON lacks are written as strings before canonicalising: ``Decimal`` money exactly
(``"1250.00"``, never a binary float), dates and datetimes in ISO 8601, UUIDs. NaN and
infinities have no JSON form and are refused (:class:`ProofError`), never written as null.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import rfc8785

from conveyor.packs.agri.errors import ProofError

FORMULAS_VERSION = "agri-formulas/1"
"""Names the formulas of ``docs/agri.md`` ("Formulas"); raised whenever one of them changes."""

CID_VERSION = 0x01
RAW_CODEC = 0x55
SHA2_256 = 0x12
DIGEST_SIZE = 0x20
_PREFIX = bytes([CID_VERSION, RAW_CODEC, SHA2_256, DIGEST_SIZE])
_CID_LENGTH = 1 + 58  # "b" + base32 of 36 bytes (288 bits), unpadded
MAX_DEPTH = 64


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` with every part JSON can hold as itself, the rest as strings (see module)."""
    if depth > MAX_DEPTH:
        raise ProofError(f"the document nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProofError(f"the document holds {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ProofError(f"the document holds {value!r}, which JSON cannot represent")
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProofError(f"the document has a non-string key {key!r}")
            out[key] = _plain(item, depth + 1)
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [_plain(item, depth + 1) for item in value]
    raise ProofError(f"the document holds a {type(value).__name__}, which has no JSON form")


def canonical(obj: Any) -> bytes:
    """``obj`` as RFC 8785 canonical JSON (UTF-8 bytes); see the module for non-JSON values."""
    try:
        return rfc8785.dumps(_plain(obj))
    except rfc8785.CanonicalizationError as exc:
        raise ProofError(f"the document cannot be made canonical: {exc}") from exc


def cid_of(data: bytes) -> str:
    """The CIDv1 (raw codec, sha2-256, base32 lower case) naming ``data``."""
    digest = hashlib.sha256(data).digest()
    encoded = base64.b32encode(_PREFIX + digest).decode("ascii").lower().rstrip("=")
    return "b" + encoded


def digest_of(cid: str) -> bytes:
    """The sha2-256 digest a CIDv1 of the form :func:`cid_of` makes carries.

    Raises :class:`ProofError` naming what is wrong with anything else (a CIDv0 ``Qm…``, another
    codec or hash, another multibase, a truncated or non-base32 string).
    """
    if not isinstance(cid, str):
        raise ProofError("a CID is a string")
    text = cid.strip()
    if text.startswith("Qm"):
        raise ProofError("that is a CIDv0; proofs are named by CIDv1 (raw, sha2-256, base32 'b…')")
    if not text.startswith("b"):
        raise ProofError("a proof CID starts with 'b' (multibase base32 lower case)")
    if len(text) != _CID_LENGTH:
        raise ProofError(
            f"a proof CID has {_CID_LENGTH} characters (CIDv1, raw, sha2-256); this has {len(text)}"
        )
    body = text[1:]
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise ProofError("the CID is not base32 (letters a-z and digits 2-7)") from exc
    if body != body.lower():
        raise ProofError("a base32 CID is lower case")
    if raw[:1] != bytes([CID_VERSION]):
        raise ProofError(f"the CID is not version 1 (it says {raw[0]:#04x})")
    if raw[1:2] != bytes([RAW_CODEC]):
        raise ProofError(f"the CID's codec is {raw[1]:#04x}, not raw (0x55)")
    if raw[2:4] != bytes([SHA2_256, DIGEST_SIZE]):
        raise ProofError("the CID's hash is not sha2-256 with a 32-byte digest")
    return raw[4:]


def verify(document: bytes, cid: str) -> bool:
    """Whether ``cid`` names ``document``. A malformed CID raises :class:`ProofError`."""
    return hashlib.sha256(document).digest() == digest_of(cid)


def evidence_document(
    *,
    plot: Mapping[str, Any],
    policy: Mapping[str, Any],
    period: Mapping[str, Any],
    weather: Mapping[str, Any],
    ndvi: Mapping[str, Any] | None,
    result: Mapping[str, Any],
    generated_at: datetime,
) -> dict[str, Any]:
    """The evidence of one assessment, ready for :func:`canonical`.

    ``plot`` (id, area, bbox…), ``policy`` (id, crop, thresholds…), ``period`` (start, end),
    ``weather`` (the indices and the climatology they used), ``ndvi`` (the NDVI statistics and
    baseline, or None when there were none) and ``result`` (the damage and payout) are copied
    as given; the document adds its kind and :data:`FORMULAS_VERSION`.
    """
    if generated_at.tzinfo is None:
        raise ProofError("generated_at must carry a time zone (UTC)")
    document = {
        "kind": "conveyor.agri.evidence",
        "formulas_version": FORMULAS_VERSION,
        "generated_at": generated_at,
        "plot": plot,
        "policy": policy,
        "period": period,
        "weather": weather,
        "ndvi": ndvi,
        "result": result,
    }
    plain: dict[str, Any] = _plain(document)
    return plain
