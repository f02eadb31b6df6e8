"""Queue depth and consumers straight from the broker (Redis lists or RabbitMQ queues), and
the Redis transport's unacknowledged messages of jobs whose worker died, and queue arguments
RabbitMQ would refuse."""

from __future__ import annotations

import contextlib
import json
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


def broker_redelivers_at_once(app: Celery) -> bool:
    """Whether the broker gives a consumer's unacknowledged messages back the moment its
    connection closes (RabbitMQ), rather than after a visibility timeout (Redis)."""
    return str(app.connection_for_write().transport.driver_type) == "amqp"


def drop_unacked(app: Celery, started: dict[str, float]) -> int:
    """Forget the Redis transport's unacknowledged copies of lost jobs' messages, so that none
    comes back after the visibility timeout once the job has been put back in line.

    ``started`` maps a job id to when its lost attempt started (epoch seconds): only a copy
    delivered by then is that attempt's; a later one is a new delivery and is kept. Returns
    how many were dropped. RabbitMQ needs nothing: it requeues a dead consumer's messages
    itself, so on any other broker this is 0.
    """
    if not started:
        return 0
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        if conn.transport.driver_type != "redis":
            return 0
        channel = conn.default_channel
        client = channel.client
        hash_key, index_key = channel.unacked_key, channel.unacked_index_key
        found: list[tuple[Any, float]] = []
        for tag, raw in client.hscan_iter(hash_key, count=1000):
            job_id = _message_id(raw)
            if job_id in started:
                found.append((tag, started[job_id]))
        if not found:
            return 0
        pipe = client.pipeline(transaction=False)
        for tag, _ in found:
            pipe.zscore(index_key, tag)
        delivered = pipe.execute()
        tags = [tag for (tag, at), when in zip(found, delivered, strict=True) if (when or 0) <= at]
        if tags:
            pipe = client.pipeline(transaction=True)
            pipe.zrem(index_key, *tags)
            pipe.hdel(hash_key, *tags)
            pipe.execute()
        return len(tags)


def _message_id(raw: bytes | str) -> str | None:
    """The task id of one entry of kombu's ``unacked`` hash: ``[message, exchange, key]``."""
    try:
        message = json.loads(raw)[0]
        return str(message["headers"].get("id") or message["properties"]["correlation_id"])
    except (ValueError, LookupError, TypeError, AttributeError):
        return None


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
