"""Schedules stored in PostgreSQL: create, edit, pause, trigger, backfill, preview.

The one service the REST API, the CLI, the dashboard and the scheduler engine share
(``ScheduleService``). A schedule's input (:class:`ScheduleSpec`) is validated as a submission
of its task would be (``Control.prepare``: task known, arguments fit its signature, queue and
priority allowed) plus its trigger (``core.schedules``); anything wrong is a 422 naming the field,
and nothing is stored. Every change NOTIFYs the scheduler (``schedule_store.CHANNEL``), which
also polls, so edits apply without a restart.

Schedules declared in code (``app.conf.beat_schedule``) are imported with source ``code``
(``runtime.code_schedules``): the code's version is the default, a user's edits are kept as
overrides (listed in ``overridden``) until :meth:`ScheduleService.reset_to_code`.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from conveyor.control import Control
from conveyor.core import schedules as triggers
from conveyor.core.ids import new_job_id
from conveyor.core.schedules import Trigger
from conveyor.core.states import JobState
from conveyor.errors import ConveyorError, IdempotencyConflict, InvalidSchedule
from conveyor.intake import Submission
from conveyor.ledger import repository as repo
from conveyor.ledger import schedule_store as store

log = logging.getLogger(__name__)

Overlap = Literal["skip", "buffer_one", "allow_all", "cancel_previous"]
OVERLAPS: tuple[str, ...] = ("skip", "buffer_one", "allow_all", "cancel_previous")
MAX_BACKFILL = 1000
MAX_PREVIEW = 100
LAST_RUNS = 10
MAX_CHECKED = 10_000  # payloads whose validation a process remembers
_FAILED = {JobState.FAILED.value, JobState.DEAD.value}
# The fields a user may change on a code-declared schedule and that count as overrides; the
# trigger (cron / every / at) counts as one.
OVERRIDABLE = (
    "task",
    "args",
    "kwargs",
    "queue",
    "priority",
    "trigger",
    "timezone",
    "overlap",
    "catchup_window",
    "catchup_max",
    "jitter",
    "start_at",
    "end_at",
    "max_runs",
    "paused",
)


class ScheduleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(default=None, max_length=255)
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    queue: str | None = Field(default=None, max_length=255)
    priority: int | None = None
    cron: str | None = Field(
        default=None, max_length=255, description="5 fields, or @hourly @daily @weekly ..."
    )
    every: float | str | None = Field(default=None, description="seconds, or like 90s, 5m, 1h, 2d")
    at: datetime | None = Field(default=None, description="one fire at this instant")
    timezone: str | None = Field(default=None, max_length=64, description="IANA name")
    overlap: Overlap | None = None
    catchup_window: float | str | None = Field(
        default=None, description="after downtime, fires older than this are missed, not run"
    )
    catchup_max: int | None = Field(default=None, ge=1, le=1000)
    jitter: float | str | None = Field(default=None, description="delay each fire up to this")
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = Field(default=None, ge=1)
    paused: bool | None = None
    paused_note: str | None = Field(default=None, max_length=1000)


class ScheduleSpec(ScheduleFields):
    """A new schedule: a name, a task and exactly one of ``cron``, ``every``, ``at``."""

    name: str = Field(min_length=1, max_length=200)
    task: str = Field(max_length=255)


class SchedulePatch(ScheduleFields):
    """Fields to change; any one of ``cron``/``every``/``at`` replaces the trigger."""

    name: str | None = Field(default=None, min_length=1, max_length=200)


class ScheduleRun(BaseModel):
    fire_time: datetime
    outcome: str
    job_id: str | None
    state: str | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_type: str | None = None
    error_message: str | None = None


class ScheduleOut(BaseModel):
    id: str
    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    priority: int | None
    trigger_kind: str
    cron: str | None
    every: float | None
    at: datetime | None
    description: str = Field(description="the trigger in words, e.g. 'cron 0 2 * * *'")
    timezone: str
    overlap: str
    catchup_window: float
    catchup_max: int
    jitter: float
    start_at: datetime | None
    end_at: datetime | None
    max_runs: int | None
    run_count: int
    paused: bool
    paused_note: str | None
    source: str
    code_default: dict[str, Any] | None
    overridden: list[str]
    retired_at: datetime | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_runs: list[ScheduleRun] = Field(description="the latest fires, newest first")
    failure_streak: int = Field(description="how many of the latest runs in a row failed")


# --- rows ⇄ specs -----------------------------------------------------------------------------
def trigger_of(row: dict[str, Any]) -> Trigger:
    kind = row["trigger_kind"]
    return Trigger(
        kind=kind,
        cron=row.get("trigger_expr"),
        every=row.get("trigger_every"),
        at=row.get("trigger_at"),
        anchor=row.get("start_at"),
    )


def spec_of(row: dict[str, Any]) -> dict[str, Any]:
    """A stored schedule as the fields of a :class:`ScheduleSpec` (JSON-ready)."""
    kind = row["trigger_kind"]
    return {
        "name": row["name"],
        "task": row["task"],
        "args": row["args"],
        "kwargs": row["kwargs"],
        "queue": row["queue"],
        "priority": row["priority"],
        "cron": row["trigger_expr"] if kind == "cron" else None,
        "every": row["trigger_every"] if kind == "interval" else None,
        "at": _iso(row["trigger_at"]) if kind == "at" else None,
        "timezone": row["timezone"],
        "overlap": row["overlap"],
        "catchup_window": row["catchup_window"],
        "catchup_max": row["catchup_max"],
        "jitter": row["jitter"],
        "start_at": _iso(row["start_at"]),
        "end_at": _iso(row["end_at"]),
        "max_runs": row["max_runs"],
        "paused": row["paused"],
        "paused_note": row["paused_note"],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _field_values(spec: dict[str, Any]) -> dict[str, Any]:
    """Values of the overridable fields, for comparing a schedule with its code default."""
    out = {k: spec.get(k) for k in OVERRIDABLE if k != "trigger"}
    out["trigger"] = (spec.get("cron"), spec.get("every"), spec.get("at"))
    out["paused"] = bool(spec.get("paused"))
    return out


def overrides(current: dict[str, Any], default: dict[str, Any]) -> list[str]:
    """The overridable fields where ``current`` differs from the code's ``default``."""
    mine, code = _field_values(current), _field_values(default)
    return [name for name in OVERRIDABLE if mine[name] != code[name]]


