"""API keys: their shape, their scopes, and how the ledger stores them.

A key reads ``cvk_<key id>_<secret>``. The key id (8 characters) is stored in the clear and
listed, so operators can tell keys apart and revoke one by it; the secret (40 characters,
about 238 bits from the OS's CSPRNG) is shown once at creation and only its SHA-256 is kept. A
secret that random cannot be guessed, so a fast hash is enough; a slow KDF protects low-entropy
passwords, which these are not. Hashes are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, RowMapping, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.errors import ApiKeyError, ApiKeyNotFound, UnknownScope
from conveyor.ledger.tables import api_keys

Scope = Literal["jobs:read", "jobs:write", "dlq:admin", "admin"]
SCOPES: tuple[Scope, ...] = ("jobs:read", "jobs:write", "dlq:admin", "admin")
"""``jobs:read`` lists and follows jobs, tasks, workers, queues; ``jobs:write`` submits,
cancels and retries; ``dlq:admin`` lists, replays and purges dead jobs; ``admin`` implies all."""

KEY_PREFIX = "cvk_"
KEY_ID_LENGTH = 8
SECRET_LENGTH = 40
MAX_NAME = 255
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_KEY_ID_CHARS = frozenset(_KEY_ID_ALPHABET)


def validate_scopes(scopes: Iterable[str]) -> tuple[Scope, ...]:
    """The scopes in canonical order, without duplicates; refuses unknown names and none."""
    given = set()
    for scope in scopes:
        if scope not in SCOPES:
            raise UnknownScope(scope, SCOPES)
        given.add(scope)
    if not given:
        raise ApiKeyError(f"a key needs at least one scope; one or more of: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def hash_key(key: str) -> str:
    """What the ledger stores for a key: the SHA-256 of the whole key, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The key id of something shaped like a key (``cvk_<id>_<secret>``), else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 256:
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or not is_key_id(key_id):
        return None
    return key_id


def is_key_id(text: str) -> bool:
    return len(text) == KEY_ID_LENGTH and set(text) <= _KEY_ID_CHARS


def normalize_key_id(text: str) -> str:
    """Accept ``abcd1234``, ``cvk_abcd1234`` or a whole key wherever a key id is asked for."""
    text = text.strip()
    from_key = key_id_of(text)
    if from_key is not None:
        return from_key
    if text.startswith(KEY_PREFIX):
        text = text[len(KEY_PREFIX) :]
    if not is_key_id(text):
        raise ApiKeyNotFound(text)
    return text


@dataclass(frozen=True)
class ApiKey:
    """One stored key (never its secret)."""

    id: int
    key_id: str
    name: str
    secret_hash: str
    scopes: tuple[str, ...]
    allowed_tasks: tuple[str, ...] | None
    allowed_queues: tuple[str, ...] | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None

    @property
    def prefix(self) -> str:
        """The visible part of the key, e.g. ``cvk_k3x9q2ab``."""
        return f"{KEY_PREFIX}{self.key_id}"

    def matches(self, key: str) -> bool:
        """Whether ``key`` is this key's secret, compared in constant time."""
        return hmac.compare_digest(self.secret_hash, hash_key(key))

    def status(self, now: datetime) -> Literal["active", "revoked", "expired"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    @classmethod
    def from_row(cls, row: RowMapping) -> ApiKey:
        def opt(values: Sequence[str] | None) -> tuple[str, ...] | None:
            return None if values is None else tuple(values)

        return cls(
            id=row["id"],
            key_id=row["key_id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            scopes=tuple(row["scopes"]),
            allowed_tasks=opt(row["allowed_tasks"]),
            allowed_queues=opt(row["allowed_queues"]),
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
            expires_at=row["expires_at"],
        )


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its full secret: the only time the secret exists outside its holder."""

    key: ApiKey
    secret: str


def _allowlist(values: Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    return out or None


def create_key(
    conn: Connection,
    name: str,
    scopes: Iterable[str],
    *,
    allowed_tasks: Iterable[str] | None = None,
    allowed_queues: Iterable[str] | None = None,
    expires_at: datetime | None = None,
) -> CreatedKey:
    """Store a new key and return it with its secret (shown once, never stored)."""
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME:
        raise ApiKeyError(f"a key's name must be 1..{MAX_NAME} characters")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ApiKeyError("expires_at must be timezone-aware")
    values = {
        "name": name,
        "scopes": list(validate_scopes(scopes)),
        "allowed_tasks": _allowlist(allowed_tasks),
        "allowed_queues": _allowlist(allowed_queues),
        "expires_at": expires_at,
    }
    for _ in range(5):  # a key id collision (36**8 ids) is unlikely; retry if it happens
        key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
        full = f"{KEY_PREFIX}{key_id}_{secret}"
        try:
            with conn.begin_nested():
                row = (
                    conn.execute(
                        insert(api_keys)
                        .values(key_id=key_id, secret_hash=hash_key(full), **values)
                        .returning(*api_keys.c)
                    )
                    .mappings()
                    .one()
                )
        except IntegrityError:
            continue
        return CreatedKey(ApiKey.from_row(row), full)
    raise ApiKeyError("could not find a free key id; try again")


def get_key(conn: Connection, key_id: str) -> ApiKey | None:
    row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
    return ApiKey.from_row(row) if row is not None else None


def list_keys(conn: Connection, *, include_revoked: bool = True) -> list[ApiKey]:
    """Keys, oldest first."""
    query = select(api_keys).order_by(api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return [ApiKey.from_row(r) for r in conn.execute(query).mappings()]


def revoke_key(conn: Connection, key_id: str) -> ApiKey:
    """Revoke a key (a second revoke keeps the first time); unknown ids raise."""
    row = (
        conn.execute(
            update(api_keys)
            .where(api_keys.c.key_id == key_id)
            .values(revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()))
            .returning(*api_keys.c)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise ApiKeyNotFound(key_id)
    return ApiKey.from_row(row)


def mark_used(conn: Connection, key_id: str) -> None:
    """Record that the key was just used (callers throttle this; see ``api.auth``)."""
    conn.execute(
        update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=func.now())
    )
