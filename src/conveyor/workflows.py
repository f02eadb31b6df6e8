"""Workflows: a DAG of jobs, read back as one graph, cancelled and retried as one.

Two ways in, one model out:

- **Canvas from code.** Chains, groups and chords an installed app sends with Celery's canvas
  are recorded by the recorder as they are published (``runtime.canvas``,
  ``ledger.workflows.record_canvas``); Celery runs them exactly as it would without Conveyor.
- **Spec over REST.** A JSON description (:class:`WorkflowSpec`) is validated as a DAG and
  driven from the ledger: the steps without dependencies are submitted at once, and each step
  is submitted when all of its dependencies have succeeded (the recorder advances the
  workflow in the transaction that records the success). Driving from the ledger rather than
  compiling to one canvas is what lets a retry re-run only the failed and never-run steps
  while reusing the results of those that succeeded, and it expresses any DAG, not only those
  a canvas can (a step depending on two steps of different branches).

:class:`Workflows` is the service the REST API and the dashboard share.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection

from conveyor.canvas_retry import plan_retry
from conveyor.control import Control, task_queue
from conveyor.core.ids import new_job_id
from conveyor.core.states import JobState
from conveyor.errors import (
    InvalidArguments,
    InvalidSubmission,
    InvalidTransition,
    UnknownTask,
    WorkflowNotFound,
)
from conveyor.ledger import workflows as lw
from conveyor.ledger.events import CANCEL_KEY, CANCEL_TTL

NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,255}$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # (no control characters: PostgreSQL refuses NUL)
MAX_STEPS = 1000
_ACTIVE = {s.value for s in JobState if not s.terminal}
_FAILED = {JobState.FAILED.value, JobState.DEAD.value, JobState.CANCELLED.value}
PENDING = "pending"  # a node whose job does not exist yet

WorkflowState = Literal["running", "succeeded", "failed", "cancelled"]


class WorkflowStep(BaseModel):
    """One step of a spec: a task with its arguments, run once every step in ``after`` has
    succeeded."""

    name: str = Field(pattern=NAME_PATTERN, description="unique within the workflow")
    task: str = Field(min_length=1, max_length=255)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list, description="steps this one waits for")
    weight: float = Field(default=1.0, gt=0, le=1e6, description="its share of the progress")
    queue: str | None = Field(default=None, max_length=255)
    pass_result: bool = Field(
        default=False,
        description="put the dependencies' results before `args`: the result of the one step "
        "in `after`, or the list of their results in `after` order (as a chord callback gets "
        "its header's results)",
    )


class WorkflowSpec(BaseModel):
    """A workflow described as data: steps and their dependencies, validated as a DAG."""

    name: str | None = Field(default=None, max_length=255, pattern=TEXT_PATTERN)
    steps: list[WorkflowStep] = Field(min_length=1, max_length=MAX_STEPS)


class WorkflowNode(BaseModel):
    step: str = Field(description="the node's key: a spec step's name, a canvas node's job id")
    name: str = Field(description="what to show: the step name, or the task for a canvas node")
    job_id: str | None = Field(description="None while the step has not been submitted")
    task: str
    queue: str | None
    state: str = Field(description="the job's state, or `pending` before it exists")
    progress: float = Field(ge=0, le=1)
    weight: float
    started_at: datetime | None
    finished_at: datetime | None
    error_type: str | None = None
    error_message: str | None = None


class WorkflowEdge(BaseModel):
    parent: str
    child: str


class WorkflowSummary(BaseModel):
    id: str
    name: str | None
    source: Literal["canvas", "spec"]
    state: WorkflowState
    created_at: datetime
    finished_at: datetime | None
    progress: float = Field(ge=0, le=1, description="weighted mean of the nodes' progress")
    counts: dict[str, int] = Field(description="nodes per state")


class WorkflowOut(WorkflowSummary):
    eta_seconds: float | None = Field(
        description="remaining weight over the rate at which nodes have succeeded so far"
    )
    nodes: list[WorkflowNode]
    edges: list[WorkflowEdge]


class WorkflowPage(BaseModel):
    items: list[WorkflowSummary]
    next_cursor: str | None


class Workflows:
    """Workflows over one app's control plane (``Control``: app, ledger, Redis)."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self.engine = control.engine

    # --- read ------------------------------------------------------------------------------
    def get_workflow(self, workflow_id: str) -> WorkflowOut:
        """The workflow's graph, states and aggregate progress; WorkflowNotFound if unknown."""
        with self.engine.connect() as conn:
            row = lw.get_workflow_row(conn, workflow_id)
            if row is None:
                raise WorkflowNotFound(workflow_id)
            nodes = lw.nodes_with_jobs(conn, workflow_id)
            # A spec's, or a canvas' once a retry drives it (its whole graph, kept then).
            spec_edges = lw.spec_edges(conn, workflow_id) if row["spec"] is not None else []
        out = build(row, nodes, spec_edges)
        if out.finished_at is not None and row["finished_at"] is None:
            with self.engine.begin() as conn:  # kept, so that lists show it without nodes
                lw.set_finished(conn, workflow_id, out.finished_at)
        return out

    def list_workflows(
        self,
        *,
        source: str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkflowPage:
        """Newest first; each with its state, progress and nodes per state (one query for the
        page's nodes, whatever their number)."""
        with self.engine.connect() as conn:
            rows, next_cursor = lw.list_workflow_rows(
                conn, source=source, name=name, limit=limit, cursor=cursor
            )
            summaries = lw.node_summaries(conn, [str(r["id"]) for r in rows])
        items = []
        for row in rows:
            summary = summaries[str(row["id"])]
            counts: dict[str, int] = summary["counts"]
            state = aggregate_state(row["state"], list(counts))
            items.append(
                WorkflowSummary(
                    id=str(row["id"]),
                    name=row["name"],
                    source=row["source"],
                    state=state,
                    created_at=row["created_at"],
                    finished_at=(row["finished_at"] or summary["finished_at"])
                    if state != "running"
                    else None,
                    progress=summary["done"] / summary["weight"] if summary["weight"] else 0.0,
                    counts=counts,
                )
            )
        return WorkflowPage(items=items, next_cursor=next_cursor)

    # --- write -----------------------------------------------------------------------------
    def submit_spec(self, spec: WorkflowSpec) -> WorkflowOut:
        """Validate ``spec`` as a DAG of known tasks with fitting arguments, record it and
        submit its first steps. Nothing is stored when anything is wrong: InvalidSubmission
        or InvalidArguments naming the step."""
        steps = self._validate(spec)
        workflow_id = new_job_id()
        with self.engine.begin() as conn:
            lw.create_spec(conn, workflow_id, spec.name, spec.model_dump(mode="json"), steps)
        return self.get_workflow(workflow_id)

    def cancel(self, workflow_id: str) -> WorkflowOut:
        """Cancel every queued and running node; a step not yet run never runs (a spec
        workflow submits nothing more; a canvas' later steps are flagged cancelled before
        they are even published, so a worker skips them)."""
        current = self.get_workflow(workflow_id)
        if current.state != "running":
            raise InvalidTransition(
                f"workflow {workflow_id} already ended as {current.state}; nothing to cancel"
            )
        with self.engine.begin() as conn:
            # Waits for (and then stops) a recorder advancing it: its nodes read below are all
            # there will be.
            lw.set_state(conn, workflow_id, lw.CANCELLED)
            later = lw.keys_of(conn, workflow_id) if current.source == lw.CANVAS else []
        if later:
            pipe = self.control.redis.pipeline(transaction=False)
            for key in later:
                pipe.set(CANCEL_KEY + key, "1", ex=CANCEL_TTL)
            pipe.execute()
        with self.engine.connect() as conn:
            nodes = lw.nodes_with_jobs(conn, workflow_id)
        active = [str(n["job_id"]) for n in nodes if n["job"] and n["job"]["state"] in _ACTIVE]
        self.control.cancel_many(active)
        return self.get_workflow(workflow_id)

    def retry(self, workflow_id: str) -> WorkflowOut:
        """Run a failed or cancelled workflow on: its failed, cancelled and never-run steps
        run again as new jobs, its succeeded steps are kept with their results. A canvas is
        turned into driven steps first (``conveyor.canvas_retry``), then goes on like a spec."""
        with self.engine.begin() as conn:
            # Locked, and the state read under the lock: two retries at once run a step once.
            row = lw.get_workflow_row(conn, workflow_id, lock=True)
            if row is None:
                raise WorkflowNotFound(workflow_id)
            nodes = lw.nodes_with_jobs(conn, workflow_id)
            states = {n["step"]: _node_state(n, row) for n in nodes}
            state = aggregate_state(row["state"], list(states.values()))
            if state not in ("failed", "cancelled"):
                raise InvalidTransition(
                    f"workflow {workflow_id} is {state}; only a failed or cancelled "
                    "workflow can be retried"
                )
            again = [step for step, s in states.items() if s in _FAILED]
            if row["spec"] is None:  # a canvas never retried yet
                self._drive_canvas(conn, workflow_id, nodes)
            else:
                lw.reset_steps(conn, workflow_id, again)
            lw.set_state(conn, workflow_id, lw.RUNNING)
            lw.advance(conn, workflow_id)
        return self.get_workflow(workflow_id)

    def _drive_canvas(
        self, conn: Connection, workflow_id: str, nodes: list[dict[str, Any]]
    ) -> None:
        """Turn the canvas' unfinished part into driven steps (its nodes as read under the
        workflow's lock)."""
        rerun = [str(n["job_id"]) for n in nodes if n["job"] and n["job"]["state"] in _FAILED]
        recorded = lw.job_arguments(conn, rerun)
        for n in nodes:
            if n["job"] is not None:
                n["job"].update(recorded.get(str(n["job_id"]), {}))
        far = datetime.max.replace(tzinfo=UTC)
        nodes.sort(key=lambda n: n["job"]["created_at"] if n["job"] else far)
        plan = plan_retry(nodes, _canvas_edges(nodes))
        app = self.control.app
        lw.drive_canvas(
            conn,
            workflow_id,
            [
                lw.DrivenStep(
                    name=s.step,
                    queue=s.queue or task_queue(app, s.task),
                    args=s.args,
                    kwargs=s.kwargs,
                    after=s.after,
                    pass_result=s.passing != "none",
                    collect=s.passing == "list",
                )
                for s in plan.steps
            ],
            plan.edges,
        )

    def start_demo(self) -> str:
        """Start the demo diamond (``demo.DIAMOND``: A, then B and C, then D with both
        results) as a spec workflow; its id."""
        from conveyor.demo import DIAMOND

        return self.submit_spec(WorkflowSpec.model_validate(DIAMOND)).id

    # --- validation ------------------------------------------------------------------------
    def _validate(self, spec: WorkflowSpec) -> list[lw.SpecStep]:
        names = [s.name for s in spec.steps]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidSubmission("steps", f"step names must be unique: {', '.join(duplicates)}")
        known = set(names)
        for s in spec.steps:
            unknown = [a for a in s.after if a not in known]
            if unknown:
                raise InvalidSubmission(
                    f"steps.{s.name}.after",
                    f"unknown step{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                )
            if len(set(s.after)) != len(s.after):
                raise InvalidSubmission(f"steps.{s.name}.after", "a step is listed twice")
        cycle = find_cycle({s.name: s.after for s in spec.steps})
        if cycle:
            raise InvalidSubmission("steps", f"the steps form a cycle: {' → '.join(cycle)}")
        return [self._step(s) for s in spec.steps]

    def _step(self, step: WorkflowStep) -> lw.SpecStep:
        injected = 1 if step.pass_result and step.after else 0
        try:
            job = self.control.prepare(
                step.task, step.args, step.kwargs, queue=step.queue, injected=injected
            )
        except UnknownTask as exc:
            raise InvalidSubmission(f"steps.{step.name}.task", str(exc)) from None
        except InvalidArguments as exc:
            problems = [{**p, "loc": ("steps", step.name, *p["loc"])} for p in exc.problems]
            raise InvalidArguments(step.task, problems) from None
        except InvalidSubmission as exc:
            problems = [{**p, "loc": ("steps", step.name, *p["loc"])} for p in exc.problems]
            first = problems[0]
            raise InvalidSubmission(".".join(map(str, first["loc"])), first["msg"]) from None
        return lw.SpecStep(
            name=step.name,
            task=step.task,
            queue=job.queue,
            args=step.args,
            kwargs=step.kwargs,
            after=step.after,
            weight=step.weight,
            pass_result=step.pass_result,
        )


def find_cycle(after: dict[str, list[str]]) -> list[str] | None:
    """A cycle in the dependency graph as the steps along it, first step repeated at the end
    (``["a", "b", "a"]``), or None for a DAG."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(after, white)
    path: list[str] = []

    def visit(step: str) -> list[str] | None:
        color[step] = grey
        path.append(step)
        for dep in after.get(step, ()):
            if color.get(dep) == grey:
                return [*path[path.index(dep) :], dep]
            if color.get(dep) == white and (found := visit(dep)):
                return found
        path.pop()
        color[step] = black
        return None

    for step in after:
        if color[step] == white and (found := visit(step)):
            # Found walking dependencies (child to parent): show it in running order.
            return found[::-1]
    return None


# --- building the graph ----------------------------------------------------------------------


def _node_state(node: dict[str, Any], row: dict[str, Any]) -> str:
    job = node["job"]
    if job is not None:
        return str(job["state"])
    return JobState.CANCELLED.value if row["state"] == lw.CANCELLED else PENDING


def _node_progress(state: str, job: dict[str, Any] | None) -> float:
    if state == JobState.SUCCEEDED.value:
        return 1.0
    if job is None or state != JobState.RUNNING.value:
        return 0.0
    current, total = job.get("progress_current"), job.get("progress_total")
    if current is None or not total:
        return 0.0
    return float(min(1.0, max(0.0, current / total)))


def aggregate_state(control_state: str, states: Sequence[str]) -> WorkflowState:
    """A workflow's state from its nodes': running while any node is waiting or running (or
    yet to be submitted), then cancelled (if cancelled), succeeded (all nodes did) or failed."""
    if any(s in _ACTIVE for s in states):
        return "running"
    if control_state == lw.CANCELLED:
        return "cancelled"
    if states and all(s == JobState.SUCCEEDED.value for s in states):
        return "succeeded"
    if any(s in _FAILED for s in states):
        return "failed"
    return "running"


def _canvas_edges(nodes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """A canvas' edges from its jobs' parents: a chain step's parent is the step before it;
    a group member's is the group's parent; a chord callback's parent is the header member
    that finished last, which stands for every member of the header's group."""
    steps = {n["step"]: n for n in nodes}
    headers: dict[str, list[str]] = {}
    for n in nodes:
        if n["chord"] and n["group_id"]:
            headers.setdefault(n["group_id"], []).append(n["step"])
    edges: list[tuple[str, str]] = []
    for n in nodes:
        job = n["job"]
        parent = str(job["parent_id"]) if job and job["parent_id"] else None
        if parent is None or parent not in steps or parent == n["step"]:
            continue
        p = steps[parent]
        parents = headers[p["group_id"]] if p["chord"] and p["group_id"] else [parent]
        edges.extend((q, n["step"]) for q in parents if q != n["step"])
    return sorted(set(edges))


def build(
    row: dict[str, Any], nodes: list[dict[str, Any]], spec_edges: list[tuple[str, str]]
) -> WorkflowOut:
    """The API's view of a workflow from its row, nodes (with jobs) and stored edges."""
    canvas = row["source"] == lw.CANVAS
    if canvas:
        # In the order they were sent (nodes not yet sent last).
        far = datetime.max.replace(tzinfo=UTC)
        nodes = sorted(nodes, key=lambda n: n["job"]["created_at"] if n["job"] else far)
    out_nodes: list[WorkflowNode] = []
    counts: dict[str, int] = {}
    for n in nodes:
        job = n["job"]
        state = _node_state(n, row)
        counts[state] = counts.get(state, 0) + 1
        out_nodes.append(
            WorkflowNode(
                step=n["step"],
                name=n["task"] if canvas else n["step"],
                job_id=str(n["job_id"]) if n["job_id"] else None,
                task=n["task"],
                queue=job["queue"] if job else n["queue"],
                state=state,
                progress=_node_progress(state, job),
                weight=n["weight"],
                started_at=job["started_at"] if job else None,
                finished_at=job["finished_at"] if job else None,
                error_type=job["error_type"] if job else None,
                error_message=job["error_message"] if job else None,
            )
        )
    total = sum(n.weight for n in out_nodes) or 1.0
    done = sum(n.weight * n.progress for n in out_nodes)
    state = aggregate_state(row["state"], [n.state for n in out_nodes])
    edges = _canvas_edges(nodes) if row["spec"] is None else spec_edges
    finished_at = None
    if state != "running":
        ends = [n.finished_at for n in out_nodes if n.finished_at is not None]
        finished_at = row["finished_at"] or (max(ends) if ends else row["created_at"])
    return WorkflowOut(
        id=str(row["id"]),
        name=row["name"],
        source=row["source"],
        state=state,
        created_at=row["created_at"],
        finished_at=finished_at,
        progress=done / total,
        eta_seconds=_eta(row, out_nodes, total - done) if state == "running" else None,
        counts=counts,
        nodes=out_nodes,
        edges=[WorkflowEdge(parent=p, child=c) for p, c in edges],
    )


def _eta(row: dict[str, Any], nodes: list[WorkflowNode], remaining: float) -> float | None:
    """Seconds left at the rate (weight per second) at which nodes have succeeded since the
    workflow began; None until one has."""
    succeeded = sum(n.weight for n in nodes if n.state == JobState.SUCCEEDED.value)
    if not succeeded:
        return None
    starts = [n.started_at for n in nodes if n.started_at is not None]
    began = min(starts) if starts else row["created_at"]
    elapsed = (datetime.now(UTC) - began).total_seconds()
    if elapsed <= 0:
        return None
    return remaining / (succeeded / elapsed)


__all__ = [
    "WorkflowEdge",
    "WorkflowNode",
    "WorkflowOut",
    "WorkflowPage",
    "WorkflowSpec",
    "WorkflowStep",
    "WorkflowSummary",
    "Workflows",
    "aggregate_state",
    "find_cycle",
]
