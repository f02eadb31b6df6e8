"""The agri flows as plain functions over an engine and the providers: the weather cycle, the
daily NDVI aggregate and its 60-day baselines, the trigger check, payouts approved from
assessments and sent, archiving. The tasks in :mod:`.tasks` are thin wrappers around these.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Engine, and_, func, insert, select, text

from conveyor.packs.agri import chain as payouts_chain
from conveyor.packs.agri import store
from conveyor.packs.agri.errors import ProviderError
from conveyor.packs.agri.tables import assessments, indices, payouts, plots, policies, weather
from conveyor.packs.agri.weather import WeatherProvider

log = logging.getLogger(__name__)

BASELINE_DAYS = 60
HISTORY_YEARS = 3


@dataclass
class CycleReport:
    """What one weather cycle did: plots updated, days stored, failures by plot."""

    plots: int = 0
    days: int = 0
    failed: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"plots": self.plots, "days": self.days, "failed": self.failed or {}}


def weather_cycle(engine: Engine, provider: WeatherProvider, today: date, days: int) -> CycleReport:
    """Fetch ``days`` days up to yesterday for every plot of an active policy and store them.

    A provider failure for one plot is recorded in the report (and logged) and the cycle goes
    on with the next plot: one bad answer must not starve the others."""
    end = today - timedelta(days=1)
    recent = end - timedelta(days=days - 1)
    # A plot's climatology needs the same window in earlier years: a plot whose series does
    # not reach that far back gets its history in the same request.
    history_start = end.replace(year=end.year - HISTORY_YEARS - 1, day=1)
    with engine.connect() as conn:
        first_day = func.min(weather.c.day).label("first_day")
        known = dict(
            conn.execute(select(weather.c.plot_id, first_day).group_by(weather.c.plot_id)).all()
        )
        targets = conn.execute(
            select(plots.c.id, plots.c.lat, plots.c.lon)
            .join(policies, policies.c.id == plots.c.policy_id)
            .where(policies.c.status == "active")
            .order_by(plots.c.id)
        ).all()
    report = CycleReport(failed={})
    for plot_id, lat, lon in targets:
        first = known.get(plot_id)
        start = recent if first is not None and first <= history_start else history_start
        try:
            series = provider.daily(lat, lon, start, end)
        except (ProviderError, ValueError) as exc:
            assert report.failed is not None
            report.failed[str(plot_id)] = str(exc)
            log.warning("weather for plot %s failed: %s", plot_id, exc)
            continue
        report.days += store.store_weather(engine, plot_id, series.days, provider.name)
        report.plots += 1
    return report


def daily_ndvi(engine: Engine, day: date) -> int:
    """Aggregate the completed images acquired on ``day`` into one NDVI row per plot (the mean
    of the images' means, weighted by their valid fractions); how many plots."""
    with engine.begin() as conn:
        result = conn.execute(
            text(
                """
                INSERT INTO agri_ndvi_daily (plot_id, day, mean, p10, p90, valid_fraction)
                SELECT plot_id, acquired_on,
                       sum((stats->>'mean')::float8 * (stats->>'valid_fraction')::float8)
                         / nullif(sum((stats->>'valid_fraction')::float8), 0),
                       min((stats->>'p10')::float8), max((stats->>'p90')::float8),
                       avg((stats->>'valid_fraction')::float8)
                FROM agri_images
                WHERE status = 'completed' AND acquired_on = :day
                  AND (stats->>'valid_fraction')::float8 > 0
                GROUP BY plot_id, acquired_on
                ON CONFLICT (plot_id, day) DO UPDATE SET mean = excluded.mean,
                  p10 = excluded.p10, p90 = excluded.p90, valid_fraction = excluded.valid_fraction
                """
            ),
            {"day": day},
        )
    return int(result.rowcount or 0)


def update_baselines(engine: Engine, today: date) -> int:
    """Set each plot's baseline on its latest NDVI day: the mean NDVI of the
    :data:`BASELINE_DAYS` days before that day; how many plots."""
    with engine.begin() as conn:
        result = conn.execute(
            text(
                """
                UPDATE agri_ndvi_daily d SET baseline = b.baseline
                FROM (
                  SELECT l.plot_id, l.day, avg(h.mean) AS baseline
                  FROM (SELECT plot_id, max(day) AS day FROM agri_ndvi_daily
                        WHERE day <= :today GROUP BY plot_id) l
                  JOIN agri_ndvi_daily h ON h.plot_id = l.plot_id
                   AND h.day >= l.day - :window AND h.day < l.day
                  GROUP BY l.plot_id, l.day
                ) b
                WHERE d.plot_id = b.plot_id AND d.day = b.day
                """
            ),
            {"today": today, "window": BASELINE_DAYS},
        )
    return int(result.rowcount or 0)


def stressed_plots(engine: Engine, threshold: float, today: date) -> list[dict[str, Any]]:
    """Plots whose latest stress score is at least ``threshold`` and whose policy's last ended
    period has no assessment yet: what the trigger schedule assesses."""
    from conveyor.packs.agri.assessment import last_ended_period, policy_of

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT DISTINCT ON (i.plot_id) i.plot_id, i.stress
                FROM agri_indices i ORDER BY i.plot_id, i.day DESC
                """
            )
        ).all()
        out = []
        for plot_id, stress in rows:
            if stress < threshold:
                continue
            plot = store.get_plot(conn, plot_id)
            period = last_ended_period(policy_of(store.get_policy(conn, plot.policy_id)), today)
            if period is None:
                continue
            done = conn.execute(
                select(assessments.c.id).where(
                    and_(
                        assessments.c.plot_id == plot_id,
                        assessments.c.period_start == period[0],
                        assessments.c.period_end == period[1],
                    )
                )
            ).first()
            if done is None:
                out.append({"plot_id": str(plot_id), "start": period[0], "end": period[1]})
    return out


def approve_payouts(engine: Engine) -> list[UUID]:
    """Create the payout of every completed, triggered, proven assessment that has none (one
    per assessment: the unique key makes a concurrent second insert fail, not pay)."""
    with engine.begin() as conn:
        rows = conn.execute(
            select(assessments, policies.c.farmer_wallet)
            .join(policies, policies.c.id == assessments.c.policy_id)
            .outerjoin(payouts, payouts.c.assessment_id == assessments.c.id)
            .where(
                assessments.c.status == "completed",
                assessments.c.triggered.is_(True),
                assessments.c.proof_cid.is_not(None),
                assessments.c.payout_amount > 0,
                payouts.c.id.is_(None),
            )
        ).all()
        made = []
        for row in rows:
            payout_id = uuid4()
            conn.execute(
                insert(payouts).values(
                    id=payout_id,
                    assessment_id=row.id,
                    plot_id=row.plot_id,
                    policy_id=row.policy_id,
                    wallet=row.farmer_wallet,
                    amount=row.payout_amount,
                    amount_wei=payouts_chain.to_wei(row.payout_amount),
                    proof_cid=row.proof_cid,
                )
            )
            made.append(payout_id)
    return made


def open_payouts(engine: Engine, limit: int = 20) -> list[UUID]:
    """Payouts still to send or confirm, oldest first (the seed's 20 per run)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(payouts.c.id)
                .where(payouts.c.status.in_(("approved", "submitted")))
                .order_by(payouts.c.created_at)
                .limit(limit)
            ).scalars()
        )


