"""What the workflow pages show, built from ``conveyor.workflows``' models: the plain logic
behind ``web/workflows.py``.

The DAG is laid out here (``dag_layout``) and handed to the template as display-ready geometry
and text, so the template only draws; the live fragment re-renders the same views.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import get_args

from conveyor.core.states import JobState
from conveyor.web import formatting as fmt
from conveyor.web.dag_layout import Box, Frame, Geometry, layout
from conveyor.web.job_views import STATES, TERMINAL
from conveyor.workflows import (
    WorkflowEdge,
    WorkflowNode,
    WorkflowOut,
    WorkflowState,
    WorkflowSummary,
)

WORKFLOW_STATES: tuple[str, ...] = get_args(WorkflowState)
"""A workflow's states, aggregated from its nodes."""
ERROR_CHARS = 300
"""Characters of a failed node's error in its tooltip (its job page shows it whole)."""
LABEL_CHARS = 19
"""Characters of a step's name that fit in its box at the page's font size; longer names are
cut with an ellipsis (the tooltip shows them whole)."""


def clip(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def percent_of(progress: float | None) -> float | None:
    """A progress fraction (0 to 1) as a percentage for a bar, None when unknown."""
    if progress is None:
        return None
    return round(max(0.0, min(1.0, progress)) * 100, 1)


def span(started: datetime | None, finished: datetime | None, now: datetime) -> str:
    """How long something ran, or has been running so far; a dash before it starts."""
    if started is None:
        return fmt.DASH
    return fmt.format_duration(fmt.seconds_between(started, finished or now))


@dataclass(frozen=True)
class NodeView:
    """One node of the graph: its box, what it says, where it links."""

    key: str
    job_id: str | None
    name: str
    task: str
    state: str
    label: str
    duration: str
    percent: float | None
    box: Box
    error: str | None = None

    @property
    def tooltip(self) -> str:
        lines = [self.name, f"task {self.task}", f"state {self.state}", f"duration {self.duration}"]
        if self.error:
            lines.append(f"error {clip(self.error, ERROR_CHARS)}")
        return "\n".join(lines)

    @property
    def caption(self) -> str:
        """The box's second line: its state, and its duration once it has one."""
        return self.state if self.duration == fmt.DASH else f"{self.state} · {self.duration}"


@dataclass(frozen=True)
class EdgeView:
    """One edge (or a bundle of them) as an SVG path; ``done`` once every parent it starts
    from succeeded (drawn solid)."""

    path: str
    done: bool


@dataclass(frozen=True)
class GraphView:
    """The drawing: its size, nodes, edges, and the frames around groups too wide for a row."""

    width: float
    height: float
    nodes: list[NodeView]
    edges: list[EdgeView]
    frames: list[Frame]


def graph_view(nodes: list[WorkflowNode], edges: list[WorkflowEdge], now: datetime) -> GraphView:
    """Lay out a workflow's nodes and edges for the template. Nodes are keyed by step, unique
    in a workflow (a spec step has no job until its parents succeed)."""
    keys = [n.step for n in nodes]
    drawn = layout(keys, [(e.parent, e.child) for e in edges], Geometry())
    by_key = dict(zip(keys, nodes, strict=True))
    views = [
        NodeView(
            key=key,
            job_id=node.job_id,
            name=node.name,
            task=node.task,
            state=node.state,
            label=clip(node.name),
            duration=node_duration(node, now),
            percent=percent_of(node.progress) if node.state == JobState.RUNNING.value else None,
            box=drawn.boxes[key],
            error=": ".join(p for p in (node.error_type, node.error_message) if p) or None,
        )
        for key, node in by_key.items()
    ]
    succeeded = JobState.SUCCEEDED.value
    lines = [
        EdgeView(route.path, all(by_key[s].state == succeeded for s in route.sources))
        for route in drawn.routes
    ]
    return GraphView(drawn.width, drawn.height, views, lines, list(drawn.frames))


def node_duration(node: WorkflowNode, now: datetime) -> str:
    """How long the node's job ran, or has run so far; a dash when it ended without saying
    when (cancelled before it finished)."""
    if node.finished_at is None and node.state in TERMINAL:
        return fmt.DASH
    return span(node.started_at, node.finished_at, now)


@dataclass(frozen=True)
class WorkflowView:
    """Everything the workflow page shows."""

    id: str
    name: str
    source: str
    state: str
    terminal: bool
    percent: float | None
    eta: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration: str
    done: int
    total: int
    counts: dict[str, int]
    graph: GraphView

    @property
    def can_cancel(self) -> bool:
        return not self.terminal

    @staticmethod
    def listable(state: str) -> bool:
        """Whether nodes in ``state`` are jobs the jobs list can show (a step not yet run is
        not a job)."""
        return state in STATES

    @property
    def poll_ms(self) -> int:
        """How often the page refreshes while it runs: every second, less often for a large
        graph (5 ms a node, at most every 5 s), whose parts take longer to read and send."""
        return max(1000, min(5000, self.total * 5))

    @property
    def can_retry(self) -> bool:
        """A failed or cancelled workflow, spec or canvas (a canvas' unfinished part is
        driven from the ledger then)."""
        return self.state in ("failed", "cancelled")


def state_counts(states: list[str]) -> dict[str, int]:
    """Nodes per state: the job states in their usual order, then any other (a step that has
    no job yet), each with its count (zero when none)."""
    found = Counter(states)
    others = sorted(set(found) - set(STATES))
    return {state: found.get(state, 0) for state in (*STATES, *others)}


@dataclass(frozen=True)
class WorkflowRow:
    """One row of the workflows list."""

    id: str
    name: str
    source: str
    state: str
    percent: float | None
    done: int
    total: int
    started_at: datetime
    duration: str


def workflow_row(wf: WorkflowSummary, now: datetime | None = None) -> WorkflowRow:
    """A listed workflow. It starts when it is recorded (its first steps are submitted then),
    so its start is its creation."""
    now = now or datetime.now(UTC)
    return WorkflowRow(
        id=wf.id,
        name=wf.name or "workflow",
        source=wf.source,
        state=wf.state,
        percent=percent_of(wf.progress),
        done=sum(n for state, n in wf.counts.items() if state in TERMINAL),
        total=sum(wf.counts.values()),
        started_at=wf.created_at,
        duration=span(wf.created_at, wf.finished_at, now),
    )


def workflow_view(wf: WorkflowOut, now: datetime | None = None) -> WorkflowView:
    """The page's view of a workflow as ``conveyor.workflows.get_workflow`` returns it."""
    now = now or datetime.now(UTC)
    states = [n.state for n in wf.nodes]
    starts = [n.started_at for n in wf.nodes if n.started_at is not None]
    started = min(starts) if starts else None
    terminal = wf.state in TERMINAL
    return WorkflowView(
        id=wf.id,
        name=wf.name or "workflow",
        source=wf.source,
        state=wf.state,
        terminal=terminal,
        percent=percent_of(wf.progress),
        eta=fmt.format_duration(wf.eta_seconds) if not terminal else fmt.DASH,
        created_at=wf.created_at,
        started_at=started,
        finished_at=wf.finished_at,
        duration=span(started, wf.finished_at if terminal else None, now),
        done=sum(1 for s in states if s in TERMINAL),
        total=len(states),
        counts=state_counts(states),
        graph=graph_view(list(wf.nodes), list(wf.edges), now),
    )
