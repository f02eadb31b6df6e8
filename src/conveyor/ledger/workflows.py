"""Workflows in the ledger: rows, canvas capture (for the recorder) and spec advancing.

Two kinds of workflow share the tables (``ledger.tables``):

- ``canvas``: what an app sent with Celery's canvas. The publish hook puts what a canvas
  message carries on its event (its group, the steps it carries for later); the recorder
  calls :func:`record_canvas` on each batch, which finds each message's workflow from any of
  its ids already known (``conveyor_workflow_keys``) or starts one, and records the node.
  Edges are read back from the jobs' ``parent_id`` and the nodes' chord groups.
- ``spec``: a JSON description posted to the API. Its nodes and edges are written up front;
  :func:`advance` submits (job row + outbox row, which the relay publishes) every step whose
  dependencies all succeeded, in the transaction that records a success.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from conveyor.core.ids import new_job_id
from conveyor.core.states import JobState
from conveyor.ledger import repository as repo
from conveyor.ledger.tables import jobs, workflow_edges, workflow_keys, workflow_nodes, workflows

log = logging.getLogger(__name__)

CANVAS = "canvas"
SPEC = "spec"
RUNNING = "running"
CANCELLED = "cancelled"

# --- the recorder side -----------------------------------------------------------------------


@dataclass
class CanvasSighting:
    """One job of a batch as the recorder saw it: its ids, and the canvas fields if any."""

    job_id: str
    task: str
    parent_id: str | None
    group: str | None = None
    chord: bool = False
    later: list[str] = field(default_factory=list)
    pending: list[list[str]] = field(default_factory=list)
    message: dict[str, Any] | None = None  # the canvas options of its message, for a resend

    @property
    def canvas(self) -> bool:
        return bool(self.group or self.later or self.message)

    def ids(self) -> list[str]:
        """Its canvas ids as keys (cut to the column: Celery takes task ids of any length)."""
        own = [self.job_id, *([self.group] if self.group else [])]
        return [str(k)[:255] for k in (*own, *self.later)]


def record_canvas(conn: Connection, sightings: list[CanvasSighting]) -> dict[str, str]:
    """Find (or start) the workflow of each sighted job and record its node; job id ->
    workflow id for those in one. A job with only a parent joins its parent's workflow if it
    has one (the last step of a chain carries nothing for later)."""
    wanted = {k for s in sightings for k in s.ids()}
    wanted |= {s.parent_id for s in sightings if s.parent_id}
    known = _known_keys(conn, wanted)
    new_keys: dict[str, str] = {}
    new_workflows: dict[str, str] = {}  # id -> name
    found: dict[str, str] = {}
    for s in sightings:
        wf = next((known[k] for k in s.ids() if k in known), None)
        if wf is None and s.parent_id and s.parent_id in known:
            wf = known[s.parent_id]
        if wf is None:
            if not s.canvas:
                continue
            wf = s.job_id
            new_workflows[wf] = s.task
        for k in s.ids():
            if k not in known:
                known[k] = new_keys[k] = wf
        found[s.job_id] = wf
    if not found:
        return {}
    if new_workflows:
        conn.execute(
            pg_insert(workflows)
            .values([{"id": i, "name": n, "source": CANVAS} for i, n in new_workflows.items()])
            .on_conflict_do_nothing()
        )
    if new_keys:
        conn.execute(
            pg_insert(workflow_keys)
            .values([{"key": k, "workflow_id": w} for k, w in new_keys.items()])
            .on_conflict_do_nothing()
        )
    # A job submitted by a retry of a canvas (``advance``) has its parent's id but is already
    # the job of its node: it must not become a node of its own.
    driven = _driven_jobs(conn, [s.job_id for s in sightings if s.job_id in found and not s.canvas])
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for s in sightings:
        wf = found.get(s.job_id)
        if wf is None or s.job_id in driven:
            continue
        for pending_id, task in s.pending:
            nodes.setdefault((wf, pending_id), _node(wf, pending_id, None, task))
        node = _node(wf, s.job_id, s.job_id, s.task, s.group, s.chord)
        nodes[(wf, s.job_id)] = {**node, "message": s.message}
    if not nodes:
        return found
    stmt = pg_insert(workflow_nodes).values(list(nodes.values()))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[workflow_nodes.c.workflow_id, workflow_nodes.c.step],
            set_={
                "job_id": func.coalesce(stmt.excluded.job_id, workflow_nodes.c.job_id),
                "task": stmt.excluded.task,
                "group_id": func.coalesce(stmt.excluded.group_id, workflow_nodes.c.group_id),
                "chord": workflow_nodes.c.chord | stmt.excluded.chord,
                "message": func.coalesce(stmt.excluded.message, workflow_nodes.c.message),
            },
        )
    )
    return found


def _driven_jobs(conn: Connection, job_ids: list[str]) -> set[str]:
    if not job_ids:
        return set()
    rows = conn.execute(
        select(workflow_nodes.c.job_id).where(workflow_nodes.c.job_id.in_(job_ids))
    ).all()
    return {str(r[0]) for r in rows}


def _node(
    wf: str,
    step: str,
    job_id: str | None,
    task: str,
    group: str | None = None,
    chord: bool = False,
) -> dict[str, Any]:
    return {
        "workflow_id": wf,
        "step": step[:255],
        "job_id": job_id,
        "task": task[:255],
        "group_id": group[:255] if group else None,
        "chord": chord,
        "message": None,
    }


def _known_keys(conn: Connection, keys: Iterable[str]) -> dict[str, str]:
    rows = conn.execute(
        select(workflow_keys.c.key, workflow_keys.c.workflow_id).where(
            workflow_keys.c.key.in_(list(keys))
        )
    ).all()
    return {k: str(w) for k, w in rows}


def carried_steps(message: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    """What a canvas message carries for later (its chain, chord callback and links, as the
    publish hook kept them): (every task and group id in them, [task id, task] of each task)."""
    later: list[str] = []
    pending: list[list[str]] = []
    if message:
        chord = message.get("chord")
        for sig in [*(message.get("chain") or ()), *([chord] if chord else ()),
                    *(message.get("link") or ())]:  # fmt: skip
            _walk(sig, later, pending)
    return later, pending


def _walk(sig: Any, later: list[str], pending: list[list[str]]) -> None:
    """Collect the ids a serialised signature (and what it nests) already has: the task ids of
    its tasks (pending nodes) and the group ids of its groups."""
    if not isinstance(sig, dict):
        return
    options = sig.get("options") or {}
    task_id, group_id = options.get("task_id"), options.get("group_id")
    kind = sig.get("subtask_type")
    if group_id:
        later.append(str(group_id))
    if task_id:
        later.append(str(task_id))
        if kind is None and sig.get("task"):
            pending.append([str(task_id), str(sig["task"])])
    kwargs = sig.get("kwargs") or {}
    if kind in ("chain", "group"):
        for inner in kwargs.get("tasks") or ():
            _walk(inner, later, pending)
    elif kind == "chord":
        header = kwargs.get("header")
        header_sigs = header.get("kwargs", {}).get("tasks", ()) if isinstance(header, dict) else ()
        for inner in header_sigs or ():
            _walk(inner, later, pending)
        _walk(kwargs.get("body"), later, pending)


# --- spec workflows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecStep:
    name: str
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    after: list[str]
    weight: float
    pass_result: bool


@dataclass(frozen=True)
class DrivenStep:
    """A canvas node a retry drives: its arguments and how it gets its parents' results."""

    name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    after: list[str]
    pass_result: bool
    collect: bool


