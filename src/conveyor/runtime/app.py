"""Conveyor's two modes, and the Celery app factory with production defaults.

- ``create_celery()`` (and ``conveyor up`` with Conveyor's own app) = **production mode**: the
  defaults below, each answering a way Celery loses or repeats work out of the box.
- ``install(app)`` on an app you already have = **fidelity mode**: the app keeps its queues,
  routing, result backend, time limits, serializers and acks, as it configured them or as
  Celery defaults them. Conveyor adds only what changes no behaviour: its worker consumer
  (Celery's own, recording poison messages as dead letters) and, for an app that names no
  broker at all, Conveyor's broker (``fidelity_config``).

In both modes Conveyor's settings form one layer just above Celery's built-in defaults
(``add_conveyor_defaults``): whatever the app sets, however and whenever it sets it (before or
after install, ``conf.update``, ``config_from_object``, ``add_defaults``), wins over them.

Production defaults:

- JSON only: a pickle message is never deserialised (code execution from the broker).
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged after the task
  ran, and a worker that dies mid-task hands the message back instead of dropping it.
- prefetch 1: a worker holds one message per process, so a long task does not hoard others.
- soft/hard time limits by default: nothing runs forever; the soft one lets a task clean up.
- ``worker_max_tasks_per_child`` / ``worker_max_memory_per_child``: leaks are recycled.
- task events off unless asked for: Flower turns them on while it watches (``enable_events``);
  the ledger replaces them, and they cost the worker more than fetching and acknowledging.
- results go to the ledger; the Redis result backend stays configured (chords, and tasks or
  apps that opt in with ``ignore_result=False`` for ``AsyncResult.get()``).
- one ``visibility_timeout`` for broker, results and the Redis transport's unacked restore.
- priority queues ``critical > high > default > low``, consumed in that order.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from celery import Celery
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from conveyor.config import MAX_PRIORITY, Settings
from conveyor.runtime.transport import NAME as REDIS_TRANSPORT

CONSUMER = "conveyor.runtime.consumer:ConveyorConsumer"


def queues(names: list[str]) -> list[Queue]:
    exchange = Exchange("conveyor", type="direct")  # type: ignore[no-untyped-call]
    # x-max-priority lets RabbitMQ order messages inside a queue by their priority; the Redis
    # transport emulates the same with `priority_steps`.
    return [
        Queue(  # type: ignore[no-untyped-call]
            name, exchange, routing_key=name, queue_arguments={"x-max-priority": MAX_PRIORITY}
        )
        for name in names
    ]


class PatternRouter:
    """Route tasks by name pattern (``fnmatch``), first match wins: {"reports.*": "low"}."""

    def __init__(self, rules: dict[str, str]) -> None:
        self.rules = list(rules.items())

    def __call__(
        self, name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
    ) -> dict[str, str] | None:
        for pattern, queue in self.rules:
            if fnmatch.fnmatchcase(name, pattern):
                return {"queue": queue, "routing_key": queue}
        return None


def celery_config(settings: Settings) -> dict[str, Any]:
    """Conveyor's production Celery settings (``create_celery``); also usable on an app
    Conveyor did not create, with ``app.conf.update``."""
    broker = settings.broker_url or settings.redis_url
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
    }
    transport = None
    if broker and broker.startswith(("redis://", "rediss://", "unix://")):
        transport = REDIS_TRANSPORT
        transport_options.update(
            {
                # A broker that accepts connections but never answers must not hang a
                # submit or a worker: kombu's Redis transport waits forever by default.
                "socket_timeout": 5,
                "socket_connect_timeout": 3,
                "socket_keepalive": True,
                "queue_order_strategy": "priority",
                "priority_steps": list(range(MAX_PRIORITY + 1)),
                # kombu's own `sep` stays: it separates the fields of exchange bindings, so a
                # client without Conveyor's settings (Flower or `celery inspect` given only the
                # broker URL, a plain producer) could not route to or reply through queues a
                # Conveyor worker bound with another one.
            }
        )
    return {
        "broker_url": broker,
        "broker_transport": transport,
        "result_backend": settings.redis_url,
        "result_expires": 24 * 3600,
        "result_extended": False,
        "task_ignore_result": not settings.store_results,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "task_soft_time_limit": settings.soft_time_limit,
        "task_time_limit": settings.time_limit,
        "worker_max_tasks_per_child": settings.max_tasks_per_child,
        "worker_max_memory_per_child": settings.max_memory_per_child_kb,
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "broker_connection_retry_on_startup": True,
        # Keep reconnecting through a long broker outage instead of exiting after ~100 tries.
        "broker_connection_max_retries": None,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "task_queues": queues(settings.queues),
        "task_default_queue": settings.task_default_queue,
        "task_default_exchange": "conveyor",
        "task_default_routing_key": settings.task_default_queue,
        "task_default_priority": None,
        "task_queue_max_priority": MAX_PRIORITY,
        "task_routes": (PatternRouter(settings.routes),) if settings.routes else None,
        "worker_concurrency": settings.worker_concurrency,
        # Records poison messages (pickle, malformed, unknown task) as dead jobs.
        "worker_consumer": CONSUMER,
        "enable_utc": True,
        "timezone": "UTC",
    }


def fidelity_config(settings: Settings) -> dict[str, Any]:
    """What ``install(app)`` adds under an app's own settings (fidelity mode): nothing that
    changes how its tasks run."""
    config: dict[str, Any] = {
        # Celery's own consumer, plus a dead-letter record of each poison message it drops.
        "worker_consumer": CONSUMER,
    }
    broker = settings.broker_url or settings.redis_url
    if broker:
        # Only reached by an app that names no broker (Celery would try amqp://localhost):
        # what lets `Celery("shop")` run under `conveyor up`.
        config["broker_url"] = broker
    return config


def add_conveyor_defaults(app: Celery, layer: Any) -> None:
    """Put ``layer()`` (a dict, evaluated when the app is configured) just above Celery's
    built-in defaults, under every setting of the app's own.

    Celery's ``add_defaults`` would put it above a config module the app loads with
    ``config_from_object``, and a config module loaded after the app is configured would drop
    it; so the layer is inserted below both, and again each time Celery rebuilds the app's
    configuration."""

    def insert(conf: Any) -> None:
        values = layer()
        # conf.maps is [changes, *add_defaults layers, config module, Celery's defaults];
        # conf.defaults is the same list without `changes`.
        conf.maps.insert(len(conf.maps) - 1, values)
        conf.defaults.insert(len(conf.defaults) - 1, values)

    app.on_after_configure.connect(lambda sender, source, **_: insert(source), weak=False)
    if app.configured:
        insert(app.conf)


def create_celery(name: str = "conveyor", settings: Settings | None = None) -> Celery:
    """A Celery app with Conveyor's production defaults and ledger recording installed.

    Settings are read lazily (at first use by a worker, API or submitter), so importing the
    module that calls this does not touch the environment or the network.
    """
    from conveyor.runtime.install import install_runtime

    app = Celery(name)
    install_runtime(app, settings, production=True)
    return app
