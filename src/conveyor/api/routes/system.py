"""Tasks, workers, queues and health."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from conveyor.api.auth import Principal, ReadJobs, WholeRead, WholeWrite
from conveyor.api.deps import ServicesDep
from conveyor.control import task_queue, task_signature
from conveyor.ledger import events as ev
from conveyor.ledger import repository as repo
from conveyor.runtime.context import runtime_of
from conveyor.runtime.limits import task_limits
from conveyor.runtime.queues import broker_queue_stats

router = APIRouter(tags=["system"])
health = APIRouter(tags=["health"])


class RetryInfo(BaseModel):
    on: list[str] = Field(description="exception classes retried automatically")
    max_retries: int | None
    backoff: int | None = Field(description="seconds before the first retry, doubling after")
    backoff_max: int | None
    jitter: bool
    delay: float | None = Field(description="fixed seconds between retries (no backoff)")


class TaskLimits(BaseModel):
    rate_limit: str | None = Field(description="Celery's rate limit, per worker")
    global_rate_limit: str | None = Field(description="Conveyor's, across every worker")
    rate_burst: int | None
    limit_key: str | None = Field(description="the argument limits apply per value of")
    max_concurrency: int | None = Field(description="running at once (per limit_key value)")
    soft_time_limit: float | None
    time_limit: float | None
    max_attempts: int | None = Field(description="deliveries before the job is dead")
    retry: RetryInfo | None = Field(description="null: nothing retries this task automatically")


class TaskInfo(BaseModel):
    name: str
    queue: str
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    doc: str | None
    max_retries: int | None = Field(description="Celery's bound on retries; see limits.retry")
    soft_time_limit: float | None
    time_limit: float | None
    rate_limit: str | None
    acks_late: bool
    limits: TaskLimits


def registered_tasks(services: Any, principal: Principal | None = None) -> list[dict[str, Any]]:
    """Every registered task (for a limited key, those it may submit)."""
    app = services.app
    out = []
    for name in sorted(app.tasks):
        if name.startswith("celery."):
            continue
        task = app.tasks[name]
        queue = task_queue(app, name)
        if principal is not None and not principal.sees(name, queue):
            continue
        out.append(
            {
                "name": name,
                "queue": queue,
                "schema": task_signature(app, name).json_schema(),
                "doc": (getattr(task.run, "__doc__", None) or "").strip() or None,
                "max_retries": task.max_retries,
                "soft_time_limit": task.soft_time_limit or app.conf.task_soft_time_limit,
                "time_limit": task.time_limit or app.conf.task_time_limit,
                "rate_limit": task.rate_limit,
                "acks_late": task.acks_late,
                "limits": task_limits(task, services.settings),
            }
        )
    return out


@router.get("/tasks", response_model=list[TaskInfo])
def list_tasks(principal: ReadJobs, services: ServicesDep) -> list[dict[str, Any]]:
    """Registered tasks with their argument schemas, default queue and every limit they run
    under (``limits``: Celery's per-worker rate limit, Conveyor's global rate and concurrency
    limits, time limits, attempt cap, and the retry policy that really applies). For a key
    limited to some tasks or queues, the tasks it may submit to their default queue."""
    return registered_tasks(services, principal)


def worker_list(services: Any) -> list[dict[str, Any]]:
    raw = runtime_of(services.app).redis.hgetall(ev.WORKERS_KEY)
    now = time.time()
    workers = []
    for value in raw.values():
        info = json.loads(value)
        age = now - info["heartbeat_at"]
        info["alive"] = ev.heartbeat_alive(info, now)
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
def list_workers(principal: WholeRead, services: ServicesDep) -> list[dict[str, Any]]:
    """Workers from their heartbeats: host, pid, concurrency, active jobs, last heartbeat."""
    return worker_list(services)


def queue_list(services: Any, workers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every known queue; ``workers``: the heartbeats if the caller read them already."""
    names = services.control.known_queues()
    stats = broker_queue_stats(services.app, names)
    paused = services.control.paused_queues()
    with services.engine.connect() as conn:
        oldest = repo.oldest_queued(conn)
    consumers: dict[str, int] = {}
    for w in worker_list(services) if workers is None else workers:
        if w["alive"]:
            for q in w.get("queues", []):
                consumers[q] = consumers.get(q, 0) + 1
    now = datetime.now(UTC)
    return [
        {
            "name": s.name,
            "depth": s.depth,
            "consumers": s.consumers if s.consumers is not None else consumers.get(s.name, 0),
            "paused": s.name in paused,
            "oldest_age_seconds": (now - oldest[s.name]).total_seconds()
            if s.name in oldest
            else None,
        }
        for s in stats
    ]


