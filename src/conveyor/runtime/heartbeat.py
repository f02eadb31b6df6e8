"""Worker heartbeats in Redis: who is alive, with what concurrency, on which queues.

A thread in the worker's main process writes one hash field per worker every few seconds;
``GET /workers`` reads the hash and calls a worker dead once its heartbeat is older than three
intervals. The thread has its own Redis client so a forked pool child never inherits a
connection pool whose lock that thread might hold.

The same thread keeps the worker in step with paused queues (a Redis set that
``Control.pause_queue`` writes): each beat it compares the set with the queues the worker was
started on and asks itself, through Celery's remote control, to cancel or add consumers. The
control message is handled in the worker's consumer loop, the one place where changing
consumers is safe. So a pause reaches every worker within one interval, survives worker
restarts, and heals if a worker missed it.

A heartbeat names one *incarnation* of a worker, not just its name: ``instance`` is random per
process and ``started_at`` is when the process began, before it could take any message. A
worker restarted under the same name (the usual case after a crash: Celery's default name and
`conveyor up`'s are the same on every start) replaces the field at once, so the reconciler
compares a running job's start with ``started_at``: a job started before the worker now beating
under its name was born ran in a predecessor, which is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

import psutil
import redis
from celery import Celery, signals

from conveyor.ledger import events as ev
from conveyor.runtime.checks import warn_about_redis
from conveyor.runtime.context import runtime_of

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = 2.0
"""Seconds the heartbeat waits for its own worker to confirm a consumer change."""


class Heartbeat:
    def __init__(
        self,
        app: Celery,
        worker: Any,
        configured: list[str] | None = None,
        paused: set[str] | None = None,
        started: float | None = None,
    ) -> None:
        self.app = app
        self.worker = worker
        self.stop = threading.Event()
        # When this incarnation began: before its consumer started, so before any job it runs.
        self.started = started if started is not None else time.time()
        self.instance = secrets.token_hex(8)
        self.thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        settings = runtime_of(app).settings
        self.interval = settings.heartbeat_interval
        self.client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5)
        # What the worker was started to consume; resuming never adds to it.
        consume = app.amqp.queues.consume_from or app.amqp.queues
        self.configured = configured if configured is not None else sorted(consume.keys())
        self.paused: set[str] = set(paused or ())  # queues this worker stopped consuming

    def snapshot(self) -> dict[str, Any]:
        from celery.worker import state as worker_state

        pool = getattr(self.worker, "pool", None)
        return {
            "hostname": self.worker.hostname,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "instance": self.instance,
            "concurrency": getattr(self.worker, "concurrency", None),
            # The pool as it is now: remote control (pool_grow/shrink, autoscale) changes it.
            "processes": _pool_size(pool),
            "rss_bytes": _rss_bytes(),
            "pool": type(pool).__module__.rsplit(".", 1)[-1] if pool is not None else None,
            "queues": [q for q in self.configured if q not in self.paused],
            "configured_queues": self.configured,
            "paused_queues": sorted(self.paused),
            "active": len(worker_state.active_requests),
            "processed": sum(worker_state.total_count.values()),
            "started_at": self.started,
            "heartbeat_at": time.time(),
            "interval": self.interval,
        }

    def beat(self) -> None:
        self.client.hset(ev.WORKERS_KEY, self.worker.hostname, json.dumps(self.snapshot()))

    def follow_pauses(self) -> None:
        """Cancel consumers of newly paused queues, add back those resumed."""
        wanted = ev.paused_queues(self.client)
        for queue in self.configured:
            pause = queue in wanted
            if pause == (queue in self.paused):
                continue
            change = self.app.control.cancel_consumer if pause else self.app.control.add_consumer
            # Only a confirmed change counts: an unanswered one is tried again next beat.
            if change(
                queue, destination=[self.worker.hostname], reply=True, timeout=CONTROL_TIMEOUT
            ):
                (self.paused.add if pause else self.paused.discard)(queue)
                log.info("queue %s %s", queue, "paused" if pause else "resumed")

    def _run(self) -> None:
        while not self.stop.is_set():
            # Redis down: the heartbeat simply ages, and we try again next interval.
            with contextlib.suppress(redis.RedisError):
                self.follow_pauses()
                self.beat()
            self.stop.wait(self.interval)

    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        with contextlib.suppress(redis.RedisError):
            self.client.hdel(ev.WORKERS_KEY, self.worker.hostname)


def _pool_size(pool: Any) -> int | None:
    try:
        return int(pool.num_processes) if pool is not None else None
    except Exception:  # a pool that cannot say (solo, threads before start)
        return None


def _rss_bytes() -> int | None:
    """Resident memory of this worker: its main process and every pool process."""
    try:
        me = psutil.Process()
        return int(me.memory_info().rss) + sum(
            int(child.memory_info().rss) for child in me.children(recursive=True)
        )
    except psutil.Error:
        return None


def skip_paused_queues(app: Celery) -> tuple[list[str], set[str]]:
    """Before the worker's consumer starts: leave out the queues paused now, so a worker
    started during a pause never takes one of their jobs. (The queues it was started on, the
    ones left out.)"""
    queues = app.amqp.queues
    configured = sorted((queues.consume_from or queues).keys())
    client = redis.Redis.from_url(runtime_of(app).settings.redis_url or "", socket_timeout=5)
    try:
        paused = ev.paused_queues(client) & set(configured)
    except redis.RedisError:
        return configured, set()  # the heartbeat applies the pauses once Redis answers
    finally:
        client.close()
    if paused:
        # deselect, not select(): select([]) would mean "consume every queue".
        queues.deselect(sorted(paused))
        log.info("not consuming paused queue(s): %s", ", ".join(sorted(paused)))
    return configured, paused


def connect_heartbeat(app: Celery) -> None:
    state: dict[str, Any] = {}

    def on_init(sender: Any = None, **_: Any) -> None:
        # `sender` is the WorkController, its queues chosen (-Q) and its consumer not started.
        if getattr(sender, "app", None) is app:
            state["born"] = time.time()
            state["queues"] = skip_paused_queues(app)

    def on_ready(sender: Any = None, **_: Any) -> None:
        # `sender` is the worker's Consumer; its controller is the WorkController.
        if getattr(sender, "app", None) is not app:
            return
        worker = getattr(sender, "controller", None)
        if worker is None:
            return
        configured, paused = state.get("queues", (None, None))
        hb = Heartbeat(app, worker, configured, paused, started=state.get("born"))
        state["hb"] = hb
        hb.start()
        warn_about_redis(hb.client)

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        hb = state.pop("hb", None)
        if hb is not None:
            hb.shutdown()

    signals.worker_init.connect(on_init, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
