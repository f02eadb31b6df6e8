"""The recorder: moves job events from the Redis stream into PostgreSQL in batches.

Entries are acknowledged (and deleted from the stream) only after the transaction that wrote
them commits, so a recorder killed at any point loses nothing: its pending entries are read
again on restart, or claimed by another recorder once they have been idle long enough.
Applying the same events twice is harmless because every write is guarded by the state order
in ``conveyor.core.states``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from conveyor.core.states import JobState
from conveyor.ledger import events as ev
from conveyor.ledger import workflows as wf
from conveyor.ledger.fold import Folded, fold
from conveyor.ledger.storable import storable

log = logging.getLogger(__name__)

_TERMINAL = "('succeeded','failed','cancelled','dead')"
_HAS_RESULT = "(EXCLUDED.result IS NOT NULL OR EXCLUDED.result_ref IS NOT NULL)"


def _rank(expr: str) -> str:
    return (
        f"(CASE {expr} WHEN 'scheduled' THEN 0 WHEN 'queued' THEN 1 WHEN 'running' THEN 2 "
        "WHEN 'retrying' THEN 3 ELSE 4 END)"
    )


# One statement per batch, its rows in one jsonb parameter: the counting triggers (migration
# 0004) then run once per batch, and PostgreSQL plans and executes once. A row's ``result`` is
# JSON ``null`` when the task returned None and SQL NULL when the batch carries no result.
UPSERT_JOBS = text(f"""
INSERT INTO conveyor_jobs AS j (
  id, task, state, queue, priority, args, kwargs, attempt, max_attempts, worker,
  parent_id, root_id, eta, expires_at, queued_at, started_at, finished_at, result, result_ref,
  error_type, error_message, traceback, external_id, raw_message, workflow_id, created_at,
  updated_at)
SELECT
  r.id, r.task, r.state, COALESCE(r.queue, 'default'), r.priority,
  COALESCE(r.args, '[]'), COALESCE(r.kwargs, '{{}}'),
  r.attempt, r.max_attempts, r.worker, r.parent_id, r.root_id, r.eta, r.expires_at,
  r.queued_at, r.started_at, r.finished_at, CAST(r.result AS jsonb), r.result_ref, r.error_type,
  r.error_message, r.traceback, r.external_id, r.raw_message, r.workflow_id,
  COALESCE(r.queued_at, r.started_at, r.finished_at, now()), now()
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
  id uuid, task text, state text, queue text, priority smallint, args jsonb, kwargs jsonb,
  attempt integer, max_attempts integer, worker text, parent_id uuid, root_id uuid,
  eta timestamptz, expires_at timestamptz, queued_at timestamptz, started_at timestamptz,
  finished_at timestamptz, result text, result_ref text, error_type text, error_message text,
  traceback text, external_id text, raw_message jsonb, workflow_id uuid)
ON CONFLICT (id) DO UPDATE SET
  state = EXCLUDED.state,
  attempt = EXCLUDED.attempt,
  worker = COALESCE(EXCLUDED.worker, j.worker),
  eta = COALESCE(EXCLUDED.eta, j.eta),
  expires_at = COALESCE(EXCLUDED.expires_at, j.expires_at),
  queued_at = COALESCE(j.queued_at, EXCLUDED.queued_at),
  started_at = COALESCE(EXCLUDED.started_at, j.started_at),
  finished_at = EXCLUDED.finished_at,
  result = CASE WHEN {_HAS_RESULT} THEN EXCLUDED.result ELSE j.result END,
  result_ref = CASE WHEN {_HAS_RESULT} THEN EXCLUDED.result_ref ELSE j.result_ref END,
  error_type = CASE WHEN EXCLUDED.state = 'succeeded' THEN NULL
                    ELSE COALESCE(EXCLUDED.error_type, j.error_type) END,
  error_message = CASE WHEN EXCLUDED.state = 'succeeded' THEN NULL
                       ELSE COALESCE(EXCLUDED.error_message, j.error_message) END,
  traceback = CASE WHEN EXCLUDED.state = 'succeeded' THEN NULL
                   ELSE COALESCE(EXCLUDED.traceback, j.traceback) END,
  -- A new attempt measures its progress rate from its own first report, not the last one's.
  progress_first_current = CASE WHEN EXCLUDED.attempt > j.attempt THEN NULL
                                ELSE j.progress_first_current END,
  progress_first_at = CASE WHEN EXCLUDED.attempt > j.attempt THEN NULL
                           ELSE j.progress_first_at END,
  external_id = COALESCE(j.external_id, EXCLUDED.external_id),
  raw_message = COALESCE(EXCLUDED.raw_message, j.raw_message),
  workflow_id = COALESCE(j.workflow_id, EXCLUDED.workflow_id),
  updated_at = now()
