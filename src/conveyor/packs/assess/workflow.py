"""An assessment's life: create, start as one canvas workflow, follow, cancel, retry.

A run is ``chain(validate, chord([analyze.<name> …], synthesize), report)`` sent with Celery's
canvas, which Conveyor records as one workflow (its id is the validate job's). Every job id of
the run is chosen before anything is sent and kept on the assessment (``jobs``), so its
progress, its cancel and its settling never depend on the recorder having caught up.

Progress is weighted: validation 5, the analyzers 70 shared by their weights, synthesis 10,
the report 15. A finished analyzer counts whole whatever its outcome (its share is done); a
running one counts its job's reported progress.

Retry runs only the analyzers that did not end ``ok`` (failed, timeout, cancelled, or never
ran) in a new run whose synthesis and report read every stored result, old and new.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery, chain, chord
from celery.canvas import Signature
from kombu.exceptions import KombuError
from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from conveyor.errors import BrokerUnavailable, InputRejected, ResourceConflict, ResourceNotFound
from conveyor.packs.assess.analyzers import Analyzer
from conveyor.packs.assess.config import (
    AssessSettings,
    analyzers,
    assess_settings,
    default_analyzers,
)
from conveyor.packs.assess.inventory import Inventory
from conveyor.packs.assess.tables import assessments, results
from conveyor.packs.kit import Services, cancel_workflow, job_snapshots

VALIDATE_TASK = "assess.validate"
SYNTHESIZE_TASK = "assess.synthesize"
REPORT_TASK = "assess.report"
ANALYZE_PREFIX = "assess.analyze."

STATUSES: tuple[str, ...] = ("created", "running", "completed", "failed", "cancelled")
ENDED = ("ok", "failed", "timeout", "cancelled")
WEIGHTS = {"validate": 5.0, "analyzers": 70.0, "synthesize": 10.0, "report": 15.0}
_JOB_FAILED = ("failed", "dead", "cancelled")


def analyze_task(name: str) -> str:
    return ANALYZE_PREFIX + name


# --- create ---------------------------------------------------------------------------------
def choose_analyzers(names: list[str] | None, settings: AssessSettings | None = None) -> list[str]:
    """The analyzers an assessment runs, in registry order; InputRejected naming unknown ones."""
    known = analyzers(settings)
    if names is None:
        return default_analyzers()
    if not names:
        raise InputRejected("analyzers: choose at least one analyzer")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputRejected(
            f"analyzers: unknown {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    return [n for n in known if n in set(names)]


def create(
    engine: Engine,
    inventory: Inventory,
    *,
    name: str | None = None,
    source: str = "api",
    example: str | None = None,
    chosen: list[str] | None = None,
) -> uuid.UUID:
    """Store an assessment of ``inventory`` (already validated); its id. Nothing runs yet."""
    assessment_id = uuid.uuid4()
    names = choose_analyzers(chosen)
    with engine.begin() as conn:
        conn.execute(
            insert(assessments).values(
                id=assessment_id,
                name=(name or inventory.organisation.name)[:255],
                inventory=inventory.model_dump(mode="json"),
                source=source,
                example=example,
                analyzers=names,
            )
        )
    return assessment_id


def get_row(conn: Connection, assessment_id: uuid.UUID) -> dict[str, Any]:
    row = (
        conn.execute(select(assessments).where(assessments.c.id == assessment_id))
        .mappings()
        .first()
    )
    if row is None:
        raise ResourceNotFound(f"no assessment {assessment_id}")
    return dict(row)


def result_rows(conn: Connection, assessment_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(results).where(results.c.assessment_id == assessment_id))
    return {r["analyzer"]: dict(r) for r in rows.mappings()}


# --- start / retry --------------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    assessment_id: uuid.UUID
    workflow_id: str
    run: int
    analyzers: list[str]


def _signature(app: Celery, task: str, assessment_id: uuid.UUID, job_id: str) -> Signature:
    sig = app.signature(task, args=(str(assessment_id),), immutable=True)
    queue = assess_settings().queue
    options: dict[str, Any] = {"task_id": job_id}
    if queue:
        options["queue"] = queue
    return sig.set(**options)


def _canvas(app: Celery, assessment_id: uuid.UUID, jobs: dict[str, str], names: list[str]) -> Any:
    header = [_signature(app, analyze_task(n), assessment_id, jobs[f"analyze.{n}"]) for n in names]
    return chain(
        _signature(app, VALIDATE_TASK, assessment_id, jobs["validate"]),
        chord(header, _signature(app, SYNTHESIZE_TASK, assessment_id, jobs["synthesize"])),
        _signature(app, REPORT_TASK, assessment_id, jobs["report"]),
    )


def _new_jobs(names: list[str]) -> dict[str, str]:
    steps = ["validate", *(f"analyze.{n}" for n in names), "synthesize", "report"]
    return {step: str(uuid.uuid4()) for step in steps}


def start(services: Services, assessment_id: uuid.UUID) -> Started:
    """Send the assessment's first run; ResourceConflict (409) unless it is ``created``.
    If sending fails, the assessment is left as it was and nothing is enqueued."""
    with services.engine.begin() as conn:
        # One statement claims it (only a `created` assessment is started, once, however
        # many starts race) and reads what the run needs; its job ids are fixed in the next.
        claimed = conn.execute(
            update(assessments)
            .where(assessments.c.id == assessment_id, assessments.c.status == "created")
            .values(status="running", run=assessments.c.run + 1, started_at=datetime.now(UTC))
            .returning(assessments.c.analyzers, assessments.c.run)
        ).first()
        if claimed is None:
            row = get_row(conn, assessment_id)  # ResourceNotFound if there is none
            raise ResourceConflict(_not_startable(row["status"], assessment_id))
        names, run = list(claimed[0]), int(claimed[1])
        jobs = _new_jobs(names)
        conn.execute(
            update(assessments)
            .where(assessments.c.id == assessment_id)
            .values(workflow_id=jobs["validate"], jobs=jobs)
        )
        conn.execute(
            insert(results),
            [
                {"assessment_id": assessment_id, "analyzer": n, "job_id": jobs[f"analyze.{n}"]}
                for n in names
            ],
        )
    previous = {"status": "created", "run": run - 1, "workflow_id": None, "jobs": {},
                "started_at": None}  # fmt: skip
    _send(services, assessment_id, jobs, names, previous=previous)
    return Started(assessment_id, jobs["validate"], run, names)


def _not_startable(status: str, assessment_id: uuid.UUID) -> str:
    if status == "running":
        return f"assessment {assessment_id} is running; cancel it or wait for it to end"
    return (
        f"assessment {assessment_id} already ran ({status}); retry it to run its failed "
        "analyzers again, or create a new assessment"
    )


def _send(
    services: Services,
    assessment_id: uuid.UUID,
    jobs: dict[str, str],
    names: list[str],
    previous: dict[str, Any],
) -> None:
    try:
        # ignore_result: the API does not wait on it (no result subscription per start).
        _canvas(services.app, assessment_id, jobs, names).apply_async(ignore_result=True)
    except BaseException as exc:
        # Nothing went out: put the assessment back as it was.
        with services.engine.begin() as conn:
            conn.execute(
                update(assessments)
                .where(assessments.c.id == assessment_id)
                .values(
                    status=previous["status"],
                    run=previous["run"],
                    workflow_id=previous["workflow_id"],
                    jobs=previous["jobs"],
                    started_at=previous["started_at"],
                )
            )
            if previous["status"] == "created":
                conn.execute(results.delete().where(results.c.assessment_id == assessment_id))
        if isinstance(exc, KombuError | ConnectionError | OSError):
            raise BrokerUnavailable(
                f"the broker did not take assessment {assessment_id}'s run ({exc}); nothing "
                "was started, try again shortly"
            ) from exc
        raise


def retry(services: Services, assessment_id: uuid.UUID) -> Started:
    """Run again only the analyzers that did not end ``ok``, then synthesis and report over
    every stored result. 409 while it runs, before it started, or when nothing failed."""
    with services.engine.begin() as conn:
        row = get_row(conn, assessment_id)
        if row["status"] in ("created", "running"):
            raise ResourceConflict(
                f"assessment {assessment_id} is {row['status']}; only an ended one is retried"
            )
        stored = result_rows(conn, assessment_id)
        again = [n for n in row["analyzers"] if stored.get(n, {}).get("status", "queued") != "ok"]
        if not again and row["status"] == "completed" and not row["partial"]:
            raise ResourceConflict(f"assessment {assessment_id} completed whole; nothing to retry")
        jobs = _new_jobs(again)
        claimed = conn.execute(
            update(assessments)
            .where(assessments.c.id == assessment_id, assessments.c.status == row["status"])
            .where(assessments.c.run == row["run"])
            .values(
                status="running",
                run=assessments.c.run + 1,
                workflow_id=jobs["validate"],
                jobs=jobs,
                finished_at=None,
                error=None,
            )
            .returning(assessments.c.run)
        ).first()
        if claimed is None:
            raise ResourceConflict(f"assessment {assessment_id} changed meanwhile; try again")
        for n in again:
            values = {"status": "queued", "job_id": jobs[f"analyze.{n}"], "error": None}
            if n in stored:
                conn.execute(
                    update(results)
                    .where(results.c.assessment_id == assessment_id, results.c.analyzer == n)
                    .values(**values, started_at=None, finished_at=None)
                )
            else:
                conn.execute(
                    insert(results).values(assessment_id=assessment_id, analyzer=n, **values)
                )
    _send(services, assessment_id, jobs, again, previous=row)
    return Started(assessment_id, jobs["validate"], int(claimed[0]), again)


# --- cancel ---------------------------------------------------------------------------------
def cancel(services: Services, assessment_id: uuid.UUID) -> dict[str, Any]:
    """Stop the running assessment: Conveyor's cancel of its workflow and of every job of the
    run (flags first, so a job not yet started never runs; running analyzers stop at their
    next progress check). The assessment and its unfinished analyzers read ``cancelled``."""
    with services.engine.begin() as conn:
        row = get_row(conn, assessment_id)
        if row["status"] != "running":
            raise ResourceConflict(
                f"assessment {assessment_id} is {row['status']}; only a running one is cancelled"
            )
        conn.execute(
            update(assessments)
            .where(assessments.c.id == assessment_id)
            .values(status="cancelled", finished_at=datetime.now(UTC))
        )
        conn.execute(
            update(results)
            .where(results.c.assessment_id == assessment_id, results.c.status.in_(("queued",)))
            .values(status="cancelled", finished_at=datetime.now(UTC))
        )
    cancel_workflow(services, row["workflow_id"])
    services.control.cancel_many(list(row["jobs"].values()))
    return status(services, assessment_id)


# --- status ---------------------------------------------------------------------------------
def _job_progress(job: dict[str, Any] | None) -> float:
    if job is None:
        return 0.0
    if job["state"] == "succeeded":
        return 1.0
    progress = job.get("progress")
    if job["state"] != "running" or progress is None:
        return 0.0
    current, total = progress.current, progress.total
    if current is None or not total:
        return 0.0
    return float(min(1.0, max(0.0, current / total)))


def _note(job: dict[str, Any] | None) -> str | None:
    progress = job.get("progress") if job else None
    return progress.message if progress is not None else None


def _analyzer_state(
    analyzer: Analyzer | None, name: str, stored: dict[str, Any] | None, job: dict[str, Any] | None
) -> dict[str, Any]:
    state = stored["status"] if stored else "queued"
    if state in ("queued", "running") and job is not None and job["state"] in _JOB_FAILED:
        state = "cancelled" if job["state"] == "cancelled" else "failed"
    result = stored.get("result") if stored else None
    return {
        "name": name,
        "role": analyzer.role if analyzer else name,
        "weight": analyzer.weight if analyzer else 0.0,
        "status": state,
        "progress": 1.0 if state in ENDED else _job_progress(job),
        "note": _note(job) if state == "running" else None,
        "attempt": stored["attempt"] if stored else 0,
        "job_id": stored["job_id"] if stored else None,
        "started_at": stored["started_at"] if stored else None,
        "finished_at": stored["finished_at"] if stored else None,
        "error": (stored or {}).get("error") or (job or {}).get("error_message"),
        "duration_s": result.get("duration_s") if result else None,
        "findings": len(result.get("findings", [])) if result else None,
    }


def status(services: Services, assessment_id: uuid.UUID) -> dict[str, Any]:
    """The assessment with each analyzer's state and progress, the weighted overall progress
    and an ETA; a run whose jobs died without saying so (a hard time limit, a failed step) is
    settled as ``failed`` here."""
    with services.engine.connect() as conn:
        row = get_row(conn, assessment_id)
        stored = result_rows(conn, assessment_id)
    jobs: dict[str, str] = dict(row["jobs"])
    snaps = job_snapshots(services, list(jobs.values())) if row["run"] else {}
    known = analyzers()
    per = [
        _analyzer_state(known.get(n), n, stored.get(n), snaps.get(jobs.get(f"analyze.{n}", "")))
        for n in row["analyzers"]
    ]
    if row["status"] == "running":
        row = _settle(services, row, snaps, per)
    steps = {
        step: _step_state(row, snaps.get(jobs.get(step, "")), step)
        for step in ("validate", "synthesize", "report")
    }
    total_weight = sum(a["weight"] for a in per) or float(len(per)) or 1.0
    analyzers_done = (
        sum((a["weight"] or 1.0) * a["progress"] for a in per) / total_weight
        if any(a["weight"] for a in per)
        else sum(a["progress"] for a in per) / max(1, len(per))
    )
    overall = (
        WEIGHTS["validate"] * steps["validate"]["progress"]
        + WEIGHTS["analyzers"] * analyzers_done
        + WEIGHTS["synthesize"] * steps["synthesize"]["progress"]
        + WEIGHTS["report"] * steps["report"]["progress"]
    ) / 100.0
    if row["status"] == "completed":
        overall = 1.0
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "status": row["status"],
        "source": row["source"],
        "example": row["example"],
        "partial": row["partial"],
        "missing": row["missing"],
        "error": row["error"],
        "run": row["run"],
        "workflow_id": row["workflow_id"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "progress": round(overall, 4),
        "eta_seconds": _eta(row, overall),
        "steps": steps,
        "analyzers": per,
        "links": links(row["id"], row["workflow_id"]),
    }


def _step_state(row: dict[str, Any], job: dict[str, Any] | None, step: str) -> dict[str, Any]:
    if row["status"] == "completed":
        return {"state": "succeeded", "progress": 1.0}
    if job is None:  # not sent yet (or never will be: the run ended before it)
        return {"state": "pending" if row["status"] == "running" else "not run", "progress": 0.0}
    return {"state": job["state"], "progress": _job_progress(job)}


def _eta(row: dict[str, Any], overall: float) -> float | None:
    if row["status"] != "running" or not row["started_at"] or overall <= 0.05:
        return None
    elapsed: float = (datetime.now(UTC) - row["started_at"]).total_seconds()
    return round(max(0.0, elapsed * (1 - overall) / overall), 1)


def _settle(
    services: Services,
    row: dict[str, Any],
    snaps: dict[str, dict[str, Any]],
    per: list[dict[str, Any]],
) -> dict[str, Any]:
    """Mark a running assessment failed when a job its run waits on ended without finishing
    it (a step that raised, an analyzer killed by its hard limit): no task will do it then."""
    jobs: dict[str, str] = dict(row["jobs"])
    broken = [
        step
        for step, job_id in jobs.items()
        if (snaps.get(job_id) or {}).get("state") in _JOB_FAILED
        and not (step.startswith("analyze.") and _stored_ended(per, step))
    ]
    if not broken:
        return row
    job = snaps[jobs[broken[0]]]
    error = f"{broken[0]}: job {job['state']}" + (
        f": {job.get('error_message')}" if job.get("error_message") else ""
    )
    now = datetime.now(UTC)
    with services.engine.begin() as conn:
        conn.execute(
            update(assessments)
            .where(
                assessments.c.id == row["id"],
                assessments.c.status == "running",
                assessments.c.run == row["run"],
            )
            .values(status="failed", error=error[:2000], finished_at=now)
        )
        for a in per:
            if a["status"] in ("failed", "cancelled") and a["finished_at"] is None:
                conn.execute(
                    update(results)
                    .where(
                        results.c.assessment_id == row["id"],
                        results.c.analyzer == a["name"],
                        results.c.status.in_(("queued", "running")),
                    )
                    .values(status=a["status"], error=a["error"], finished_at=now)
                )
        return get_row(conn, row["id"])


def _stored_ended(per: list[dict[str, Any]], step: str) -> bool:
    name = step.removeprefix("analyze.")
    return any(a["name"] == name and a["finished_at"] is not None for a in per)


def links(assessment_id: uuid.UUID | str, workflow_id: str | None) -> dict[str, str | None]:
    base = f"/api/v1/assess/assessments/{assessment_id}"
    return {
        "self": base,
        "follow": f"{base}/events",
        "result": f"{base}/result",
        "report": f"{base}/report",
        "workflow": f"/api/v1/workflows/{workflow_id}" if workflow_id else None,
        "page": f"/assess/assessments/{assessment_id}",
    }


# --- list -----------------------------------------------------------------------------------
def encode_cursor(created_at: datetime, assessment_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{assessment_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, assessment_id = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(assessment_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InputRejected(f"cursor {cursor[:80]!r} is not one this API gave out") from None


LIST_COLUMNS = [
    assessments.c.id,
    assessments.c.name,
    assessments.c.status,
    assessments.c.source,
    assessments.c.example,
    assessments.c.partial,
    assessments.c.missing,
    assessments.c.analyzers,
    assessments.c.workflow_id,
    assessments.c.created_at,
    assessments.c.started_at,
    assessments.c.finished_at,
]


def list_assessments(
    engine: Engine,
    *,
    status_is: str | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, filtered by status and by a case-insensitive part of the name."""
    query = select(*LIST_COLUMNS)
    if status_is:
        query = query.where(assessments.c.status == status_is)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(assessments.c.name.ilike(f"%{escaped}%", escape="\\"))
    if cursor:
        at, last = decode_cursor(cursor)
        query = query.where(
            or_(
                assessments.c.created_at < at,
                and_(assessments.c.created_at == at, assessments.c.id < last),
            )
        )
    query = query.order_by(assessments.c.created_at.desc(), assessments.c.id.desc())
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query.limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    for r in rows:
        r["id"] = str(r["id"])
        r["links"] = links(r["id"], r["workflow_id"])
    nxt = encode_cursor(rows[-1]["created_at"], uuid.UUID(rows[-1]["id"])) if more else None
    return rows, nxt


