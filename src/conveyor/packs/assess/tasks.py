"""The assess pack's Celery tasks: thin wrappers over the analyzers, synthesis and report.

Each takes the assessment id only (the canvas' signatures are immutable): the inventory and the
results are read from the pack's tables, so a redelivered task, a retry's new run and the
synthesis all see the same stored state.

- ``assess.validate``: loads the stored inventory again (an older row may predate a format
  change); a refusal fails the assessment and stops the run.
- ``assess.analyze.<name>``: the analyzer with its soft and hard time limits. Progress goes
  through :func:`conveyor.progress` (the ledger, the workflow page and the SSE stream see it),
  which also checks the job's cancel; an analyzer that raises, or reaches its soft limit, is
  stored as ``failed`` / ``timeout`` and the chord goes on. The row is upserted per
  (assessment, analyzer): a redelivery overwrites it and bumps ``attempt``.
- ``assess.synthesize``: every stored result (a retry's reused ones included) through
  :func:`conveyor.packs.assess.synthesis.synthesize`.
- ``assess.report``: the HTML report, stored; the assessment reads ``completed``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine, create_engine, func, update
from sqlalchemy.dialects.postgresql import insert

import conveyor
from conveyor.packs import psycopg_url, settings_of
from conveyor.packs.assess import workflow
from conveyor.packs.assess.analyzers import Analyzer, Progress
from conveyor.packs.assess.config import analyzers, assess_settings
from conveyor.packs.assess.errors import InventoryError
from conveyor.packs.assess.findings import AnalyzerResult
from conveyor.packs.assess.inventory import Inventory, load_inventory
from conveyor.packs.assess.tables import assessments, results

CANCEL_CHECK_INTERVAL = 0.1  # seconds between cancel checks inside an analyzer
MAX_DELIVERIES = 3  # a job whose worker dies is run again; one that keeps killing it stops


@dataclass
class _Process:
    """What one worker process keeps between tasks (pools must not cross a fork)."""

    pid: int
    engine: Engine


_state: dict[str, _Process] = {}


def engine_of(app: Celery) -> Engine:
    state = _state.get("p")
    if state is None or state.pid != os.getpid():
        url = psycopg_url(settings_of(app)).replace("postgresql://", "postgresql+psycopg://", 1)
        state = _Process(os.getpid(), create_engine(url, pool_size=2, max_overflow=2))
        _state["p"] = state
    return state.engine


def _inventory(engine: Engine, assessment_id: uuid.UUID) -> Inventory:
    with engine.connect() as conn:
        row = workflow.get_row(conn, assessment_id)
    return load_inventory(json.dumps(row["inventory"]), "inventory.json")


def _fail(engine: Engine, assessment_id: uuid.UUID, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(assessments)
            .where(assessments.c.id == assessment_id, assessments.c.status == "running")
            .values(status="failed", error=error[:2000], finished_at=datetime.now(UTC))
        )


# --- tasks ----------------------------------------------------------------------------------
def validate(self: Task, assessment_id: str) -> dict[str, Any]:
    """Check the stored inventory; the run stops here if it is refused."""
    engine = engine_of(self.app)
    uid = uuid.UUID(assessment_id)
    try:
        inventory = _inventory(engine, uid)
    except InventoryError as exc:
        _fail(engine, uid, f"validate: {exc}")
        raise
    conveyor.progress(1, 1, step="validate")
    return {"assessment_id": assessment_id, "instances": len(inventory.compute.instances)}


def cancel_checking_progress(name: str) -> Progress:
    """A :class:`Progress` reporting through Conveyor (throttled there) and checking the job's
    cancel at least every :data:`CANCEL_CHECK_INTERVAL`; raises JobCancelled."""
    last = [0.0]

    def report(fraction: float, note: str = "") -> None:
        fraction = min(1.0, max(0.0, fraction))
        # (1000 steps: a fraction reported as exactly 1 is "final" and always recorded.)
        conveyor.progress(round(fraction * 1000), 1000, step=name, message=note[:200] or None)
        now = time.monotonic()
        if now - last[0] >= CANCEL_CHECK_INTERVAL:
            last[0] = now
            conveyor.check_cancelled()

    return report


def _upsert(engine: Engine, assessment_id: uuid.UUID, name: str, **values: Any) -> None:
    now = datetime.now(UTC)
    stmt = insert(results).values(
        assessment_id=assessment_id, analyzer=name, updated_at=now, **values
    )
    with engine.begin() as conn:
        conn.execute(
            stmt.on_conflict_do_update(
                constraint="pk_assess_results", set_={**values, "updated_at": now}
            )
        )


def run_analyzer(
    engine: Engine, analyzer: Analyzer, assessment_id: uuid.UUID, job_id: str | None
) -> AnalyzerResult:
    """Run one analyzer for an assessment and store how it went; its result. JobCancelled
    (after storing ``cancelled``) is raised on, so the job ends cancelled."""
    name = analyzer.name
    began = time.monotonic()
    now = datetime.now(UTC)
    stmt = insert(results).values(
        assessment_id=assessment_id,
        analyzer=name,
        status="running",
        job_id=job_id,
        attempt=1,
        started_at=now,
        updated_at=now,
    )
    with engine.begin() as conn:
        conn.execute(
            stmt.on_conflict_do_update(
                constraint="pk_assess_results",
                set_={
                    "status": "running",
                    "job_id": job_id,
                    "attempt": results.c.attempt + 1,
                    "started_at": now,
                    "finished_at": None,
                    "error": None,
                    "updated_at": now,
                },
            )
        )
    try:
        inventory = _inventory(engine, assessment_id)
        output = analyzer.run(inventory, cancel_checking_progress(name))
        result = AnalyzerResult.of(name, output, time.monotonic() - began)
    except conveyor.JobCancelled:
        result = AnalyzerResult.failure(name, "cancelled", "cancelled", time.monotonic() - began)
        _store(engine, assessment_id, result)
        raise
    except SoftTimeLimitExceeded:
        message = f"stopped at its soft time limit of {analyzer.soft_limit} s"
        result = AnalyzerResult.failure(name, "timeout", message, time.monotonic() - began)
    except Exception as exc:  # an analyzer's failure is its own: the chord goes on
        message = f"{type(exc).__name__}: {exc}"[:2000]
        result = AnalyzerResult.failure(name, "failed", message, time.monotonic() - began)
    _store(engine, assessment_id, result)
    return result


def _store(engine: Engine, assessment_id: uuid.UUID, result: AnalyzerResult) -> None:
    _upsert(
        engine,
        assessment_id,
        result.analyzer,
        status=result.status,
        result=result.model_dump(mode="json"),
        error=result.error,
        finished_at=datetime.now(UTC),
    )


def make_analyze(analyzer: Analyzer) -> Callable[..., dict[str, Any]]:
    def analyze(self: Task, assessment_id: str) -> dict[str, Any]:
        uid = uuid.UUID(assessment_id)
        job_id = str(self.request.id) if self.request.id else None
        result = run_analyzer(engine_of(self.app), analyzer, uid, job_id)
        # The chord's callback reads the stored rows; pass along only the outline.
        return {"analyzer": result.analyzer, "status": result.status, "error": result.error}

    analyze.__name__ = f"analyze_{analyzer.name}"
    analyze.__qualname__ = analyze.__name__
    return analyze


def stored_results(engine: Engine, assessment_id: uuid.UUID) -> list[AnalyzerResult]:
    """The results stored for the assessment's analyzers, in its order."""
    with engine.connect() as conn:
        row = workflow.get_row(conn, assessment_id)
        rows = workflow.result_rows(conn, assessment_id)
    out = []
    for name in row["analyzers"]:
        stored = rows.get(name)
        if stored and stored["result"]:
            out.append(AnalyzerResult.model_validate(stored["result"]))
    return out