WHERE j.state NOT IN {_TERMINAL}
  AND (EXCLUDED.state IN {_TERMINAL}
       OR (EXCLUDED.attempt, {_rank("EXCLUDED.state")}) > (j.attempt, {_rank("j.state")}))
""")

UPSERT_ATTEMPT = text("""
INSERT INTO conveyor_attempts AS a (
  job_id, attempt, worker, started_at, finished_at, outcome, error_type, error_message, traceback)
SELECT :job_id, :attempt, :worker, :started_at, :finished_at, :outcome, :error_type,
       :error_message, :traceback
WHERE EXISTS (SELECT 1 FROM conveyor_jobs WHERE id = :job_id)
ON CONFLICT (job_id, attempt) DO UPDATE SET
  worker = COALESCE(EXCLUDED.worker, a.worker),
  started_at = COALESCE(a.started_at, EXCLUDED.started_at),
  finished_at = COALESCE(EXCLUDED.finished_at, a.finished_at),
  outcome = COALESCE(EXCLUDED.outcome, a.outcome),
  error_type = COALESCE(EXCLUDED.error_type, a.error_type),
  error_message = COALESCE(EXCLUDED.error_message, a.error_message),
  traceback = COALESCE(EXCLUDED.traceback, a.traceback)
""")

UPDATE_PROGRESS = text("""
UPDATE conveyor_jobs AS j SET
  progress_current = p.current, progress_total = p.total, progress_step = p.step,
  progress_message = p.message, progress_at = p.at,
  progress_first_current = COALESCE(j.progress_first_current, p.first_current),
  progress_first_at = COALESCE(j.progress_first_at, p.first_at)
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS p(
  job_id uuid, current double precision, total double precision, step text, message text,
  at timestamptz, first_current double precision, first_at timestamptz)
WHERE j.id = p.job_id AND (j.progress_at IS NULL OR j.progress_at <= p.at)
""")

# A delivery that started while an earlier attempt never reported an end: that earlier attempt's
# worker died (or was killed) under it.
MARK_LOST = text("""
UPDATE conveyor_attempts SET outcome = 'lost', finished_at = COALESCE(finished_at, :started_at)
WHERE job_id = :job_id AND attempt < :attempt AND outcome IS NULL
""")

# A new publish that reused a finished job's id runs again (as in Celery): its row leaves the
# end it reached, back to `queued` at its last attempt, so that the batch's upsert applies the
# new attempt's events like any other. Earlier attempts keep their rows.
REOPEN = text(f"""
UPDATE conveyor_jobs SET
  state = 'queued', finished_at = NULL, result = NULL, result_ref = NULL, error_type = NULL,
  error_message = NULL, traceback = NULL, cancel_requested_at = NULL, updated_at = now()
