"""Planning a canvas workflow's retry from what the ledger recorded (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.canvas_retry import plan_retry
from conveyor.errors import InvalidTransition


def sig(
    task_id: str, task: str = "t", args: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "task": task,
        "args": args or [],
        "kwargs": {},
        "options": {"task_id": task_id, **extra.pop("options", {})},
        "immutable": extra.pop("immutable", False),
        "subtask_type": None,
    }


def node(
    step: str,
    state: str | None,
    message: dict[str, Any] | None = None,
    *,
    group: str | None = None,
    chord: bool = False,
    args: list[Any] | None = None,
) -> dict[str, Any]:
    job = (
        None if state is None else {"state": state, "args": args or [], "kwargs": {}, "queue": "q"}
    )
    return {"step": step, "task": "t", "job": job, "message": message, "group_id": group,
            "chord": chord}  # fmt: skip


def by_step(nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> dict[str, Any]:
    plan = plan_retry(nodes, edges)
    return {s.step: (s.after, s.passing, s.args) for s in plan.steps}


def test_a_chain_reruns_the_failed_step_as_recorded_and_places_the_rest() -> None:
    nodes = [
        node("a", "succeeded", {"chain": [sig("c", args=[100]), sig("b", args=["m"])]}),
        node("b", "failed", {"chain": [sig("c", args=[100])]}, args=[3, "m"]),
        node("c", None),
    ]
    assert by_step(nodes, [("a", "b")]) == {
        "b": (["a"], "none", [3, "m"]),  # Celery had put a's result first already
        "c": (["b"], "one", [100]),
    }
    assert plan_retry(nodes, [("a", "b")]).edges == [("a", "b"), ("b", "c")]


def test_a_chord_callback_gets_the_header_in_group_index_order() -> None:
    body = sig("cb", args=[])
    members = [
        node(f"h{i}", "failed" if i == 1 else "succeeded",
             {"chord": body, "group_id": "g", "group_index": i}, group="g", chord=True)
        for i in (2, 0, 1)
    ]  # fmt: skip
    plan = by_step([*members, node("cb", None)], [])
    assert plan["cb"] == (["h0", "h1", "h2"], "list", [])
    assert plan["h1"][1] == "none"


def test_a_chord_of_one_still_passes_a_list_and_si_passes_nothing() -> None:
    nodes = [
        node("h", "succeeded", {"chord": sig("cb"), "group_id": "g"}, group="g", chord=True),
        node("cb", None),
    ]
    assert by_step(nodes, [])["cb"] == (["h"], "list", [])
    frozen = [
        node("a", "succeeded", {"chain": [sig("b", args=[1], immutable=True)]}),
        node("b", None),
    ]
    assert by_step(frozen, [])["b"] == (["a"], "none", [1])


def test_a_nested_chord_in_a_chain_is_placed_from_its_signature() -> None:
    chord = {
        "task": "celery.chord",
        "subtask_type": "chord",
        "options": {"task_id": "x"},
        "kwargs": {
            "header": {"subtask_type": "group", "kwargs": {"tasks": [sig("e"), sig("f")]}},
            "body": sig("g"),
        },
    }
    nodes = [node("a", "failed", {"chain": [chord]}), *(node(s, None) for s in "efg")]
    plan = by_step(nodes, [])
    assert plan["e"] == (["a"], "one", []) and plan["f"] == (["a"], "one", [])
    assert plan["g"] == (["e", "f"], "list", [])


def test_a_never_sent_node_nothing_carried_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="ghost"):
        plan_retry([node("a", "failed"), node("ghost", None)], [])


def test_a_header_member_that_is_a_chain_counts_by_its_last_step() -> None:
    # chord([chain(a, b fails, c), m], cb): c carries the chord and its place in the header.
    cb = sig("cb")
    c = sig("c", args=[3], options={"chord": cb, "group_id": "g", "group_index": 0})
    nodes = [
        node("a", "succeeded", {"chain": [c, sig("b")]}),
        node("b", "failed", {"chain": [c]}, args=[2]),
        node("m", "succeeded", {"chord": cb, "group_id": "g", "group_index": 1}, group="g",
             chord=True),
        node("c", None),
        node("cb", None),
    ]  # fmt: skip
    plan = by_step(nodes, [("a", "b")])
    assert plan["c"] == (["b"], "one", [3])
    assert plan["cb"] == (["c", "m"], "list", [])


@pytest.mark.parametrize(
    "garbage",
    [
        {"chain": 5},
        {"chain": "abc"},
        {"chain": [{"subtask_type": "group", "kwargs": {"tasks": 7}}]},
        {"chain": [{"task": "t", "options": [1], "kwargs": "x", "args": 3}]},
        {"chord": [], "group_id": "g", "group_index": "x"},
        {"link": {"a": 1}},
        [1, 2],
    ],
)
def test_garbage_carried_is_refused_clearly_never_a_crash(garbage: Any) -> None:
    nodes = [node("a", "failed", garbage, args={"not": "a list"}), node("b", None)]  # type: ignore[arg-type]
    with pytest.raises(InvalidTransition, match="cannot tell where the never-sent node b"):
        plan_retry(nodes, [])
    assert by_step([nodes[0]], []) == {"a": ([], "none", [])}
