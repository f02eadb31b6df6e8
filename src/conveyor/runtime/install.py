"""``install(app)``: ledger recording, progress and cancel checks on any Celery app.

Recording hooks Celery's own signals, so tasks written with plain ``@app.task`` and sent with
plain ``.delay()``, ``apply_async`` or ``send_task`` are recorded too:

- publish (any process that imported the app): a ``queued``/``scheduled`` event;
- task start (worker child): cancel check + ``running`` in one Redis round trip;
- outcome (worker child, or the main process for timeouts and lost workers): one event.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import time
import uuid
from datetime import datetime
from typing import Any

from celery import Celery, Task, signals
from celery._state import get_current_app
from celery.app.control import Control
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded

from conveyor.config import Settings
from conveyor.core.states import JobState
from conveyor.errors import JobCancelled
from conveyor.ledger import events as ev
from conveyor.runtime import limits
from conveyor.runtime.app import add_conveyor_defaults, celery_config, fidelity_config
from conveyor.runtime.canvas import canvas_fields
from conveyor.runtime.context import Runtime, publishing_recorded_job, runtime_of
from conveyor.runtime.task_logs import connect_task_logs, enter_job

log = logging.getLogger(__name__)


# Attempt number of each job running in this process, as counted at its start, and when it
# started (for the run-time histogram).
_attempts: dict[str, int] = {}
_started: dict[str, float] = {}


class ConveyorTaskMixin:
    """Mixed into every task class of an installed app (see ``_adopt_tasks``)."""

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        task: Task = self
        rt = runtime_of(task.app)
        req = task.request
        delivery = req.delivery_info or {}
        cap = limits.attempt_cap(task)
        event = {
            "k": JobState.RUNNING.value,
            "id": task_id,
            "ts": time.time(),
            "task": task.name,
            "worker": req.hostname,
            "args": list(args or ()),
            "kwargs": dict(kwargs or {}),
            "queue": delivery.get("routing_key"),
            "priority": rt.transport_priority(delivery.get("priority")),
            "max_attempts": cap,
            "parent_id": req.parent_id,
            "root_id": req.root_id,
        }
        spec = limits.limit_spec(task, rt.settings)
        held = limits.limit_args(task, spec, args, kwargs) if spec is not None else None
        nonce, resend = _delivery_identity(req, delivery)
        outcome, attempt = limits.start(rt, event, cap, held, nonce=nonce, resend=resend)
        if outcome == ev.RATE_WAIT:
            limits.wait_for_limit(task, task_id, args, kwargs, attempt / 1000.0, slot=True)
            raise Ignore(f"job {task_id} waits {attempt} ms for its rate limit")
        if outcome == ev.CONCURRENCY_FULL:
            waits = int(task.request.get("conveyor_waits") or 0)
            backoff = min(0.2 * 2 ** min(waits, 5), 5.0) * random.uniform(0.5, 1.0)
            limits.wait_for_limit(
                task, task_id, args, kwargs, backoff, slot=held is not None and held.has_slot
            )
            raise Ignore(f"job {task_id} waits for a free slot under its concurrency limit")
        if outcome == ev.CANCELLED:
            rt.record(_outcome(task, task_id, JobState.CANCELLED, skipped=True), count="cancelled")
            raise Ignore(f"job {task_id} was cancelled before it started")
        if outcome == ev.DUPLICATE:
            raise Ignore(f"job {task_id} already ran; duplicate delivery dropped")
        if outcome == ev.OVER_CAP:
            rt.record(
                count="dead",
                event=_outcome(
                    task,
                    task_id,
                    JobState.DEAD,
                    attempt=attempt,
                    skipped=True,
                    etype="AttemptCapExceeded",
                    emsg=f"delivery {attempt} exceeds the cap of {cap} attempts: earlier attempts "
                    "were lost (their worker died or was killed) or kept failing",
                ),
            )
            raise Ignore(f"job {task_id} is over its attempt cap")
        _attempts[task_id] = attempt
        _started[task_id] = time.monotonic()
        enter_job(task, task_id, attempt)
        if held is not None and held.concurrency_key:
            limits.claims[task_id] = held.concurrency_key
        super().before_start(task_id, args, kwargs)  # type: ignore[misc]


def _delivery_identity(req: Any, delivery: dict[str, Any]) -> tuple[str, bool]:
    """(the publish this delivery came from, whether it is a copy of a message already sent).

    ``apply()`` runs the task here, without a message: each call is a run of its own, as in
    Celery. A message carries the nonce Conveyor's publish hook gave it; one from a producer
    without Conveyor has none, and then only the broker's ``redelivered`` flag tells a copy."""
    if req.is_eager:
        return uuid.uuid4().hex, False
    nonce = str(req.get(ev.PUBLISH_NONCE) or "")
    resend = bool(req.get(ev.RESEND)) or (not nonce and bool(delivery.get("redelivered")))
    return nonce, resend


