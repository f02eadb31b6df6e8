"""Dashboard users: roles, password hashing, and how the ledger stores them.

A user logs in to the dashboard with a username and password; API keys stay the way programs
reach the API. Each user has one role, and a role is a fixed set of the API's scopes
(:data:`ROLE_SCOPES`, the one place the mapping lives), so the dashboard checks users and keys
with the same rules.

Passwords are hashed with scrypt (``hashlib.scrypt``, no extra dependency): a memory-hard KDF
with a random 16-byte salt per user. The stored string names the algorithm and its parameters
(``scrypt$n=32768,r=8,p=1$<salt>$<hash>``), so the cost can be raised later and old hashes still
verify. Usernames are case-folded before they are stored or looked up, which makes them unique
regardless of case with a plain unique constraint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, RowMapping, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.errors import UnknownRole, UserError, UserExists, UserNotFound, WeakPassword
from conveyor.ledger.keys import Scope
from conveyor.ledger.tables import users

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
ROLE_SCOPES: Mapping[Role, tuple[Scope, ...]] = {
    # Looks at jobs, dead letters, workers, queues and tasks; changes nothing.
    "viewer": ("jobs:read",),
    # Runs the jobs day to day: submit, cancel, retry, and replay or delete dead letters.
    "operator": ("jobs:read", "jobs:write", "dlq:admin"),
    # Everything, including worker shutdown and queue purge.
    "admin": ("admin",),
}
"""The scopes each role holds. ``admin`` implies every scope (see ``api.auth.Principal``)."""

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # scrypt reads the whole password; a megabyte one would be a cheap DoS
MAX_USERNAME = 64
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]*")

# scrypt at n=2**15, r=8 uses 32 MiB and about 0.1 s per check on this machine's cores: slow
# for someone guessing offline, still fine for a login.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32


def validate_role(role: str) -> Role:
    """``role`` if Conveyor knows it; :class:`UnknownRole` otherwise."""
    for known in ROLES:
        if role == known:
            return known
    raise UnknownRole(role, ROLES)


def normalize_username(name: str) -> str:
    """The stored form of a username: trimmed and case-folded; refuses unusable names."""
    folded = name.strip().casefold()
    if not 0 < len(folded) <= MAX_USERNAME or not _USERNAME.fullmatch(folded):
        raise UserError(
            f"a username must be 1..{MAX_USERNAME} characters of letters, digits and . _ @ -, "
            f"starting with a letter or digit (got {name!r})"
        )
    return folded


def check_password(password: str) -> None:
    """Refuse passwords too short to resist guessing, or too long to hash cheaply."""
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(
            f"the password is {len(password)} characters; use at least {MIN_PASSWORD} "
            "(a few random words make a good one)"
        )
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"the password is longer than {MAX_PASSWORD} characters")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # maxmem must cover 128 * n * r bytes (plus slack), or OpenSSL refuses the parameters.
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r,
        dklen=length,
    )


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The string to store for ``password``: algorithm, parameters, salt and hash."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (from :func:`hash_password`), compared in
    constant time. A malformed stored value never matches."""
    try:
        algorithm, params, salt, digest = stored.split("$")
        values = dict(part.split("=", 1) for part in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        expected = _unb64(digest)
        if algorithm != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        actual = _scrypt(password, _unb64(salt), n, r, p, len(expected))
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(actual, expected)


# Any well-formed hash with the current parameters costs a real check; no password matches
# this one (its digest is all zeros), and it needs no work at import.
_DECOY_HASH = (
    f"scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}"
    f"${_b64(bytes(SALT_BYTES))}${_b64(bytes(HASH_BYTES))}"
)


def burn_password_check(password: str) -> None:
    """Spend the time a real password check takes, for a login that will be refused anyway:
    an unknown or disabled username then answers as slowly as a wrong password, so timing
    does not tell which names exist."""
    verify_password(password, _DECOY_HASH)


@dataclass(frozen=True)
class User:
    """One stored user (its password hash stays in here, never shown)."""

    id: int
    username: str
    role: Role
    password_hash: str
    created_at: datetime
    password_changed_at: datetime
    last_login_at: datetime | None
    disabled_at: datetime | None

    @property
    def scopes(self) -> tuple[Scope, ...]:
        """The API scopes this user's role holds."""
        return ROLE_SCOPES[self.role]

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @classmethod
    def from_row(cls, row: RowMapping) -> User:
        return cls(
            id=row["id"],
            username=row["username"],
            role=validate_role(row["role"]),
            password_hash=row["password_hash"],
            created_at=row["created_at"],
            password_changed_at=row["password_changed_at"],
            last_login_at=row["last_login_at"],
            disabled_at=row["disabled_at"],
        )


def create_user(conn: Connection, username: str, password: str, role: str) -> User:
    """Store a new user; refuses taken names, unknown roles and weak passwords."""
    name = normalize_username(username)
    checked_role = validate_role(role)
    check_password(password)
    try:
        with conn.begin_nested():
            row = (
                conn.execute(
                    insert(users)
                    .values(username=name, role=checked_role, password_hash=hash_password(password))
                    .returning(*users.c)
                )
                .mappings()
                .one()
            )
    except IntegrityError:
        raise UserExists(name) from None
    return User.from_row(row)


def get_user(conn: Connection, username: str) -> User | None:
    """The user of that name (any case), or None."""
    try:
        name = normalize_username(username)
    except UserError:
        return None
    row = conn.execute(select(users).where(users.c.username == name)).mappings().first()
    return User.from_row(row) if row is not None else None


def get_user_by_id(conn: Connection, user_id: int) -> User | None:
    """The user with that id (what a session cookie names), or None."""
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    return User.from_row(row) if row is not None else None


def list_users(conn: Connection) -> list[User]:
    """Every user, by name."""
    return [
        User.from_row(r) for r in conn.execute(select(users).order_by(users.c.username)).mappings()
    ]


def _change(conn: Connection, username: str, **values: object) -> User:
    name = normalize_username(username)
    row = (
        conn.execute(
            update(users).where(users.c.username == name).values(**values).returning(*users.c)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise UserNotFound(name)
    return User.from_row(row)


def disable_user(conn: Connection, username: str) -> User:
    """Disable a user: no new logins, and their sessions end (a second disable keeps the
    first time)."""
    return _change(conn, username, disabled_at=func.coalesce(users.c.disabled_at, func.now()))


def enable_user(conn: Connection, username: str) -> User:
    """Let a disabled user log in again."""
    return _change(conn, username, disabled_at=None)


def set_password(conn: Connection, username: str, password: str) -> User:
    """Replace a user's password; sessions started before the change end."""
    check_password(password)
    return _change(
        conn, username, password_hash=hash_password(password), password_changed_at=func.now()
    )


def set_role(conn: Connection, username: str, role: str) -> User:
    """Give a user another role; it applies to their sessions within the cache time."""
    return _change(conn, username, role=validate_role(role))


def mark_login(conn: Connection, user_id: int) -> None:
    """Record a successful login."""
    conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=func.now()))
