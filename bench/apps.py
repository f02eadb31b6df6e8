"""The Celery apps under test, each with the same no-op task ``bench.noop``.

- ``bare``: a plain ``Celery()`` with only its broker set (Celery's own defaults);
- ``tuned``: a plain ``Celery()`` with Conveyor's Celery settings, but no ``install()``;
- ``conveyor``: ``create_celery()``, i.e. Conveyor's settings plus ``install()`` (the ledger).

Only one of them is ever built in a process: ``install()`` hooks process-wide Celery signals.

Every queue name gets a per-run prefix so that a benchmark on a shared broker (the machine's
RabbitMQ or Redis, where test suites may be running) neither takes nor drops anyone's
messages. Names do not change what a queue costs; arguments (``x-max-priority``) are kept.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from celery import Celery
from kombu.entity import Queue

from conveyor.config import Settings
from conveyor.runtime.app import celery_config, create_celery

Kind = Literal["bare", "tuned", "conveyor"]
KINDS: tuple[Kind, ...] = ("bare", "tuned", "conveyor")
TASK = "bench.noop"
BARE_QUEUE = "celery"  # Celery's default queue name
PREFIX_ENV = "BENCH_QUEUE_PREFIX"
# JSON object of Celery settings applied last to Conveyor's configuration (b and c, never the
# bare reference): "what would Conveyor's throughput be with this default changed?".
OVERRIDES_ENV = "BENCH_CELERY_OVERRIDES"


def overrides() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(os.environ.get(OVERRIDES_ENV) or "{}")
    return value


def noop() -> None:
    """The task body: nothing, so what is measured is the machinery around it."""


def prefixed_queues(config: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The queue settings of a Conveyor ``config`` with every queue name prefixed."""
    queues = [
        Queue(  # type: ignore[no-untyped-call]
            prefix + q.name,
            q.exchange,
            routing_key=prefix + str(q.routing_key),
            queue_arguments=q.queue_arguments,
        )
        for q in config["task_queues"]
    ]
    default = prefix + config["task_default_queue"]
    return {
        "task_queues": queues,
        "task_default_queue": default,
        "task_default_routing_key": default,
    }


def consumed_queues(app: Celery) -> list[str]:
    """The queues a worker of ``app`` consumes by default, in priority order."""
    return [q.name for q in app.conf.task_queues or ()] or [app.conf.task_default_queue]


def bare_app(broker_url: str, prefix: str) -> Celery:
    app = Celery("bench-bare", broker=broker_url, set_as_current=False)
    app.conf.task_default_queue = prefix + BARE_QUEUE
    app.task(name=TASK)(noop)
    return app


def tuned_app(settings: Settings, prefix: str) -> Celery:
    app = Celery("bench-tuned", set_as_current=False)
    config = celery_config(settings)
    app.conf.update(config, **prefixed_queues(config, prefix))
    app.conf.update(overrides())
    app.task(name=TASK)(noop)
    return app


def conveyor_app(settings: Settings | None, prefix: str | None) -> Celery:
    """``None`` settings or prefix are read at first use (``CONVEYOR_*``, ``BENCH_QUEUE_PREFIX``),
    as with any app built with create_celery() at import time."""
    app = create_celery("bench-conveyor", settings)

    def queue_defaults() -> dict[str, Any]:
        rt = app.conveyor_runtime
        resolved = os.environ.get(PREFIX_ENV, "") if prefix is None else prefix
        return {**prefixed_queues(celery_config(rt.settings), resolved), **overrides()}

    # Defaults added later take precedence over install()'s, and stay lazy.
    app.add_defaults(queue_defaults)
    app.task(name=TASK)(noop)
    from bench.chord import register  # the chord benchmark's tasks (bench/chord.py)

    return register(app)


def reference(kind: Kind, settings: Settings, prefix: str) -> Celery:
    """An app with the Celery configuration of ``kind`` that installs nothing: what the
    benchmark process itself uses to look at queues (Conveyor's configuration is ``tuned``'s)."""
    if kind == "bare":
        return bare_app(settings.broker_url or "", prefix)
    return tuned_app(settings, prefix)


def build(kind: Kind, settings: Settings, prefix: str) -> Celery:
    if kind == "bare":
        assert settings.broker_url
        return bare_app(settings.broker_url, prefix)
    if kind == "tuned":
        return tuned_app(settings, prefix)
    return conveyor_app(settings, prefix)
