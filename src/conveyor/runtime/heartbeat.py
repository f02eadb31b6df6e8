"""Worker heartbeats in Redis: who is alive, with what concurrency, on which queues.

A thread in the worker's main process writes one hash field per worker every few seconds;
``GET /workers`` reads the hash and calls a worker dead once its heartbeat is older than three
intervals. The thread has its own Redis client so a forked pool child never inherits a
connection pool whose lock that thread might hold.
"""

from __future__ import annotations

import contextlib
import json
import os
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


class Heartbeat:
    def __init__(self, app: Celery, worker: Any) -> None:
        self.app = app
        self.worker = worker
        self.stop = threading.Event()
        self.started = time.time()
        self.thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        settings = runtime_of(app).settings
        self.interval = settings.heartbeat_interval
        self.client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5)

    def snapshot(self) -> dict[str, Any]:
        from celery.worker import state as worker_state

        consume = self.app.amqp.queues.consume_from or self.app.amqp.queues
        pool = getattr(self.worker, "pool", None)
        return {
            "hostname": self.worker.hostname,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": getattr(self.worker, "concurrency", None),
            # The pool as it is now: remote control (pool_grow/shrink, autoscale) changes it.
            "processes": _pool_size(pool),
            "rss_bytes": _rss_bytes(),
            "pool": type(pool).__module__.rsplit(".", 1)[-1] if pool is not None else None,
            "queues": sorted(consume.keys()),
            "active": len(worker_state.active_requests),
            "processed": sum(worker_state.total_count.values()),
            "started_at": self.started,
            "heartbeat_at": time.time(),
            "interval": self.interval,
        }

    def beat(self) -> None:
        self.client.hset(ev.WORKERS_KEY, self.worker.hostname, json.dumps(self.snapshot()))

    def _run(self) -> None:
        while not self.stop.is_set():
            # Redis down: the heartbeat simply ages, and we try again next interval.
            with contextlib.suppress(redis.RedisError):
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


def connect_heartbeat(app: Celery) -> None:
    state: dict[str, Heartbeat] = {}

    def on_ready(sender: Any = None, **_: Any) -> None:
        # `sender` is the worker's Consumer; its controller is the WorkController.
        if getattr(sender, "app", None) is not app:
            return
        worker = getattr(sender, "controller", None)
        if worker is None:
            return
        hb = Heartbeat(app, worker)
        state["hb"] = hb
        hb.start()
        warn_about_redis(hb.client)

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        hb = state.pop("hb", None)
        if hb is not None:
            hb.shutdown()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
