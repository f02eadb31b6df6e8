"""Recognise a message a worker cannot run before Celery tries to run it.

Celery trusts the shape of what it consumes: a JSON object where it expects ``[args, kwargs,
embed]``, a ``timelimit`` header of ``"abc"`` or an ``expires`` that is a list raise in the
worker's main process, outside any handler, and the worker exits — the message is restored
and kills the next worker too. ``refusal`` checks every part Celery reads (headers, body,
content type) in the consumer, on the body Celery decodes there anyway, and names what is
wrong; the consumer then dead-letters the message (``runtime.consumer``).

``raw_message`` keeps what arrived (bounded) so the dead letter shows it as it was.
"""

from __future__ import annotations

import base64
import math
from typing import Any, NamedTuple

from celery.utils.time import maybe_iso8601

from conveyor.ledger.storable import storable

RAW_MAX = 64 * 1024
"""Bytes of a refused message's body kept with its dead letter."""

MALFORMED_HEADER = "conveyor-malformed"
"""Set by the Redis transport on a queue entry it could not read (``runtime.transport``); its
value is the reason, and the body is the entry's raw bytes."""
RAW_SIZE_HEADER = "conveyor-raw-size"

_OPTIONAL_TEXT = (
    "lang",
    "root_id",
    "parent_id",
    "group",
    "shadow",
    "origin",
    "argsrepr",
    "kwargsrepr",
)
_EMBED_LISTS = ("callbacks", "errbacks", "chain")


class Refusal(NamedTuple):
    error_type: str  # UndecodableMessage | InvalidMessage
    reason: str


def refusal(message: Any) -> Refusal | None:
    """What makes ``message`` unrunnable, or None when Celery can take it as it is.

    A task name no worker registered is not judged here: Celery's own unknown-task handling
    (which also fails the result for a caller waiting on it) runs for it.
    """
    headers = message.headers
    if not isinstance(headers, dict):
        return Refusal("InvalidMessage", f"the message headers are {_kind(headers)}, not a table")
    malformed = headers.get(MALFORMED_HEADER)
    if malformed is not None:
        return Refusal("UndecodableMessage", str(malformed))
    if not isinstance(message.properties, dict) or not isinstance(
        message.delivery_info or {}, dict
    ):
        return Refusal("InvalidMessage", "the message properties are not a table")
    priority = message.properties.get("priority")
    if priority is not None and not _is_int(priority):
        return Refusal("InvalidMessage", f"priority is {_kind(priority)}, not an integer")
    try:
        payload = message.payload  # decoded with the worker's accept list, as Celery will
    except Exception as exc:
        return Refusal(
            "UndecodableMessage",
            f"message with content type {message.content_type!r} and encoding "
            f"{message.content_encoding!r} was refused and never deserialised: {exc}",
        )
    if "task" in headers:
        # (a "hybrid" message, protocol 2 headers around a protocol 1 body, Celery takes too)
        hybrid = isinstance(payload, dict) and "args" in payload
        problem = _fields(headers) or (_body_v1(payload) if hybrid else _body_v2(payload))
    elif isinstance(payload, dict) and "task" in payload:  # protocol 1: the fields in the body
        problem = _fields(payload) or _body_v1(payload)
    else:
        problem = (
            "not a Celery task message: it has no `task` header and its body is "
            f"{_kind(payload)}, not a protocol 1 task"
        )
    return Refusal("InvalidMessage", problem) if problem else None


