"""SQL of schedules, their fires and the scheduler's lease.

Like ``repository``, every function takes a ``Connection`` and the caller owns the transaction.
The scheduler's writes are *fenced*: :func:`hold_lease` locks the lease row (``FOR SHARE``)
and checks the caller's token in the same transaction, so a leader that lost its lease without
noticing writes nothing, and a take-over waits for a write in flight to commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    any_,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.exc import IntegrityError

from conveyor.core.states import ACTIVE_STATES
from conveyor.errors import ScheduleExists, ScheduleNotFound
from conveyor.ledger.repository import NewJob, job_params
from conveyor.ledger.tables import jobs, outbox, schedule_fires, schedules

CHANNEL = "conveyor_schedules"
"""NOTIFY channel: every change to a schedule is announced here (payload: its id)."""
SCHEDULER_LEASE = "scheduler"
_ACTIVE = tuple(s.value for s in ACTIVE_STATES)


@dataclass(frozen=True)
class ScheduleFilter:
    task: str | None = None
    source: str | None = None  # user | code
    paused: bool | None = None
    retired: bool | None = False  # None: both
    text: str | None = None  # in the name
    tasks_in: tuple[str, ...] | None = None  # a limited key's allowlist


def _id_or_name(ref: str) -> Any:
    try:
        return schedules.c.id == str(uuid.UUID(ref))
    except ValueError:
        return schedules.c.name == ref


def get(conn: Connection, ref: str, *, for_update: bool = False) -> dict[str, Any]:
    """A schedule by id or name; ScheduleNotFound otherwise."""
    q = select(schedules).where(_id_or_name(ref))
    if for_update:
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    if row is None:
        raise ScheduleNotFound(ref)
    return dict(row)


def list_schedules(
    conn: Connection, flt: ScheduleFilter, limit: int = 1000
) -> list[dict[str, Any]]:
    conds = []
    if flt.task:
        conds.append(schedules.c.task == flt.task)
    if flt.source:
        conds.append(schedules.c.source == flt.source)
    if flt.paused is not None:
        conds.append(schedules.c.paused.is_(flt.paused))
    if flt.retired is not None:
        conds.append(
            schedules.c.retired_at.isnot(None) if flt.retired else schedules.c.retired_at.is_(None)
        )
    if flt.text:
        pattern = "%" + flt.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conds.append(schedules.c.name.ilike(pattern))
    if flt.tasks_in is not None:
        conds.append(schedules.c.task.in_(flt.tasks_in))
    q = select(schedules).where(and_(*conds)).order_by(schedules.c.name).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def insert_schedule(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    """Insert a schedule (``values`` has its columns); ScheduleExists if the name is taken."""
    try:
        with conn.begin_nested():
            row = conn.execute(insert(schedules).values(**values).returning(schedules))
            out = dict(row.mappings().one())
    except IntegrityError:
        raise ScheduleExists(values["name"]) from None
    notify(conn, out["id"])
    return out


def update_schedule(conn: Connection, schedule_id: str, values: dict[str, Any]) -> dict[str, Any]:
    try:
        with conn.begin_nested():
            row = conn.execute(
                update(schedules)
                .where(schedules.c.id == schedule_id)
                .values(**values, updated_at=func.now())
                .returning(schedules)
            )
            found = row.mappings().first()
    except IntegrityError:
        raise ScheduleExists(values.get("name", "")) from None
    if found is None:
        raise ScheduleNotFound(schedule_id)
    # A fire staged from the schedule as it was must not run: the leader fires it from the
    # new definition (or not at all) instead.
    drop_staged(conn, schedule_id=schedule_id)
    notify(conn, schedule_id)
    return dict(found)


def delete_schedule(conn: Connection, schedule_id: str) -> None:
    result = conn.execute(delete(schedules).where(schedules.c.id == schedule_id))
    if not result.rowcount:
        raise ScheduleNotFound(schedule_id)
    # (After the delete, which waited for a staging in flight: its rows are seen here.)
    drop_staged(conn, schedule_id=schedule_id)
    notify(conn, schedule_id)


def notify(conn: Connection, payload: str) -> None:
    """Tell a listening scheduler something changed (delivered when the transaction commits)."""
    conn.execute(select(func.pg_notify(CHANNEL, str(payload))))


# --- fires -------------------------------------------------------------------------------------
def runs(conn: Connection, schedule_ids: list[str], per_schedule: int) -> dict[str, list[Any]]:
    """The latest ``per_schedule`` fires of each schedule, newest first, with their jobs'
    state and times."""
    if not schedule_ids:
        return {}
    rows = conn.execute(
        text("""