def create_spec(
    conn: Connection,
    workflow_id: str,
    name: str | None,
    spec: dict[str, Any],
    steps: list[SpecStep],
) -> list[str]:
    """Write a spec workflow, its nodes and edges, and submit its first steps; their job ids."""
    conn.execute(
        insert(workflows).values(id=workflow_id, name=name, source=SPEC, spec=spec, state=RUNNING)
    )
    conn.execute(
        insert(workflow_nodes),
        [
            {
                "workflow_id": workflow_id,
                "step": s.name,
                "task": s.task,
                "queue": s.queue,
                "position": n,
                "weight": s.weight,
                "args": s.args,
                "kwargs": s.kwargs,
                "pass_result": s.pass_result,
            }
            for n, s in enumerate(steps)
        ],
    )
    edges = [
        {"workflow_id": workflow_id, "parent": parent, "child": s.name}
        for s in steps
        for parent in s.after
    ]
    if edges:
        conn.execute(insert(workflow_edges), edges)
    return advance(conn, workflow_id)


def advance(conn: Connection, workflow_id: str) -> list[str]:
    """Submit every step of a running spec workflow that has no job yet and whose
    dependencies all succeeded; the new job ids. Holds the workflow's row lock, so two
    recorders seeing the last dependency succeed submit a step once."""
    row = conn.execute(
        select(workflows.c.source, workflows.c.state, workflows.c.spec)
        .where(workflows.c.id == workflow_id)
        .with_for_update()
    ).first()
    # A spec, or a canvas a retry turned into driven steps (``drive_canvas``).
    if row is None or row.spec is None or row.state != RUNNING:
        return []
    after = {s["name"]: list(s.get("after") or ()) for s in row.spec["steps"]}
    # A chord callback gets a list even from a header of one.
    collect = {s["name"] for s in row.spec["steps"] if s.get("collect")}
    nodes = {n["step"]: n for n in _nodes(conn, workflow_id)}
    job_ids = [str(n["job_id"]) for n in nodes.values() if n["job_id"] is not None]
    done = {
        str(j["id"]): j
        for j in repo.get_jobs(conn, job_ids, full=True)
        if j["state"] == JobState.SUCCEEDED.value
    }

    def succeeded(step: str) -> dict[str, Any] | None:
        job_id = nodes[step]["job_id"]
        return done.get(str(job_id)) if job_id is not None else None

    new: list[repo.NewJob] = []
    for step, node in nodes.items():
        if node["job_id"] is not None:
            continue
        parents = [succeeded(p) for p in after.get(step, ())]
        if any(p is None for p in parents):
            continue
        args = list(node["args"])
        if node["pass_result"] and parents:
            results = [_result(conn, p) for p in parents if p is not None]
            one = len(results) == 1 and step not in collect
            args = [results[0] if one else results, *args]
        first_parent = parents[0] if parents else None
        new.append(
            repo.NewJob(
                id=new_job_id(),
                task=node["task"],
                args=args,
                kwargs=dict(node["kwargs"]),
                queue=node["queue"] or "default",
                priority=None,
                eta=None,
                parent_id=str(first_parent["id"]) if first_parent else None,
                root_id=workflow_id,
                workflow_id=workflow_id,
            )
        )
        node["job_id"] = new[-1].id
    if not new:
        return []
    # Due at once: the outbox relay publishes them (the recorder, which calls this, holds no
    # broker connection of its own).
    repo.insert_jobs(conn, new, publish_grace=0)
    by_job = {n["job_id"]: step for step, n in nodes.items()}
    for job in new:
        conn.execute(
            update(workflow_nodes)
            .where(
                workflow_nodes.c.workflow_id == workflow_id,
                workflow_nodes.c.step == by_job[job.id],
            )
            .values(job_id=job.id)
        )
    return [job.id for job in new]


