"""Assessing a plot over a period, from stored rows: weather indices against the plot's own
climatology, NDVI against its 60-day baseline, damage and payout (:mod:`.damage`), and the
evidence as a canonical document named by its CIDv1 (:mod:`.proofs`).

Periods are the policy's own (``Policy.periods``: consecutive 30-day windows from the cover's
start), never "the last 30 days" of whenever a run happens — so a drought that lasts a week more
is still the one assessment of its period. Only a period that has ended is assessed.

Idempotent per (plot, period): the row is claimed first (``INSERT … ON CONFLICT DO NOTHING``),
so a re-run, a retry or a concurrent second job finds the existing assessment and returns it —
never a second assessment, hence never a second payout. A failure is recorded on the row
(``failed`` with the reason), visible on the API and the pages, and a later run tries again.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from conveyor.errors import ConveyorError
from conveyor.packs.agri import damage, proofs, store
from conveyor.packs.agri.errors import AssessmentError, InvalidWeather
from conveyor.packs.agri.indices import (
    DailyWeather,
    WeatherIndices,
    climatology_mm,
    weather_indices,
)
from conveyor.packs.agri.ipfs import Pinner
from conveyor.packs.agri.objectstore import ObjectStore
from conveyor.packs.agri.policies import Policy, plot_from, policy_from
from conveyor.packs.agri.tables import assessments, indices, ndvi_daily, policies, weather

HISTORY_YEARS = 3


def policy_of(row: Any) -> Policy:
    """The domain policy a stored row describes."""
    return policy_from(
        {
            "policy_number": row.policy_number,
            "farmer_wallet": row.farmer_wallet,
            "crop": row.crop,
            "planting_date": row.planting_date,
            "sum_insured": row.sum_insured,
            "currency": row.currency,
            "deductible_pct": row.deductible_pct,
            "thresholds": row.thresholds,
            "cover_start": row.cover_start,
            "cover_end": row.cover_end,
        }
    )


def _series(conn: Connection, plot_id: UUID, start: date, end: date) -> list[DailyWeather]:
    rows = conn.execute(
        select(weather.c.day, weather.c.precipitation_mm, weather.c.tmax_c, weather.c.tmin_c)
        .where(weather.c.plot_id == plot_id, weather.c.day >= start, weather.c.day <= end)
        .order_by(weather.c.day)
    ).all()
    return [DailyWeather(r.day, r.precipitation_mm, r.tmax_c, r.tmin_c) for r in rows]


def plot_indices(conn: Connection, plot_id: UUID, start: date, end: date) -> WeatherIndices:
    """The weather indices of ``start..end`` for a plot from its stored series; the
    climatology is the same window over the stored earlier years. :class:`InvalidWeather`
    says what is missing."""
    policy = policy_of(store.get_policy(conn, store.get_plot(conn, plot_id).policy_id))
    series = _series(conn, plot_id, start, end)
    expected = (end - start).days + 1
    if len(series) != expected:
        raise InvalidWeather(
            f"the plot has weather for {len(series)} of the {expected} days {start}..{end};"
            " the weather schedule fills it in"
        )
    history_start = start.replace(year=start.year - HISTORY_YEARS - 1)
    history = _series(conn, plot_id, history_start, start - timedelta(days=1))
    normal = climatology_mm(history, start, end)
    return weather_indices(series, climatology_mm=normal, profile=policy.profile)


def store_daily_indices(engine: Engine, plot_id: UUID, end: date, window_days: int) -> float:
    """Compute and upsert the plot's indices of the ``window_days`` days to ``end``; stress."""
    start = end - timedelta(days=window_days - 1)
    with engine.begin() as conn:
        result = plot_indices(conn, plot_id, start, end)
        stmt = pg_insert(indices).values(
            plot_id=plot_id,
            day=end,
            window_days=window_days,
            values=result.to_json(),
            stress=result.stress.score,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["plot_id", "day"],
                set_={
                    "values": stmt.excluded["values"],
                    "stress": stmt.excluded.stress,
                    "window_days": stmt.excluded.window_days,
                },
            )
        )
    return result.stress.score


def _ndvi(conn: Connection, plot_id: UUID, start: date, end: date) -> dict[str, Any]:
    rows = conn.execute(
        select(ndvi_daily).where(ndvi_daily.c.plot_id == plot_id).order_by(ndvi_daily.c.day)
    ).all()
    observations = [damage.NdviObservation(r.day, r.mean, r.valid_fraction) for r in rows]
    baseline = damage.ndvi_baseline(observations, start)
    inside = [
        o
        for o in observations
        if start <= o.day <= end and o.valid_fraction >= damage.MIN_VALID_FRACTION
    ]
    mean = math.fsum(o.mean for o in inside) / len(inside) if inside else None
    return {
        "mean": mean,
        "baseline": baseline,
        "observations": [
            {"day": o.day, "mean": o.mean, "valid_fraction": o.valid_fraction} for o in inside
        ],
    }


def last_ended_period(policy: Policy, today: date) -> tuple[date, date] | None:
    """The policy's latest assessment period that ended before ``today``; None if none has."""
    period = policy.period_containing(today - timedelta(days=1))
    if period is None:  # past the cover: its last period, if the cover has ended
        ended = [p for p in policy.periods() if p[1] < today]
        return ended[-1] if ended else None
    if period[1] < today:
        return period
    return policy.period_containing(period[0] - timedelta(days=1))


