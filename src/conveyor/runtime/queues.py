"""Queue depth and consumers straight from the broker (Redis lists or RabbitMQ queues), and
the Redis transport's unacknowledged messages of jobs whose worker died."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from celery import Celery

from conveyor.config import MAX_PRIORITY


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