def _result(conn: Connection, job: dict[str, Any]) -> Any:
    if job.get("result_ref"):
        blob = repo.get_blob(conn, job["result_ref"])
        return json.loads(blob) if blob is not None else None
    return job.get("result")


_SPEC_OF_SUCCEEDED = text("""
SELECT DISTINCT n.workflow_id FROM conveyor_workflow_nodes n
JOIN conveyor_workflows w ON w.id = n.workflow_id
WHERE n.job_id = ANY(CAST(:ids AS uuid[])) AND w.spec IS NOT NULL AND w.state = 'running'
""")


def spec_workflows_of(conn: Connection, succeeded_ids: list[str]) -> list[str]:
    """The running driven workflows (specs, and retried canvases) that jobs just succeeded
    in (one indexed lookup; usually none): those to :func:`advance`."""
    rows = conn.execute(_SPEC_OF_SUCCEEDED, {"ids": succeeded_ids}).all()
    return [str(r[0]) for r in rows]


# --- reads ---------------------------------------------------------------------------------


def get_workflow_row(
    conn: Connection, workflow_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    """The workflow's row; with ``lock``, held until the transaction ends (a retry, against a
    concurrent retry or a recorder advancing it)."""
    q = select(workflows).where(workflows.c.id == workflow_id)
    row = conn.execute(q.with_for_update() if lock else q).mappings().first()
    return dict(row) if row else None


def _nodes(conn: Connection, workflow_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(workflow_nodes)
        .where(workflow_nodes.c.workflow_id == workflow_id)
        .order_by(workflow_nodes.c.position, workflow_nodes.c.step)
    ).mappings()
    return [dict(r) for r in rows]


_NODE_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.state,
    jobs.c.queue,
    jobs.c.parent_id,
    jobs.c.created_at,
    jobs.c.started_at,
    jobs.c.finished_at,
    jobs.c.progress_current,
    jobs.c.progress_total,
    jobs.c.error_type,
    jobs.c.error_message,
)