SELECT f.schedule_id, f.fire_time, f.job_id, f.outcome, f.created_at,
       j.state, j.started_at, j.finished_at, j.error_type, j.error_message
FROM unnest(CAST(:ids AS uuid[])) AS s(id)
CROSS JOIN LATERAL (
  SELECT * FROM conveyor_schedule_fires WHERE schedule_id = s.id
  ORDER BY fire_time DESC LIMIT :n
) f
LEFT JOIN conveyor_jobs j ON j.id = f.job_id
ORDER BY f.schedule_id, f.fire_time DESC
"""),
        {"ids": schedule_ids, "n": per_schedule},
    ).mappings()
    out: dict[str, list[Any]] = {str(i): [] for i in schedule_ids}
    for r in rows:
        out[str(r["schedule_id"])].append(dict(r))
    return out


def record_fires(conn: Connection, fires: Iterable[dict[str, Any]]) -> int:
    """Insert fire rows (schedule_id, fire_time, job_id, outcome, by default submitted); a
    fire already recorded is left as it is. How many were new."""
    rows = [
        {
            "schedule_id": f["schedule_id"],
            "fire_time": f["fire_time"].isoformat(),
            "job_id": f.get("job_id"),
            "outcome": f.get("outcome", "submitted"),
        }
        for f in fires
    ]
    if not rows:
        return 0
    result = conn.execute(
        text("""
INSERT INTO conveyor_schedule_fires (schedule_id, fire_time, job_id, outcome)
SELECT schedule_id, fire_time, job_id, outcome
FROM jsonb_to_recordset(CAST(:rows AS jsonb))
  AS x(schedule_id uuid, fire_time timestamptz, job_id uuid, outcome text)
