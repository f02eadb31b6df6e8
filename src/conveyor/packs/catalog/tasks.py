"""The catalog's Celery tasks: thin wrappers that decode ids and call the plain functions."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery, Task
from sqlalchemy import Engine, create_engine, select

import conveyor
from conveyor.packs import psycopg_url, settings_of
from conveyor.packs.catalog import events, importer, uploads, webhooks
from conveyor.packs.catalog.tables import deliveries
from conveyor.packs.catalog.tables import webhooks as webhooks_table
from conveyor.packs.kit import EgressClient

IMPORT_TASK = "catalog.import_products"
DELIVER_TASK = events.DELIVER_TASK
SWEEP_TASK = "catalog.sweep_deliveries"
# Eight tries: waits drawn below 5, 10, 20, 40, 80, 160 and 320 s (full jitter), so a
# receiver that is down for a deploy of a few minutes still gets its events; after that the
# delivery is dead: it stays in the webhook's log and in Conveyor's dead letters for a replay.
DELIVERY_POLICY = conveyor.RetryPolicy(
    max_attempts=8, backoff=5, backoff_max=600, retry_on=(events.DeliveryFailed,)
)

_engines: dict[tuple[int, str], Engine] = {}


def _engine(app: Celery) -> Engine:
    """One small SQLAlchemy engine per worker process (pools must not cross a fork)."""
    url = psycopg_url(settings_of(app))
    key = (os.getpid(), url)
    if key not in _engines:
        _engines.clear()
        _engines[key] = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=2
        )
    return _engines[key]


def import_products(self: Task, import_id: str) -> dict[str, Any]:
    """Import the uploaded file of import ``import_id`` into the products, reporting progress
    (phase as the step); a cancel or a failure leaves the products as they were. Announces
    one ``import.completed`` to subscribed webhooks, never an event per product."""
    settings = settings_of(self.app)
    job_id = str(self.request.id) if self.request.id else None
    with psycopg.connect(psycopg_url(settings), application_name="conveyor-catalog") as conn:
        stored_as = importer.start(conn, import_id, job_id)
        if stored_as is None:  # this job ran to the end before; its message came back
            return {"import_id": import_id, **importer.summary_of(conn, import_id).as_dict()}
        path = uploads.path_of(settings, stored_as)
        sent: list[int] = []

        def announce(conn: psycopg.Connection[Any], summary: importer.ImportSummary) -> None:
            data = {"import_id": import_id, **summary.as_dict()}
            sent.extend(events.record_raw(conn, "import.completed", data))

        try:
            summary = importer.run_import(conn, import_id, Path(path), _report, announce)
        except BaseException as exc:
            conn.rollback()
            importer.end_failed(conn, import_id, exc)
            raise
        path.unlink(missing_ok=True)  # imported: the rows are in PostgreSQL now
        _send_deliveries(self.app, conn, sent)
        importer.analyze(conn)
    return {"import_id": import_id, **summary.as_dict()}


def _send_deliveries(app: Celery, conn: Any, delivery_ids: list[int]) -> None:
    """Publish one delivery job per id and note it on the delivery (``conn``: psycopg)."""
    sent = [
        (d, str(app.send_task(DELIVER_TASK, kwargs={"delivery_id": d}).id)) for d in delivery_ids
    ]
    events.mark_dispatched(conn, sent)
    conn.commit()


def sweep_deliveries(self: Task) -> dict[str, int]:
    """Send the deliveries whose sender died between recording and submitting them (run by
    beat every minute; the receiver dedupes by ``X-Conveyor-Delivery`` if one ever goes twice)."""
    with _engine(self.app).connect() as conn:
        lost = events.undispatched(conn, datetime.now(UTC))
    if lost:
        with psycopg.connect(psycopg_url(settings_of(self.app))) as conn:
            _send_deliveries(self.app, conn, lost)
    return {"sent": len(lost)}


def _report(phase: str, current: int, total: int, message: str) -> None:
    conveyor.progress(current, total, step=phase, message=message)


def deliver_webhook(self: Task, delivery_id: int) -> dict[str, Any]:
    """POST one recorded delivery, signed, through the egress guard; raise to be retried with
    backoff while the receiver fails; the last failure leaves the delivery ``dead``, and so
    does a destination the guard refuses (at once: retrying would not change it)."""
    engine = _engine(self.app)
    with engine.connect() as conn:
        row = conn.execute(
            select(deliveries.c.event, deliveries.c.payload, deliveries.c.created_at,
                   webhooks_table.c.url, webhooks_table.c.secret, webhooks_table.c.enabled)
            .join(webhooks_table, webhooks_table.c.id == deliveries.c.webhook_id)
            .where(deliveries.c.id == delivery_id)
        ).first()  # fmt: skip
    if row is None:
        return {"skipped": "the webhook was deleted"}
    attempt = self.request.retries + 1
    job_id = str(self.request.id) if self.request.id else None
    if not row.enabled:
        with engine.begin() as conn:
            webhooks.record_outcome(
                conn, delivery_id, "skipped", attempt, events.Outcome(None, 0, "disabled").as_dict()
            )
        return {"skipped": "the webhook is disabled"}
    body = events.payload(delivery_id, row.event, row.payload, row.created_at)
    with EgressClient.from_settings(settings_of(self.app)) as client:
        outcome = events.post(client, row.url, row.secret, delivery_id, row.event, body)
    last = attempt >= DELIVERY_POLICY.max_attempts or outcome.refused
    state = "succeeded" if outcome.ok else ("dead" if last else "retrying")
    with engine.begin() as conn:
        webhooks.record_outcome(conn, delivery_id, state, attempt, outcome.as_dict(), job_id)
    if outcome.refused:
        raise events.DeliveryRefused(f"delivery {delivery_id}: {outcome.error}")
    if not outcome.ok:
        raise events.DeliveryFailed(f"delivery {delivery_id}, attempt {attempt}: {outcome.error}")
    return outcome.as_dict()


def register(app: Celery) -> None:
    """Register the catalog's tasks on ``app``."""
    app.task(name=IMPORT_TASK, bind=True, max_retries=0, soft_time_limit=1800, time_limit=1900)(
        import_products
    )
    app.task(name=DELIVER_TASK, bind=True, **DELIVERY_POLICY.task_options())(deliver_webhook)
    app.task(name=SWEEP_TASK, bind=True, max_retries=0)(sweep_deliveries)
    app.conf.beat_schedule = {
        **(app.conf.beat_schedule or {}),
        "catalog-sweep-deliveries": {"task": SWEEP_TASK, "schedule": 60.0},
    }
