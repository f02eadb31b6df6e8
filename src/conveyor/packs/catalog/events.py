"""Webhook events: recorded with the change that caused them, delivered by jobs.

A change to the products records one delivery row per subscribed, enabled webhook *in the
same transaction* as the change (so an event exists exactly when its change committed), and
after the commit submits one ``catalog.deliver_webhook`` job per delivery. The request that
made the change never waits on a receiver.

A delivery is a POST of ``{"id", "event", "created_at", "data"}`` as JSON with these headers::

    X-Conveyor-Event: product.updated
    X-Conveyor-Delivery: 42
    X-Conveyor-Timestamp: 1767225600
    X-Conveyor-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

A receiver recomputes the signature over the timestamp and the raw body with its webhook's
secret, compares in constant time, and refuses old timestamps (replays). See :func:`sign`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, text

from conveyor.packs.catalog.tables import deliveries, webhooks
from conveyor.packs.kit import EgressClient, EgressFailed, EgressRefused

EVENTS = ("product.created", "product.updated", "product.deleted", "import.completed")
TEST_EVENT = "webhook.test"
DELIVER_TASK = "catalog.deliver_webhook"
USER_AGENT = "Conveyor-Webhooks/1"


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx in time; the delivery job is retried."""


class DeliveryRefused(Exception):
    """The egress guard refused the webhook's destination; retrying would not change that."""


def timestamp(value: datetime) -> str:
    """A time as every payload writes it: ISO 8601 with ``T``, in UTC
    (``2026-12-04T14:06:37.681020+00:00``)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def as_json(value: Any) -> str:
    """``json.dumps``'s ``default``: times through :func:`timestamp`, anything else as text."""
    return timestamp(value) if isinstance(value, datetime) else str(value)


def payload(
    delivery_id: int, event: str, data: dict[str, Any], created_at: datetime | None = None
) -> dict[str, Any]:
    """The JSON body a receiver gets (the same on every attempt)."""
    return {
        "id": delivery_id,
        "event": event,
        "created_at": timestamp(created_at or datetime.now(UTC)),
        "data": data,
    }


def record(conn: Connection, event: str, data: dict[str, Any]) -> list[int]:
    """Record a delivery of ``event`` for every enabled webhook subscribed to it, in the
    caller's transaction; the delivery ids (submit them with :func:`dispatch` after commit)."""
    hooks = conn.execute(
        select(webhooks.c.id).where(webhooks.c.enabled, webhooks.c.events.any_() == event)
    ).all()
    if not hooks:
        return []
    body = json.loads(json.dumps(data, default=as_json))  # datetimes as ISO text, as sent
    rows = conn.execute(
        insert(deliveries).returning(deliveries.c.id),
        [{"webhook_id": h.id, "event": event, "payload": body} for h in hooks],
    ).all()
    return [int(r.id) for r in rows]


RECORD_SQL = """
    INSERT INTO catalog_webhook_deliveries (webhook_id, event, payload, created_at, updated_at)
    SELECT id, %(event)s::varchar, %(payload)s::jsonb, clock_timestamp(), clock_timestamp()
    FROM catalog_webhooks
    WHERE enabled AND %(event)s::varchar = ANY(events)
    RETURNING id"""


def record_raw(conn: Any, event: str, data: dict[str, Any]) -> list[int]:
    """:func:`record` on a plain psycopg connection (the importer's transaction, which may
    have run for a while: the event's time is the clock's, not the transaction's start)."""
    body = json.dumps(data, default=as_json)
    rows = conn.execute(RECORD_SQL, {"event": event, "payload": body}).fetchall()
    return [int(r[0]) for r in rows]


def dispatch(control: Any, delivery_ids: list[int]) -> None:
    """Submit one delivery job per id (after the change that recorded them committed) and
    note each job on its delivery, so the sweeper knows it was sent."""
    sent = []
    for delivery_id in delivery_ids:
        job, _ = control.submit(DELIVER_TASK, kwargs={"delivery_id": delivery_id})
        sent.append((delivery_id, str(job["id"])))
    with control.engine.begin() as conn:
        mark_dispatched(conn, sent)


MARK_DISPATCHED = text("""
UPDATE catalog_webhook_deliveries AS d SET job_id = s.job_id
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS s(id bigint, job_id uuid)
WHERE d.id = s.id AND d.job_id IS NULL""")

SWEEP_AFTER = timedelta(minutes=2)
"""A delivery recorded this long ago and never sent lost its sender (the process that made
the change died between its commit and the submit): the sweeper sends it."""


def mark_dispatched(conn: Any, sent: list[tuple[int, str]]) -> None:
    """Note the job that sends each delivery (a SQLAlchemy connection, or psycopg's)."""
    if not sent:
        return
    rows = json.dumps([{"id": d, "job_id": j} for d, j in sent])
    if isinstance(conn, Connection):
        conn.execute(MARK_DISPATCHED, {"rows": rows})
    else:  # a plain psycopg connection (the importer's)
        conn.execute(str(MARK_DISPATCHED).replace(":rows", "%(rows)s"), {"rows": rows})


def undispatched(conn: Connection, now: datetime, limit: int = 1000) -> list[int]:
    """Pending deliveries that no job was ever submitted for, recorded before ``now`` minus
    :data:`SWEEP_AFTER`, oldest first."""
    rows = conn.execute(
        select(deliveries.c.id)
        .where(
            deliveries.c.state == "pending",
            deliveries.c.job_id.is_(None),
            deliveries.c.created_at < now - SWEEP_AFTER,
        )
        .order_by(deliveries.c.id)
        .limit(limit)
    ).all()
    return [int(r.id) for r in rows]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: int = 300
) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class Outcome:
    """How one POST went: status code (None if no response), milliseconds, and what went
    wrong as a status line (``HTTP 500``), a network failure or the guard's refusal — never
    the receiver's body."""

    def __init__(
        self, status_code: int | None, ms: float, error: str | None, *, refused: bool = False
    ) -> None:
        self.status_code = status_code
        self.ms = ms
        self.error = error
        self.refused = refused

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status_code": self.status_code,
            "response_ms": round(self.ms, 1),
            "error": self.error,
        }


def post(
    client: EgressClient,
    url: str,
    secret: str,
    delivery_id: int,
    event: str,
    body: dict[str, Any],
) -> Outcome:
    """POST one signed delivery through the guarded client; never raises for the receiver's
    failures or the guard's refusal. The answer's body is not read."""
    raw = json.dumps(body, separators=(",", ":"), default=as_json).encode()
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Conveyor-Event": event,
        "X-Conveyor-Delivery": str(delivery_id),
        "X-Conveyor-Timestamp": str(ts),
        "X-Conveyor-Signature": sign(secret, ts, raw),
    }
    started = time.perf_counter()
    try:
        # Redirects are not followed: a receiver that moved must be edited, not guessed.
        answer = client.post(url, content=raw, headers=headers, max_bytes=0)
    except EgressRefused as exc:
        return Outcome(None, _ms(started), f"refused: {exc}", refused=True)
    except EgressFailed as exc:
        return Outcome(None, _ms(started), str(exc))
    error = None if answer.is_success else answer.status_line
    return Outcome(answer.status_code, _ms(started), error)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
