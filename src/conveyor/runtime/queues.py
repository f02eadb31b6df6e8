"""Queue depth and consumers straight from the broker (Redis lists or RabbitMQ queues)."""

from __future__ import annotations

from dataclasses import dataclass

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
