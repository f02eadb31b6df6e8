"""The factory pack's settings (``CONVEYOR_FACTORY_*``), built at entry points like Conveyor's.

Kept beside the pack rather than in :class:`conveyor.config.Settings` so a deployment without
the pack carries none of its fields; production safety (:meth:`FactorySettings.check`) follows
the same rule as ``CONVEYOR_SECRET_KEY``: a placeholder or short secret is refused.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.config import secret_key_problem
from conveyor.errors import ConfigurationError

DEFAULT_KID = "dev"
DEFAULT_SECRET = "conveyor-factory-development-key-change-me"
"""Works out of the box in development and test; refused in production."""
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,16}")
DEFAULT_VERIFY_BASE_URL = "http://127.0.0.1:8000/verify/"
"""For code that builds batches without an API at hand (benchmarks, tests)."""


class FactorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_FACTORY_", extra="ignore")

    # Tokens. `token_keys` is the keyring, JSON in the environment: {"2026a": "…", "2025b": "…"}.
    # New tokens are signed with `token_kid`; every key still in the ring verifies the tokens
    # it signed, so rotating means adding a key and pointing `token_kid` at it.
    token_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {DEFAULT_KID: SecretStr(DEFAULT_SECRET)}
    )
    token_kid: str = DEFAULT_KID
    # A product's verification URL is this base followed by its token: by default the public
    # dashboard page a phone opens after scanning a label (its JSON twin is
    # /api/v1/factory/verify/<token>). Set it to the address customers reach; unset, it is
    # this API's own address (CONVEYOR_API_HOST and CONVEYOR_API_PORT), which suits `make run`.
    verify_base_url: str | None = None

    def with_base_url(self, api_host: str, api_port: int) -> FactorySettings:
        """These settings with ``verify_base_url`` filled in from the API's address if unset."""
        if self.verify_base_url:
            return self
        return self.model_copy(update={"verify_base_url": f"http://{api_host}:{api_port}/verify/"})

    # Batches: products written per COPY transaction (a power of two, so a chunk is a subtree
    # of the batch's Merkle tree), and processes generating them (None: two per core, since
    # each waits on PostgreSQL about half the time).
    chunk_size: int = Field(default=32_768, ge=256, le=1 << 22)
    workers: int | None = Field(default=None, ge=1)

    # Anchoring: where a batch's Merkle root is committed.
    anchor: Literal["local", "ethereum", "http"] = "local"
    eth_rpc_url: str | None = None
    # Signs the anchoring transaction; unset means the node's first unlocked account (a dev
    # chain or eth-tester).
    eth_private_key: SecretStr | None = None
    eth_receipt_timeout: float = Field(default=120.0, gt=0)
    anchor_url: str | None = None
    anchor_token: SecretStr | None = None
    anchor_timeout: float = Field(default=10.0, gt=0)

    # Maintenance (beat): how often to look for stuck batches, how long an unfinished batch
    # with no live job may sit before it is resubmitted, and how long failed batches are kept.
    maintenance_interval_seconds: float = Field(default=300.0, gt=0)
    stuck_minutes: float = Field(default=15.0, gt=0)
    failed_retention_days: float = Field(default=30.0, gt=0)

    def check(self, env: str) -> None:
        """Refuse a keyring that cannot work, and in production any key that is a placeholder,
        short or not random — the default one included."""
        for kid in self.token_keys:
            if not KID_PATTERN.fullmatch(kid):
                raise ConfigurationError(
                    f"CONVEYOR_FACTORY_TOKEN_KEYS: key id {kid!r} must be 1-16 letters, digits,"
                    " '-' or '_' (it is part of every token)"
                )
        if self.token_kid not in self.token_keys:
            raise ConfigurationError(
                f"CONVEYOR_FACTORY_TOKEN_KID={self.token_kid!r} is not in"
                f" CONVEYOR_FACTORY_TOKEN_KEYS (key ids: {', '.join(sorted(self.token_keys))})"
            )
        if env != "production":
            return
        for kid, secret in self.token_keys.items():
            problem = secret_key_problem(secret)
            if problem:
                raise ConfigurationError(
                    f"CONVEYOR_FACTORY_TOKEN_KEYS[{kid!r}] {problem}; in production every"
                    ' token key must be random, e.g. python -c "import secrets;'
                    ' print(secrets.token_urlsafe(32))"'
                )
