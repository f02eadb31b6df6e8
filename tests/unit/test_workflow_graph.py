"""The pure parts of workflows: cycles named, aggregate states, what a canvas message says."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from celery import Celery, chain, group

from conveyor.ledger.workflows import carried_steps
from conveyor.runtime.canvas import canvas_fields
from conveyor.workflows import aggregate_state, find_cycle


def test_a_dag_has_no_cycle() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) is None


@pytest.mark.parametrize(
    ("after", "cycle"),
    [
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"x": [], "a": ["c", "x"], "b": ["a"], "c": ["b"]}, ["a", "b", "c", "a"]),
    ],
)
def test_a_cycle_is_named_in_running_order(after: dict[str, list[str]], cycle: list[str]) -> None:
    found = find_cycle(after)
    assert found is not None
    # Any rotation names the same cycle; each step runs before the next one listed.
    assert sorted(found[:-1]) == sorted(cycle[:-1]) and found[0] == found[-1]
    for before, then in itertools.pairwise(found):
        assert before in after[then]


@pytest.mark.parametrize(
    ("control", "states", "expected"),
    [
        ("running", ["succeeded", "running", "pending"], "running"),
        ("running", ["succeeded", "succeeded"], "succeeded"),
        ("running", ["succeeded", "failed", "pending"], "failed"),
        ("running", ["failed", "queued"], "running"),  # a branch still runs
        ("running", ["succeeded", "pending"], "running"),  # the next step is being sent
        ("cancelled", ["cancelled", "cancelled"], "cancelled"),
        ("cancelled", ["running", "cancelled"], "running"),  # stopping, not yet stopped
        ("running", ["dead"], "failed"),
    ],
)
def test_aggregate_state(control: str, states: list[str], expected: str) -> None:
    assert aggregate_state(control, states) == expected


def _message(sig: Any) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """Headers and body of the first message a frozen signature would send (as Celery builds
    them: the chain's later steps and a chord's callback travel in the body's embed)."""
    sig.freeze()
    first = sig.tasks[0] if hasattr(sig, "tasks") else sig
    opts = first.options
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    if hasattr(sig, "tasks"):  # (a chain: `chain(...)` makes a celery.canvas._chain)
        embed["chain"] = [dict(s) for s in reversed(sig.tasks[1:])]
    headers = {"id": opts["task_id"], "group": opts.get("group_id")}
    return headers, ((), {}, embed)


def test_a_plain_message_is_no_canvas() -> None:
    assert canvas_fields({"id": "x"}, ((), {}, {"chain": None, "chord": None})) is None
    assert canvas_fields({"id": "x"}, "not a body") is None


def test_a_chain_message_carries_its_later_steps() -> None:
    app = Celery("unit", backend="cache+memory://", set_as_current=False)

    @app.task(name="unit.t", shared=False)
    def t(x: int = 0) -> int:
        return x

    sig = chain(t.s(1), group(t.s(), t.s()), t.s())
    headers, body = _message(sig)
    fields = canvas_fields(headers, body)
    assert fields is not None
    assert fields["cmsg"]["chain"] == body[2]["chain"]
    later, pending = carried_steps(fields["cmsg"])
    assert [task for _, task in pending].count("unit.t") >= 3  # the group's two and the callback
    assert set(later) >= {i for i, _ in pending}


def test_a_group_member_names_its_group() -> None:
    fields = canvas_fields(
        {"id": "m1", "group": "g1", "group_index": 0},
        ((1,), {}, {"chord": {"task": "cb", "options": {"task_id": "cb1"}, "kwargs": {}}}),
    )
    assert fields is not None
    assert fields["grp"] == "g1" and fields["chord"] is True
    assert fields["cmsg"]["group_id"] == "g1" and fields["cmsg"]["group_index"] == 0
    assert fields["cmsg"]["chord"]["options"]["task_id"] == "cb1"
    assert carried_steps(fields["cmsg"]) == (["cb1"], [["cb1", "cb"]])
