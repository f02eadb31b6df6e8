"""The agri pack's Celery tasks: thin wrappers that decode ids and call :mod:`.pipeline`, and
the seed's schedules, declared on the app's ``beat_schedule`` so they appear (and can be paused
or edited) on the Schedules page:

========================  ====================  ==========================================
schedule                  when                  task
========================  ====================  ==========================================
agri-weather              every 5 min           ``agri.weather_cycle``
agri-triggers             every 10 min          ``agri.check_triggers``
agri-pending-images       every 15 min          ``agri.process_pending_images``
agri-daily-indices        00:00 daily           ``agri.daily_indices``
agri-daily-ndvi           00:15 daily           ``agri.daily_ndvi``
agri-baselines            Sunday 02:00          ``agri.update_baselines``
agri-pending-assessments  every 10 min          ``agri.process_pending_assessments``
agri-pending-payouts      every 10 min          ``agri.process_pending_payouts``
agri-archive              02:30 daily           ``agri.archive_assessments``
========================  ====================  ==========================================

On demand: ``agri.assess(plot_id, start, end)`` and ``agri.pay(payout_id)``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from celery import Celery, Task
from celery.schedules import crontab
from sqlalchemy import Engine, create_engine, text, update

import conveyor
from conveyor.packs import psycopg_url, settings_of
from conveyor.packs.agri import assessment, chain, pipeline
from conveyor.packs.agri.config import AgriSettings
from conveyor.packs.agri.tables import images
from conveyor.packs.agri.weather import OpenMeteo
from conveyor.packs.kit import EgressPolicy

log = logging.getLogger(__name__)

WEATHER_TASK = "agri.weather_cycle"
TRIGGERS_TASK = "agri.check_triggers"
IMAGES_TASK = "agri.process_pending_images"
INDICES_TASK = "agri.daily_indices"
NDVI_TASK = "agri.daily_ndvi"
BASELINES_TASK = "agri.update_baselines"
ASSESSMENTS_TASK = "agri.process_pending_assessments"
PAYOUTS_TASK = "agri.process_pending_payouts"
ARCHIVE_TASK = "agri.archive_assessments"
ASSESS_TASK = "agri.assess"
PAYOUT_TASK = "agri.pay"

IMAGE_EXPIRY = timedelta(days=7)
# Sending a payout talks to a node: retried with backoff on PayoutError only (a retry re-sends
# the recorded transaction, see chain.py).
PAY_POLICY = conveyor.RetryPolicy(
    max_attempts=6, backoff=2, backoff_max=120, retry_on=(chain.PayoutError,)
)


@dataclass
class _Process:
    """What one worker process keeps between tasks (pools and clients must not cross a fork)."""

    pid: int
    engine: Engine
    agri: AgriSettings
    egress: EgressPolicy


_state: dict[str, _Process] = {}


def _process(app: Celery) -> _Process:
    state = _state.get("p")
    if state is None or state.pid != os.getpid():
        settings = settings_of(app)
        url = psycopg_url(settings).replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)
        state = _Process(os.getpid(), engine, AgriSettings(), EgressPolicy.from_settings(settings))
        _state["p"] = state
    return state


def _today() -> date:
    return datetime.now(UTC).date()


def weather_cycle(self: Task) -> dict[str, Any]:
    """Fetch the recent daily weather of every active plot and store it."""
    state = _process(self.app)
    provider = OpenMeteo(
        state.egress,
        forecast_url=state.agri.weather_forecast_url,
        archive_url=state.agri.weather_archive_url,
    )
    with provider:
        report = pipeline.weather_cycle(state.engine, provider, _today(), state.agri.weather_days)
    return report.as_dict()


def check_triggers(self: Task) -> dict[str, Any]:
    """Ask for an assessment of every plot whose latest stress reached the trigger. A plot
    without indices for yesterday gets them first (the daily run is at midnight; weather that
    arrived since counts now)."""
    state = _process(self.app)
    yesterday = _today() - timedelta(days=1)
    for plot_id in pipeline.plots_without_indices(state.engine, yesterday):
        try:
            assessment.store_daily_indices(state.engine, plot_id, yesterday, state.agri.period_days)
        except conveyor.ConveyorError as exc:  # no weather yet: the next check tries again
            log.info("no indices for plot %s yet: %s", plot_id, exc)
    due = pipeline.stressed_plots(state.engine, state.agri.trigger_stress, _today())
    for item in due:
        kwargs = {"plot_id": item["plot_id"], "start": str(item["start"]), "end": str(item["end"])}
        self.app.send_task(ASSESS_TASK, kwargs=kwargs)
    return {"triggered": len(due)}


def daily_indices(self: Task, day: str | None = None) -> dict[str, Any]:
    """Compute every plot's indices of the period ending yesterday (or ``day``)."""
    state = _process(self.app)
    end = date.fromisoformat(day) if day else _today() - timedelta(days=1)
    done, failed = 0, {}
    for plot_id in pipeline.plot_ids(state.engine):
        try:
            assessment.store_daily_indices(state.engine, plot_id, end, state.agri.period_days)
            done += 1
        except conveyor.ConveyorError as exc:  # missing weather: recorded, the others go on
            failed[str(plot_id)] = str(exc)
    return {"day": end.isoformat(), "plots": done, "failed": failed}