WHERE id = CAST(:job_id AS uuid) AND state IN {_TERMINAL} AND attempt < :attempt
""")

INSERT_BLOB = text("""
INSERT INTO conveyor_blobs (id, content_type, data) VALUES (:id, 'application/json', :data)
ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data
""")


def _recordset(rows: list[dict[str, Any]]) -> str:
    """Rows as the one jsonb parameter of a ``jsonb_to_recordset`` statement."""
    return json.dumps(rows, default=lambda v: v.isoformat() if isinstance(v, datetime) else repr(v))


def write(conn: Connection, folded: Folded, inline_max: int) -> None:
    """Write one folded batch inside the caller's transaction."""
    if folded.reruns:
        conn.execute(REOPEN, [{"job_id": j, "attempt": n} for j, n in folded.reruns.items()])
    if folded.jobs:
        in_workflow = wf.record_canvas(conn, sightings) if (sightings := _sightings(folded)) else {}
        rows, blobs = [], []
        for row in folded.jobs.values():
            info = row.info
            result_json = json.dumps(row.result, default=repr) if row.has_result else None
            result_ref = None
            if result_json is not None and len(result_json) > inline_max:
                result_ref = f"blob:{row.id}"
                blobs.append({"id": result_ref, "data": result_json.encode()})
                result_json = None
            rows.append(
                {
                    "id": row.id,
                    "task": info.get("task") or "unknown",
                    "state": row.state.value,
                    "queue": info.get("queue"),
                    "priority": info.get("priority"),
                    "args": info.get("args"),
                    "kwargs": info.get("kwargs"),
                    "attempt": row.attempt,
                    "max_attempts": info.get("max_attempts"),
                    "worker": row.worker,
                    "parent_id": info.get("parent_id"),
                    "root_id": info.get("root_id"),
                    "eta": row.eta,
                    "expires_at": row.expires_at,
                    "queued_at": row.queued_at,
                    "started_at": row.started_at,
                    "finished_at": row.finished_at,
                    # As JSON text: absent (no result in this batch) stays apart from a task
                    # that returned None ("null"), which jsonb_to_recordset would not keep.
                    "result": result_json,
                    "result_ref": result_ref,
                    "error_type": row.error_type,
                    "error_message": row.error_message,
                    "traceback": row.traceback,
                    "external_id": info.get("xid"),
                    "raw_message": info.get("raw"),
                    "workflow_id": in_workflow.get(row.id),
                }
            )
        if blobs:
            conn.execute(INSERT_BLOB, blobs)
        conn.execute(UPSERT_JOBS, {"rows": _recordset(rows)})
    if folded.attempts:
        conn.execute(UPSERT_ATTEMPT, [vars(a) for a in folded.attempts.values()])
    if folded.lost_before:
        conn.execute(
            MARK_LOST,
            [{"job_id": j, "attempt": n, "started_at": at} for j, n, at in folded.lost_before],
        )
    if folded.progress:
        progress = [vars(p) for p in folded.progress.values()]
        conn.execute(UPDATE_PROGRESS, {"rows": _recordset(progress)})
    succeeded = [r.id for r in folded.jobs.values() if r.state is JobState.SUCCEEDED]
    if succeeded:
        _advance_workflows(conn, succeeded)


def _sightings(folded: Folded) -> list[wf.CanvasSighting]:
    """The batch's jobs that may be nodes of a canvas workflow: those whose message was part
    of a canvas, and those with a parent (a chain's last step carries nothing)."""
    out = []
    for row in folded.jobs.values():
        info = row.info
        message = info.get("cmsg")
        if not (message or info.get("parent_id")):
            continue
        later, pending = wf.carried_steps(message)
        out.append(
            wf.CanvasSighting(
                job_id=row.id,
                task=str(info.get("task") or "unknown"),
                parent_id=info.get("parent_id"),
                group=info.get("grp"),
                chord=bool(info.get("chord")),
                later=later,
                pending=pending,
                message=message,
            )
        )
    return out


def _advance_workflows(conn: Connection, succeeded: list[str]) -> None:
    """Submit the spec workflow steps these successes unblock, in the batch's transaction (so
    a recorder dying after the commit leaves no workflow stuck) but in a savepoint: a workflow
    that cannot advance must not cost the batch its recording."""
    workflows = wf.spec_workflows_of(conn, succeeded)
    if not workflows:
        return
    try:
        with conn.begin_nested():
            for workflow_id in workflows:
                wf.advance(conn, workflow_id)
    except _REFUSED:
        log.exception("could not advance workflows %s", ", ".join(workflows))


# What a batch can fail with apart from PostgreSQL being down: a value PostgreSQL refuses, or an
# event whose fields do not fold (a state or a time that is not one).
_REFUSED = (DBAPIError, ValueError, TypeError, KeyError)

# Event fields written to columns of 255 characters.
_BOUNDED = ("task", "queue", "worker", "etype", "step")


def _storable_event(event: dict[str, Any]) -> dict[str, Any]:
    """An event PostgreSQL refused, with every value made storable, bounded text fields cut
    to their column and ids that are not UUIDs mapped to ledger ids."""
    out: dict[str, Any] = storable(event)
    out["ts"] = event["ts"]
    for name in _BOUNDED:
        if isinstance(out.get(name), str):
            out[name] = out[name][:255]
    return ev.keyed_by_ledger_id(out)