def synthesize(self: Task, assessment_id: str) -> dict[str, Any]:
    """Rank and de-duplicate every stored result; store the synthesis."""
    from conveyor.packs.assess.synthesis import synthesize as run_synthesis

    engine = engine_of(self.app)
    uid = uuid.UUID(assessment_id)
    with engine.connect() as conn:
        expected = list(workflow.get_row(conn, uid)["analyzers"])
    found = stored_results(engine, uid)
    synthesis = run_synthesis(found, expected)
    with engine.begin() as conn:
        conn.execute(
            update(assessments)
            .where(assessments.c.id == uid)
            .values(
                synthesis=synthesis.model_dump(mode="json"),
                partial=synthesis.partial,
                missing=list(synthesis.missing),
            )
        )
    conveyor.progress(1, 1, step="synthesize")
    return {"partial": synthesis.partial, "missing": list(synthesis.missing)}


def render_report(engine: Engine, assessment_id: uuid.UUID) -> str:
    """The assessment's HTML report from its stored synthesis and results."""
    from conveyor.packs.assess.report import AssessmentView, render_html
    from conveyor.packs.assess.synthesis import Synthesis

    with engine.connect() as conn:
        row = workflow.get_row(conn, assessment_id)
    found = stored_results(engine, assessment_id)
    synthesis = Synthesis.model_validate(row["synthesis"])
    return render_html(AssessmentView.of(row), synthesis, found)


def report(self: Task, assessment_id: str) -> dict[str, Any]:
    """Render the HTML report and store it; the assessment is ``completed``."""
    engine = engine_of(self.app)
    uid = uuid.UUID(assessment_id)
    html = render_report(engine, uid)
    with engine.begin() as conn:
        done = conn.execute(
            update(assessments)
            .where(assessments.c.id == uid, assessments.c.status == "running")
            .values(report_html=html, status="completed", finished_at=func.now())
            .returning(assessments.c.partial)
        ).first()
    conveyor.progress(1, 1, step="report")
    return {"assessment_id": assessment_id, "completed": done is not None}


def register(app: Celery) -> None:
    """Register the pack's tasks on ``app``: one analyze task per analyzer, with its limits."""
    # No retries of a step that raised (an analyzer's failure is stored, not retried), but a
    # delivery lost with its worker is run again: up to MAX_DELIVERIES in all.
    opts: dict[str, Any] = {"bind": True, "max_retries": 0, "max_attempts": MAX_DELIVERIES}
    app.task(name=workflow.VALIDATE_TASK, **opts)(validate)
    app.task(name=workflow.SYNTHESIZE_TASK, **opts)(synthesize)
    app.task(name=workflow.REPORT_TASK, **opts)(report)
    for analyzer in analyzers(assess_settings()).values():
        app.task(
            name=workflow.analyze_task(analyzer.name),
            soft_time_limit=analyzer.soft_limit,
            time_limit=analyzer.hard_limit,
            **opts,
        )(make_analyze(analyzer))


__all__ = ["register", "render_report", "run_analyzer"]