def _data_dir(self: Task, state: _Process) -> Path:
    return state.agri.data_dir or Path(settings_of(self.app).home) / "agri"


def _publish(self: Task, state: _Process, assessment_id: UUID) -> None:
    """Store (and pin) the assessment's proof document."""
    from conveyor.packs.agri.ipfs import IpfsRpc
    from conveyor.packs.agri.objectstore import FileStore

    objects = FileStore(_data_dir(self, state) / "objects")
    pinner = IpfsRpc(state.agri.ipfs_url, state.egress) if state.agri.ipfs_url else None
    try:
        assessment.publish_proof(state.engine, assessment_id, objects, pinner)
    finally:
        if pinner is not None:
            pinner.close()


def assess(self: Task, plot_id: str, start: str, end: str) -> dict[str, Any]:
    """Assess one plot over one period (once; a re-run returns the same assessment), then
    store and pin its proof."""
    state = _process(self.app)
    row = assessment.assess(
        state.engine, UUID(plot_id), date.fromisoformat(start), date.fromisoformat(end)
    )
    if row["status"] == "completed":
        _publish(self, state, UUID(row["id"]))
    return {k: row[k] for k in ("id", "status", "triggered", "payout_amount", "proof_cid")}


def process_pending_assessments(self: Task) -> dict[str, Any]:
    """Finish assessments left pending (a worker that died) and retry failed ones whose
    weather may have arrived since (the seed's 10 per run)."""
    state = _process(self.app)
    done = []
    for plot_id, start, end in pipeline.unfinished_assessments(state.engine, limit=10):
        row = assessment.assess(state.engine, plot_id, start, end)
        done.append({"id": row["id"], "status": row["status"]})
    published = pipeline.unpublished_proofs(state.engine, pinning=bool(state.agri.ipfs_url))
    for assessment_id in published:
        _publish(self, state, assessment_id)
    return {"assessed": done, "proofs_published": len(published)}


def process_pending_images(self: Task) -> dict[str, Any]:
    """Order images for plots without a recent one, check the pending orders that are due and
    process the completed ones; expire orders pending for more than 7 days."""
    from conveyor.packs.agri import imagery
    from conveyor.packs.agri.objectstore import FileStore
    from conveyor.packs.agri.satellite import LocalSatellite

    state = _process(self.app)
    data = _data_dir(self, state)
    provider = LocalSatellite(data / "satellite")
    now = datetime.now(UTC)
    ordered = imagery.order_images(state.engine, provider, now)
    checked = imagery.check_pending(state.engine, provider, FileStore(data / "objects"), now)
    with state.engine.begin() as conn:
        expired = conn.execute(
            update(images)
            .where(
                images.c.status == "pending",
                images.c.ordered_at < datetime.now(UTC) - IMAGE_EXPIRY,
            )
            .values(status="expired", error="no image within 7 days of the order")
        ).rowcount
    return {"ordered": len(ordered), **checked, "expired_unchecked": int(expired or 0)}


