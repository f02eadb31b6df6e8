"""Per-process runtime state: settings and the Redis client for job events.

Created lazily on first use so importing an app module neither reads the environment nor
connects anywhere; redis-py resets its pool after fork, so prefork children are safe.
"""

from __future__ import annotations

import contextvars
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from conveyor.config import MAX_PRIORITY, Settings
from conveyor.core.ids import ledger_id
from conveyor.core.states import TERMINAL_STATES
from conveyor.errors import ConfigurationError
from conveyor.ledger import events as ev

# Set while Conveyor itself publishes a job whose ledger row it already wrote (API, outbox).
publishing_recorded_job: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "conveyor_publishing_recorded_job", default=False
)

STACK_FILE = "stack.json"
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


def discover(settings: Settings) -> Settings:
    """Fill unset URLs from a running `conveyor up` stack under ``settings.home``, if any."""
    if settings.database_url and settings.redis_url:
        return settings
    path = Path(settings.home) / STACK_FILE
    try:
        stack = json.loads(path.read_text())
    except (OSError, ValueError):
        return settings
    update = {
        key: stack[key]
        for key in ("database_url", "redis_url", "broker_url")
        if getattr(settings, key) is None and stack.get(key)
    }
    return settings.model_copy(update=update)


class Runtime:
    """What an installed app needs at run time; one per app per process."""

    def __init__(self, app: Celery, settings: Settings | None, *, production: bool = False) -> None:
        self.app = app
        # production: built by create_celery() with Conveyor's defaults; otherwise the app
        # keeps its own settings (fidelity mode, `install(app)`).
        self.production = production
        # The settings Conveyor added under the app's own, once the app is configured.
        self.layer: dict[str, Any] = {}
        self._settings = settings
        self._redis_broker: bool | None = None
        self._redis: redis.Redis | None = None
        self._lock = threading.Lock()
        self._scripts: dict[str, Any] = {}

    @property
    def redis_broker(self) -> bool:
        """Kombu's Redis transport serves priority 0 first, RabbitMQ serves 9 first. Conveyor
        means 9 = most urgent everywhere and flips the number on its way to a Redis broker."""
        if self._redis_broker is None:
            broker = self.app.conf.broker_url or ""
            self._redis_broker = isinstance(broker, str) and broker.startswith(
                ("redis://", "rediss://", "unix://")
            )
        return self._redis_broker

    @property
    def queues(self) -> list[str]:
        """The queues Conveyor offers (submit, worker, filters), highest priority first:
        CONVEYOR_QUEUES in production mode or when set; else the app's own queues."""
        if self.production or "queues" in self.settings.model_fields_set:
            return list(self.settings.queues)
        app_queues = self.app.amqp.queues
        default = self.app.conf.task_default_queue
        return list(dict.fromkeys([*([default] if default in app_queues else []), *app_queues]))

    def transport_priority(self, priority: int | None) -> int | None:
        """Conveyor priority (0 lowest .. 9 highest, None = 0) -> what the broker expects."""
        if not self.redis_broker:
            return priority
        return MAX_PRIORITY - (priority or 0)

    def configure(self, settings: Settings) -> None:
        """Replace the settings (an entry point resolved them after the app was imported)."""
        self._settings = settings
        self._redis = None
        self._redis_broker = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = discover(Settings())
        return self._settings

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    url = self.settings.redis_url
                    if not url:
                        raise ConfigurationError(
                            "CONVEYOR_REDIS_URL is not set and no `conveyor up` stack is running "
                            f"under {self.settings.home}; set it or start `conveyor up`"
                        )
                    client = redis.Redis.from_url(
                        url,
                        socket_timeout=10,
                        socket_connect_timeout=5,
                        health_check_interval=30,
                    )
                    self._scripts = {
                        name: client.register_script(source)
                        for name, source in (
                            ("start", ev.START),
                            ("record", ev.RECORD),
                            ("progress", ev.PROGRESS_UNLESS_CANCELLED),
                        )
                    }
                    self._redis = client
        return self._redis

    def start(
        self,
        event: dict[str, Any],
        cap: int | None,
        limits: LimitArgs | None = None,
        *,
        nonce: str = "",
        resend: bool = False,
    ) -> tuple[int, int]:
        """Count this delivery as an attempt and record `running` unless the job is cancelled,
        already done, over ``cap`` attempts or held back by its limits. Returns (one of
        events.STARTED/CANCELLED/DUPLICATE/OVER_CAP/RATE_WAIT/CONCURRENCY_FULL, the attempt
        number, or for RATE_WAIT the milliseconds to wait).

        ``nonce`` names the publish this delivery came from ("" if unknown) and ``resend`` says
        it is a copy of a message already sent: of a finished job, a delivery of a publish
        that already started, or a re-send, is a duplicate; a new publish runs again."""
        client = self.redis
        event = ev.keyed_by_ledger_id(event)
        job_id = event["id"]
        doc = ev.encode(event)
        outcome, attempt = self._scripts["start"](
            keys=[
                ev.STREAM,
                ev.CANCEL_KEY + job_id,
                ev.JOB_CHANNEL + job_id,
                ev.ATTEMPTS_KEY + job_id,
                ev.DONE_KEY + job_id,
                ev.RUNS_KEY + job_id,
            ],
            args=[
                doc[:-1],
                cap or 0,
                max(self.settings.visibility_timeout * 2, 86_400),
                *(limits or NO_LIMITS).as_args(),
                job_id,
                nonce,
                "1" if resend else "0",
            ],
            client=client,
        )
        return int(outcome), int(attempt)

    def record(
        self,
        event: dict[str, Any],
        concurrency_key: str = "",
        *,
        count: str | None = None,
        runtime: float | None = None,
    ) -> None:
        """Append one event to the ledger stream and notify live subscribers; an attempt's end
        also frees its claim on ``concurrency_key``. ``count`` names what the event adds to the
        job counters (``"submitted"``, a terminal state, ``"retrying"``) for the event's task and
        queue, and ``runtime`` the seconds its attempt ran, for the run-time histogram."""
        client = self.redis
        event = ev.keyed_by_ledger_id(event)
        job_id = event["id"]
        terminal = event["k"] in _TERMINAL
        task = str(event.get("task") or "")
        counted = ev.count_field(count, task, event.get("queue")) if count else ""
        bucket, total = ev.runtime_fields(task, runtime) if runtime is not None else ("", "")
        self._scripts["record"](
            keys=[
                ev.STREAM,
                ev.JOB_CHANNEL + job_id,
                ev.DONE_KEY + job_id,
                ev.ATTEMPTS_KEY + job_id,
                ev.METRICS_JOBS,
                ev.METRICS_RUNTIME,
            ],
            args=[
                ev.encode(event),
                "1" if terminal else "0",
                self.settings.dedupe_ttl,
                concurrency_key,
                job_id,
                counted,
                bucket,
                total,
                repr(runtime or 0.0),
                int(event.get("attempt") or 0),
            ],
            client=client,
        )

    def progress(self, event: dict[str, Any]) -> bool:
        """Record a progress event unless the job's cancel flag is set; True if cancelled."""
        client = self.redis
        event = ev.keyed_by_ledger_id(event)
        job_id = event["id"]
        cancelled = self._scripts["progress"](
            keys=[ev.STREAM, ev.JOB_CHANNEL + job_id, ev.CANCEL_KEY + job_id],
            args=[ev.encode(event)],
            client=client,
        )
        return bool(cancelled)

    def attempt_of(self, job_id: str) -> int | None:
        """The attempt number a job's latest delivery got (for events sent outside the task)."""
        value = self.redis.get(ev.ATTEMPTS_KEY + ledger_id(job_id))
        return int(value) if value is not None else None

    def is_cancelled(self, job_id: str) -> bool:
        return bool(self.redis.exists(ev.CANCEL_KEY + ledger_id(job_id)))


@dataclass(frozen=True)
class LimitArgs:
    """A job's limit checks, as START takes them (empty key = no such limit)."""

    concurrency_key: str = ""
    concurrency_max: int = 0
    concurrency_ttl_ms: int = 0
    rate_key: str = ""
    interval_ms: float = 0
    tolerance_ms: float = 0
    has_slot: bool = False

    def as_args(self) -> list[str | int | float]:
        return [
            self.concurrency_key,
            self.concurrency_max,
            self.concurrency_ttl_ms,
            self.rate_key,
            self.interval_ms,
            self.tolerance_ms,
            "1" if self.has_slot else "0",
        ]


NO_LIMITS = LimitArgs()


def runtime_of(app: Celery) -> Runtime:
    rt = getattr(app, "conveyor_runtime", None)
    if rt is None:
        raise ConfigurationError(
            f"Celery app {app.main!r} is not set up for Conveyor; call conveyor.install(app)"
        )
    return rt  # type: ignore[no-any-return]
