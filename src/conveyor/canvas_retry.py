"""What retrying a canvas workflow runs: its unfinished part as ledger-driven steps.

Celery cannot resume a canvas half way: a chain's next steps travel inside the message of the
step before them, and a chord's join counter is gone once its header ended with a failure. So
a retry does not send the canvas again; it turns the unfinished part into steps driven like a
spec's (``ledger.workflows.advance``: a step is submitted once its dependencies succeeded):

- a node sent before that failed, died or was cancelled runs again with its recorded
  arguments exactly (Celery had already put its parent's result in front of them), without
  the canvas fields its message carried (chain, chord callback, links): the retry drives
  what they would have sent;
- a node never sent is read from the signatures the sent nodes' messages carried (the ledger
  keeps them for resends): a chain step gets its parent's result before its arguments, a
  group member its group's parent's, a chord callback the list of its header's results in
  header order, unless the signature is immutable (``.si()``);
- a node that succeeded is kept, with its recorded result.

Pure: it works on the rows ``ledger.workflows`` reads, and says what to write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.errors import InvalidTransition

Passing = Literal["none", "one", "list"]


@dataclass
class PlannedStep:
    """A node the retry runs: its task, arguments, dependencies (in the order their results
    are passed) and how it gets their results: not at all, the one parent's result, or the
    list of the parents' results (a chord callback)."""

    step: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None
    after: list[str]
    passing: Passing


@dataclass
class RetryPlan:
    steps: list[PlannedStep]
    edges: list[tuple[str, str]] = field(default_factory=list)


FAILED = {"failed", "dead", "cancelled"}


def plan_retry(nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> RetryPlan:
    """The steps a retry of a canvas workflow runs, and the workflow's whole edge set (the
    recorded edges plus those of the nodes never sent). ``nodes`` are
    ``ledger.workflows.nodes_with_jobs`` rows (each with ``job`` carrying args, kwargs and
    state), in the order they were sent; ``edges`` the recorded ones. InvalidTransition when
    a never-sent node cannot be placed from what was recorded."""
    by_step = {n["step"]: n for n in nodes}
    sent = {n["step"] for n in nodes if n["job"] is not None}
    planner = _Planner(sent)
    for n in nodes:
        if n["job"] is not None:
            planner.follow(_dict(n["message"]), n["step"])
    planner.place_chord_callbacks()
    parents: dict[str, list[str]] = {}
    for parent, child in edges:
        parents.setdefault(child, []).append(parent)
    steps: list[PlannedStep] = []
    for n in nodes:
        job = n["job"]
        if job is not None and job["state"] in FAILED:
            steps.append(
                PlannedStep(
                    step=n["step"],
                    task=n["task"],
                    args=_list(job["args"]),
                    kwargs=_dict(job["kwargs"]),
                    queue=job["queue"],
                    after=parents.get(n["step"], []),
                    passing="none",
                )
            )
    missing = [s for s, n in by_step.items() if n["job"] is None and s not in planner.steps]
    if missing:
        raise InvalidTransition(
            f"cannot tell where the never-sent node{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing[:5])} run from what the ledger recorded of the canvas; "
            "send the canvas again"
        )
    pending = [planner.steps[s] for s in by_step if s in planner.steps]
    all_edges = set(edges) | {(p, s.step) for s in pending for p in s.after}
    return RetryPlan(steps=steps + pending, edges=sorted(all_edges))


class _Planner:
    """Walks serialised signatures, placing each never-sent task (first placement wins: every
    message that carries a signature places it the same way)."""

    def __init__(self, sent: set[str]) -> None:
        self.sent = sent
        self.steps: dict[str, PlannedStep] = {}
        # A started chord's header, as its members say (group id -> (index, step)), and its
        # callback: placed once every member is known, sent or not (a member that is a
        # chain carries the chord on its last step, which may never have been sent).
        self.headers: dict[str, set[tuple[int, str]]] = {}
        self.callbacks: dict[str, Any] = {}

    def follow(self, message: dict[str, Any], step: str) -> None:
        """What a sent node's message carried: its chain's next steps, its links, and (a chord
        header member) its place in the header and the chord callback."""
        self._member(message, step)
        self._sequence(_list(message.get("chain"))[::-1], [step], "one")
        for link in _list(message.get("link")):
            self.walk(link, [step], "one")

    def _member(self, fields: dict[str, Any], step: str) -> None:
        group, callback = fields.get("group_id"), fields.get("chord")
        if group and isinstance(callback, dict):
            index = fields.get("group_index")
            self.headers.setdefault(str(group), set()).add(
                (index if isinstance(index, int) else 0, step)
            )
            self.callbacks.setdefault(str(group), callback)

    def place_chord_callbacks(self) -> None:
        """Each started chord's callback after its whole header, in Celery's order."""
        for group, members in self.headers.items():
            header = [step for _, step in sorted(members)]
            self.walk(self.callbacks[group], header, "list")

    def _sequence(
        self, sigs: list[Any], parents: list[str], passing: Passing
    ) -> tuple[list[str], Passing]:
        for sig in sigs:
            parents, passing = self.walk(sig, parents, passing)
        return parents, passing

    def walk(self, sig: Any, parents: list[str], passing: Passing) -> tuple[list[str], Passing]:
        """Place ``sig`` after ``parents``; the nodes whose results are its result, and how
        they pass on (one result, or a list: a group's)."""
        if not isinstance(sig, dict):
            return parents, passing
        kind = sig.get("subtask_type")
        kwargs = _dict(sig.get("kwargs"))
        if kind == "chain":
            return self._sequence(_list(kwargs.get("tasks")), parents, passing)
        if kind == "group":
            tails: list[str] = []
            for member in _list(kwargs.get("tasks")):
                tails.extend(self.walk(member, parents, passing)[0])
            return tails, "list"
        if kind == "chord":
            header, _ = self.walk(kwargs.get("header"), parents, passing)
            return self.walk(kwargs.get("body"), header, "list")
        options = _dict(sig.get("options"))
        task_id = options.get("task_id")
        if not task_id or not sig.get("task"):
            return parents, passing
        step = str(task_id)[:255]
        if step not in self.sent and step not in self.steps:
            self.steps[step] = PlannedStep(
                step=step,
                task=str(sig["task"]),
                args=_list(sig.get("args")),
                kwargs=dict(kwargs),
                queue=options.get("queue") if isinstance(options.get("queue"), str) else None,
                after=list(parents),
                passing="none" if sig.get("immutable") or not parents else passing,
            )
        # A signature may carry what follows it (a chord callback the chain after the chord,
        # a header member's chain its chord).
        self._member(options, step)
        self._sequence(_list(options.get("chain"))[::-1], [step], "one")
        for link in _list(options.get("link")):
            self.walk(link, [step], "one")
        return [step], "one"


# What a message carried is whatever an app (or anything on the broker) sent: a field of the
# wrong type is read as empty, never trusted.
def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