@router.get("/queues")
def list_queues(principal: ReadJobs, services: ServicesDep) -> list[dict[str, Any]]:
    """Depth (from the broker), consumers, whether paused, and the age of the oldest waiting
    job; a key limited to some queues sees only those (limited to tasks only: their queues)."""
    queues = queue_list(services)
    if not principal.restricted:
        return queues
    if principal.allowed_queues is not None:
        shown = set(principal.allowed_queues)
    else:
        shown = {t["queue"] for t in registered_tasks(services, principal)}
    return [q for q in queues if q["name"] in shown]


@router.post("/queues/{name}/pause")
def pause_queue(name: str, principal: WholeWrite, services: ServicesDep) -> dict[str, Any]:
    """Workers stop taking jobs from the queue within one heartbeat interval; jobs submitted
    meanwhile wait in it. 404 for an unknown queue."""
    changed = services.control.pause_queue(name)
    return {"name": name, "paused": True, "changed": changed}


@router.post("/queues/{name}/resume")
def resume_queue(name: str, principal: WholeWrite, services: ServicesDep) -> dict[str, Any]:
    """Workers take jobs from the queue again within one heartbeat interval."""
    changed = services.control.resume_queue(name)
    return {"name": name, "paused": False, "changed": changed}


@health.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str = Field(description='"ok", or "unavailable" when a dependency is unreachable')
    checks: dict[str, str] = Field(description="postgres, redis, broker: ok or why not")
    details: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="each enabled pack's own checks (its providers): ok or why not. Details"
        " only: an outside provider being down does not make this API unready",
    )


@health.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is unreachable"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: PostgreSQL, Redis and the broker are all reachable.

    Each store is probed at the same time over a connection of its own with a short timeout,
    never a pooled one: a store that hangs instead of refusing (a frozen server, a host gone
    without closing its connections) would otherwise hold the probe, and one of the API's
    threads with it, until the operating system gives up on the socket — minutes or forever.
    """
    from concurrent.futures import ThreadPoolExecutor, wait

    import psycopg
    import redis

    timeout = 2  # seconds per connection step; libpq's connect_timeout has a minimum of 2

    def postgres() -> None:
        dsn = services.engine.url.set(drivername="postgresql")
        with psycopg.connect(
            dsn.render_as_string(hide_password=False),
            connect_timeout=timeout,
            application_name="conveyor-readyz",
        ) as conn:
            conn.execute("SELECT 1")

    def redis_ping() -> None:
        client = redis.Redis.from_url(
            services.settings.redis_url or "",
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        try:
            client.ping()
        finally:
            client.close()

    def broker() -> None:
        url = str(services.app.conf.broker_url or "")
        # Kombu's Redis transport waits forever on a silent socket unless told otherwise.
        options = (
            {"socket_timeout": timeout, "socket_connect_timeout": timeout}
            if url.startswith(("redis://", "rediss://", "unix://"))
            else {}
        )
        with services.app.connection_for_write(
            connect_timeout=timeout, transport_options=options
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)

    from conveyor.packs import enabled

    probes = {"postgres": postgres, "redis": redis_ping, "broker": broker}
    packs = [p for p in enabled(services.settings) if p.health]
    pool = ThreadPoolExecutor(max_workers=len(probes) + len(packs), thread_name_prefix="readyz")
    futures = {name: pool.submit(probe) for name, probe in probes.items()}
    pack_futures = {p.name: pool.submit(p.attribute(p.health or ""), services) for p in packs}
    # A safety net over the per-step timeouts; a probe past it is reported, not waited for.
    wait([*futures.values(), *pack_futures.values()], timeout=3 * timeout + 1)
    pool.shutdown(wait=False)
    checks: dict[str, str] = {}
    for name, future in futures.items():
        if not future.done():
            checks[name] = f"unreachable: no answer within {3 * timeout + 1} s"
        elif (exc := future.exception()) is not None:
            checks[name] = f"unreachable: {type(exc).__name__}"
        else:
            checks[name] = "ok"
    ok = all(v == "ok" for v in checks.values())
    details: dict[str, dict[str, str]] = {}
    for name, answer in pack_futures.items():
        if not answer.done():
            details[name] = {"health": f"no answer within {3 * timeout + 1} s"}
        elif (exc := answer.exception()) is not None:
            details[name] = {"health": f"failed: {type(exc).__name__}"}
        else:
            details[name] = answer.result()
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks, "details": details},
        status_code=200 if ok else 503,
    )
