"""API keys, principals, the production check, session cookies and the JSON structure scan:
the plain logic, without a database."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from conveyor.api.auth import (
    OPEN,
    Principal,
    auth_required,
    check_deployment,
    secret_key_problem,
)
from conveyor.api.limits import json_structure_problem
from conveyor.config import Settings
from conveyor.errors import (
    ApiKeyError,
    ApiKeyNotFound,
    ConfigurationError,
    PermissionDenied,
    UnknownScope,
)
from conveyor.ledger.keys import (
    SCOPES,
    ApiKey,
    hash_key,
    key_id_of,
    normalize_key_id,
    validate_scopes,
)
from conveyor.web.session import SessionSigner

KEY = "cvk_ab12cd34_" + "Z" * 40
STRONG = "k7Qv2mX9pL4sR8tW1yB6nC3dF5gH0jK2aE9uI"


def api_key(**update: Any) -> ApiKey:
    values: dict[str, Any] = {
        "id": 1,
        "key_id": "ab12cd34",
        "name": "ci",
        "secret_hash": hash_key(KEY),
        "scopes": ("jobs:read",),
        "allowed_tasks": None,
        "allowed_queues": None,
        "created_at": datetime.now(UTC),
        "last_used_at": None,
        "revoked_at": None,
        "expires_at": None,
    }
    values.update(update)
    return ApiKey(**values)


# --- keys ----------------------------------------------------------------------------------


def test_scopes_are_validated_and_put_in_order() -> None:
    assert validate_scopes(["jobs:write", "jobs:read", "jobs:write"]) == ("jobs:read", "jobs:write")
    with pytest.raises(UnknownScope, match=r"unknown scope 'jobs:delete'; known scopes: jobs:read"):
        validate_scopes(["jobs:read", "jobs:delete"])
    with pytest.raises(ApiKeyError, match="at least one scope"):
        validate_scopes([])


def test_key_shape() -> None:
    assert key_id_of(KEY) == "ab12cd34"
    assert key_id_of("cvk_ab12cd34_with_underscores_in_secret") == "ab12cd34"
    for bad in ("", "ab12cd34", "cvk_ab12cd34", "cvk_ab12cd34_", "cvk_AB12CD34_x", "cvk_short_x"):
        assert key_id_of(bad) is None, bad
    assert key_id_of("cvk_ab12cd34_" + "x" * 300) is None
    assert normalize_key_id("ab12cd34") == "ab12cd34"
    assert normalize_key_id(" cvk_ab12cd34 ") == "ab12cd34"
    assert normalize_key_id(KEY) == "ab12cd34"
    with pytest.raises(ApiKeyNotFound):
        normalize_key_id("nope")


def test_only_a_hash_is_compared() -> None:
    key = api_key()
    assert key.secret_hash == hashlib.sha256(KEY.encode()).hexdigest()
    assert key.matches(KEY)
    assert not key.matches(KEY[:-1] + "Y")
    assert not key.matches("")
    assert key.prefix == "cvk_ab12cd34"


def test_key_status() -> None:
    now = datetime.now(UTC)
    assert api_key().status(now) == "active"
    assert api_key(revoked_at=now).status(now) == "revoked"
    assert api_key(expires_at=now - timedelta(seconds=1)).status(now) == "expired"
    assert api_key(expires_at=now + timedelta(days=1)).status(now) == "active"


# --- principals ----------------------------------------------------------------------------


def test_scopes_and_admin() -> None:
    reader = Principal.of(api_key())
    assert reader.has("jobs:read") and not reader.has("jobs:write")
    with pytest.raises(
        PermissionDenied, match=r"this key lacks the scope 'dlq:admin' \(it has: jobs:read\)"
    ):
        reader.require("dlq:admin")
    admin = Principal.of(api_key(scopes=("admin",)))
    assert all(admin.has(s) for s in SCOPES)
    assert all(OPEN.has(s) for s in SCOPES) and not OPEN.restricted


def test_allowlists_name_what_is_refused() -> None:
    p = Principal.of(api_key(allowed_tasks=("demo.add",), allowed_queues=("default", "low")))
    assert p.restricted
    p.check_job("demo.add", "low")
    with pytest.raises(
        PermissionDenied, match=r"task 'demo.echo'; it is limited to tasks: demo.add"
    ):
        p.check_job("demo.echo", "default")
    with pytest.raises(
        PermissionDenied, match=r"queue 'high'; it is limited to queues: default, low"
    ):
        p.check_job("demo.add", "high")
    with pytest.raises(PermissionDenied, match=r"job j1 \(task 'demo.echo', queue 'low'\)"):
        p.check_job("demo.echo", "low", job_id="j1")
    with pytest.raises(PermissionDenied, match="give a `task` filter"):
        p.check_filter(None, "low")
    p.check_filter("demo.add", "low")
    Principal.of(api_key()).check_filter(None, None)


# --- the production check -------------------------------------------------------------------


def settings(**values: Any) -> Settings:
    """Settings from these values alone, whatever CONVEYOR_* the environment holds."""
    return Settings.model_construct(**values)


def test_auth_defaults_by_environment() -> None:
    assert not auth_required(settings(env="development"))
    assert not auth_required(settings(env="test"))
    assert auth_required(settings(env="production"))
    assert not auth_required(settings(env="production", auth="off"))
    assert auth_required(settings(env="development", auth="required"))


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (None, "is not set"),
        ("   ", "is not set"),
        ("changeme", "is a placeholder"),
        ("CHANGE-ME", "is a placeholder"),
        ("secret", "is a placeholder"),
        ("dev", "is a placeholder"),
        ("please-changeme-" + STRONG, "is a placeholder"),
        ("short-but-random-9x", "shorter than 32"),
        ("abab" * 10, "too few distinct"),
        (STRONG, None),
    ],
)
def test_secret_key_problems(secret: str | None, problem: str | None) -> None:
    found = secret_key_problem(SecretStr(secret) if secret is not None else None)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_production_refuses_to_start_open() -> None:
    check_deployment(settings(env="development"))  # open, with a warning, is fine locally
    with pytest.raises(ConfigurationError, match="CONVEYOR_AUTH=off"):
        check_deployment(settings(env="production", auth="off", secret_key=SecretStr(STRONG)))
    with pytest.raises(ConfigurationError, match="CONVEYOR_SECRET_KEY is not set"):
        check_deployment(settings(env="production"))
    with pytest.raises(ConfigurationError, match="CONVEYOR_SECRET_KEY is a placeholder"):
        check_deployment(settings(env="production", secret_key=SecretStr("changeme")))
    with pytest.raises(ConfigurationError, match="CONVEYOR_SECRET_KEY is not set"):
        check_deployment(settings(env="development", auth="required"))
    check_deployment(settings(env="production", secret_key=SecretStr(STRONG)))


def test_secret_key_stays_out_of_reprs() -> None:
    settings = Settings(env="production", secret_key=SecretStr(STRONG))
    assert STRONG not in repr(settings) and STRONG not in str(settings.model_dump())


# --- session cookies -----------------------------------------------------------------------


def test_session_round_trip_and_tampering() -> None:
    signer = SessionSigner(STRONG, max_age=60)
    value = signer.issue_key("ab12cd34")
    session = signer.read(value)
    assert session is not None and session.key_id == "ab12cd34" and session.user_id is None
    user = signer.read(signer.issue_user(42))
    assert user is not None and user.user_id == 42 and user.key_id is None
    assert user.issued_at <= time.time() < user.expires_at
    version, payload, signature = value.split(".")
    assert signer.read(f"{version}.{payload}.{signature[:-2]}AA") is None
    assert signer.read(f"{version}.{payload}x.{signature}") is None
    assert signer.read(f"v1.{payload}.{signature}") is None
    assert SessionSigner(STRONG + "x", max_age=60).read(value) is None
    for junk in (None, "", "v1", "v1..", "v1.!!!.x", "x" * 5000):
        assert signer.read(junk) is None


def test_sessions_expire() -> None:
    now = [time.time()]
    signer = SessionSigner(STRONG, max_age=60, clock=lambda: now[0])
    value = signer.issue_user(7)
    now[0] += 59
    assert signer.read(value) is not None
    now[0] += 2
    assert signer.read(value) is None


# --- JSON structure ------------------------------------------------------------------------


def problem(body: Any, *, depth: int = 64, items: int = 1000) -> str | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return json_structure_problem(raw, max_depth=depth, max_items=items)


def nested(depth: int) -> Any:
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_depth_is_counted_outside_strings() -> None:
    assert problem(nested(64)) is None
    assert "nests deeper than 64" in (problem(nested(65)) or "")
    assert problem({"a": "[[[[[[" * 50}, depth=3) is None
    assert problem({"a": '\\"[[[[[[' * 50}, depth=3) is None
    assert problem(b'{"a": "\\\\", "b": [[[[1]]]]}', depth=3) is not None
    assert problem(b"[" * 1_000_000) is not None
    assert problem(b"]" * 100 + b"[" * 10) is None  # not JSON; the parser refuses it later


def test_values_are_counted_outside_strings() -> None:
    assert problem(list(range(1000))) is None
    assert "more than 1000 values" in (problem(list(range(1001))) or "")
    assert problem(["a,b,c" * 1000]) is None


def test_hostile_strings_scan_in_linear_time() -> None:
    """Unterminated strings full of escaped quotes make a naive string regex quadratic."""
    started = time.perf_counter()
    for body in (b'"' + b'\\"' * 500_000, b'"' * 1_000_000, b'["' + b"a" * 1_000_000):
        problem(body)
    assert time.perf_counter() - started < 5  # quadratic would take hours