def _duration(value: float | str | None, field: str, default: float) -> float:
    if value is None:
        return default
    if value in (0, "0", 0.0):
        return 0.0
    try:
        return triggers.parse_interval(value)
    except InvalidSchedule as exc:
        raise InvalidSchedule(field, exc.problems[0]["msg"]) from None


class ScheduleService:
    """Schedules of one Celery app in one ledger."""

    def __init__(self, control: Control, engine: Engine | None = None) -> None:
        self.control = control
        self.engine = engine or control.engine
        self.app = control.app
        self._checked: dict[tuple[Any, ...], repo.NewJob] = {}

    # --- validation ---------------------------------------------------------------------------
    def columns(self, spec: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
        """The stored columns of a schedule given as spec fields, validated; InvalidSchedule /
        a SubmitError (unknown task, arguments that do not fit) naming what is wrong."""
        now = now or datetime.now(UTC)
        name = str(spec.get("name") or "").strip()
        if not name or "\x00" in name:
            raise InvalidSchedule("name", "must be 1..200 characters, without NUL")
        task = spec.get("task") or ""
        # Exactly the checks a submission of this task gets: task, signature, queue, priority.
        self.control.prepare(
            task,
            spec.get("args") or [],
            spec.get("kwargs") or {},
            queue=spec.get("queue"),
            priority=spec.get("priority"),
        )
        given = [k for k in ("cron", "every", "at") if spec.get(k) not in (None, "")]
        if len(given) != 1:
            raise InvalidSchedule(
                "trigger",
                "give exactly one of cron, every or at"
                + (f" (got {', '.join(given)})" if given else ""),
            )
        tz = spec.get("timezone") or "UTC"
        triggers.zone(tz)
        out: dict[str, Any] = {
            "name": name,
            "task": task,
            "args": list(spec.get("args") or []),
            "kwargs": dict(spec.get("kwargs") or {}),
            "queue": spec.get("queue"),
            "priority": spec.get("priority"),
            "trigger_kind": {"cron": "cron", "every": "interval", "at": "at"}[given[0]],
            "trigger_expr": None,
            "trigger_every": None,
            "trigger_at": None,
            "timezone": tz,
            "overlap": spec.get("overlap") or "skip",
            "catchup_window": _duration(spec.get("catchup_window"), "catchup_window", 60.0),
            "catchup_max": int(spec.get("catchup_max") or 1),
            "jitter": _duration(spec.get("jitter"), "jitter", 0.0),
            "start_at": None,
            "end_at": None,
            "max_runs": spec.get("max_runs"),
            "paused": bool(spec.get("paused")),
            "paused_note": spec.get("paused_note") if spec.get("paused") else None,
        }
        if out["overlap"] not in OVERLAPS:
            raise InvalidSchedule("overlap", f"must be one of {', '.join(OVERLAPS)}")
        if given[0] == "cron":
            out["trigger_expr"] = triggers.parse_cron(spec["cron"])
        elif given[0] == "every":
            out["trigger_every"] = triggers.parse_interval(spec["every"])
        else:
            out["trigger_at"] = triggers.aware(_datetime(spec["at"], "at"), "at")
        for field in ("start_at", "end_at"):
            if spec.get(field) is not None:
                out[field] = triggers.aware(_datetime(spec[field], field), field)
        if out["start_at"] and out["end_at"] and out["end_at"] <= out["start_at"]:
            raise InvalidSchedule("end_at", "must be after start_at")
        if out["max_runs"] is not None and out["max_runs"] < 1:
            raise InvalidSchedule("max_runs", "must be at least 1")
        return out

    def first_fire(self, cols: dict[str, Any], after: datetime) -> datetime | None:
        """The schedule's next fire after ``after`` (and not before its start), or None once
        it is over (past its end, its runs used up, or paused)."""
        if cols.get("paused") or cols.get("retired_at"):
            return None
        if cols.get("max_runs") is not None and cols.get("run_count", 0) >= cols["max_runs"]:
            return None
        start = cols.get("start_at")
        if start is not None and start > after:
            after = start - timedelta(microseconds=1)
        fires = triggers.next_fires(trigger_of(cols), cols["timezone"], after, 1)
        if not fires or (cols.get("end_at") and fires[0] > cols["end_at"]):
            return None
        return fires[0]

    # --- reads --------------------------------------------------------------------------------
    def list(self, flt: store.ScheduleFilter | None = None) -> builtins.list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = store.list_schedules(conn, flt or store.ScheduleFilter())
            recent = store.runs(conn, [r["id"] for r in rows], LAST_RUNS)
        return [self._out(r, recent.get(str(r["id"]), [])) for r in rows]

    def get(self, ref: str) -> dict[str, Any]:
        """A schedule by id or name, as :class:`ScheduleOut` fields."""
        with self.engine.connect() as conn:
            row = store.get(conn, ref)
            recent = store.runs(conn, [row["id"]], LAST_RUNS)
        return self._out(row, recent.get(str(row["id"]), []))

    def runs(self, ref: str, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """The schedule's fires, newest first, each with its job's state."""
        with self.engine.connect() as conn:
            row = store.get(conn, ref)
            found = store.runs(conn, [row["id"]], limit)
        return [_run(r) for r in found.get(str(row["id"]), [])]

    def next_fires(self, ref: str, n: int = 5) -> builtins.list[datetime]:
        with self.engine.connect() as conn:
            row = store.get(conn, ref)
        return self._upcoming(row, n)

    def preview(self, spec: ScheduleSpec | dict[str, Any], n: int = 5) -> dict[str, Any]:
        """Validate a schedule without storing it; its next ``n`` fires."""
        fields = spec.model_dump() if isinstance(spec, ScheduleSpec) else dict(spec)
        cols = self.columns(fields)
        _refuse_over(cols, datetime.now(UTC))
        cols["paused"] = False  # show when it would fire
        return {
            "description": trigger_of(cols).describe(),
            "next_fires": self._upcoming(cols, n),
        }

    def _upcoming(self, cols: dict[str, Any], n: int) -> builtins.list[datetime]:
        n = max(0, min(n, MAX_PREVIEW))
        now = datetime.now(UTC)
        first = self.first_fire({**cols, "paused": False, "retired_at": None}, now)
        if first is None:
            return []
        out = [first]
        out += triggers.next_fires(trigger_of(cols), cols["timezone"], first, n - 1)
        end = cols.get("end_at")
        if end is not None:
            out = [f for f in out if f <= end]
        if cols.get("max_runs") is not None:
            out = out[: max(0, cols["max_runs"] - cols.get("run_count", 0))]
        return out[:n]

    def _out(self, row: dict[str, Any], recent: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        kind = row["trigger_kind"]
        runs = [_run(r) for r in recent]
        streak = 0
        for r in runs:
            if r["state"] in _FAILED:
                streak += 1
            elif r["state"] is not None and JobState(r["state"]).terminal:
                break
            # unfinished runs and skipped fires neither break nor extend a streak
        return {
            **{k: row[k] for k in ScheduleOut.model_fields if k in row},
            "id": str(row["id"]),
            "cron": row["trigger_expr"] if kind == "cron" else None,
            "every": row["trigger_every"] if kind == "interval" else None,
            "at": row["trigger_at"] if kind == "at" else None,
            "description": trigger_of(row).describe(),
            "overridden": list(row["overridden"] or []),
            "last_runs": runs,
            "failure_streak": streak,
        }

    # --- writes -------------------------------------------------------------------------------
    def create(
        self, spec: ScheduleSpec | dict[str, Any], *, source: str = "user"
    ) -> dict[str, Any]:
        fields = spec.model_dump() if isinstance(spec, ScheduleSpec) else dict(spec)
        now = datetime.now(UTC)
        cols = self.columns(fields, now=now)
        _refuse_over(cols, now)
        cols.update(id=str(uuid.uuid4()), source=source, run_count=0)
        if source == "code":
            cols["code_default"] = spec_of(cols)
        cols["next_fire_at"] = self.first_fire(cols, now)
        with self.engine.begin() as conn:
            row = store.insert_schedule(conn, cols)
        return self.get(str(row["id"]))

    def update(self, ref: str, patch: SchedulePatch | dict[str, Any]) -> dict[str, Any]:
        given = (
            patch.model_dump(exclude_unset=True)
            if isinstance(patch, SchedulePatch)
            else dict(patch)
        )
        with self.engine.begin() as conn:
            row = store.get(conn, ref, for_update=True)
            self._write(conn, row, given)
        return self.get(str(row["id"]))

    def _write(
        self,
        conn: Any,
        row: dict[str, Any],
        given: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply ``given`` spec fields to ``row`` (validated), recompute its next fire when
        anything that decides it changed, and track overrides of a code schedule (against
        ``extra["code_default"]`` when the code's version changes too)."""
        fields = spec_of(row)
        if any(k in given for k in ("cron", "every", "at")):
            fields.update(cron=None, every=None, at=None)
        fields.update(given)
        if not fields.get("paused"):
            fields["paused_note"] = None
        now = datetime.now(UTC)
        cols = self.columns(fields, now=now)
        if row["source"] == "code" and cols["name"] != row["name"]:
            raise InvalidSchedule(
                "name", "a schedule declared by code keeps the name its code gives it"
            )
        cols["paused_note"] = fields.get("paused_note") if cols["paused"] else None
        timing = (
            "trigger_kind",
            "trigger_expr",
            "trigger_every",
            "trigger_at",
            "timezone",
            "start_at",
            "end_at",
            "max_runs",
            "paused",
        )
        if any(cols[k] != row[k] for k in timing) or row["next_fire_at"] is None:
            cols["next_fire_at"] = self.first_fire({**row, **cols}, now)
        cols.update(extra or {})
        default = cols.get("code_default", row["code_default"])
        if row["source"] == "code" and default is not None:
            cols["overridden"] = overrides(spec_of({**row, **cols}), default)
        return store.update_schedule(conn, str(row["id"]), cols)

    def delete(self, ref: str) -> None:
        with self.engine.begin() as conn:
            row = store.get(conn, ref)
            store.delete_schedule(conn, str(row["id"]))

    def pause(self, ref: str, note: str | None = None) -> dict[str, Any]:
        return self.update(ref, {"paused": True, "paused_note": note})

    def resume(self, ref: str) -> dict[str, Any]:
        """Fire again from now on (fires that fell in the pause are not caught up)."""
        return self.update(ref, {"paused": False})

    def reset_to_code(self, ref: str) -> dict[str, Any]:
        """Drop a user's edits of a code-declared schedule: the code's version again."""
        with self.engine.begin() as conn:
            row = store.get(conn, ref, for_update=True)
            if row["source"] != "code" or row["code_default"] is None:
                raise InvalidSchedule(
                    "source", f"schedule {row['name']!r} was not declared by code; nothing to reset"
                )
            self._write(conn, row, dict(row["code_default"]))
        return self.get(str(row["id"]))

    # --- code-declared schedules --------------------------------------------------------------
    def import_code(self, entries: dict[str, dict[str, Any]]) -> dict[str, builtins.list[str]]:
        """Make the app's code-declared schedules (name → spec fields) schedules with source
        ``code``: new ones are created; for known ones the code's version becomes the default
        while a user's overrides stay; code schedules no longer declared are retired (kept,
        never fired). An entry that does not validate, or whose name a user's schedule has,
        is logged and skipped. What happened, by name: created, updated, retired, skipped."""
        done: dict[str, builtins.list[str]] = {
            "created": [],
            "updated": [],
            "retired": [],
            "skipped": [],
        }
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            store.lock_code_import(conn)  # one importer at a time (beat replicas, API)
            taken = store.names_taken(conn, list(entries))
            for name, fields in entries.items():
                row = taken.get(name)
                try:
                    cols = self.columns({**fields, "name": name}, now=now)
                except ConveyorError as exc:
                    log.warning("code schedule %r skipped: %s", name, exc)
                    done["skipped"].append(name)
                    continue
                default = spec_of(cols)
                if row is None:
                    cols.update(
                        id=str(uuid.uuid4()), source="code", run_count=0, code_default=default
                    )
                    cols["next_fire_at"] = self.first_fire(cols, now)
                    store.insert_schedule(conn, cols)
                    done["created"].append(name)
                elif row["source"] != "code":
                    log.warning(
                        "code schedule %r skipped: a schedule made by a user has that name", name
                    )
                    done["skipped"].append(name)
                elif row["code_default"] != default or row["retired_at"] is not None:
                    mine = spec_of(row)
                    merged = dict(default)
                    for field in row["overridden"] or []:
                        keys = ("cron", "every", "at") if field == "trigger" else (field,)
                        merged.update({k: mine[k] for k in keys})
                    if merged.get("paused"):
                        merged["paused_note"] = mine.get("paused_note")
                    self._write(conn, row, merged, {"code_default": default, "retired_at": None})
                    done["updated"].append(name)
            for row in store.code_schedules(conn):
                if row["name"] not in entries and row["retired_at"] is None:
                    store.update_schedule(
                        conn, str(row["id"]), {"retired_at": now, "next_fire_at": None}
                    )
                    done["retired"].append(row["name"])
        return done

    # --- fires made by hand -------------------------------------------------------------------
    def trigger(self, ref: str) -> str:
        """Submit a run now, outside the trigger (overlap policy and max runs not applied);
        the job's id."""
        row = self.get_row(ref)
        now = datetime.now(UTC)
        job_id = self.submit_fire(row, now)
        with self.engine.begin() as conn:
            store.record_fires(
                conn,
                [{"schedule_id": row["id"], "fire_time": now, "job_id": job_id}],
            )
            store.notify(conn, str(row["id"]))
        return job_id

    def backfill(self, ref: str, start: datetime, end: datetime) -> builtins.list[str]:
        """Run every fire the trigger has in ``(start, end]`` (at most 1,000), each once: a fire
        that already ran (its idempotency key exists) is not run again. The jobs' ids."""
        row = self.get_row(ref)
        start = triggers.aware(start, "start")
        end = triggers.aware(end, "end")
        if end <= start:
            raise InvalidSchedule("end", "must be after start")
        if end > datetime.now(UTC) + timedelta(seconds=1):
            raise InvalidSchedule("end", "must not be in the future; backfill runs past fires")
        fires = triggers.fires_between(
            trigger_of(row), row["timezone"], start, end, MAX_BACKFILL + 1
        )
        if len(fires) > MAX_BACKFILL:
            raise InvalidSchedule(
                "end", f"the range holds more than {MAX_BACKFILL} fires; backfill a shorter one"
            )
        job_ids = [self.submit_fire(row, fire) for fire in fires]
        with self.engine.begin() as conn:
            store.record_fires(
                conn,
                [
                    {"schedule_id": row["id"], "fire_time": f, "job_id": j, "outcome": "submitted"}
                    for f, j in zip(fires, job_ids, strict=True)
                ],
            )
            store.notify(conn, str(row["id"]))
        return job_ids

    def get_row(self, ref: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return store.get(conn, ref)

    def prepare_fire(self, row: dict[str, Any], fire: datetime) -> repo.NewJob:
        """The job of one fire: key ``schedule:{id}:{fire time}``, so a fire submitted twice
        (two leaders for a moment, a retry after a crash) is one job.

        The payload is checked as any submission is (``Control.prepare``), once per distinct
        payload in this process: thousands of schedules of one task and arguments firing in
        the same minute pay for one validation."""
        payload = (
            row["task"],
            json.dumps(row["args"], sort_keys=True),
            json.dumps(row["kwargs"], sort_keys=True),
            row["queue"],
            row["priority"],
        )
        checked = self._checked.get(payload)
        if checked is None:
            if len(self._checked) >= MAX_CHECKED:
                self._checked.clear()
            checked = self.control.prepare(
                row["task"],
                row["args"],
                row["kwargs"],
                queue=row["queue"],
                priority=row["priority"],
                idempotency_key="schedule",  # (for its payload hash)
            )
            self._checked[payload] = checked
        delay = triggers.jitter_offset(f"{row['id']}:{fire.isoformat()}", row["jitter"])
        eta = fire + timedelta(seconds=delay) if delay else None
        return dataclasses.replace(
            checked,
            id=new_job_id(),
            eta=eta if eta is not None and eta > datetime.now(UTC) else None,
            idempotency_key=fire_key(str(row["id"]), fire),
            schedule_id=str(row["id"]),
        )

    def submit_fire(self, row: dict[str, Any], fire: datetime) -> str:
        try:
            job, _ = self.control.intake.submit(self.prepare_fire(row, fire)).committed.result()
        except IdempotencyConflict as exc:  # the schedule was edited since that fire ran
            return exc.job_id
        return str(job["id"])


def fire_job(item: Submission, timeout: float = 60) -> tuple[str | None, str | None]:
    """(job id, None) once a fire's submission is committed, or (None, what went wrong). A fire
    submitted before keeps its job, even if the schedule was edited since (the idempotency
    key's payload then differs)."""
    try:
        job, _ = item.committed.result(timeout=timeout)
    except IdempotencyConflict as exc:
        return exc.job_id, None
    except ConveyorError as exc:
        return None, str(exc)
    except Exception as exc:
        log.error("a fire's submission failed", exc_info=exc)
        return None, str(exc) or type(exc).__name__
    return str(job["id"]), None


def _refuse_over(cols: dict[str, Any], now: datetime) -> None:
    """A new schedule that could never fire is a mistake worth a 422."""
    if cols["trigger_at"] is not None and cols["trigger_at"] <= now:
        raise InvalidSchedule("at", "is in the past; a one-off schedule needs a future time")
    if cols["end_at"] is not None and cols["end_at"] <= now:
        raise InvalidSchedule("end_at", "is in the past; the schedule would never fire")


def fire_key(schedule_id: str, fire: datetime) -> str:
    return f"schedule:{schedule_id}:{fire.astimezone(UTC).isoformat()}"


def _datetime(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidSchedule(field, f"{value!r} is not an ISO 8601 date and time") from None


def _run(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "fire_time": r["fire_time"],
        "outcome": r["outcome"],
        "job_id": str(r["job_id"]) if r.get("job_id") else None,
        "state": r.get("state"),
        "started_at": r.get("started_at"),
        "finished_at": r.get("finished_at"),
        "error_type": r.get("error_type"),
        "error_message": r.get("error_message"),
    }
