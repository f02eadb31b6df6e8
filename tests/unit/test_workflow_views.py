"""What the workflow page shows, built from a ``WorkflowOut`` made here (no ledger): labels,
durations, counts, progress, which buttons apply, and the graph's boxes and edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.web.workflow_views import clip, state_counts, workflow_row, workflow_view
from conveyor.workflows import WorkflowEdge, WorkflowNode, WorkflowOut, WorkflowSummary

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def node(step: str, state: str, **extra: Any) -> WorkflowNode:
    started = NOW - timedelta(seconds=4) if state != "pending" else None
    finished = NOW - timedelta(seconds=1) if state in ("succeeded", "failed") else None
    fields: dict[str, Any] = {
        "step": step,
        "name": step,
        "job_id": None if state == "pending" else f"0190a0b0-0000-7000-8000-0000000000a{step}",
        "task": "demo.step",
        "queue": "default",
        "state": state,
        "progress": 1.0 if state == "succeeded" else 0.5 if state == "running" else 0.0,
        "weight": 1.0,
        "started_at": started,
        "finished_at": finished,
    }
    return WorkflowNode(**{**fields, **extra})


def diamond(states: dict[str, str], state: str = "running", source: str = "spec") -> WorkflowOut:
    edges = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
    nodes = [node(step, s) for step, s in states.items()]
    return WorkflowOut(
        id="0190a0b0-0000-7000-8000-0000000000ff",
        name="demo diamond",
        source=source,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        created_at=NOW - timedelta(seconds=5),
        finished_at=None,
        progress=0.375,
        eta_seconds=7.5,
        counts={},
        nodes=nodes,
        edges=[WorkflowEdge(parent=p, child=c) for p, c in edges],
    )


def test_a_running_diamond() -> None:
    wf = diamond({"A": "succeeded", "B": "running", "C": "failed", "D": "pending"})
    wf.nodes[2].error_type, wf.nodes[2].error_message = "ValueError", "x" * 1000
    view = workflow_view(wf, NOW)
    assert view.percent == 37.5 and view.eta == "7.5 s"
    assert (view.done, view.total) == (2, 4)
    assert view.started_at == NOW - timedelta(seconds=4)
    assert view.duration == "4.0 s"
    assert view.can_cancel and not view.can_retry
    assert view.counts["succeeded"] == 1 and view.counts["pending"] == 1
    assert view.counts["queued"] == 0
    by_name = {n.name: n for n in view.graph.nodes}
    assert by_name["A"].caption == "succeeded · 3.0 s"
    assert by_name["B"].percent == 50.0  # a running node shows its progress
    assert by_name["A"].percent is None
    assert by_name["D"].job_id is None and by_name["D"].caption == "pending"
    assert "task demo.step" in by_name["B"].tooltip and "state running" in by_name["B"].tooltip
    assert "error" not in by_name["B"].tooltip
    assert by_name["C"].tooltip.endswith("error ValueError: " + "x" * 287 + "…")
    # Edges out of a succeeded node are drawn done (solid); others not yet.
    assert sorted(e.done for e in view.graph.edges) == [False, False, True, True]
    assert by_name["D"].box.y > by_name["B"].box.y > by_name["A"].box.y


def test_retry_applies_to_an_ended_spec_workflow_that_did_not_succeed() -> None:
    states = {"A": "succeeded", "B": "failed", "C": "succeeded", "D": "pending"}
    failed = workflow_view(diamond(states, state="failed"), NOW)
    assert failed.can_retry and not failed.can_cancel and failed.eta == "—"
    assert workflow_view(diamond(states, state="failed", source="canvas"), NOW).can_retry
    done = {step: "succeeded" for step in "ABCD"}
    assert not workflow_view(diamond(done, state="succeeded"), NOW).can_retry


def test_a_node_that_ended_without_a_finish_time_has_no_running_duration() -> None:
    states = {"A": "succeeded", "B": "cancelled", "C": "succeeded", "D": "pending"}
    wf = diamond(states, state="cancelled")
    wf.nodes[1].finished_at = None
    by_name = {n.name: n for n in workflow_view(wf, NOW).graph.nodes}
    assert by_name["B"].duration == "—" and by_name["B"].caption == "cancelled"


def test_long_names_are_clipped_for_the_box_and_counts_keep_job_state_order() -> None:
    assert clip("a" * 40) == "a" * 18 + "…"
    assert clip("short") == "short"
    counts = state_counts(["pending", "succeeded", "running", "succeeded"])
    assert list(counts)[:3] == ["scheduled", "queued", "running"]
    assert list(counts)[-1] == "pending" and counts["succeeded"] == 2


def test_a_listed_workflow_counts_its_finished_nodes_and_runs_from_its_creation() -> None:
    summary = WorkflowSummary(
        id="0190a0b0-0000-7000-8000-0000000000ee",
        name=None,
        source="canvas",
        state="running",
        created_at=NOW - timedelta(seconds=90),
        finished_at=None,
        progress=0.5,
        counts={"succeeded": 2, "failed": 1, "running": 1, "pending": 2},
    )
    row = workflow_row(summary, NOW)
    assert (row.done, row.total) == (3, 6)
    assert row.name == "workflow" and row.percent == 50.0
    assert row.started_at == NOW - timedelta(seconds=90) and row.duration == "1m 30s"
