"""What a published message says about the canvas (chain, group, chord) it is a step of.

The publish hook adds these fields to a canvas message's ``queued`` event; the recorder
(``ledger.workflows.record_canvas``) turns them into one workflow per canvas. Pure: no I/O, and
nothing for a message outside any canvas but a few dict lookups.
"""

from __future__ import annotations

from typing import Any

# Event fields the publish hook adds for a canvas message (see ``canvas_fields``).
GROUP_FIELD = "grp"
CHORD_FIELD = "chord"
MESSAGE_FIELD = "cmsg"
# What a message carries for its canvas beyond task and arguments, as ``send_task`` takes it:
# a message sent again from the ledger (its worker was lost) must carry it too, or the chain
# stops there and the chord never fires.
_RESEND = {"chain": "chain", "chord": "chord", "callbacks": "link", "errbacks": "link_error"}
_RESEND_HEADERS = {"group": "group_id", "group_index": "group_index", "root_id": "root_id",
                   "parent_id": "parent_id"}  # fmt: skip


def canvas_fields(headers: dict[str, Any], body: Any) -> dict[str, Any] | None:
    """The event fields that tie a published message to its canvas, or None for a message
    that is no part of one (then the cost is three lookups). A message is part of a canvas when
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
    # The steps it carries are read from these by the recorder (``carried_steps``), off the
    # publishing path.
    out: dict[str, Any] = {MESSAGE_FIELD: resend}
    if group:
        out[GROUP_FIELD] = str(group)
    if chord:
        out[CHORD_FIELD] = True
    return out
