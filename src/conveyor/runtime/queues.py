"""Queue depth and consumers straight from the broker (Redis lists or RabbitMQ queues), and
queue arguments RabbitMQ would refuse."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery

from conveyor.config import MAX_PRIORITY
from conveyor.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass
class QueueStats:
    name: str
    depth: int | None
    consumers: int | None


def broker_queue_stats(app: Celery, names: list[str]) -> list[QueueStats]:
    """Depth (and consumers where the broker knows them) of each named queue."""
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        channel = conn.default_channel
        if conn.transport.driver_type == "redis":
            client = channel.client
            sep = channel.sep  # between a queue's name and its priority
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.llen(name)
                for pri in range(1, MAX_PRIORITY + 1):
                    pipe.llen(f"{name}{sep}{pri}")
            lens = pipe.execute()
            step = MAX_PRIORITY + 1
            return [
                QueueStats(name, sum(lens[i * step : (i + 1) * step]), None)
                for i, name in enumerate(names)
            ]
        out = []
        for name in names:
            try:
                _, depth, consumers = channel.queue_declare(queue=name, passive=True)
                out.append(QueueStats(name, depth, consumers))
            except Exception:  # queue not declared yet: no messages, no consumers
                channel = conn.channel()
                out.append(QueueStats(name, 0, 0))
        return out


def queue_argument_problems(app: Celery, names: list[str] | None = None) -> list[str]:
    """On RabbitMQ, the app's queues (or ``names`` of them) that exist on the broker with other
    arguments than the app declares them with, each with the fix.

    RabbitMQ refuses such a declaration (PRECONDITION_FAILED) and a worker then never consumes
    the queue, without a word. Each queue is declared as the app declares it, on its own
    channel: a queue that does not exist yet is created as the worker would create it.
    """
    declared = app.amqp.queues
    wanted = [declared[n] for n in (names or list(declared)) if n in declared]
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=5)
        if conn.transport.driver_type != "amqp":
            return []  # Redis has no queue arguments to disagree on
        problems = []
        for queue in wanted:
            channel = conn.channel()
            try:
                queue.bind(channel).queue_declare()
            except conn.channel_errors as exc:
                args = queue.queue_arguments or {}
                problems.append(
                    f"RabbitMQ queue {queue.name!r} exists with other arguments than this app "
                    f"declares ({args or 'none'}): {exc}. Workers would never consume it. Fix: "
                    f"drain and delete it (`rabbitmqctl delete_queue {queue.name}`) so it is "
                    "declared again, or use other queue names (CONVEYOR_QUEUES)."
                )
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
        return problems


def refuse_mismatched_queues(app: Celery) -> Callable[..., None]:
    """A ``worker_init`` handler: a production-mode worker whose queues RabbitMQ would refuse
    exits at start with the fix, instead of running without consuming."""

    def check(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return  # a worker of another app in this process
        consume = app.amqp.queues.consume_from or app.amqp.queues
        try:
            problems = queue_argument_problems(app, list(consume))
        except Exception as exc:  # broker down: the worker waits for it as it always does
            log.info("queue arguments not checked: broker unreachable (%s)", exc)
            return
        if problems:
            for problem in problems:
                log.critical("%s", problem)
            # Celery logs and swallows exceptions raised by signal handlers; exit for real.
            raise SystemExit(f"conveyor: refusing to start: {problems[0]}")

    return check


def refuse_mismatched_queues_now(app: Celery) -> None:
    """Raise ConfigurationError if RabbitMQ would refuse the app's queues (API start); a broker
    that is down is no reason to refuse: jobs wait in the outbox."""
    try:
        problems = queue_argument_problems(app)
    except Exception as exc:
        log.info("queue arguments not checked: broker unreachable (%s)", exc)
        return
    if problems:
        raise ConfigurationError("; ".join(problems))