def message_id(message: Any) -> str | None:
    """The task id a message carries, if it carries a usable one."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    job_id = headers.get("id")
    if job_id is None and "task" not in headers:
        try:
            payload = message.payload
        except Exception:
            payload = None
        job_id = payload.get("id") if isinstance(payload, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None


def task_name(message: Any) -> str:
    headers = message.headers if isinstance(message.headers, dict) else {}
    name = headers.get("task")
    return name if isinstance(name, str) and name else "unknown"


def raw_message(message: Any) -> dict[str, Any]:
    """The message as it arrived, for its dead letter: content type and encoding, headers,
    properties, and the first ``RAW_MAX`` bytes of the body (base64, and as text)."""
    body = getattr(message, "body", b"")
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    elif not isinstance(body, bytes):
        body = repr(body).encode()
    headers = message.headers if isinstance(message.headers, dict) else {}
    # The Redis transport wraps only the start of an entry it cannot read, and says its size.
    given = headers.get(RAW_SIZE_HEADER)
    size: int = given if isinstance(given, int) and not isinstance(given, bool) else len(body)
    kept = body[:RAW_MAX]
    properties = message.properties if isinstance(message.properties, dict) else {}
    doc: dict[str, Any] = storable(
        {
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "headers": {
                k: v for k, v in headers.items() if k not in (MALFORMED_HEADER, RAW_SIZE_HEADER)
            },
            "properties": {k: v for k, v in properties.items() if k != "delivery_info"},
            "delivery_info": message.delivery_info,
            "size": size,
            "truncated": size > len(kept),
            "body_base64": base64.b64encode(kept).decode(),
            "body_text": kept.decode("utf-8", "backslashreplace"),
        }
    )
    return doc


def preview(message: Any, limit: int = 200) -> str:
    """The start of a message's body, for a dead letter's one-line reason."""
    body = getattr(message, "body", b"")
    if isinstance(body, bytes):
        text = body[:limit].decode("utf-8", "backslashreplace")
    else:
        text = str(body)[:limit]
    return repr(text)


def _fields(fields: dict[str, Any]) -> str | None:
    task = fields.get("task")
    if not isinstance(task, str) or not task:
        return f"the task name is {_kind(task)}, not a non-empty string"
    job_id = fields.get("id")
    if not isinstance(job_id, str) or not job_id:
        return f"the task id is {_kind(job_id)}, not a non-empty string"
    for name in _OPTIONAL_TEXT:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            return f"`{name}` is {_kind(value)}, not a string"
    retries = fields.get("retries")
    if retries is not None and not (_is_int(retries) and retries >= 0):
        return f"`retries` is {_kind(retries)}, not a count"
    ignore_result = fields.get("ignore_result")
    if ignore_result is not None and not isinstance(ignore_result, bool):
        return f"`ignore_result` is {_kind(ignore_result)}, not a boolean"
    for name in ("eta", "expires"):
        problem = _when(name, fields.get(name))
        if problem:
            return problem
    return _timelimit(fields.get("timelimit"))


def _when(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"`{name}` is {_kind(value)}, not an ISO 8601 time"
    try:
        when = maybe_iso8601(value)
        when.timestamp()  # a year Celery cannot turn into a timestamp fails here, not later
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        return f"`{name}` {value[:100]!r} is not an ISO 8601 time: {exc}"
    return None


def _timelimit(value: Any) -> str | None:
    if value is None:
        return None
    ok = isinstance(value, list | tuple) and len(value) == 2
    if ok:
        ok = all(v is None or (_is_number(v) and v >= 0) for v in value)
    return None if ok else f"`timelimit` is {_kind(value)}, not [hard, soft] seconds"


def _body_v2(payload: Any) -> str | None:
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return f"the body is {_kind(payload)}, not [args, kwargs, options]"
    args, kwargs, embed = payload
    problem = _arguments(args, kwargs)
    if problem:
        return problem
    if not isinstance(embed, dict):
        return f"the body's options are {_kind(embed)}, not an object"
    for name in _EMBED_LISTS:
        value = embed.get(name)
        if value is not None and not isinstance(value, list):
            return f"the body's `{name}` is {_kind(value)}, not a list"
    chord = embed.get("chord")
    if chord is not None and not isinstance(chord, dict):
        return f"the body's `chord` is {_kind(chord)}, not an object"
    return None


def _body_v1(payload: dict[str, Any]) -> str | None:
    return _arguments(payload.get("args", []), payload.get("kwargs", {}))


def _arguments(args: Any, kwargs: Any) -> str | None:
    if not isinstance(args, list | tuple):
        return f"the task's args are {_kind(args)}, not a list"
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        return f"the task's kwargs are {_kind(kwargs)}, not an object with string keys"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _kind(value: Any) -> str:
    """A short description of a value for a reason: its type and the start of its repr."""
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'…' if len(text) > 80 else ''}"