ON CONFLICT DO NOTHING
"""),
        {"rows": json.dumps(rows)},
    )
    return int(result.rowcount or 0)


def settle_buffered(conn: Connection, schedule_id: str, fire_time: datetime, job_id: str) -> None:
    """A buffered fire was submitted after all."""
    conn.execute(
        update(schedule_fires)
        .where(
            schedule_fires.c.schedule_id == schedule_id,
            schedule_fires.c.fire_time == fire_time,
            schedule_fires.c.outcome == "buffered",
        )
        .values(outcome="submitted", job_id=job_id)
    )


def buffered(conn: Connection) -> list[dict[str, Any]]:
    """Fires waiting for their schedule's previous run to end (``buffer_one``)."""
    q = (
        select(schedule_fires.c.schedule_id, schedule_fires.c.fire_time)
        .where(schedule_fires.c.outcome == "buffered")
        .order_by(schedule_fires.c.fire_time)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def active_jobs(conn: Connection, schedule_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(id, idempotency key) of each schedule's jobs that are not finished (waiting or
    running). Staged fires (not released yet) are not runs."""
    if not schedule_ids:
        return {}
    staged = exists().where(
        outbox.c.job_id == jobs.c.id, outbox.c.available_at == literal_column("'infinity'")
    )
    # One array parameter, not an IN list of thousands of binds.
    q = select(jobs.c.schedule_id, jobs.c.id, jobs.c.idempotency_key).where(
        jobs.c.schedule_id == any_(cast(schedule_ids, ARRAY(UUID(as_uuid=False)))),
        jobs.c.state.in_(_ACTIVE),
        ~staged,
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for sid, jid, key in conn.execute(q):
        out.setdefault(str(sid), []).append((str(jid), key or ""))
    return out


# --- the scheduler's reads and fenced writes ---------------------------------------------------
def due(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Schedules whose next fire is at or before ``now``, earliest first."""
    q = (
        select(schedules)
        .where(
            schedules.c.next_fire_at <= now,
            schedules.c.next_fire_at.isnot(None),
            ~schedules.c.paused,
            schedules.c.retired_at.is_(None),
        )
        .order_by(schedules.c.next_fire_at)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(q).mappings()]


def due_count(conn: Connection, until: datetime, limit: int) -> int:
    """How many active schedules fire next at or before ``until``, counted up to ``limit``
    (the partial index on ``next_fire_at``; at most ``limit`` entries read)."""
    first = (
        select(schedules.c.id)
        .where(
            schedules.c.next_fire_at <= until,
            ~schedules.c.paused,
            schedules.c.retired_at.is_(None),
        )
        .limit(limit)
        .subquery()
    )
    return int(conn.execute(select(func.count()).select_from(first)).scalar_one())


def next_due(conn: Connection) -> datetime | None:
    """When the earliest active schedule fires next."""
    q = select(func.min(schedules.c.next_fire_at)).where(
        ~schedules.c.paused, schedules.c.retired_at.is_(None)
    )
    value: datetime | None = conn.execute(q).scalar()
    return value


def advance(conn: Connection, moves: list[dict[str, Any]]) -> None:
    """Set each schedule's next fire, last fire, and add the runs it made, in one statement.
    A schedule edited meanwhile (``updated_at`` moved) is left to be read again."""
    if not moves:
        return
    rows = [
        {
            "id": m["id"],
            "next_fire_at": m["next_fire_at"].isoformat() if m["next_fire_at"] else None,
            "last_fire_at": m["last_fire_at"].isoformat() if m["last_fire_at"] else None,
            "runs": m["runs"],
            "seen": m["seen"].isoformat(),
        }
        for m in moves
    ]
    conn.execute(
        text("""
UPDATE conveyor_schedules s SET
  next_fire_at = x.next_fire_at,
  last_fire_at = COALESCE(x.last_fire_at, s.last_fire_at),
  run_count = s.run_count + x.runs
FROM jsonb_to_recordset(CAST(:rows AS jsonb))
  AS x(id uuid, next_fire_at timestamptz, last_fire_at timestamptz, runs int, seen timestamptz)
WHERE s.id = x.id AND s.updated_at = x.seen
"""),
        {"rows": json.dumps(rows)},
    )


# --- the lease ---------------------------------------------------------------------------------
_TAKE = text("""
INSERT INTO conveyor_leases AS l (name, holder, token, expires_at)
VALUES (:name, :holder, 1, now() + make_interval(secs => :ttl))
ON CONFLICT (name) DO UPDATE SET
  holder = excluded.holder,
  token = CASE WHEN l.holder = excluded.holder AND l.expires_at > now()
               THEN l.token ELSE l.token + 1 END,
  expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at <= now()
RETURNING token
""")


def take_lease(conn: Connection, name: str, holder: str, ttl: float) -> int | None:
    """Take or renew the lease ``name`` for ``ttl`` seconds: its fencing token, or None while
    another holder's lease runs. The token grows on every take-over (and on a renewal that
    came too late), never on a renewal in time."""
    token = conn.execute(_TAKE, {"name": name, "holder": holder, "ttl": ttl}).scalar()
    return int(token) if token is not None else None


def release_lease(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up now (a clean stop), so a replica takes over at once."""
    conn.execute(
        text("UPDATE conveyor_leases SET expires_at = now() WHERE name = :n AND holder = :h"),
        {"n": name, "h": holder},
    )


def hold_lease(conn: Connection, name: str, holder: str, token: int) -> bool:
    """Whether ``holder`` still holds ``name`` with ``token``; locks the row until the
    transaction ends, so no take-over happens between this check and the commit."""
    row = conn.execute(
        text("""
SELECT 1 FROM conveyor_leases
WHERE name = :n AND holder = :h AND token = :t AND expires_at > now()
FOR SHARE
"""),
        {"n": name, "h": holder, "t": token},
    ).first()
    return row is not None


def lease(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(
        text("SELECT name, holder, token, expires_at FROM conveyor_leases WHERE name = :n"),
        {"n": name},
    ).mappings()
    found = row.first()
    return dict(found) if found else None


def code_schedules(conn: Connection) -> list[dict[str, Any]]:
    """Every schedule declared by code, retired ones too."""
    q = select(schedules).where(schedules.c.source == "code")
    return [dict(r) for r in conn.execute(q).mappings()]


def lock_code_import(conn: Connection) -> None:
    """Hold the code-import lock until the transaction ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('conveyor_schedules_code'))"))


def names_taken(conn: Connection, names: list[str]) -> dict[str, dict[str, Any]]:
    q = select(schedules).where(schedules.c.name.in_(names))
    return {r["name"]: dict(r) for r in conn.execute(q).mappings()}


# --- fires staged ahead of their minute (runtime/staging.py) ------------------------------------
# A staged fire is a job row in state ``scheduled`` (eta: the fire time) whose outbox row is
# due at 'infinity': the relay never publishes it; the leader releases it at the minute, or an
# edit of its schedule drops it. "Run now" on it works as on any scheduled job (the relay then
# publishes it, and the release finds it no longer scheduled).
_STAGED = "o.available_at = 'infinity'"

_STAGE = text("""
WITH new AS (
  SELECT x.* FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(
    n int, id uuid, task text, queue text, priority smallint, args jsonb, kwargs jsonb,
    eta timestamptz, idempotency_key text, payload_hash text, schedule_id uuid, seen timestamptz,
    message jsonb)
  -- The schedule as it was planned from, locked until this commits: an edit waits for this
  -- statement and then drops what it staged, or came first and this stages nothing.
  JOIN conveyor_schedules s ON s.id = x.schedule_id AND s.updated_at = x.seen
    AND NOT s.paused AND s.retired_at IS NULL
  FOR SHARE OF s
), ins AS (
  INSERT INTO conveyor_jobs (id, task, state, queue, priority, args, kwargs, eta,
    idempotency_key, payload_hash, root_id, schedule_id)
  SELECT id, task, 'scheduled', queue, priority, args, kwargs, eta, idempotency_key,
    payload_hash, id, schedule_id
  FROM new ORDER BY n
  ON CONFLICT DO NOTHING
  RETURNING id
), box AS (
  INSERT INTO conveyor_outbox (job_id, message, available_at)
  SELECT new.id, new.message, 'infinity' FROM new JOIN ins ON ins.id = new.id
)
SELECT id::text FROM ins
""")


def stage_jobs(conn: Connection, staged: list[tuple[NewJob, datetime]]) -> set[str]:
    """Write (job, schedule's ``updated_at`` it was planned from) as staged rows; the ids of
    those written (not: a job of that fire exists already, or the schedule changed since)."""
    if not staged:
        return set()
    rows = [
        {**job_params(n, job), "seen": seen.isoformat()} for n, (job, seen) in enumerate(staged)
    ]
    return {r[0] for r in conn.execute(_STAGE, {"rows": json.dumps(rows)})}


def staged_by_key(conn: Connection, keys: list[str]) -> dict[str, str]:
    """Idempotency key → id of the staged jobs among ``keys`` (a leader before this one may
    have staged them)."""
    if not keys:
        return {}
    rows = conn.execute(
        text(f"""
SELECT j.idempotency_key, j.id::text FROM conveyor_jobs j
JOIN conveyor_outbox o ON o.job_id = j.id AND {_STAGED}
WHERE j.idempotency_key = ANY(CAST(:keys AS text[])) AND j.state = 'scheduled'
"""),
        {"keys": keys},
    )
    return {str(k): str(i) for k, i in rows}


def lock_staged(conn: Connection, job_ids: list[str], *, if_free: bool = False) -> list[str]:
    """Lock (until the transaction ends) the jobs among ``job_ids`` that are still staged (an
    edit, cancel or "run now" since took the others); their ids. Locked, they can be published
    before :func:`release_staged` writes them as queued: no edit or cancel comes in between.

    ``if_free``: only those whose fire is still their schedule's next one, with no buffered
    fire waiting and, unless the overlap is ``allow_all``, no run of the schedule active
    (staged rows are not runs) — the fires the tick would submit anyway."""
    if not job_ids:
        return []
    # The schedules with a run active (queued, running, retrying, or scheduled but not staged)
    # and those with a buffered fire, each found once from its own small set — not probed
    # per schedule through all its past jobs.
    free = """
  JOIN conveyor_schedules s ON s.id = j.schedule_id AND s.next_fire_at = j.eta
    AND NOT s.paused AND s.retired_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM buffered WHERE buffered.schedule_id = s.id)
    AND (s.overlap = 'allow_all'
         OR NOT EXISTS (SELECT 1 FROM busy WHERE busy.schedule_id = s.id))"""
    sets = """
WITH busy AS (
  SELECT schedule_id FROM conveyor_jobs
  WHERE state = ANY(CAST(:running AS text[])) AND schedule_id IS NOT NULL
  UNION
  SELECT b.schedule_id FROM conveyor_outbox ob JOIN conveyor_jobs b ON b.id = ob.job_id
  WHERE ob.available_at < 'infinity' AND b.state = 'scheduled' AND b.schedule_id IS NOT NULL
), buffered AS (
  SELECT DISTINCT schedule_id FROM conveyor_schedule_fires WHERE outcome = 'buffered'
)"""
    rows = conn.execute(
        text(f"""{sets if if_free else ""}
SELECT j.id::text FROM conveyor_jobs j
JOIN conveyor_outbox o ON o.job_id = j.id AND {_STAGED}{free if if_free else ""}
WHERE j.id = ANY(CAST(:ids AS uuid[])) AND j.state = 'scheduled'
FOR UPDATE OF j
"""),
        {"ids": job_ids, "running": [a for a in _ACTIVE if a != "scheduled"]},
    )
    return [str(i) for (i,) in rows]


def release_staged(conn: Connection, job_ids: list[str], publish_grace: float) -> None:
    """Make staged jobs (locked by :func:`lock_staged`) queued now, their outbox rows due after
    ``publish_grace``: the relay's safety net, as for any submission."""
    if not job_ids:
        return
    conn.execute(
        text("""
WITH flip AS (
  UPDATE conveyor_jobs SET state = 'queued', eta = NULL, queued_at = now(), updated_at = now()
  WHERE id = ANY(CAST(:ids AS uuid[]))
)
UPDATE conveyor_outbox SET available_at = now() + make_interval(secs => :grace)
WHERE job_id = ANY(CAST(:ids AS uuid[]))
"""),
        {"ids": job_ids, "grace": publish_grace},
    )


def outbox_messages(conn: Connection, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Job id → the message its outbox row holds (what to publish)."""
    if not job_ids:
        return {}
    rows = conn.execute(
        select(outbox.c.job_id, outbox.c.message).where(
            outbox.c.job_id == any_(cast(job_ids, ARRAY(UUID(as_uuid=False))))
        )
    )
    return {str(i): dict(m) for i, m in rows}


def drop_staged(
    conn: Connection, *, schedule_id: str | None = None, keys: list[str] | None = None
) -> int:
    """Delete staged jobs (with their outbox rows) of a schedule, or of these fires' keys;
    how many."""
    if schedule_id is None and not keys:
        return 0
    where = (
        "j.schedule_id = CAST(:sid AS uuid)"
        if schedule_id is not None
        else "j.idempotency_key = ANY(CAST(:keys AS text[]))"
    )
    result = conn.execute(
        text(f"""
DELETE FROM conveyor_jobs j USING conveyor_outbox o
WHERE {where} AND j.state = 'scheduled' AND o.job_id = j.id AND {_STAGED}
"""),
        {"sid": schedule_id, "keys": keys or []},
    )
    return int(result.rowcount or 0)
