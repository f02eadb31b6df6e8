"""Worker and beat logs in Conveyor's format, every record inside a job tagged with the job.

Celery configures logging itself in ``celery worker`` and ``celery beat`` (and hijacks the root
logger). Rather than take that over through ``setup_logging`` — which would also switch off
Celery's redirection of ``print`` to the log — Conveyor lets Celery choose its handlers (stderr
or ``--logfile``) and then swaps their formatter in ``after_setup_logger`` and
``after_setup_task_logger``. Celery's own lines ("Task … succeeded", "… raised unexpected", the
worker's "ready") go through the same formatter as the task's.

The job's fields are set when Conveyor counts the attempt (the task base's ``before_start``)
and cleared in ``task_postrun``, which Celery sends after its own success or failure line.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task, signals
from celery._state import get_current_task
from celery.apps import worker as celery_worker

from conveyor.logs import JsonFormatter, formatter_for, job_fields


def enter_job(task: Task, task_id: str, attempt: int | None) -> None:
    """Tag every record this thread logs from now on with the job (until ``task_postrun``)."""
    req = task.request
    delivery = getattr(req, "delivery_info", None) or {}
    job_fields.set(
        {
            "job_id": task_id,
            "task": task.name,
            "attempt": attempt,
            "queue": delivery.get("routing_key"),
            "worker": getattr(req, "hostname", None),
        }
    )


def _leave_job(**_: Any) -> None:
    job_fields.set(None)


def running_task_fields() -> Mapping[str, Any] | None:
    """The task Celery runs in this thread, for tasks Conveyor does not count (an app that was
    not installed, or records logged before ``before_start``): no attempt number."""
    task = get_current_task()
    req = getattr(task, "request", None) if task is not None else None
    if req is None or not getattr(req, "id", None):
        return None
    delivery = getattr(req, "delivery_info", None) or {}
    return {
        "job_id": req.id,
        "task": task.name if task is not None else None,
        "queue": delivery.get("routing_key"),
        "worker": getattr(req, "hostname", None),
    }


def _say_json(message: str, f: Any = None) -> None:
    """Celery's ``safe_say`` as one JSON line: what the worker says from its signal handlers
    ("worker: Warm shutdown (MainProcess)"), written with ``os.write`` as Celery does, since
    logging from a signal handler could interleave with a record being written. To stderr
    like every other record (Celery picks stdout for some of these)."""
    record = logging.LogRecord(
        "celery.apps.worker", logging.WARNING, __file__, 0, message, None, None
    )
    with contextlib.suppress(OSError):  # stderr closed: nowhere to say it
        os.write(2, (JsonFormatter().format(record) + "\n").encode())


def _reformat(loggers: list[logging.Logger], app: Celery) -> None:
    rt = getattr(app, "conveyor_runtime", None)
    if rt is None or rt.settings.log_format != "json":
        return  # text: Celery's own formats, which already name the task in task records
    formatter = formatter_for("json", running_task_fields)
    for logger in loggers:
        for handler in logger.handlers:
            handler.setFormatter(formatter)
    # Python's warnings otherwise go straight to stderr, as text.
    logging.captureWarnings(True)
    # The one place Celery writes text around its loggers (shutdown notices); no setting or
    # signal reaches it.
    celery_worker.safe_say = _say_json


def connect_task_logs(app: Celery) -> None:
    """Format ``app``'s worker and beat logs as its settings say, and tag records with jobs."""

    def after_setup_logger(logger: logging.Logger | None = None, **_: Any) -> None:
        from billiard.util import get_logger as multiprocessing_logger

        loggers = [logger or logging.getLogger(), logging.getLogger("celery")]
        _reformat([*loggers, multiprocessing_logger()], app)

    def after_setup_task_logger(logger: logging.Logger | None = None, **_: Any) -> None:
        _reformat([logger or logging.getLogger("celery.task")], app)

    signals.after_setup_logger.connect(after_setup_logger, weak=False)
    signals.after_setup_task_logger.connect(after_setup_task_logger, weak=False)
    signals.task_postrun.connect(_leave_job, weak=False, dispatch_uid="conveyor-leave-job")