def _attempt(rt: Runtime, task_id: str) -> int | None:
    attempt = _attempts.get(task_id)
    if attempt is None:
        # Sent from outside the task's process (the worker's main process, on a hard time
        # limit or a lost child): ask Redis.
        try:
            attempt = rt.attempt_of(task_id)
        except Exception:
            attempt = None
    return attempt


def _outcome(task: Task, task_id: str, state: JobState, **fields: Any) -> dict[str, Any]:
    req = task.request
    rt = runtime_of(task.app)
    delivery = getattr(req, "delivery_info", None) or {}
    event = {
        "k": state.value,
        "id": task_id,
        "ts": time.time(),
        "task": task.name,
        "queue": delivery.get("routing_key"),
        "attempt": _attempt(rt, task_id),
        "worker": getattr(req, "hostname", None),
    }
    event.update(fields)
    if state.terminal:
        _attempts.pop(task_id, None)
    return event


def _record_end(rt: Runtime, event: dict[str, Any]) -> None:
    """Record the end of an attempt (terminal, or retrying), count it, and free its
    concurrency claim."""
    started = _started.pop(event["id"], None)
    rt.record(
        event,
        concurrency_key=limits.claims.pop(event["id"], ""),
        count=event["k"],
        runtime=time.monotonic() - started if started is not None else None,
    )


def _error_fields(exc: BaseException | None, einfo: Any) -> dict[str, Any]:
    if exc is None:
        return {}
    tb = getattr(einfo, "traceback", None)
    return {
        "etype": type(exc).__qualname__,
        "emsg": str(exc)[:10_000],
        "tb": tb[-50_000:] if isinstance(tb, str) else None,
    }


def _adopt(task: Task) -> None:
    cls = type(task)
    if not issubclass(cls, ConveyorTaskMixin):
        task.__class__ = type(
            cls.__name__, (ConveyorTaskMixin, cls), {"__module__": cls.__module__}
        )
    # A cancel is an outcome: Celery logs an exception listed in `throws` at INFO, as
    # "raised expected", with no traceback, instead of an ERROR "raised unexpected".
    throws = tuple(task.throws or ())
    if JobCancelled not in throws:
        task.throws = (*throws, JobCancelled)


def _adopt_tasks(app: Celery) -> None:
    for task in list(app.tasks.values()):
        if not task.name.startswith("celery."):
            _adopt(task)


def _installed(sender: Any) -> Runtime | None:
    app = getattr(sender, "app", None)
    return getattr(app, "conveyor_runtime", None)


# --- signal handlers (connected once, dispatch to the task's app runtime) -------------------


def _on_success(sender: Task, result: Any = None, **_: Any) -> None:
    rt = _installed(sender)
    if rt is None:
        return
    _record_end(rt, _outcome(sender, sender.request.id, JobState.SUCCEEDED, result=result))


