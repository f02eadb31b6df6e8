"""What Conveyor did to an app's Celery settings, what it left, and what that leaves at risk.

``conveyor doctor`` prints it and the dashboard's Tasks page shows the risks. In fidelity mode
(``install(app)``) Conveyor changes nothing that alters behaviour, so whatever the app's own
settings cannot guarantee (early acks, no result backend, no time limits, ...) is reported
here with the setting that fixes it, never changed silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from conveyor.runtime.context import runtime_of

# Settings that decide how an app's tasks behave, shown as "left as the app has them".
BEHAVIOUR_KEYS = (
    "broker_url",
    "result_backend",
    "task_ignore_result",
    "task_default_queue",
    "task_routes",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "task_soft_time_limit",
    "task_time_limit",
    "task_serializer",
    "accept_content",
    "worker_prefetch_multiplier",
    "broker_transport_options",
)

# Why fidelity mode sets what it sets (runtime.app.fidelity_config).
WHY = {
    "worker_consumer": "Celery's own consumer; it also dead-letters the poison messages it drops",
    "broker_url": "the app names no broker: Conveyor's (CONVEYOR_BROKER_URL, else its Redis)",
}

DEFAULT_VISIBILITY_TIMEOUT = 3600  # kombu's Redis transport, when the app sets none


@dataclass(frozen=True)
class Risk:
    what: str
    fix: str


@dataclass
class Diagnosis:
    mode: str  # "fidelity" or "production"
    # key, the app's value (or Celery's default), Conveyor's, why
    changed: list[tuple[str, str, str, str]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    risks: list[Risk] = field(default_factory=list)


def shown(key: str, value: Any) -> str:
    """A setting's value for display; URLs without their passwords."""
    if isinstance(value, str) and ("url" in key or key == "result_backend"):
        return str(maybe_sanitize_url(value))
    if isinstance(value, list | tuple) and value and hasattr(value[0], "name"):
        return ", ".join(q.name for q in value)
    return repr(value)


def _without(conf: Any, layer: dict[str, Any], key: str) -> Any:
    """What ``key`` would be without Conveyor's layer."""
    for mapping in conf.maps:
        if mapping is layer:
            continue
        for k in conf._to_keys(key):
            if k in mapping:
                return mapping[k]
    return None


def diagnose(app: Celery, *, check_broker: bool = True) -> Diagnosis:
    """Inspect ``app`` (installed with Conveyor); ``check_broker`` also asks RabbitMQ whether
    it would refuse any of the app's queues."""
    rt = runtime_of(app)
    conf = app.conf
    conf.get("broker_url")  # loads the configuration, and with it Conveyor's layer
    layer = rt.layer
    d = Diagnosis(mode="production" if rt.production else "fidelity", queues=rt.queues)
    for key, value in layer.items():
        if conf.get(key) is value and _without(conf, layer, key) != value:
            before = shown(key, _without(conf, layer, key))
            d.changed.append((key, before, shown(key, value), WHY.get(key, "production default")))
    changed = {key for key, *_ in d.changed}
    d.kept = [(key, shown(key, conf.get(key))) for key in BEHAVIOUR_KEYS if key not in changed]
    d.risks = settings_risks(app)
    if check_broker:
        d.risks += broker_risks(app)
    return d


def settings_risks(app: Celery) -> list[Risk]:
    """What the app's own settings leave unguaranteed, with the setting that fixes each."""
    conf = app.conf
    risks = []
    if not conf.task_acks_late:
        risks.append(
            Risk(
                "Early acks: a message is acknowledged before its task runs, so a worker "
                "killed mid-task loses the job it was running.",
                "task_acks_late=True and task_reject_on_worker_lost=True",
            )
        )
    early = sorted(
        name
        for name, task in app.tasks.items()
        if not name.startswith("celery.") and conf.task_acks_late and task.acks_late is False
    )
    if early:
        risks.append(
            Risk(
                f"Tasks that acknowledge early despite task_acks_late: {', '.join(early)}.",
                "acks_late=True on those tasks",
            )
        )
    if not conf.result_backend:
        risks.append(
            Risk(
                "No result backend: AsyncResult.get() and chords do not work (results are in "
                "Conveyor's ledger: GET /api/v1/jobs/{id}/result).",
                "result_backend='redis://…'",
            )
        )
    if conf.task_time_limit is None and conf.task_soft_time_limit is None:
        risks.append(
            Risk(
                "No time limits: a task that hangs holds its worker process forever.",
                "task_soft_time_limit=300 and task_time_limit=330 (or per task)",
            )
        )
    if any("pickle" in str(c) for c in conf.accept_content or ()):
        risks.append(
            Risk(
                "accept_content allows pickle: anyone who can write to the broker can run code "
                "on the workers.",
                "accept_content=['json']",
            )
        )
    broker = conf.broker_url or ""
    if isinstance(broker, str) and broker.startswith(("redis://", "rediss://", "unix://")):
        options = conf.broker_transport_options or {}
        timeout = options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
        risks.append(
            Risk(
                f"Redis broker with a visibility timeout of {timeout:g} s: a task sent with an "
                "ETA or countdown further away than that is delivered again and runs twice; so "
                "is a task that runs longer with acks_late.",
                "broker_transport_options={'visibility_timeout': N} above your longest ETA "
                "(or submit long delays through Conveyor, which holds them in PostgreSQL)",
            )
        )
    return risks


def broker_risks(app: Celery) -> list[Risk]:
    from conveyor.runtime.queues import queue_argument_problems

    try:
        problems = queue_argument_problems(app)
    except Exception as exc:
        return [Risk(f"The broker could not be reached to check queues: {exc}", "start it")]
    return [Risk(problem, "see above") for problem in problems]
