"""Kombu's Redis transport, minus a client object per command.

Kombu's Redis channel builds a fresh ``redis.Redis`` for every publish and every
acknowledgement (``Channel.conn_or_acquire``). The object is only a thin wrapper around the
channel's connection pool, but constructing it costs more than the command it then sends, and a
worker's main process acknowledges every task: profiles of a busy worker put it at a tenth of
that process's time. A client over a connection pool is safe to share between threads, and
redis-py resets the pool in a forked child, so one per channel is enough.

The wire format is kombu's own: plain ``celery worker``, ``celery inspect`` and Flower, with or
without this transport, read and write the same queues.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

NAME = "conveyor.runtime.transport:Transport"


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._shared_client
        # The channel replaces its pool after a fork or a disconnect; follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client(  # type: ignore[no-untyped-call]
                asynchronous=False
            )
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