def nodes_with_jobs(conn: Connection, workflow_id: str) -> list[dict[str, Any]]:
    """The workflow's nodes, each with its job's columns (``job`` None for a step not run)."""
    nodes = _nodes(conn, workflow_id)
    ids = [str(n["job_id"]) for n in nodes if n["job_id"] is not None]
    found: dict[str, dict[str, Any]] = {}
    if ids:
        rows = conn.execute(select(*_NODE_JOB_COLUMNS).where(jobs.c.id.in_(ids))).mappings()
        found = {str(r["id"]): dict(r) for r in rows}
    for n in nodes:
        n["job"] = found.get(str(n["job_id"])) if n["job_id"] is not None else None
    return nodes


def spec_edges(conn: Connection, workflow_id: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(workflow_edges.c.parent, workflow_edges.c.child)
        .where(workflow_edges.c.workflow_id == workflow_id)
        .order_by(workflow_edges.c.parent, workflow_edges.c.child)
    ).all()
    return [(p, c) for p, c in rows]


def list_workflow_rows(
    conn: Connection,
    *,
    source: str | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id) like the jobs list."""
    conds = []
    if source:
        conds.append(workflows.c.source == source)
    if name:
        conds.append(workflows.c.name == name)
    if cursor:
        created, wf_id = repo.decode_cursor(cursor)
        conds.append(
            (workflows.c.created_at < created)
            | and_(workflows.c.created_at == created, workflows.c.id < wf_id)
        )
    q = select(workflows.c.id, workflows.c.name, workflows.c.source, workflows.c.state)
    q = q.add_columns(workflows.c.created_at, workflows.c.finished_at)
    if conds:
        q = q.where(and_(*conds))
    q = q.order_by(workflows.c.created_at.desc(), workflows.c.id.desc()).limit(limit + 1)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    next_cursor = repo.encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


_SUMMARIES = text("""
SELECT n.workflow_id,
  COALESCE(j.state, CASE WHEN w.state = 'cancelled' THEN 'cancelled' ELSE 'pending' END) AS state,
  count(*) AS n, sum(n.weight) AS weight,
  sum(n.weight * CASE
    WHEN j.state = 'succeeded' THEN 1
    WHEN j.state = 'running' AND j.progress_total > 0
      THEN LEAST(1, GREATEST(0, j.progress_current / j.progress_total))
    ELSE 0 END) AS done,
  max(j.finished_at) AS finished_at
FROM conveyor_workflow_nodes n
JOIN conveyor_workflows w ON w.id = n.workflow_id
LEFT JOIN conveyor_jobs j ON j.id = n.job_id
WHERE n.workflow_id = ANY(CAST(:ids AS uuid[]))
GROUP BY 1, 2
""")


def node_summaries(conn: Connection, workflow_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per workflow, in one query: nodes per state (as ``get_workflow`` shows them) and the
    weighted progress, for lists."""
    out: dict[str, dict[str, Any]] = {
        w: {"counts": {}, "weight": 0.0, "done": 0.0, "finished_at": None} for w in workflow_ids
    }
    if not workflow_ids:
        return out
    rows = conn.execute(_SUMMARIES, {"ids": workflow_ids}).all()
    for wf_id, state, n, weight, done, finished_at in rows:
        entry = out[str(wf_id)]
        if finished_at is not None:
            entry["finished_at"] = max(finished_at, entry["finished_at"] or finished_at)
        entry["counts"][state] = int(n)
        entry["weight"] += float(weight or 0)
        entry["done"] += float(done or 0)
    return out