def plot_ids(engine: Engine) -> list[UUID]:
    """Every plot of an active policy."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(plots.c.id)
                .join(policies, policies.c.id == plots.c.policy_id)
                .where(policies.c.status == "active")
                .order_by(plots.c.id)
            ).scalars()
        )


def plots_without_indices(engine: Engine, day: date) -> list[UUID]:
    """Plots of active policies that have no indices for ``day``."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(plots.c.id)
                .join(policies, policies.c.id == plots.c.policy_id)
                .outerjoin(indices, and_(indices.c.plot_id == plots.c.id, indices.c.day == day))
                .where(policies.c.status == "active", indices.c.plot_id.is_(None))
            ).scalars()
        )


def unfinished_assessments(engine: Engine, limit: int) -> list[tuple[UUID, date, date]]:
    """Assessments pending for over 10 minutes or failed, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT plot_id, period_start, period_end FROM agri_assessments"
                " WHERE status = 'failed' OR (status = 'pending'"
                " AND created_at < now() - interval '10 minutes')"
                " ORDER BY created_at LIMIT :n"
            ),
            {"n": limit},
        ).all()
    return [(r.plot_id, r.period_start, r.period_end) for r in rows]


def unpublished_proofs(engine: Engine, pinning: bool, limit: int = 50) -> list[UUID]:
    """Completed assessments whose proof is not in the object store yet (or not pinned, when a
    pinning service is configured)."""
    cond = "proof_key IS NULL" + (" OR NOT pinned" if pinning else "")
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id FROM agri_assessments WHERE status = 'completed'"
                    f" AND proof_cid IS NOT NULL AND ({cond}) ORDER BY created_at LIMIT :n"
                ),
                {"n": limit},
            ).scalars()
        )


def latest_stress(engine: Engine, plot_id: UUID) -> float | None:
    with engine.connect() as conn:
        value = conn.execute(
            select(indices.c.stress)
            .where(indices.c.plot_id == plot_id)
            .order_by(indices.c.day.desc())
            .limit(1)
        ).scalar()
    return None if value is None else float(value)
