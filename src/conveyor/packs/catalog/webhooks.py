"""Webhooks: where events go. Add, change, enable/disable, delete; the delivery log.

Each webhook has a secret of its own (``whsec_…``), shown when it is created or rotated; every
delivery is signed with it (see ``events.py``).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, delete, func, insert, select, update

from conveyor.errors import InputRejected, ResourceNotFound
from conveyor.packs.catalog.events import EVENTS
from conveyor.packs.catalog.tables import deliveries, webhooks
from conveyor.packs.kit import EgressFailed, EgressPolicy, EgressRefused


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def check(
    url: str | None = None, events: list[str] | None = None, policy: EgressPolicy | None = None
) -> None:
    """Refuse a URL that is not http(s) with a host, or one the egress ``policy`` refuses
    (a private, loopback, metadata... destination), or events Conveyor does not send. The
    policy is checked again at every send: DNS answers change."""
    if url is not None:
        try:
            parts = urlsplit(url)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
            # What the HTTP client will need: a host it can encode (no empty or 64+ char label)
            # and a URL it can parse; found by fuzzing, where such hosts failed only at send.
            httpx.URL(url).host  # noqa: B018 - decodes the host, raising for bad punycode
            (parts.hostname or "").encode("idna")
        except (ValueError, httpx.InvalidURL):  # UnicodeError is a ValueError
            usable = False
        if not usable:
            raise InputRejected(f"the webhook URL must be http:// or https:// with a host: {url!r}")
        if policy is not None:
            try:
                policy.check_url(url)
            except EgressRefused as exc:
                raise InputRejected(f"the webhook URL is refused: {exc}") from exc
            except EgressFailed:
                pass  # a name that does not resolve yet: its deliveries will say so
    if events is not None:
        unknown = sorted(set(events) - set(EVENTS))
        if unknown or not events:
            raise InputRejected(
                f"choose one or more events among {', '.join(EVENTS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )


def public(row: dict[str, Any], *, reveal: bool = False) -> dict[str, Any]:
    """A webhook as shown: the secret only right after it was made, else its last characters."""
    out = dict(row)
    secret = str(out.pop("secret"))
    out["secret_hint"] = "…" + secret[-4:]
    if reveal:
        out["secret"] = secret
    out["events"] = list(out["events"])
    return out


def create(conn: Connection, values: dict[str, Any], policy: EgressPolicy) -> dict[str, Any]:
    """Add a webhook (its URL checked against the egress ``policy``); shown with its secret."""
    check(values["url"], values["events"], policy)
    row = conn.execute(
        insert(webhooks).values(**values, secret=new_secret()).returning(webhooks)
    ).mappings()
    return public(dict(row.one()), reveal=True)


def get(conn: Connection, webhook_id: int) -> dict[str, Any]:
    row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).mappings().first()
    if row is None:
        raise ResourceNotFound(f"no webhook with id {webhook_id}")
    return dict(row)


def all_with_stats(conn: Connection) -> list[dict[str, Any]]:
    """Every webhook with its delivery counts by state and when it last sent."""
    stats = (
        select(
            deliveries.c.webhook_id,
            func.count().label("deliveries"),
            func.count().filter(deliveries.c.state == "succeeded").label("succeeded"),
            func.count().filter(deliveries.c.state == "dead").label("dead"),
            func.max(deliveries.c.updated_at).label("last_delivery_at"),
        )
        .group_by(deliveries.c.webhook_id)
        .subquery()
    )
    query = (
        select(webhooks, stats.c.deliveries, stats.c.succeeded, stats.c.dead,
               stats.c.last_delivery_at)
        .outerjoin(stats, stats.c.webhook_id == webhooks.c.id)
        .order_by(webhooks.c.id)
    )  # fmt: skip
    out = []
    for r in conn.execute(query).mappings():
        row = public(dict(r))
        for key in ("deliveries", "succeeded", "dead"):
            row[key] = row[key] or 0
        out.append(row)
    return out


def change(
    conn: Connection, webhook_id: int, values: dict[str, Any], policy: EgressPolicy
) -> dict[str, Any]:
    """Change some fields (``rotate_secret=True`` makes a new secret, shown once)."""
    check(values.get("url"), values.get("events"), policy)
    rotate = bool(values.pop("rotate_secret", False))
    if rotate:
        values["secret"] = new_secret()
    if not values:
        return public(get(conn, webhook_id))
    found = conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id)
        .values(**values, updated_at=func.now())
        .returning(webhooks)
    ).mappings().first()  # fmt: skip
    if found is None:
        raise ResourceNotFound(f"no webhook with id {webhook_id}")
    return public(dict(found), reveal=rotate)


def remove(conn: Connection, webhook_id: int) -> None:
    """Delete a webhook and its delivery log (pending deliveries are dropped)."""
    done = conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
    if done.rowcount == 0:
        raise ResourceNotFound(f"no webhook with id {webhook_id}")


def delivery_log(conn: Connection, webhook_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """A webhook's latest deliveries, newest first."""
    get(conn, webhook_id)
    query = (
        select(deliveries)
        .where(deliveries.c.webhook_id == webhook_id)
        .order_by(deliveries.c.id.desc())
        .limit(limit)
    )
    rows = []
    for r in conn.execute(query).mappings():
        row = dict(r)
        row["job_id"] = str(row["job_id"]) if row["job_id"] else None
        rows.append(row)
    return rows


def record_test(conn: Connection, webhook_id: int) -> tuple[int, dict[str, Any]]:
    """Record a test delivery; (its id, the webhook)."""
    hook = get(conn, webhook_id)
    row = conn.execute(
        insert(deliveries)
        .values(
            webhook_id=webhook_id,
            event="webhook.test",
            payload={"test": True, "webhook_id": webhook_id},
        )
        .returning(deliveries.c.id)
    ).one()
    return int(row.id), hook


def record_outcome(
    conn: Connection,
    delivery_id: int,
    state: str,
    attempts: int,
    outcome: dict[str, Any],
    job_id: str | None = None,
) -> None:
    """Write how a delivery went (and, from its job, which job sent it)."""
    extra = {"job_id": job_id} if job_id else {}
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .values(
            **extra,
            state=state,
            attempts=attempts,
            status_code=outcome["status_code"],
            response_ms=outcome["response_ms"],
            error=outcome["error"],
            updated_at=func.now(),
        )
    )
