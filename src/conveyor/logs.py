"""Conveyor's log output: plain text for a terminal, or one JSON object per line for machines.

Every process (``conveyor api``, ``worker``, ``beat``, ``recorder``, the children of
``conveyor up``) logs through the standard library. With ``CONVEYOR_LOG_FORMAT=json`` each record
becomes one line::

    {"timestamp": "2026-11-30T15:06:36.123Z", "level": "INFO", "logger": "celery.app.trace",
     "message": "Task demo.add[…] succeeded in 0.001s: 3", "process": "ForkPoolWorker-1",
     "pid": 4242, "job_id": "…", "task": "demo.add", "attempt": 1, "queue": "default",
     "worker": "worker1@host"}

A record logged while a job runs carries ``job_id``, ``task``, ``attempt``, ``queue`` and
``worker``, whoever logged it (the task's own code, Celery's task logger, Celery itself): the
worker sets :data:`job_fields` when a job starts (``conveyor.runtime.task_logs``). Records about a
job logged outside it (Celery's "received" line, a hard time limit in the worker's main process)
carry the ``job_id`` and ``task`` Celery attached to them or named in the message. An exception
is an ``exc_info`` field holding the formatted traceback.

This module imports nothing from Celery: the API and the recorder use it as they are.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

job_fields: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "conveyor_job_log_fields", default=None
)
"""The running job's ``job_id``/``task``/``attempt``/``queue``/``worker``, while it runs."""

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is kept.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
_CELERY_TASK_REF = re.compile(
    r"(?P<task>[\w.:-]+)\[(?P<id>[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12})\]"
)
# Celery attaches its own formatting context as ``extra={"data": ...}``: the task's repr'd
# arguments and traceback, already in the message and ``exc_info``, so not repeated.
_DROPPED_EXTRAS = frozenset({"data"})


def _json_safe(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def celery_job_fields(record: logging.LogRecord) -> dict[str, Any]:
    """``job_id`` and ``task`` (and ``worker``) of a job that Celery logs about outside the job:
    from the context it attaches to some records (``extra={"data": {"id": …, "name": …}}``),
    else from the ``task.name[job-id]`` its other messages name the job by ("Hard time limit
    (330s) exceeded for demo.add[…]")."""
    data = getattr(record, "data", None)
    if isinstance(data, Mapping) and data.get("id"):
        fields: dict[str, Any] = {"job_id": str(data["id"])}
        if data.get("name"):
            fields["task"] = str(data["name"])
        if data.get("hostname"):
            fields["worker"] = str(data["hostname"])
        return fields
    if record.name.startswith("celery."):
        named = _CELERY_TASK_REF.search(record.getMessage())
        if named is not None:
            return {"job_id": named["id"], "task": named["task"]}
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def __init__(
        self, fallback: Callable[[], Mapping[str, Any] | None] | None = None, **kwargs: Any
    ) -> None:
        """``fallback`` supplies job fields when :data:`job_fields` is unset (the worker asks
        Celery for the task running in this thread, if any)."""
        super().__init__(**kwargs)
        self.fallback = fallback

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
            "pid": record.process,
        }
        if record.threadName and record.threadName != "MainThread":
            doc["thread"] = record.threadName
        job = job_fields.get()
        if job is None and self.fallback is not None:
            job = self.fallback()
        for key, value in (job or celery_job_fields(record)).items():
            if value is not None:
                doc[key] = value
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in _DROPPED_EXTRAS and key not in doc:
                doc[key] = _json_safe(value)
        if record.exc_info:
            # Cached on the record like logging.Formatter does, for other handlers.
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            doc["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        if record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=repr, ensure_ascii=False)


def formatter_for(
    log_format: LogFormat, fallback: Callable[[], Mapping[str, Any] | None] | None = None
) -> logging.Formatter:
    """The formatter a handler of this process uses for ``log_format``."""
    if log_format == "json":
        return JsonFormatter(fallback)
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: LogFormat, level: str = "INFO") -> None:
    """Send the root logger to stderr in ``log_format``, for processes Celery does not set up
    (API, recorder, reconciler, ``conveyor up`` itself). Replaces any handler already there."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings otherwise go straight to stderr, as text, whatever the format.
    logging.captureWarnings(True)
