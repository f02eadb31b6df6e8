"""Fidelity mode: ``conveyor.install(app)`` leaves an existing app's behaviour as it was (issue
12), while ``create_celery()`` keeps Conveyor's production defaults; and the one rule for
configuration order: the app's own settings win over Conveyor's, whenever they were set."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from kombu import Connection
from sqlalchemy import text

import conveyor
from conveyor.runtime.queues import queue_argument_problems
from conveyor.testing.services import wait_for

ON_RABBITMQ = os.environ.get("CONVEYOR_TEST_BROKER_URL", "").startswith("amqp")
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def plain_app(name: str, **config: Any) -> Celery:
    app = Celery(name)
    app.conf.update(config)
    return app


# --- nothing behavioural changes ---------------------------------------------------------------


def test_install_keeps_celerys_defaults(settings: Any) -> None:
    plain = plain_app("fid-plain")
    app = conveyor.install(plain_app("fid-installed"), settings)
    for key in (
        "task_default_queue",
        "task_default_exchange",
        "task_queues",
        "task_routes",
        "task_acks_late",
        "task_reject_on_worker_lost",
        "task_time_limit",
        "task_soft_time_limit",
        "task_ignore_result",
        "task_serializer",
        "accept_content",
        "result_backend",
        "result_extended",
        "worker_prefetch_multiplier",
        "worker_max_tasks_per_child",
        "task_queue_max_priority",
        "broker_transport_options",
    ):
        assert app.conf[key] == plain.conf[key], key
    assert list(app.amqp.queues) == ["celery"]
    assert app.amqp.queues["celery"].queue_arguments is None
    assert app.conveyor_runtime.queues == ["celery"]


def test_create_celery_keeps_conveyors_production_defaults(settings: Any) -> None:
    app = conveyor.create_celery("fid-production", settings)
    assert app.conf.task_acks_late is True
    assert app.conf.task_time_limit == settings.time_limit
    assert app.conf.task_ignore_result is True
    assert sorted(app.amqp.queues) == sorted(settings.queues)
    assert app.amqp.queues["default"].queue_arguments == {"x-max-priority": 9}


class ConfigModule:
    result_extended = True
    task_time_limit = 42


@pytest.mark.parametrize("factory", ["install", "create_celery"])
@pytest.mark.parametrize("when", ["before", "after", "after-configured"])
@pytest.mark.parametrize("how", ["update", "add_defaults", "config_from_object"])
def test_the_apps_settings_win_whenever_they_are_set(
    settings: Any, factory: str, when: str, how: str
) -> None:
    """Issue 12 item 6: result_extended=True became False when install() ran after it."""

    def configure(app: Celery) -> None:
        if how == "update":
            app.conf.update(result_extended=True, task_time_limit=42)
        elif how == "add_defaults":
            app.add_defaults({"result_extended": True, "task_time_limit": 42})
        else:
            app.config_from_object(ConfigModule)

    if factory == "install":
        app = Celery(f"fid-order-{when}-{how}")
        if when == "before":
            configure(app)
        conveyor.install(app, settings)
    else:
        app = conveyor.create_celery(f"fid-order-{when}-{how}", settings)
        if when == "before":
            configure(app)
    if when == "after-configured":
        assert app.conf.task_default_queue  # configuration is loaded
    if when != "before":
        configure(app)
    assert app.conf.result_extended is True
    assert app.conf.task_time_limit == 42
    if factory == "create_celery":  # Conveyor's defaults stay where the app set nothing
        assert app.conf.task_acks_late is True


# --- a real worker: results, limits, the ledger ------------------------------------------------


@pytest.fixture
def fidelity_app(services: Any, settings: Any) -> Iterator[Celery]:
    """A team's own app: its own broker and result backend, its own default queue, plain
    Celery otherwise; Conveyor installed afterwards."""
    queue = f"fid-{os.getpid()}"
    app = plain_app(
        "fid-worker",
        broker_url=settings.broker_url or settings.redis_url,
        result_backend=settings.redis_url,
        task_default_queue=queue,
    )

    @app.task(name="fid.limits", bind=True)
    def limits(self: Any) -> list[Any]:
        return [self.request.timelimit[0], self.request.timelimit[1], self.request.delivery_info]

    @app.task(name="fid.add")
    def add(x: int, y: int) -> int:
        return x + y

    conveyor.install(app, settings)
    yield app


def test_results_time_limits_and_ledger_with_the_apps_own_settings(
    fidelity_app: Any, ledger: Any, runtime: Any
) -> None:
    with start_worker(fidelity_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        result = fidelity_app.tasks["fid.add"].delay(20, 22)
        assert result.get(timeout=60) == 42  # issue 12 item 1: results keep working
        soft, hard, delivery = fidelity_app.tasks["fid.limits"].delay().get(timeout=60)
    assert (soft, hard) == (None, None)  # item 3: no time limits appear
    assert delivery["routing_key"] == f"fid-{os.getpid()}"  # item 2: the app's own queue

    def recorded() -> Any:
        with ledger.connect() as conn:
            sql = text("SELECT state, queue FROM conveyor_jobs WHERE id = :id")
            rows = conn.execute(sql, {"id": result.id}).all()
        return rows if rows and rows[0][0] == "succeeded" else None

    assert wait_for(recorded, timeout=60, message="the ledger's row")[0][1] == (
        f"fid-{os.getpid()}"
    )


# --- RabbitMQ queue arguments (item 7) ---------------------------------------------------------


# `broker`: .ci/run runs these in its RabbitMQ pass; on Redis they have nothing to check.
@pytest.mark.broker
@pytest.mark.skipif(not ON_RABBITMQ, reason="queue arguments exist on RabbitMQ only")
def test_an_existing_queue_without_priority_keeps_working_and_unchanged(
    fidelity_app: Any, settings: Any
) -> None:
    queue = fidelity_app.conf.task_default_queue
    with Connection(settings.broker_url) as conn:
        conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
    assert queue_argument_problems(fidelity_app) == []
    with start_worker(fidelity_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        assert fidelity_app.tasks["fid.add"].delay(1, 2).get(timeout=60) == 3
    with Connection(settings.broker_url) as conn:
        # Declaring it again without arguments would fail had anyone added x-max-priority.
        conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
        conn.default_channel.queue_delete(queue)


# `broker`: .ci/run runs these in its RabbitMQ pass; on Redis they have nothing to check.
@pytest.mark.broker
@pytest.mark.skipif(not ON_RABBITMQ, reason="queue arguments exist on RabbitMQ only")
def test_production_mode_refuses_to_start_on_a_queue_it_cannot_declare(
    services: Any, settings: Any, tmp_path: Path
) -> None:
    queue = f"fid-prod-{os.getpid()}"
    with Connection(settings.broker_url) as conn:
        conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
    try:
        app = conveyor.create_celery("fid-prod", settings.model_copy(update={"queues": [queue]}))
        (problem,) = queue_argument_problems(app)
        assert queue in problem and "x-max-priority" in problem and "delete_queue" in problem
        env = {**services.env(), "CONVEYOR_QUEUES": f'["{queue}"]'}
        worker = subprocess.run(
            [CONVEYOR, "worker", "-c", "1", "-n", f"fid-prod-{os.getpid()}@%h"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert worker.returncode != 0
        assert "refusing to start" in worker.stdout + worker.stderr
        assert "delete_queue" in worker.stdout + worker.stderr
    finally:
        with Connection(settings.broker_url) as conn:
            conn.default_channel.queue_delete(queue)


# --- conveyor doctor ---------------------------------------------------------------------------


def test_doctor_reports_what_install_left_and_the_risks(services: Any, tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(
        "from celery import Celery\n"
        "import conveyor\n"
        "app = Celery('shop', broker='redis://127.0.0.1:1/0')\n"
        "conveyor.install(app)\n"
    )
    env = {
        **services.env(),
        "CONVEYOR_APP": "shop:app",
        "PYTHONPATH": str(tmp_path),
        "COLUMNS": "250",
    }
    out = subprocess.run(
        [CONVEYOR, "doctor", "--no-broker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "mode fidelity" in text
    # The one change: Celery's own consumer class, subclassed to record poison messages.
    assert "worker_consumer" in text and "dead-letters" in text
    assert "redis://127.0.0.1:1/0" in text  # the app's broker, left as it set it
    assert "Queues Conveyor offers celery" in text
    for fix in (
        "task_acks_late=True",
        "result_backend=",
        "task_time_limit=330",
        "visibility_timeout",
    ):
        assert fix in text, fix


def test_tasks_page_shows_the_settings_risks(client: Any) -> None:
    page = client.get("/tasks")
    assert page.status_code == 200
    assert "Settings and risks" in page.text
    assert "visibility timeout" in page.text or "no known risk" in page.text


def test_doctor_names_the_broker_fallback_as_the_one_change(settings: Any) -> None:
    from conveyor.runtime.doctor import diagnose

    app = conveyor.install(Celery("fid-no-broker"), settings)
    d = diagnose(app, check_broker=False)
    assert sorted(key for key, *_ in d.changed) == ["broker_url", "worker_consumer"]
    assert dict(d.kept)["task_acks_late"] == "False"


def test_the_apps_own_priorities_keep_celerys_meaning(settings: Any) -> None:
    """Production mode flips priorities to the Redis transport's order (9 = most urgent in
    Conveyor); an installed app's own apply_async(priority=...) goes out as the app wrote it."""
    from celery import signals

    broker = settings.broker_url or settings.redis_url
    sent: dict[str, Any] = {}

    def capture(sender: Any = None, properties: Any = None, headers: Any = None, **_: Any) -> None:
        sent[headers["id"]] = properties.get("priority")

    fidelity = conveyor.install(plain_app("fid-prio", broker_url=broker), settings)
    production = conveyor.create_celery("fid-prio-production", settings)

    def nothing() -> None:
        return None

    mine_task = fidelity.task(name="fid.prio")(nothing)
    theirs_task = production.task(name="fid.prio-production")(nothing)
    queue = f"fid-prio-{os.getpid()}"
    signals.before_task_publish.connect(capture, weak=False)
    try:
        mine = mine_task.apply_async(queue=queue, priority=3)
        theirs = theirs_task.apply_async(queue=queue, priority=3)
    finally:
        signals.before_task_publish.disconnect(capture)
        with Connection(broker) as conn:
            conn.default_channel.queue_delete(queue)
    assert sent[mine.id] == 3
    assert sent[theirs.id] == (6 if broker.startswith("redis") else 3)


def test_a_publish_is_recorded_by_the_app_that_sent_it(settings: Any, caplog: Any) -> None:
    """Two installed apps in one process share a task (as shared tasks are): a publish through
    one is recorded through its own runtime, even while the other, unreachable, is current."""
    broker = settings.broker_url or settings.redis_url
    sender = conveyor.install(plain_app("fid-sender", broker_url=broker), settings)
    elsewhere = settings.model_copy(update={"redis_url": "redis://unreachable.invalid:6379/0"})
    current = conveyor.install(plain_app("fid-current", broker_url=broker), elsewhere)

    def shared() -> None:
        return None

    task = sender.task(name="fid.shared")(shared)
    current.task(name="fid.shared")(shared)
    sender.finalize()
    current.finalize()
    current.set_current()
    queue = f"fid-shared-{os.getpid()}"
    try:
        with caplog.at_level("WARNING", logger="conveyor.runtime.install"):
            task.apply_async(queue=queue)
    finally:
        sender.set_current()
        with Connection(broker) as conn:
            conn.default_channel.queue_delete(queue)
    assert not [r for r in caplog.records if "could not record publish" in r.getMessage()]