class Recorder:
    """Consume the event stream into PostgreSQL; run one or several, anywhere."""

    def __init__(
        self,
        engine: Engine,
        client: redis.Redis,
        *,
        batch: int = 1000,
        block_ms: int = 50,
        inline_max: int = 64 * 1024,
        claim_idle_ms: int = 30_000,
        linger_ms: int = 50,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.redis = client
        self.batch = batch
        self.block_ms = block_ms
        self.inline_max = inline_max
        self.claim_idle_ms = claim_idle_ms
        self.linger = linger_ms / 1000
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._own_pending = True  # first drain what this consumer read but never acked
        self._last_claim = 0.0
        self.recorded = 0

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(ev.STREAM, ev.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        now = time.monotonic()
        if now - self._last_claim > self.claim_idle_ms / 1000:
            self._last_claim = now
            # Entries a dead recorder read but never acknowledged.
            _, claimed, *_ = self.redis.xautoclaim(
                ev.STREAM, ev.GROUP, self.name, self.claim_idle_ms, "0-0", count=self.batch
            )
            if claimed:
                return [(i, f) for i, f in claimed if f]
        start = "0" if self._own_pending else ">"
        block = None if self._own_pending else self.block_ms
        reply: Any = self.redis.xreadgroup(  # RESP2 reply: [[stream, [(id, fields), ...]]]
            ev.GROUP, self.name, {ev.STREAM: start}, count=self.batch, block=block
        )
        entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1] if reply else []
        if self._own_pending and not entries:
            self._own_pending = False
        return entries

    def step(self) -> int:
        """Record one batch; returns how many stream entries it consumed."""
        entries = self._read()
        if not entries:
            return 0
        ids = [entry_id for entry_id, _ in entries]
        decoded: list[dict[str, Any]] = []
        for entry_id, fields in entries:
            try:
                decoded.append(ev.decode(fields[b"e"]))
            except (KeyError, ValueError) as exc:
                log.error("dropping malformed ledger event %s: %s", entry_id, exc)
                self._unrecordable(1)
        try:
            with self.engine.begin() as conn:
                write(conn, fold(decoded), self.inline_max)
        except OperationalError:
            self._own_pending = True  # not acked: read them again once PostgreSQL is back
            raise
        except _REFUSED:
            log.exception("batch of %d events failed; recording them one job at a time", len(ids))
            self._write_each(decoded)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(ev.STREAM, ev.GROUP, *ids)
        pipe.xdel(ev.STREAM, *ids)
        pipe.execute()
        self.recorded += len(ids)
        return len(ids)

    def _write_each(self, decoded: list[dict[str, Any]]) -> None:
        """Write a batch PostgreSQL refused one job at a time; a job's events it refuses again
        are made storable (``ledger.storable``) and tried once more, and only what fails
        then is dropped — logged and counted in ``conveyor_events_unrecordable_total``."""
        by_job: dict[str, list[dict[str, Any]]] = {}
        for e in decoded:
            by_job.setdefault(e["id"], []).append(e)
        for job_id, job_events in by_job.items():
            try:
                self._write_job(job_events)
            except OperationalError:
                raise
            except _REFUSED:
                log.warning("job %s has events PostgreSQL refused; storing them escaped", job_id)
            else:
                continue
            try:
                self._write_job([_storable_event(e) for e in job_events])
            except OperationalError:
                raise
            except _REFUSED:
                log.exception("dropping %d unrecordable events of job %s", len(job_events), job_id)
                self._unrecordable(len(job_events))

    def _write_job(self, job_events: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            write(conn, fold(job_events), self.inline_max)

    def _unrecordable(self, n: int) -> None:
        try:
            self.redis.incrby(ev.METRICS_UNRECORDABLE, n)
        except redis.RedisError:
            log.warning("could not count %d unrecordable events", n, exc_info=True)

    def run(self, stop: threading.Event) -> None:
        """Record until ``stop`` is set, riding out PostgreSQL and Redis outages."""
        backoff = 0.1
        group_ready = False
        while not stop.is_set():
            try:
                if not group_ready:
                    self.ensure_group()
                    group_ready = True
                n = self.step()
                backoff = 0.1
                if 0 < n < self.batch // 4:
                    # A small batch: let events gather for a moment rather than paying a
                    # commit (WAL flush) and an ack round trip for every few of them.
                    stop.wait(self.linger)
            except (OperationalError, redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("recorder waiting for its stores: %s", exc)
                group_ready = False
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                group_ready = False  # Redis restarted without its data: make the group again