def daily_ndvi(self: Task, day: str | None = None) -> dict[str, Any]:
    """Aggregate yesterday's (or ``day``'s) images into daily NDVI per plot."""
    state = _process(self.app)
    when = date.fromisoformat(day) if day else _today() - timedelta(days=1)
    return {"day": when.isoformat(), "plots": pipeline.daily_ndvi(state.engine, when)}


def update_baselines(self: Task) -> dict[str, Any]:
    """Recompute every plot's 60-day NDVI baseline."""
    state = _process(self.app)
    return {"plots": pipeline.update_baselines(state.engine, _today())}


def process_pending_payouts(self: Task) -> dict[str, Any]:
    """Approve the payouts of triggered assessments, then send and confirm open ones."""
    state = _process(self.app)
    approved = pipeline.approve_payouts(state.engine)
    if not state.agri.eth_rpc_url:
        return {"approved": len(approved), "sent": 0, "note": "CONVEYOR_AGRI_ETH_RPC_URL unset"}
    node = chain.Chain.from_settings(state.agri, state.egress)
    sent, failed = [], {}
    for payout_id in pipeline.open_payouts(state.engine):
        try:
            sent.append(chain.pay(state.engine, node, payout_id))
        except chain.PayoutError as exc:  # the next run re-sends the same transaction
            failed[str(payout_id)] = str(exc)
    return {"approved": len(approved), "sent": sent, "failed": failed}


def pay(self: Task, payout_id: str) -> dict[str, Any]:
    """Send one payout and wait for its receipt (retried; never pays twice)."""
    state = _process(self.app)
    node = chain.Chain.from_settings(state.agri, state.egress)
    return chain.pay(state.engine, node, UUID(payout_id))


def archive_assessments(self: Task) -> dict[str, Any]:
    """Mark assessments older than the retention as archived (their evidence stays in the
    object store under its CID)."""
    state = _process(self.app)
    with state.engine.begin() as conn:
        done = conn.execute(
            text(
                "UPDATE agri_assessments SET archived_at = now() WHERE archived_at IS NULL"
                " AND status = 'completed' AND created_at < now() - make_interval(days => :d)"
            ),
            {"d": int(state.agri.archive_after_days)},
        ).rowcount
    return {"archived": int(done or 0)}


SCHEDULES: dict[str, tuple[str, Any]] = {
    "agri-weather": (WEATHER_TASK, 300.0),
    "agri-triggers": (TRIGGERS_TASK, 600.0),
    "agri-pending-images": (IMAGES_TASK, 900.0),
    "agri-daily-indices": (INDICES_TASK, crontab(minute=0, hour=0)),
    "agri-daily-ndvi": (NDVI_TASK, crontab(minute=15, hour=0)),
    "agri-baselines": (BASELINES_TASK, crontab(minute=0, hour=2, day_of_week=0)),
    "agri-pending-assessments": (ASSESSMENTS_TASK, 600.0),
    "agri-pending-payouts": (PAYOUTS_TASK, 600.0),
    "agri-archive": (ARCHIVE_TASK, crontab(minute=30, hour=2)),
}
"""The seed's nine schedules: name -> (task, interval seconds or crontab)."""


def register(app: Celery) -> None:
    """Register the agri tasks on ``app`` and declare the seed's nine schedules."""
    once = {"bind": True, "max_retries": 0}
    app.task(name=WEATHER_TASK, **once)(weather_cycle)
    app.task(name=TRIGGERS_TASK, **once)(check_triggers)
    app.task(name=IMAGES_TASK, **once)(process_pending_images)
    app.task(name=NDVI_TASK, **once)(daily_ndvi)
    app.task(name=BASELINES_TASK, **once)(update_baselines)
    app.task(name=PAYOUTS_TASK, **once)(process_pending_payouts)
    app.task(name=ARCHIVE_TASK, **once)(archive_assessments)
    app.task(name=PAYOUT_TASK, bind=True, **PAY_POLICY.task_options())(pay)
    app.task(name=INDICES_TASK, **once)(daily_indices)
    app.task(name=ASSESSMENTS_TASK, **once)(process_pending_assessments)
    app.task(name=ASSESS_TASK, bind=True, max_retries=0)(assess)
    schedule = dict(app.conf.beat_schedule or {})
    for name, (task, when) in SCHEDULES.items():
        schedule[name] = {"task": task, "schedule": when}
    app.conf.beat_schedule = schedule
