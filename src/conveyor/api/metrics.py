"""``/metrics``: Prometheus exposition of what the ledger, the workers and the broker know.

Counters are kept in Redis by the processes that see the events, in the same round trip as
the event itself (``ledger.events``): submissions by the API's intake and by any process that
publishes with ``.delay()``, outcomes and run times by the workers. They are therefore shared by
every API process and survive their restarts; a scrape reads them with two ``HGETALL``\\s. Gauges
(jobs waiting and running, queue depth and the age of the oldest waiting job, workers alive,
how far the ledger trails the event stream) are read when scraped, with indexed queries only.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import text

from conveyor.api.auth import WholeRead
from conveyor.api.deps import ServicesDep
from conveyor.api.routes.system import queue_list, worker_list
from conveyor.ledger import events as ev
from conveyor.runtime.context import runtime_of

router = APIRouter(tags=["metrics"])

_ACTIVE = ("scheduled", "queued", "running", "retrying")
_FINISHED = ("succeeded", "failed", "cancelled", "dead")


class ConveyorCollector:
    """One scrape's worth of metrics, read from Redis, PostgreSQL and the broker."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._runtime()
        yield from self._gauges()
        yield from self._scheduler()

    def _redis(self) -> Any:
        return runtime_of(self.services.app).redis

    def _counters(self) -> Iterator[Metric]:
        submitted = CounterMetricFamily(
            "conveyor_jobs_submitted",
            "Jobs submitted (API, CLI or .delay())",
            labels=["task", "queue"],
        )
        finished = CounterMetricFamily(
            "conveyor_jobs_finished",
            "Jobs that ended, by outcome",
            labels=["task", "queue", "state"],
        )
        retried = CounterMetricFamily(
            "conveyor_jobs_retried", "Attempts that ended in a retry", labels=["task", "queue"]
        )
        for field, value in self._redis().hgetall(ev.METRICS_JOBS).items():
            try:
                kind, task, queue = json.loads(field)
            except ValueError:
                continue
            labels = [str(task), str(queue or "")]
            if kind == "submitted":
                submitted.add_metric(labels, float(value))
            elif kind == "retrying":
                retried.add_metric(labels, float(value))
            elif kind in _FINISHED:
                finished.add_metric([*labels, kind], float(value))
        yield submitted
        yield finished
        yield retried
        yield CounterMetricFamily(
            "conveyor_events_unrecordable",
            "Job events the recorder could not write to the ledger, even escaped (each is logged)",
            value=float(self._redis().get(ev.METRICS_UNRECORDABLE) or 0),
        )

    def _runtime(self) -> Iterator[Metric]:
        counts: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(ev.RUNTIME_BUCKETS))
        sums: dict[str, float] = defaultdict(float)
        for field, value in self._redis().hgetall(ev.METRICS_RUNTIME).items():
            try:
                task, slot = json.loads(field)
            except ValueError:
                continue
            if slot == "sum":
                sums[task] += float(value)
            elif isinstance(slot, int) and 0 <= slot < len(ev.RUNTIME_BUCKETS):
                counts[task][slot] += float(value)
        family = HistogramMetricFamily(
            "conveyor_job_runtime_seconds", "Run time of attempts that finished", labels=["task"]
        )
        for task, per_bucket in sorted(counts.items()):
            cumulative, buckets = 0.0, []
            for bound, n in zip(ev.RUNTIME_BUCKETS, per_bucket, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([task], buckets, sums[task])
        yield family

    def _gauges(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "conveyor_jobs", "Jobs not yet finished, by state", labels=["state"]
        )
        with self.services.engine.connect() as conn:
            for state in _ACTIVE:
                n = conn.execute(
                    text("SELECT count(*) FROM conveyor_jobs WHERE state = :s"), {"s": state}
                ).scalar_one()
                waiting.add_metric([state], float(n))
        yield waiting

        depth = GaugeMetricFamily(
            "conveyor_queue_depth", "Messages waiting in the broker", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "conveyor_queue_oldest_age_seconds",
            "How long the oldest job still waiting in the queue has waited",
            labels=["queue"],
        )
        for q in queue_list(self.services):
            if q["depth"] is not None:
                depth.add_metric([q["name"]], float(q["depth"]))
            age.add_metric([q["name"]], float(q["oldest_age_seconds"] or 0.0))
        yield depth
        yield age

        alive = sum(1 for w in worker_list(self.services) if w["alive"])
        yield GaugeMetricFamily(
            "conveyor_workers_alive", "Workers with a fresh heartbeat", value=alive
        )

        client = self._redis()
        pending = client.xlen(ev.STREAM)
        oldest = client.xrange(ev.STREAM, count=1)
        lag = 0.0
        if oldest:
            entry_id = oldest[0][0]
            entry_ms = int(
                (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0]
            )
            lag = max(0.0, time.time() - entry_ms / 1000)
        yield GaugeMetricFamily(
            "conveyor_ledger_pending_events",
            "Job events not yet written to the ledger",
            value=pending,
        )
        yield GaugeMetricFamily(
            "conveyor_ledger_lag_seconds",
            "Age of the oldest job event not yet written to the ledger",
            value=lag,
        )

    def _scheduler(self) -> Iterator[Metric]:
        """Counters the scheduler's leader keeps in Redis; the leader from the lease row."""
        raw = self._redis().hgetall(ev.METRICS_SCHEDULES)
        values = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        for name, field, doc in (
            ("conveyor_schedule_fires", "fired", "Jobs submitted by schedule fires"),
            (
                "conveyor_schedule_skipped_overlap",
                "skipped_overlap",
                "Fires skipped because the previous run was still active (overlap policy)",
            ),
            (
                "conveyor_schedule_missed",
                "missed",
                "Fires not run: older than the catch-up window after downtime, or beyond its "
                "maximum of catch-up runs",
            ),
            ("conveyor_schedule_buffered", "buffered", "Fires held back by buffer_one"),
            (
                "conveyor_schedule_cancelled_previous",
                "cancelled_previous",
                "Fires that cancelled the previous run (cancel_previous)",
            ),
        ):
            yield CounterMetricFamily(name, doc, value=float(values.get(field) or 0))
        yield GaugeMetricFamily(
            "conveyor_scheduler_lag_seconds",
            "How late the newest fire of the scheduler's last busy tick was submitted",
            value=float(values.get("lag_seconds") or 0),
        )
        with self.services.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT holder, token FROM conveyor_leases "
                    "WHERE name = 'scheduler' AND expires_at > now()"
                )
            ).first()
        leader = GaugeMetricFamily(
            "conveyor_scheduler_leader",
            "1 for the `conveyor beat` replica that holds the scheduler lease (none: no leader)",
            labels=["holder"],
        )
        if row is not None:
            leader.add_metric([row.holder], 1.0)
        yield leader
        yield GaugeMetricFamily(
            "conveyor_scheduler_lease_token",
            "The scheduler lease's fencing token: it grows on every take-over",
            value=float(row.token) if row is not None else 0.0,
        )


@router.get("/metrics", include_in_schema=True, response_class=Response)
async def metrics(principal: WholeRead, services: ServicesDep, request: Request) -> Response:
    """Prometheus text format. With auth on, scrape with a ``jobs:read`` key without task or
    queue limits as a bearer token (``authorization: {credentials: cvk_…}`` in the scrape
    config)."""

    def render() -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ConveyorCollector(services))
        return generate_latest(registry)

    body = await run_in_threadpool(render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
