"""What a published message says about the canvas (chain, group, chord) it is a step of.

The publish hook adds these fields to a canvas message's ``queued`` event; the recorder
(``ledger.workflows.record_canvas``) turns them into one workflow per canvas. Pure: no I/O, and
nothing for a message outside any canvas but three dict lookups.
"""

from __future__ import annotations

from typing import Any

# Event fields the publish hook adds for a canvas message (see ``canvas_fields``).
GROUP_FIELD = "grp"
CHORD_FIELD = "chord"
LATER_FIELD = "later"
PENDING_FIELD = "pend"
MESSAGE_FIELD = "cmsg"
# What a message carries for its canvas beyond task and arguments, as ``send_task`` takes it:
# a message sent again from the ledger (its worker was lost) must carry it too, or the chain
# stops there and the chord never fires.
_RESEND = {"chain": "chain", "chord": "chord", "callbacks": "link", "errbacks": "link_error"}
_RESEND_HEADERS = {"group": "group_id", "group_index": "group_index", "root_id": "root_id",
                   "parent_id": "parent_id"}  # fmt: skip


def canvas_fields(headers: dict[str, Any], body: Any) -> dict[str, Any] | None:
    """The event fields that tie a published message to its canvas, or None for a message
    that is no part of one (then the cost is two lookups). A message is part of a canvas when
    it belongs to a group or carries steps for later (chain, chord callback, link)."""
    group = headers.get("group")
    try:
        embed = body[2]
    except (TypeError, IndexError, KeyError):
        embed = None
    chain = chord = callbacks = None
    if isinstance(embed, dict):
        chain, chord, callbacks = embed.get("chain"), embed.get("chord"), embed.get("callbacks")
    if not (group or chain or chord or callbacks):
        return None
    resend = {opt: embed[key] for key, opt in _RESEND.items() if embed and embed.get(key)}
    resend.update(
        {opt: headers[key] for key, opt in _RESEND_HEADERS.items() if headers.get(key) is not None}
    )
    later: list[str] = []
    pending: list[list[str]] = []
    for sig in [*(chain or ()), *([chord] if chord else ()), *(callbacks or ())]:
        _walk(sig, later, pending)
    out: dict[str, Any] = {MESSAGE_FIELD: resend}
    if group:
        out[GROUP_FIELD] = str(group)
    if chord:
        out[CHORD_FIELD] = True
    if later:
        out[LATER_FIELD] = later
    if pending:
        out[PENDING_FIELD] = pending
    return out


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