def _on_failure(
    sender: Task,
    task_id: str,
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    rt = _installed(sender)
    if rt is None:
        return
    if isinstance(exception, JobCancelled):
        state = JobState.CANCELLED
    else:
        retries = getattr(sender.request, "retries", 0) or 0
        exhausted = bool(sender.max_retries) and retries >= (sender.max_retries or 0) > 0
        state = JobState.DEAD if exhausted else JobState.FAILED
    timeout = isinstance(exception, TimeLimitExceeded | SoftTimeLimitExceeded)
    if isinstance(exception, SoftTimeLimitExceeded):
        _run_cleanup(sender, task_id)
    _record_end(
        rt,
        _outcome(
            sender, task_id, state, timeout=timeout or None, **_error_fields(exception, einfo)
        ),
    )


def _run_cleanup(task: Task, task_id: str) -> None:
    """The task's ``on_soft_timeout(task, job_id, args, kwargs)`` hook (a task option or a
    method of a Task class), in the process that ran it, while the hard limit still leaves
    time to release what the task held."""
    hook = getattr(task, "on_soft_timeout", None)
    if hook is None:
        return
    req = task.request
    try:
        hook(task_id, list(req.args or ()), dict(req.kwargs or {}))
    except Exception:
        log.exception("on_soft_timeout hook of %s failed for job %s", task.name, task_id)


def _on_retry(
    sender: Task, request: Any = None, reason: Any = None, einfo: Any = None, **_: Any
) -> None:
    rt = _installed(sender)
    if rt is None or request is None:
        return
    exc = reason if isinstance(reason, BaseException) else None
    eta = None
    when = getattr(reason, "when", None)
    if isinstance(when, datetime):
        eta = when.timestamp()
    elif isinstance(when, int | float):
        eta = time.time() + when
    _record_end(
        rt,
        {
            "k": JobState.RETRYING.value,
            "id": request.id,
            "ts": time.time(),
            "task": sender.name,
            "attempt": _attempt(rt, request.id),
            "worker": request.hostname,
            "eta": eta,
            **_error_fields(getattr(exc, "exc", None) or exc, einfo),
        },
    )


def _on_revoked(sender: Task, request: Any = None, expired: bool = False, **_: Any) -> None:
    rt = _installed(sender)
    if rt is None or request is None:
        return
    event = {
        "k": JobState.CANCELLED.value,
        "id": request.id,
        "ts": time.time(),
        "task": sender.name,
        "attempt": (attempt := _attempt(rt, request.id)),
        "skipped": attempt is None or None,  # revoked before it ever started
    }
    if expired:
        # Celery discards a message past its `expires` and marks the task REVOKED.
        event["etype"] = "Expired"
        event["emsg"] = f"the job's `expires` ({request.expires}) passed before it could start"
    _record_end(rt, event)


_connected = False


def _connect_signals() -> None:
    global _connected
    if _connected:
        return
    signals.task_success.connect(_on_success, weak=False)
    signals.task_failure.connect(_on_failure, weak=False)
    signals.task_retry.connect(_on_retry, weak=False)
    signals.task_revoked.connect(_on_revoked, weak=False)
    signals.before_task_publish.connect(_on_publish, weak=False)
    _connected = True


def _timestamp(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 header (``eta``, ``expires``), None if absent."""
    return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None


_runtimes: list[Runtime] = []  # of every installed app in this process, in install order
# The installed app whose ``send_task`` is publishing (every publish goes through it).
_sending: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "conveyor_sending_runtime", default=None
)


def _note_sender(app: Celery, rt: Runtime) -> None:
    """Make ``app.send_task`` name its runtime while it publishes, so that a process with
    several installed apps (shared tasks are in all of them) records each publish through the
    app that sent it, not through whichever app happens to be current."""
    send_task = app.send_task

    @functools.wraps(send_task)
    def sending(*args: Any, **kwargs: Any) -> Any:
        token = _sending.set(rt)
        try:
            return send_task(*args, **kwargs)
        finally:
            _sending.reset(token)

    app.send_task = sending


def _runtime_for(task_name: str | None) -> Runtime | None:
    """The installed app a publish comes from. Celery's ``before_task_publish`` does not name
    the app, and one handler serves all of them, so a publish is recorded (and its priority
    translated) once: by the app whose ``send_task`` is running, else by the app that has the
    task or else the current app."""
    if len(_runtimes) <= 1:
        return _runtimes[0] if _runtimes else None
    sending = _sending.get()
    if sending is not None:
        return sending
    current = getattr(get_current_app(), "conveyor_runtime", None)
    # `_tasks`, not `tasks`: reading `tasks` would finalize an app mid-publish.
    if current is not None and task_name in current.app._tasks:
        return current  # type: ignore[no-any-return]
    for rt in reversed(_runtimes):
        if task_name in rt.app._tasks:
            return rt
    return current if current is not None else _runtimes[-1]


def _on_publish(
    sender: str | None = None,
    body: Any = None,
    routing_key: str | None = None,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    rt = _runtime_for(sender)
    if rt is None:
        return
    props = properties if properties is not None else {}
    if headers is not None:
        # One value per publish: a redelivery of this message carries it again, while a
        # new publish that reuses the task id (Celery allows it) brings a new one.
        headers[ev.PUBLISH_NONCE] = uuid.uuid4().hex
    # RabbitMQ drops a message whose `expiration` passed while it waited (Celery sets it
    # from `expires`), silently: no worker sees it, so neither the result backend (REVOKED)
    # nor the ledger ever learns it expired, and `.get()` waits forever. Without it the
    # message reaches a worker, which discards it as Celery does on every broker: the task
    # never runs late, and it ends REVOKED and recorded as expired.
    props.pop("expiration", None)
    priority = props.get("priority")
    conveyor_publish = publishing_recorded_job.get()
    if rt.redis_broker and not (headers or {}).get("retries"):
        if rt.production or conveyor_publish:
            # (a retry republishes the priority it was delivered with: already flipped)
            # Kombu passes this same dict on to the producer: flip to the broker's order.
            # In fidelity mode only Conveyor's own publishes (API, outbox) are flipped:
            # the app's own keep Celery's meaning.
            props["priority"] = rt.transport_priority(priority)
        else:
            # Recorded in Conveyor's order (9 = most urgent); Celery's stays on the wire.
            priority = rt.transport_priority(priority) if priority is not None else None
    # Any publish through Celery in this process is recorded, including send_task() of a
    # task whose code lives elsewhere; Celery's own helpers (chord_unlock, ...) are not jobs.
    if conveyor_publish or not headers or not sender:
        return
    if sender.startswith("celery."):
        return
    if headers.get("retries"):
        return  # a retry republished by the worker, which records `retrying` itself
    try:
        args, kwargs = body[0], body[1]
    except (TypeError, IndexError, KeyError):
        args, kwargs = [], {}
    eta_ts, expires_ts = _timestamp(headers.get("eta")), _timestamp(headers.get("expires"))
    state = JobState.SCHEDULED if eta_ts and eta_ts > time.time() else JobState.QUEUED
    event = {
        "k": state.value,
        "id": headers["id"],
        "ts": time.time(),
        "task": sender,
        "args": args,
        "kwargs": kwargs,
        "queue": routing_key,
        "priority": priority,
        "parent_id": headers.get("parent_id"),
        "root_id": headers.get("root_id"),
        "eta": eta_ts,
        "expires": expires_ts,
    }
    try:
        canvas = canvas_fields(headers, body)
        if canvas is not None:  # a step of a chain, group or chord: the recorder links them
            event.update(canvas)
        rt.record(event, count="submitted")
    except Exception:  # recording must never stop a publish; the worker records it too
        log.warning("could not record publish of %s", headers.get("id"), exc_info=True)


class PurgeNotingControl(Control):  # type: ignore[misc]
    """Celery's remote control, whose ``purge()`` also leaves the time of the purge of each
    queue it emptied, so that the reconciler ends the jobs whose messages went with it instead
    of re-sending them as lost (a purge is a decision, not a loss)."""

    def purge(self, connection: Any = None) -> int:
        queues = self.app.amqp.queues
        names = list(queues.consume_from or queues)
        discarded: int = super().purge(connection)
        try:
            runtime_of(self.app).redis.hset(
                ev.PURGED_QUEUES, mapping=dict.fromkeys(names, time.time())
            )
        except Exception:  # the purge happened; say what the reconciler will not know
            log.warning(
                "purged %s but could not note it in Redis: jobs of theirs still queued in the "
                "ledger will be re-sent as lost",
                ", ".join(names),
                exc_info=True,
            )
        return discarded

    discard_all = purge


def install(app: Celery, settings: Settings | None = None) -> Celery:
    """Add Conveyor's recording, progress and cancel checks to ``app``; returns ``app``.

    Fidelity mode: the app keeps every setting it has, explicitly or by Celery's defaults
    (queues, routing, result backend, time limits, serializers, acks); Conveyor adds only
    ``fidelity_config`` under them. ``conveyor doctor`` lists what that leaves at risk and the
    setting that fixes each. Call it where the app is created, before or after its tasks are
    defined.
    """
    return install_runtime(app, settings, production=False)


def install_runtime(app: Celery, settings: Settings | None, *, production: bool) -> Celery:
    """``install`` in either mode: ``production`` (``create_celery``) adds Conveyor's
    production defaults, otherwise only what changes no behaviour."""
    existing: Runtime | None = getattr(app, "conveyor_runtime", None)
    if existing is not None:
        if settings is not None:
            existing.configure(settings)
        return app
    rt = Runtime(app, settings, production=production)
    app.conveyor_runtime = rt

    def layer() -> dict[str, Any]:
        config = celery_config(rt.settings) if production else fidelity_config(rt.settings)
        rt.layer = config
        return config

    add_conveyor_defaults(app, layer)
    if app.control_cls == Celery.control_cls:  # (an app with a control of its own keeps it)
        app.control_cls = PurgeNotingControl
        if type(app.__dict__.get("control")) is Control:  # already made: make it ours
            app.control.__class__ = PurgeNotingControl
    app.on_after_finalize.connect(lambda sender, **_: _adopt_tasks(sender), weak=False)
    signals.worker_init.connect(lambda sender=None, **_: _adopt_tasks(app), weak=False)
    _runtimes.append(rt)
    _note_sender(app, rt)
    _connect_signals()
    connect_task_logs(app)
    from conveyor.runtime.heartbeat import connect_heartbeat

    connect_heartbeat(app)
    if production:
        from conveyor.runtime.queues import refuse_mismatched_queues

        signals.worker_init.connect(refuse_mismatched_queues(app), weak=False)
    return app
