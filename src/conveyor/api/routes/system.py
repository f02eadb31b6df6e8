"""Tasks, workers, queues and health."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from conveyor.api.deps import ServicesDep
from conveyor.control import task_queue, task_signature
from conveyor.ledger import events as ev
from conveyor.ledger import repository as repo
from conveyor.runtime.context import runtime_of
from conveyor.runtime.queues import broker_queue_stats

router = APIRouter(tags=["system"])
health = APIRouter(tags=["health"])


def registered_tasks(services: Any) -> list[dict[str, Any]]:
    app = services.app
    out = []
    for name in sorted(app.tasks):
        if name.startswith("celery."):
            continue
        task = app.tasks[name]
        out.append(
            {
                "name": name,
                "queue": task_queue(app, name),
                "schema": task_signature(app, name).json_schema(),
                "doc": (getattr(task.run, "__doc__", None) or "").strip() or None,
                "max_retries": task.max_retries,
                "soft_time_limit": task.soft_time_limit or app.conf.task_soft_time_limit,
                "time_limit": task.time_limit or app.conf.task_time_limit,
                "rate_limit": task.rate_limit,
                "acks_late": task.acks_late,
            }
        )
    return out


@router.get("/tasks")
def list_tasks(services: ServicesDep) -> list[dict[str, Any]]:
    """Registered tasks with their argument schemas, default queue and limits."""
    return registered_tasks(services)


def worker_list(services: Any) -> list[dict[str, Any]]:
    raw = runtime_of(services.app).redis.hgetall(ev.WORKERS_KEY)
    now = time.time()
    workers = []
    for value in raw.values():
        info = json.loads(value)
        age = now - info["heartbeat_at"]
        info["alive"] = age < 3 * info.get("interval", 5)
        info["heartbeat_age"] = round(age, 3)
        info["last_heartbeat"] = datetime.fromtimestamp(info["heartbeat_at"], UTC)
        workers.append(info)
    workers.sort(key=lambda w: w["hostname"])
    with services.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT worker, count(*) FROM conveyor_jobs WHERE state = 'running' GROUP BY worker"
            )
        ).all()
    running = {w: n for w, n in rows}
    for w in workers:
        w["running_jobs"] = running.get(w["hostname"], 0)
    return workers


@router.get("/workers")
def list_workers(services: ServicesDep) -> list[dict[str, Any]]:
    """Workers from their heartbeats: host, pid, concurrency, active jobs, last heartbeat."""
    return worker_list(services)


def queue_list(services: Any) -> list[dict[str, Any]]:
    names = list(dict.fromkeys([*services.settings.queues, *services.app.amqp.queues.keys()]))
    stats = broker_queue_stats(services.app, names)
    with services.engine.connect() as conn:
        oldest = repo.oldest_queued(conn)
    consumers: dict[str, int] = {}
    for w in worker_list(services):
        if w["alive"]:
            for q in w.get("queues", []):
                consumers[q] = consumers.get(q, 0) + 1
    now = datetime.now(UTC)
    return [
        {
            "name": s.name,
            "depth": s.depth,
            "consumers": s.consumers if s.consumers is not None else consumers.get(s.name, 0),
            "oldest_age_seconds": (now - oldest[s.name]).total_seconds()
            if s.name in oldest
            else None,
        }
        for s in stats
    ]


@router.get("/queues")
def list_queues(services: ServicesDep) -> list[dict[str, Any]]:
    """Depth (from the broker), consumers and the age of the oldest waiting job."""
    return queue_list(services)


@health.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@health.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: PostgreSQL, Redis and the broker are all reachable."""
    checks: dict[str, str] = {}
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"unreachable: {type(exc).__name__}"
    try:
        runtime_of(services.app).redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    try:
        with services.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
