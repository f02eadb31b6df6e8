"""Conveyor's one settings object.

Built only at entry points (`conveyor` CLI, `create_app`, the worker factory) and passed down.
Every field reads from a ``CONVEYOR_``-prefixed environment variable.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PRIORITY_QUEUES: tuple[str, ...] = ("critical", "high", "default", "low")
MAX_PRIORITY = 9  # message priorities run 0 (lowest) .. 9 (most urgent) on every broker
MIN_SECRET_LENGTH = 32
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "secret", "secretkey", "dev", "development", "test", "password", "conveyor"}
    | {"default", "insecure", "example", "xxx", "todo", "none", "null", "key"}
)
PLACEHOLDER_PARTS = ("changeme", "changethis", "replaceme", "placeholder", "yoursecret", "example")


def secret_key_problem(secret: SecretStr | None) -> str | None:
    """Why a signing secret (``CONVEYOR_SECRET_KEY``, a pack's keys) is unfit for production,
    or None if it is fit."""
    if secret is None or not secret.get_secret_value().strip():
        return "is not set"
    value = secret.get_secret_value()
    folded = "".join(c for c in value.lower() if c.isalnum())
    if folded in PLACEHOLDER_SECRETS or any(part in folded for part in PLACEHOLDER_PARTS):
        return "is a placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    if len(set(value)) < 10:
        return "has too few distinct characters to be random"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"

    # Connections. Unset means: start the embedded server under `home`.
    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    home: Path = Path(".conveyor")

    # Which Celery app the worker, beat and API serve ("module:attribute").
    app: str = "conveyor.demo:app"
    # Workload packs to switch on (see conveyor/packs/__init__.py), as a JSON list or
    # comma-separated names: CONVEYOR_PACKS=catalog. Unset means every shipped pack when the
    # app is Conveyor's own (demo, testing) and none for an app of yours; "" switches all off.
    packs: Annotated[list[str] | None, NoDecode] = None
    # Where packs keep files (uploads, reports). The API and the workers must share it: one
    # machine in the embedded setup, a shared volume in production. Unset: `home`/data.
    data_dir: Path | None = None
    # The largest file an upload endpoint accepts (bytes); uploads stream to disk, never memory.
    upload_max_bytes: int = Field(default=2 * 1024**3, ge=1024)

    @field_validator("packs", "egress_allow", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """A list setting from the environment: a JSON list, or comma-separated items."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [name.strip() for name in text.split(",") if name.strip()]
        return value

    @property
    def files_dir(self) -> Path:
        """The directory packs keep files in (``data_dir``, else ``home``/data)."""
        return self.data_dir or Path(self.home) / "data"

    # Production defaults, for apps made with create_celery() (docs/runtime.md says why each
    # one is what it is); install(app) leaves an existing app's own settings as they are.
    prefetch_multiplier: int = Field(default=1, ge=1)
    soft_time_limit: float = Field(default=300.0, gt=0)
    time_limit: float = Field(default=330.0, gt=0)
    max_tasks_per_child: int = Field(default=1000, ge=1)
    max_memory_per_child_kb: int = Field(default=512_000, ge=1024)
    visibility_timeout: int = Field(default=3600, ge=10)
    # Celery task events cost the worker's main process more than fetching and acking do;
    # the ledger and its SSE streams replace them. Flower switches them on by itself
    # (`enable_events`) while it watches; set this to keep them always on.
    task_events: bool = False
    # Results live in the ledger (`GET /jobs/{id}/result`). Storing them in the Redis result
    # backend as well is what `AsyncResult.get()` needs; turn it on for apps that call it (or
    # set `ignore_result=False` on those tasks). Chords work either way.
    store_results: bool = False
    # How long a finished job's marker absorbs duplicate deliveries of its message; by default
    # a little longer than the visibility timeout, after which Redis redelivers unacked messages.
    dedupe_ttl_seconds: int | None = Field(default=None, ge=1)

    # Reconciler.
    reconcile_interval: float = Field(default=5.0, gt=0)
    cancel_grace: float = Field(default=30.0, ge=0)
    stale_queued_after: float = Field(default=600.0, gt=0)
    # How often cancel flags are re-seeded into Redis from the ledger (Redis may lose them).
    cancel_reseed_interval: float = Field(default=300.0, gt=0)
    worker_concurrency: int | None = None
    routes: dict[str, str] = Field(default_factory=dict)
    # Global limits by task name, for tasks whose code you do not decorate yourself:
    # {"mail.send": {"rate": "100/m", "key": "tenant", "concurrency": 5}}
    limits: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Queues in priority order, highest first; the third is the default unless `default_queue`.
    # An installed app (fidelity mode) uses its own queues unless this is set.
    queues: list[str] = Field(default_factory=lambda: list(PRIORITY_QUEUES), min_length=1)
    default_queue: str | None = None

    @property
    def dedupe_ttl(self) -> int:
        return self.dedupe_ttl_seconds or self.visibility_timeout + 600

    @property
    def task_default_queue(self) -> str:
        if self.default_queue:
            return self.default_queue
        return self.queues[2] if len(self.queues) > 2 else self.queues[-1]

    # Ledger.
    result_inline_max_bytes: int = Field(default=64 * 1024, ge=1024)
    payload_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    recorder_batch: int = Field(default=1000, ge=1)
    recorder_block_ms: int = Field(default=50, ge=1)
    recorder_linger_ms: int = Field(default=50, ge=0)
    outbox_poll_interval: float = Field(default=0.25, gt=0)
    outbox_publish_grace: float = Field(default=5.0, ge=0)
    # How long finished jobs stay in the ledger (0 keeps them forever): succeeded and
    # cancelled ones for `retention_days`, failed and dead ones (the dead-letter queue) for
    # `failure_retention_days`. The reconciler deletes older ones in batches once an hour.
    retention_days: float = Field(default=30.0, ge=0)
    failure_retention_days: float = Field(default=90.0, ge=0)

    # Access control. `auth` unset means "required" when `env` is production, "off" in
    # development and test. Production refuses to start with auth off or without a strong
    # `secret_key` (it signs dashboard sessions).
    auth: Literal["required", "off"] | None = None
    secret_key: SecretStr | None = None
    # API keys are cached per process this long: a revoked key stops working within it.
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60)
    # Dashboard password logins (docs/security.md, "Login throttling"): per username and client
    # address, `login_free_failures` failures are free, then each attempt waits a delay that
    # doubles from `login_backoff_seconds` up to `login_backoff_max_seconds`. Past
    # `login_user_ceiling` failures of one username within `login_window_seconds` (from any
    # addresses), addresses it never logged in from share one password check per
    # `login_ceiling_interval_seconds`. Nothing locks a user out; `conveyor users unlock`.
    login_free_failures: int = Field(default=5, ge=1)
    login_backoff_seconds: float = Field(default=1.0, gt=0)
    login_backoff_max_seconds: float = Field(default=900.0, gt=0)
    login_user_ceiling: int = Field(default=100, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    login_ceiling_interval_seconds: float = Field(default=2.0, gt=0)
    # Request bodies: nesting depth and number of values a JSON body may have (the byte cap is
    # `payload_max_bytes`); both refused with 413 before the body is parsed.
    json_max_depth: int = Field(default=64, ge=2)
    json_max_items: int = Field(default=100_000, ge=10)

    # Logs: "text" for a terminal, "json" for one object per line (docs/logging.md).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # `JSON` and `info` mean what they say; logging and Celery want one spelling each.
    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    # Outgoing HTTP: webhooks, anchors, providers (docs/egress.md). Private, loopback,
    # link-local, metadata and other non-public addresses are refused after DNS resolution
    # unless listed here: networks, addresses, host:port or host names, comma-separated or a
    # JSON list, e.g. CONVEYOR_EGRESS_ALLOW=10.20.0.0/16,hooks.internal:8443
    egress_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    egress_timeout: float = Field(default=10.0, gt=0)
    # The most of an answer's body read (anchor receipts, RPC results); webhooks read none.
    egress_max_response_bytes: int = Field(default=1024 * 1024, ge=0)

    @field_validator("egress_allow")
    @classmethod
    def _readable_allow(cls, value: list[str]) -> list[str]:
        from conveyor.egress import parse_allowlist

        parse_allowlist(value)  # a ValueError names the entry that cannot be read
        return value

    # Web.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # /docs, /redoc and /openapi.json: unset means on, except with `env` production.
    api_docs: bool | None = None
    # Proxies (IP addresses or CIDR networks, comma-separated or a JSON list) whose
    # X-Forwarded-Proto and X-Forwarded-For are believed; from any other peer they are ignored.
    # Empty (the default): the API is reached directly and no forwarded header counts.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Strict-Transport-Security max-age sent on every https response (0: no header).
    hsts_max_age: int = Field(default=31_536_000, ge=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8, ::1)"
                ) from None
        return value

    progress_min_interval: float = Field(default=0.1, ge=0)
    # A worker silent for three intervals is gone; with the reconciler's interval on top, its
    # running jobs are back in line within 3 x 3 + 5 = 14 s of its death (the promise is 15 s).
    heartbeat_interval: float = Field(default=3.0, gt=0)
