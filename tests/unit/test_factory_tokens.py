"""Product tokens: format, verification, forgery, key rotation and the production check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import pytest
from pydantic import SecretStr

from conveyor.errors import ConfigurationError
from conveyor.packs.factory import tokens
from conveyor.packs.factory.config import DEFAULT_SECRET, FactorySettings
from conveyor.packs.factory.errors import InvalidToken
from conveyor.packs.factory.tokens import Keyring

BATCH = uuid.UUID("0192f3a4-5b6c-7d8e-9fa0-b1c2d3e4f506")
STRONG = "Zx7-q2LmA9vR4tYp0WsK3jHnB6cE1uFd"
RING = Keyring(keys={"k1": STRONG.encode()}, current="k1")


def test_token_is_kid_dot_base64url_of_batch_serial_and_truncated_hmac() -> None:
    token = tokens.sign(RING, BATCH, 42)
    body = BATCH.bytes + (42).to_bytes(8, "big")
    mac = hmac.new(STRONG.encode(), b"conveyor-factory-token-v1\x00" + body, hashlib.sha256)
    payload = base64.urlsafe_b64encode(body + mac.digest()[:16]).decode().rstrip("=")
    assert token == "k1." + payload
    assert len(token) == 3 + 54


@pytest.mark.parametrize("key", [b"", b"short", b"k" * 64, b"long" * 40])
def test_bulk_signing_is_hmac_sha256_for_any_key_length(key: bytes) -> None:
    ring = Keyring(keys={"k": key}, current="k")
    token = tokens.sign_range(ring, BATCH, 9, 1)[0]
    body = BATCH.bytes + (9).to_bytes(8, "big")
    mac = hmac.new(key, b"conveyor-factory-token-v1\x00" + body, hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(token[2:] + "==")[24:] == mac[:16]
    assert tokens.check(ring, token).serial == 9


def test_range_equals_one_by_one() -> None:
    assert tokens.sign_range(RING, BATCH, 7, 5) == [
        tokens.sign(RING, BATCH, s) for s in range(7, 12)
    ]


def test_a_token_yields_its_batch_and_serial() -> None:
    claims = tokens.check(RING, tokens.sign(RING, BATCH, 1))
    assert (claims.kid, claims.batch_id, claims.serial) == ("k1", BATCH, 1)
    big = tokens.check(RING, tokens.sign(RING, BATCH, (1 << 64) - 1))
    assert big.serial == (1 << 64) - 1


def _reason(token: str, ring: Keyring = RING) -> str:
    with pytest.raises(InvalidToken) as caught:
        tokens.check(ring, token)
    return str(caught.value)


def _with_payload(token: str, body: bytes, mac: bytes) -> str:
    kid = token.split(".")[0]
    return f"{kid}." + base64.urlsafe_b64encode(body + mac).decode().rstrip("=")


def test_forged_and_garbage_tokens_are_refused_with_a_reason() -> None:
    token = tokens.sign(RING, BATCH, 1)
    payload = token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "==")
    body, mac = raw[:24], raw[24:]
    # Another serial or batch with the MAC of serial 1; a MAC with one bit flipped.
    other_serial = BATCH.bytes + (2).to_bytes(8, "big")
    assert _reason(_with_payload(token, other_serial, mac)) == "signature does not match"
    other_batch = uuid.uuid4().bytes + body[16:]
    assert _reason(_with_payload(token, other_batch, mac)) == "signature does not match"
    flipped = bytes([mac[0] ^ 1]) + mac[1:]
    assert _reason(_with_payload(token, body, flipped)) == "signature does not match"
    other_key = Keyring(keys={"k1": b"another key entirely, also long enough"}, current="k1")
    assert _reason(tokens.sign(other_key, BATCH, 1)) == "signature does not match"
    assert _reason("k9." + payload) == "unknown key id 'k9'"
    for garbage in [
        "",
        ".",
        "k1",
        "k1.",
        payload,
        "k1." + payload[:-1],
        "k1." + payload + "A",
        "k 1." + payload,
        "k1." + "!" * 54,
        "é." + payload,
        "k1." + "é" * 54,
        "k1." + payload[:-1] + "=",
        "k1." + "\x00" * 54,
    ]:
        assert _reason(garbage) == "malformed token", garbage


def test_a_token_has_one_spelling_only() -> None:
    # The 54th character carries 4 bits of the MAC and 2 unused bits; a token with those
    # bits set decodes to the same bytes but is not the token that was issued.
    token = tokens.sign(RING, BATCH, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    for low in (1, 2, 3):
        assert _reason(token[:-1] + alphabet[(last & ~3) | low]) == "malformed token"


def test_an_altered_token_always_differs_and_never_verifies() -> None:
    """Tests tamper with tokens through ``altered_token``: replacing the last two characters
    with "AA" is no change for a token that already ends so (issue 11 item 20)."""
    from conveyor.testing.forgery import altered_token

    batch = tokens.sign_range(RING, BATCH, 1, 20_000)
    ending_aa = next(t for t in batch if t.endswith("AA"))
    assert ending_aa[:-2] + "AA" == ending_aa  # the old way: no change at all
    for token in [ending_aa, *batch[:500]]:
        forged = altered_token(token)
        assert forged != token and len(forged) == len(token)
        assert _reason(forged) == "signature does not match"


def test_rotation_new_key_signs_old_keys_still_verify() -> None:
    old = Keyring(keys={"2025": STRONG.encode()}, current="2025")
    old_token = tokens.sign(old, BATCH, 5)
    rotated = Keyring(
        keys={"2025": STRONG.encode(), "2026": b"N3w-k3y-w1th-3n0ugh-r4nd0mn3ss-xx"}, current="2026"
    )
    new_token = tokens.sign(rotated, BATCH, 5)
    assert new_token.startswith("2026.") and new_token != old_token
    assert tokens.check(rotated, old_token).kid == "2025"
    assert tokens.check(rotated, new_token).kid == "2026"
    assert tokens.check(rotated, new_token).serial == tokens.check(rotated, old_token).serial
    retired = Keyring(keys={"2026": b"N3w-k3y-w1th-3n0ugh-r4nd0mn3ss-xx"}, current="2026")
    assert _reason(old_token, retired) == "unknown key id '2025'"


def test_keyring_from_settings_and_the_production_check() -> None:
    default = FactorySettings()
    ring = Keyring.from_settings(default, "development")
    assert ring.keys == {"dev": DEFAULT_SECRET.encode()}
    with pytest.raises(ConfigurationError, match="placeholder"):
        Keyring.from_settings(default, "production")
    weak = FactorySettings(token_keys={"k1": SecretStr("short")}, token_kid="k1")
    with pytest.raises(ConfigurationError, match="shorter than 32"):
        Keyring.from_settings(weak, "production")
    strong = FactorySettings(token_keys={"k1": SecretStr(STRONG)}, token_kid="k1")
    assert Keyring.from_settings(strong, "production").current == "k1"
    with pytest.raises(ConfigurationError, match="not in"):
        FactorySettings(token_keys={"k1": SecretStr(STRONG)}, token_kid="k2").check("test")
    with pytest.raises(ConfigurationError, match="key id"):
        FactorySettings(token_keys={"a.b": SecretStr(STRONG)}, token_kid="a.b").check("test")


def test_settings_read_the_keyring_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_FACTORY_TOKEN_KEYS", f'{{"a": "{STRONG}", "b": "{STRONG[::-1]}"}}')
    monkeypatch.setenv("CONVEYOR_FACTORY_TOKEN_KID", "b")
    ring = Keyring.from_settings(FactorySettings(), "production")
    assert ring.current == "b" and set(ring.keys) == {"a", "b"}


def test_verification_url_joins_base_and_token() -> None:
    assert tokens.verification_url("https://v.example/p", "k1.abc") == "https://v.example/p/k1.abc"
    assert tokens.verification_url("https://v.example/p/", "k1.abc") == "https://v.example/p/k1.abc"


def test_serials_outside_64_bits_are_refused() -> None:
    with pytest.raises(ValueError):
        tokens.sign(RING, BATCH, -1)
    with pytest.raises(ValueError):
        tokens.sign(RING, BATCH, 1 << 64)


def test_verification_urls_default_to_this_apis_own_page() -> None:
    unset = FactorySettings(verify_base_url=None)
    assert unset.with_base_url("10.0.0.5", 8766).verify_base_url == "http://10.0.0.5:8766/verify/"
    chosen = FactorySettings(verify_base_url="https://verify.example.com/p/")
    assert chosen.with_base_url("10.0.0.5", 8766) is chosen
