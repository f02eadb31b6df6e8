"""The agri pack's rows: policies, plots, the weather series, indices, images, assessments and
payouts — plain functions over a SQLAlchemy engine or connection, shared by the API, the CLI,
the pages and the tasks.

Rows go out as plain dicts (:func:`public`): UUIDs and dates as strings, amounts as decimal
strings (never floats), bytes never (a proof's document is served on its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from conveyor.errors import ResourceConflict, ResourceNotFound
from conveyor.packs.agri.policies import Plot, Policy
from conveyor.packs.agri.proofs import digest_of
from conveyor.packs.agri.tables import (
    assessments,
    images,
    indices,
    ndvi_daily,
    payouts,
    plots,
    policies,
    weather,
)

Bind = Engine | Connection
HIDDEN = {"raw_tx", "evidence"}


def public(row: Any) -> dict[str, Any]:
    """A row as JSON-ready values (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in row._mapping.items():
        if key in HIDDEN:
            continue
        if isinstance(value, UUID | date | datetime):
            value = value.isoformat() if not isinstance(value, UUID) else str(value)
        elif isinstance(value, Decimal):
            value = str(value)
        out[key] = value
    return out


def _one(bind: Bind, stmt: Any) -> Any:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return conn.execute(stmt).first()
    return bind.execute(stmt).first()


def _all(bind: Bind, stmt: Any) -> Sequence[Any]:
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return conn.execute(stmt).all()
    return bind.execute(stmt).all()


# --- policies ---------------------------------------------------------------------------------


def create_policy(engine: Engine, policy: Policy) -> dict[str, Any]:
    """Store a checked policy; 409 if its number is taken."""
    values = {
        "id": uuid4(),
        "policy_number": policy.policy_number,
        "crop": policy.crop,
        "planting_date": policy.planting_date,
        "cover_start": policy.effective_cover_start,
        "cover_end": policy.effective_cover_end,
        "currency": policy.currency,
        "sum_insured": policy.sum_insured,
        "deductible_pct": policy.deductible_pct,
        "thresholds": policy.thresholds.model_dump(mode="json"),
        "farmer_wallet": policy.farmer_wallet,
    }
    try:
        with engine.begin() as conn:
            row = conn.execute(insert(policies).values(**values).returning(policies)).one()
    except IntegrityError:
        raise ResourceConflict(f"policy {policy.policy_number!r} exists already") from None
    return public(row)


def get_policy(bind: Bind, key: UUID | str) -> Any:
    """A policy row by id or policy number; 404 if there is none."""
    cond = policies.c.id == key if isinstance(key, UUID) else policies.c.policy_number == key
    row = _one(bind, select(policies).where(cond))
    if row is None:
        raise ResourceNotFound(f"no policy {key}")
    return row


def list_policies(bind: Bind, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    stmt = select(policies).order_by(policies.c.created_at.desc()).limit(limit).offset(offset)
    return [public(r) for r in _all(bind, stmt)]


def delete_policy(engine: Engine, policy_id: UUID) -> None:
    """Delete a policy with its plots and assessments; 409 once it has a payout."""
    _delete_unpaid(engine, "policy", policy_id)


def _delete_unpaid(engine: Engine, kind: str, key: UUID) -> None:
    """Delete a policy or a plot (with what hangs on it) unless something was paid on it: a
    payout is a record of money sent and keeps what it was paid for."""
    table, column = (policies, "policy_id") if kind == "policy" else (plots, "plot_id")
    with engine.begin() as conn:
        paid = conn.execute(
            select(func.count()).select_from(payouts).where(payouts.c[column] == key)
        ).scalar_one()
        if paid:
            raise ResourceConflict(f"{kind} {key} has payouts; it cannot be deleted")
        conn.execute(delete(assessments).where(assessments.c[column] == key))
        if kind == "plot":  # the series carries no foreign key (it is partitioned)
            conn.execute(delete(weather).where(weather.c.plot_id == key))
        gone = conn.execute(delete(table).where(table.c.id == key)).rowcount
    if not gone:
        raise ResourceNotFound(f"no {kind} {key}")


# --- plots ------------------------------------------------------------------------------------


def _plot_values(plot: Plot) -> dict[str, Any]:
    min_lon, min_lat, max_lon, max_lat = plot.bbox
    lon, lat = plot.centroid
    return {
        "name": plot.name,
        "geometry": plot.geometry,
        "area_ha": plot.area_ha,
        "min_lon": min_lon,
        "min_lat": min_lat,
        "max_lon": max_lon,
        "max_lat": max_lat,
        "lon": lon,
        "lat": lat,
    }


def create_plots(engine: Engine, items: Iterable[Plot]) -> list[dict[str, Any]]:
    """Store checked plots under their policies (by number), all or none; 404 names an
    unknown policy."""
    out = []
    with engine.begin() as conn:
        known: dict[str, UUID] = {}
        for plot in items:
            if plot.policy_number not in known:
                known[plot.policy_number] = get_policy(conn, plot.policy_number).id
            values = {"id": uuid4(), "policy_id": known[plot.policy_number], **_plot_values(plot)}
            row = conn.execute(insert(plots).values(**values).returning(plots)).one()
            out.append(public(row))
    return out


def update_plot(engine: Engine, plot_id: UUID, plot: Plot) -> dict[str, Any]:
    """Replace a plot's name, boundary (and policy); 404 if there is no such plot."""
    with engine.begin() as conn:
        policy_id = get_policy(conn, plot.policy_number).id
        row = conn.execute(
            update(plots)
            .where(plots.c.id == plot_id)
            .values(policy_id=policy_id, updated_at=func.now(), **_plot_values(plot))
            .returning(plots)
        ).first()
    if row is None:
        raise ResourceNotFound(f"no plot {plot_id}")
    return public(row)


def get_plot(bind: Bind, plot_id: UUID) -> Any:
    row = _one(bind, select(plots).where(plots.c.id == plot_id))
    if row is None:
        raise ResourceNotFound(f"no plot {plot_id}")
    return row


def list_plots(
    bind: Bind, policy_id: UUID | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    stmt = select(plots).order_by(plots.c.created_at, plots.c.id).limit(limit).offset(offset)
    if policy_id is not None:
        stmt = stmt.where(plots.c.policy_id == policy_id)
    return [public(r) for r in _all(bind, stmt)]


def delete_plot(engine: Engine, plot_id: UUID) -> None:
    """Delete a plot with its series and assessments; 409 once it has a payout."""
    _delete_unpaid(engine, "plot", plot_id)


# --- weather: a series partitioned by month ----------------------------------------------------


def month_partition(day: date) -> str:
    """The name of ``day``'s month partition of ``agri_weather``."""
    return f"agri_weather_{day.year:04d}{day.month:02d}"


def ensure_month(conn: Connection, day: date) -> None:
    """Create ``day``'s month partition if it is missing (rows of a month that has none go to
    the default partition, which must not hold that month's rows when the month is added: they
    are moved)."""
    name = month_partition(day)
    start = day.replace(day=1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
    if exists:
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('agri-weather-partitions'))"))
    if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar():
        return
    bounds = {"s": start, "e": end}
    stray = "FROM agri_weather_default WHERE day >= :s AND day < :e"
    conn.execute(text(f"CREATE TEMP TABLE agri_moving AS SELECT * {stray}"), bounds)
    conn.execute(text(f"DELETE {stray}"), bounds)
    conn.execute(
        text(
            f"CREATE TABLE {name} PARTITION OF agri_weather"
            f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    )
    conn.execute(text("INSERT INTO agri_weather SELECT * FROM agri_moving"))
    conn.execute(text("DROP TABLE agri_moving"))


def store_weather(engine: Engine, plot_id: UUID, days: Iterable[Any], source: str) -> int:
    """Upsert daily weather (objects with day, precipitation_mm, tmax_c, tmin_c); how many."""
    rows = [
        {
            "plot_id": plot_id,
            "day": d.day,
            "precipitation_mm": d.precipitation_mm,
            "tmax_c": d.tmax_c,
            "tmin_c": d.tmin_c,
            "source": source,
        }
        for d in days
    ]
    if not rows:
        return 0
    with engine.begin() as conn:
        for month in {(r["day"].year, r["day"].month) for r in rows}:
            ensure_month(conn, date(month[0], month[1], 1))
        stmt = pg_insert(weather).values(rows)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["plot_id", "day"],
                set_={
                    "precipitation_mm": stmt.excluded.precipitation_mm,
                    "tmax_c": stmt.excluded.tmax_c,
                    "tmin_c": stmt.excluded.tmin_c,
                    "source": stmt.excluded.source,
                    "fetched_at": func.now(),
                },
            )
        )
    return len(rows)


def weather_series(
    bind: Bind, plot_id: UUID, start: date | None = None, end: date | None = None
) -> list[dict[str, Any]]:
    """A plot's daily weather between ``start`` and ``end`` (inclusive), oldest first."""
    stmt = select(weather).where(weather.c.plot_id == plot_id).order_by(weather.c.day)
    if start is not None:
        stmt = stmt.where(weather.c.day >= start)
    if end is not None:
        stmt = stmt.where(weather.c.day <= end)
    return [public(r) for r in _all(bind, stmt)]


# --- indices, images, NDVI ---------------------------------------------------------------------


def list_indices(bind: Bind, plot_id: UUID, limit: int = 366) -> list[dict[str, Any]]:
    stmt = (
        select(indices).where(indices.c.plot_id == plot_id).order_by(indices.c.day.desc())
    ).limit(limit)
    return [public(r) for r in _all(bind, stmt)]


def list_images(bind: Bind, plot_id: UUID | None = None, limit: int = 100) -> list[dict[str, Any]]:
    stmt = select(images).order_by(images.c.ordered_at.desc()).limit(limit)
    if plot_id is not None:
        stmt = stmt.where(images.c.plot_id == plot_id)
    return [public(r) for r in _all(bind, stmt)]


def ndvi_timeline(bind: Bind, plot_id: UUID) -> list[dict[str, Any]]:
    stmt = select(ndvi_daily).where(ndvi_daily.c.plot_id == plot_id).order_by(ndvi_daily.c.day)
    return [public(r) for r in _all(bind, stmt)]


# --- assessments, payouts, proofs -----------------------------------------------------------


def list_assessments(
    bind: Bind, plot_id: UUID | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    stmt = select(assessments).order_by(assessments.c.created_at.desc()).limit(limit)
    if plot_id is not None:
        stmt = stmt.where(assessments.c.plot_id == plot_id)
    return [public(r) for r in _all(bind, stmt)]


def get_assessment(bind: Bind, assessment_id: UUID) -> Any:
    row = _one(bind, select(assessments).where(assessments.c.id == assessment_id))
    if row is None:
        raise ResourceNotFound(f"no assessment {assessment_id}")
    return row


def list_payouts(
    bind: Bind, status: str | None = None, plot_id: UUID | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    stmt = select(payouts).order_by(payouts.c.created_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(payouts.c.status == status)
    if plot_id is not None:
        stmt = stmt.where(payouts.c.plot_id == plot_id)
    return [public(r) for r in _all(bind, stmt)]


def get_payout(bind: Bind, payout_id: UUID) -> Any:
    row = _one(bind, select(payouts).where(payouts.c.id == payout_id))
    if row is None:
        raise ResourceNotFound(f"no payout {payout_id}")
    return row


def proof_document(bind: Bind, cid: str) -> bytes:
    """The canonical evidence document a proof CID names; 404 if no assessment has it, 422
    (:class:`ProofError`) for something that is not a proof CID at all."""
    digest_of(cid)
    row = _one(bind, select(assessments.c.evidence).where(assessments.c.proof_cid == cid).limit(1))
    if row is None or row.evidence is None:
        raise ResourceNotFound(f"no proof {cid}")
    return bytes(row.evidence)