# --- control -------------------------------------------------------------------------------


def set_state(conn: Connection, workflow_id: str, state: str) -> None:
    """What the control plane decided (running, cancelled); when it ends is read again."""
    conn.execute(
        update(workflows).where(workflows.c.id == workflow_id).values(state=state, finished_at=None)
    )


def set_finished(conn: Connection, workflow_id: str, at: datetime) -> None:
    """Keep when a workflow ended (its state is aggregated from its nodes on read)."""
    conn.execute(
        update(workflows)
        .where(workflows.c.id == workflow_id, workflows.c.finished_at.is_(None))
        .values(finished_at=at)
    )


def keys_of(conn: Connection, workflow_id: str) -> list[str]:
    """Every canvas id of the workflow: jobs recorded and ids carried for later steps."""
    rows = conn.execute(
        select(workflow_keys.c.key).where(workflow_keys.c.workflow_id == workflow_id)
    ).all()
    return [r[0] for r in rows]


def reset_steps(conn: Connection, workflow_id: str, steps: list[str]) -> None:
    """Forget the jobs of ``steps`` (a retry runs them again as new jobs); their old jobs stay
    in the ledger, still carrying the workflow id."""
    if steps:
        conn.execute(
            update(workflow_nodes)
            .where(workflow_nodes.c.workflow_id == workflow_id, workflow_nodes.c.step.in_(steps))
            .values(job_id=None)
        )


def job_arguments(conn: Connection, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Job id -> its recorded ``args`` and ``kwargs`` (what a retry runs it with again)."""
    if not job_ids:
        return {}
    rows = conn.execute(
        select(jobs.c.id, jobs.c.args, jobs.c.kwargs).where(jobs.c.id.in_(job_ids))
    ).all()
    return {str(i): {"args": a, "kwargs": k} for i, a, k in rows}


def drive_canvas(
    conn: Connection, workflow_id: str, steps: list[DrivenStep], edges: list[tuple[str, str]]
) -> None:
    """Turn a canvas workflow's unfinished part into driven steps (``conveyor.canvas_retry``):
    each of ``steps`` gets its arguments and loses its job (a new one is submitted by
    :func:`advance`), the whole graph's edges are kept, and the workflow gets the spec that
    :func:`advance` reads (dependencies, and which steps collect their parents' results)."""
    for s in steps:
        conn.execute(
            update(workflow_nodes)
            .where(workflow_nodes.c.workflow_id == workflow_id, workflow_nodes.c.step == s.name)
            .values(
                job_id=None,
                # What its message carried is driven now: a resend of its new job (a lost
                # worker) must not carry it again, or the chain's next step would run twice.
                message=None,
                args=s.args,
                kwargs=s.kwargs,
                queue=s.queue,
                pass_result=s.pass_result,
            )
        )
    spec = {
        "source": CANVAS,
        "steps": [{"name": s.name, "after": s.after, "collect": s.collect} for s in steps],
    }
    conn.execute(update(workflows).where(workflows.c.id == workflow_id).values(spec=spec))
    conn.execute(delete(workflow_edges).where(workflow_edges.c.workflow_id == workflow_id))
    rows = [{"workflow_id": workflow_id, "parent": p, "child": c} for p, c in edges]
    if rows:
        conn.execute(insert(workflow_edges), rows)


_PRUNE = text("""
DELETE FROM conveyor_workflows WHERE id IN (
  SELECT w.id FROM conveyor_workflows w
  WHERE w.created_at < :before
    AND NOT EXISTS (SELECT 1 FROM conveyor_jobs j WHERE j.workflow_id = w.id)
  LIMIT :limit)
RETURNING id
""")


def prune_workflows(conn: Connection, created_before: datetime, limit: int) -> int:
    """Delete up to ``limit`` workflows created before ``created_before`` that retention has
    left without any job, with their nodes, edges and canvas keys; how many went."""
    ids = [str(r[0]) for r in conn.execute(_PRUNE, {"before": created_before, "limit": limit})]
    if ids:
        conn.execute(delete(workflow_keys).where(workflow_keys.c.workflow_id.in_(ids)))
    return len(ids)