# --- results --------------------------------------------------------------------------------
def result(engine: Engine, assessment_id: uuid.UUID) -> dict[str, Any]:
    """The synthesis and every analyzer's stored result; ResourceNotFound before synthesis."""
    with engine.connect() as conn:
        row = get_row(conn, assessment_id)
        stored = result_rows(conn, assessment_id)
    if row["synthesis"] is None:
        raise ResourceNotFound(
            f"assessment {assessment_id} has no result yet (it is {row['status']})"
        )
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "status": row["status"],
        "partial": row["partial"],
        "missing": row["missing"],
        "synthesis": row["synthesis"],
        "results": [
            stored[n]["result"] for n in row["analyzers"] if n in stored and stored[n]["result"]
        ],
    }


def report_html(engine: Engine, assessment_id: uuid.UUID) -> str:
    """The stored HTML report; ResourceNotFound until the report step ran."""
    with engine.connect() as conn:
        row = get_row(conn, assessment_id)
    if row["report_html"] is None:
        raise ResourceNotFound(
            f"assessment {assessment_id} has no report yet (it is {row['status']})"
        )
    return str(row["report_html"])


def report_pdf(engine: Engine, assessment_id: uuid.UUID) -> bytes:
    """The report as PDF, rendered from the stored synthesis and results."""
    from conveyor.packs.assess import report
    from conveyor.packs.assess.findings import AnalyzerResult
    from conveyor.packs.assess.synthesis import Synthesis

    report_html(engine, assessment_id)  # 404 until the report step ran
    with engine.connect() as conn:
        row = get_row(conn, assessment_id)
        stored = result_rows(conn, assessment_id)
    found = [
        AnalyzerResult.model_validate(stored[n]["result"])
        for n in row["analyzers"]
        if n in stored and stored[n]["result"]
    ]
    synthesis = Synthesis.model_validate(row["synthesis"])
    return report.render_pdf(report.AssessmentView.of(row), synthesis, found)


# --- examples -------------------------------------------------------------------------------
def load_example(name: str) -> Inventory:
    """The shipped example ``name``; ResourceNotFound naming the ones there are."""
    from conveyor.packs.assess.examples import EXAMPLES, example_text
    from conveyor.packs.assess.inventory import load_inventory

    if name not in EXAMPLES:
        raise ResourceNotFound(f"no example {name!r}; examples: {', '.join(EXAMPLES)}")
    return load_inventory(example_text(name), EXAMPLES[name])


def example_listing() -> list[dict[str, Any]]:
    """Each shipped example with its organisation and size."""
    from conveyor.packs.assess.examples import EXAMPLES

    out = []
    for name, file in EXAMPLES.items():
        inventory = load_example(name)
        out.append(
            {
                "name": name,
                "file": file,
                "organisation": inventory.organisation.name,
                "instances": len(inventory.compute.instances),
                "workloads": len(inventory.workloads),
                "monthly_budget_usd": inventory.budget.monthly_usd,
            }
        )
    return out
