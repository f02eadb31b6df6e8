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
from conveyor.packs.factory.tokens import Keyring

BATCH = uuid.UUID("0192f3a4-5b6c-7d8e-9fa0-b1c2d3e4f506")
STRONG = "Zx7-q2LmA9vR4tYp0WsK3jHnB6cE1uFd"
RING = Keyring(keys={"k1": STRONG.encode()}, current="k1")


def test_token_is_kid_dot_base64url_of_the_documented_hmac() -> None:
    token = tokens.sign(RING, BATCH, 42)
    msg = b"conveyor-factory-token-v1\x00" + BATCH.bytes + (42).to_bytes(8, "big")
    mac = hmac.new(STRONG.encode(), msg, hashlib.sha256).digest()
    assert token == "k1." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert len(token) == 3 + 43


def test_range_equals_one_by_one() -> None:
    assert tokens.sign_range(RING, BATCH, 7, 5) == [
        tokens.sign(RING, BATCH, s) for s in range(7, 12)
    ]


def test_tokens_check_against_their_own_batch_and_serial_only() -> None:
    token = tokens.sign(RING, BATCH, 1)
    assert tokens.check(RING, token, BATCH, 1) is None
    assert tokens.check(RING, token, BATCH, 2) == "signature does not match"
    assert tokens.check(RING, token, uuid.uuid4(), 1) == "signature does not match"


def test_forged_and_garbage_tokens_are_refused_with_a_reason() -> None:
    token = tokens.sign(RING, BATCH, 1)
    kid, mac = token.split(".")
    flipped = mac[:10] + ("A" if mac[10] != "A" else "B") + mac[11:]
    assert tokens.check(RING, f"{kid}.{flipped}", BATCH, 1) == "signature does not match"
    other_key = Keyring(keys={"k1": b"another key entirely, also long enough"}, current="k1")
    assert tokens.check(RING, tokens.sign(other_key, BATCH, 1), BATCH, 1) == (
        "signature does not match"
    )
    assert tokens.check(RING, "k9." + mac, BATCH, 1) == "unknown key id 'k9'"
    for garbage in [
        "",
        ".",
        "k1",
        "k1.",
        mac,
        "k1." + mac[:-1],
        "k1." + mac + "A",
        "k 1." + mac,
        "k1." + "!" * 43,
        "é." + mac,
        "k1." + "é" * 43,
    ]:
        assert tokens.check(RING, garbage, BATCH, 1) == "malformed token", garbage


def test_a_mac_has_one_encoding_only() -> None:
    # The 43rd character carries 4 bits of the MAC and 2 unused bits; a token with those
    # bits set decodes to the same MAC but is not the token that was issued.
    token = tokens.sign(RING, BATCH, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    for low in (1, 2, 3):
        variant = token[:-1] + alphabet[(last & ~3) | low]
        assert tokens.parse(variant) is None


def test_rotation_new_key_signs_old_keys_still_verify() -> None:
    old = Keyring(keys={"2025": STRONG.encode()}, current="2025")
    old_token = tokens.sign(old, BATCH, 5)
    rotated = Keyring(
        keys={"2025": STRONG.encode(), "2026": b"N3w-k3y-w1th-3n0ugh-r4nd0mn3ss-xx"}, current="2026"
    )
    new_token = tokens.sign(rotated, BATCH, 5)
    assert new_token.startswith("2026.") and new_token != old_token
    assert tokens.check(rotated, old_token, BATCH, 5) is None
    assert tokens.check(rotated, new_token, BATCH, 5) is None
    retired = Keyring(keys={"2026": b"N3w-k3y-w1th-3n0ugh-r4nd0mn3ss-xx"}, current="2026")
    assert tokens.check(retired, old_token, BATCH, 5) == "unknown key id '2025'"


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
    assert tokens.check(RING, tokens.sign(RING, BATCH, 1), BATCH, -1) == "serial out of range"
