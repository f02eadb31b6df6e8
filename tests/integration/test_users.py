"""Dashboard users in the real ledger: names that ignore case, scrypt hashes, roles mapped onto
the API's scopes, disable/enable and password changes."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from conveyor.api.auth import Principal
from conveyor.errors import UnknownRole, UserError, UserExists, UserNotFound, WeakPassword
from conveyor.ledger import users
from conveyor.ledger.keys import SCOPES

PASSWORD = "correct horse battery"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_password_hashes_are_salted_scrypt_with_their_parameters() -> None:
    a, b = users.hash_password(PASSWORD), users.hash_password(PASSWORD)
    assert a != b  # a salt per hash
    assert a.startswith(f"scrypt$n={users.SCRYPT_N},r={users.SCRYPT_R},p={users.SCRYPT_P}$")
    assert users.verify_password(PASSWORD, a) and users.verify_password(PASSWORD, b)
    assert not users.verify_password(PASSWORD + "!", a)
    # Parameters travel with the hash: a cheaper one made earlier still verifies.
    cheap = users.hash_password(PASSWORD, n=2**10)
    assert users.verify_password(PASSWORD, cheap)
    for broken in ("", "scrypt$x", "md5$n=1,r=1,p=1$AA$AA", a.replace("scrypt", "bcrypt")):
        assert not users.verify_password(PASSWORD, broken)


def test_roles_map_onto_the_api_scopes() -> None:
    assert set(users.ROLES) == set(users.ROLE_SCOPES)
    assert all(set(scopes) <= set(SCOPES) for scopes in users.ROLE_SCOPES.values())

    def principal(role: users.Role) -> Principal:
        return Principal.of_user("u", role, users.ROLE_SCOPES[role])

    viewer, operator, admin = principal("viewer"), principal("operator"), principal("admin")
    assert viewer.has("jobs:read") and not viewer.has("jobs:write")
    assert not viewer.has("dlq:admin") and not viewer.has("admin")
    assert operator.has("jobs:write") and operator.has("dlq:admin") and not operator.has("admin")
    assert all(admin.has(scope) for scope in SCOPES)
    with pytest.raises(Exception, match=r"this user \(role viewer\) lacks the scope 'jobs:write'"):
        viewer.require("jobs:write")
    with pytest.raises(UnknownRole, match="known roles: viewer, operator, admin"):
        users.validate_role("root")


def test_create_and_find_users_ignoring_case(ledger: Any) -> None:
    name = unique("Ops.Anna")
    with ledger.begin() as conn:
        user = users.create_user(conn, f"  {name} ", PASSWORD, "operator")
    assert user.username == name.lower() and user.role == "operator" and user.active
    assert user.scopes == ("jobs:read", "jobs:write", "dlq:admin")
    assert PASSWORD not in user.password_hash
    assert user.last_login_at is None and user.created_at is not None
    with ledger.connect() as conn:
        assert users.get_user(conn, name.upper()) == user
        assert users.get_user_by_id(conn, user.id) == user
        assert users.get_user(conn, "no such user!") is None  # not even a valid name
        assert name.lower() in [u.username for u in users.list_users(conn)]
    with ledger.begin() as conn, pytest.raises(UserExists, match="already exists"):
        users.create_user(conn, name.upper(), PASSWORD, "viewer")


@pytest.mark.parametrize(
    ("name", "password", "role", "error"),
    [
        ("ok-name", "short", "viewer", WeakPassword),
        ("ok-name", "x" * 2000, "viewer", WeakPassword),
        ("ok-name", PASSWORD, "root", UnknownRole),
        ("", PASSWORD, "viewer", UserError),
        ("has space", PASSWORD, "viewer", UserError),
        ("x" * 65, PASSWORD, "viewer", UserError),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(
    ledger: Any, name: str, password: str, role: str, error: type[Exception]
) -> None:
    with ledger.begin() as conn:
        before = len(users.list_users(conn))
        with pytest.raises(error):
            users.create_user(conn, name, password, role)
        assert len(users.list_users(conn)) == before


def test_disable_enable_set_password_and_role(ledger: Any) -> None:
    name = unique("bob")
    with ledger.begin() as conn:
        created = users.create_user(conn, name, PASSWORD, "viewer")
    with ledger.begin() as conn:
        disabled = users.disable_user(conn, name)
        again = users.disable_user(conn, name)
    assert disabled.disabled_at is not None and again.disabled_at == disabled.disabled_at
    with ledger.begin() as conn:
        assert users.enable_user(conn, name).active
        changed = users.set_password(conn, name, "another long password")
        promoted = users.set_role(conn, name, "admin")
        users.mark_login(conn, created.id)
    assert changed.password_changed_at > created.password_changed_at
    assert users.verify_password("another long password", changed.password_hash)
    assert promoted.role == "admin" and promoted.scopes == ("admin",)
    with ledger.connect() as conn:
        assert (users.get_user(conn, name) or created).last_login_at is not None
    with ledger.begin() as conn:
        for change in (users.disable_user, users.enable_user):
            with pytest.raises(UserNotFound, match="conveyor users list"):
                change(conn, unique("ghost"))
        with pytest.raises(WeakPassword, match="at least 12"):
            users.set_password(conn, name, "short")