def period_of(conn: Connection, plot_id: UUID, day: date, today: date) -> tuple[date, date]:
    """The plot's policy period holding ``day``; :class:`AssessmentError` if there is none or
    it has not ended by ``today``."""
    policy = policy_of(store.get_policy(conn, store.get_plot(conn, plot_id).policy_id))
    period = policy.period_containing(day)
    if period is None:
        raise AssessmentError(
            f"{day} is outside the policy's cover {policy.effective_cover_start}.."
            f"{policy.effective_cover_end}"
        )
    if period[1] >= today:
        raise AssessmentError(f"the period {period[0]}..{period[1]} has not ended yet")
    return period


def claim(engine: Engine, plot_id: UUID, start: date, end: date) -> tuple[UUID, bool]:
    """The assessment row of (plot, period), inserted ``pending`` if there was none; (id,
    whether this call created it)."""
    with engine.begin() as conn:
        plot = store.get_plot(conn, plot_id)
        new_id = uuid4()
        made = conn.execute(
            pg_insert(assessments)
            .values(
                id=new_id,
                plot_id=plot_id,
                policy_id=plot.policy_id,
                period_start=start,
                period_end=end,
            )
            .on_conflict_do_nothing(constraint="uq_agri_assessments_period")
            .returning(assessments.c.id)
        ).scalar()
        if made is not None:
            return new_id, True
        existing = conn.execute(
            select(assessments.c.id).where(
                assessments.c.plot_id == plot_id,
                assessments.c.period_start == start,
                assessments.c.period_end == end,
            )
        ).scalar_one()
        return existing, False


def assess(engine: Engine, plot_id: UUID, start: date, end: date) -> dict[str, Any]:
    """Assess the plot over ``start..end`` once (see the module); the assessment's row."""
    if end < start:
        raise AssessmentError(f"the period ends ({end}) before it starts ({start})")
    with engine.connect() as conn:
        policy = policy_of(store.get_policy(conn, store.get_plot(conn, plot_id).policy_id))
    if (start, end) not in policy.periods():
        raise AssessmentError(
            f"{start}..{end} is not one of the policy's assessment periods (30 days from"
            f" {policy.effective_cover_start})"
        )
    assessment_id, _ = claim(engine, plot_id, start, end)
    with engine.begin() as conn:
        row = conn.execute(
            select(assessments).where(assessments.c.id == assessment_id).with_for_update()
        ).one()
        if row.status == "completed":  # a re-run: the same assessment, nothing new
            return store.public(row)
        plot = store.get_plot(conn, plot_id)
        # One assessment of a policy at a time: what its other periods and plots paid is read
        # and this one's payout capped by the rest of the sum insured, with no race between.
        policy_row = conn.execute(
            select(policies).where(policies.c.id == plot.policy_id).with_for_update()
        ).one()
        paid_before = conn.execute(
            select(func.coalesce(func.sum(assessments.c.payout_amount), 0)).where(
                assessments.c.policy_id == plot.policy_id,
                assessments.c.status == "completed",
                assessments.c.id != assessment_id,
            )
        ).scalar_one()
        try:
            policy = policy_of(policy_row)
            weather_result = plot_indices(conn, plot_id, start, end)
            ndvi = _ndvi(conn, plot_id, start, end)
            result = damage.assess(
                policy,
                weather_result,
                ndvi_mean=ndvi["mean"],
                ndvi_baseline=ndvi["baseline"],
                paid_before=min(Decimal(paid_before), policy.sum_insured),
            )
        except ConveyorError as exc:
            conn.execute(
                update(assessments)
                .where(assessments.c.id == assessment_id)
                .values(status="failed", error=str(exc))
            )
            return store.public(store.get_assessment(conn, assessment_id))
        now = datetime.now(UTC)
        document = damage.evidence(
            plot_id=str(plot.id),
            plot=plot_from(
                {
                    "name": plot.name,
                    "policy_number": policy.policy_number,
                    "geometry": plot.geometry,
                }
            ),
            policy=policy,
            indices=weather_result,
            assessment=result,
            ndvi=ndvi if ndvi["mean"] is not None else None,
            generated_at=now,
        )
        canonical = proofs.canonical(document)
        cid = proofs.cid_of(canonical)
        satellite = result.satellite
        conn.execute(
            update(assessments)
            .where(assessments.c.id == assessment_id)
            .values(
                status="completed",
                weather_damage=result.weather_damage,
                satellite_damage=satellite.damage if satellite else None,
                damage=result.adjusted,
                triggered=result.triggered,
                payout_amount=result.payout,
                details=result.to_json(),
                evidence=canonical,
                proof_cid=cid,
                error=None,
                completed_at=now,
            )
        )
        return store.public(store.get_assessment(conn, assessment_id))


def publish_proof(
    engine: Engine, assessment_id: UUID, objects: ObjectStore, pinner: Pinner | None
) -> dict[str, Any]:
    """Store a completed assessment's evidence in the object store under its CID and pin it
    (when a pinning service is configured); safe to repeat. A pinning failure is recorded on
    the row and retried by the pending-assessments schedule."""
    row = store.get_assessment(engine, assessment_id)
    if row.proof_cid is None or row.evidence is None:
        raise AssessmentError(f"assessment {assessment_id} has no proof yet")
    key = f"proofs/{row.proof_cid}.json"
    document = bytes(row.evidence)
    if not objects.exists(key):
        objects.put(key, document, "application/json")
    values: dict[str, Any] = {"proof_key": key}
    if pinner is not None and not row.pinned:
        try:
            pinned = pinner.pin(document, f"{row.proof_cid}.json")
        except ConveyorError as exc:
            values["error"] = f"pinning failed (retried): {exc}"
        else:
            values.update(pinned=pinned == row.proof_cid, error=None)
    with engine.begin() as conn:
        conn.execute(update(assessments).where(assessments.c.id == assessment_id).values(**values))
    return store.public(store.get_assessment(engine, assessment_id))
