"""Kombu's Redis transport, minus a client object per command, and safe from bad entries.

Kombu's Redis channel builds a fresh ``redis.Redis`` for every publish and every
acknowledgement (``Channel.conn_or_acquire``). The object is only a thin wrapper around the
channel's connection pool, but constructing it costs more than the command it then sends, and a
worker's main process acknowledges every task: profiles of a busy worker put it at a tenth of
that process's time. A client over a connection pool is safe to share between threads, and
redis-py resets the pool in a forked child, so one per channel is enough.

Kombu parses each queue entry (a JSON envelope around the message) as it pops it, outside any
handler: an entry that is not UTF-8 JSON, or whose envelope lacks what kombu reads from it,
raised in the worker's main process, ended the worker and was lost with it
(``redis-cli lpush default 'not json'``). Here such an entry is delivered instead as a message
that carries the entry's raw bytes and the reason (``runtime.poison.MALFORMED_HEADER``), and
the worker's consumer dead-letters it.

The wire format is kombu's own: plain ``celery worker``, ``celery inspect`` and Flower, with or
without this transport, read and write the same queues.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from kombu.exceptions import DecodeError
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Empty
from kombu.utils.json import loads

from conveyor.runtime.poison import MALFORMED_HEADER, RAW_MAX, RAW_SIZE_HEADER

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

    # The two places kombu parses an entry it popped from a queue, with `_envelope` in
    # place of its bare `loads` (kombu 5.x).
    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = _text(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                self.connection._deliver(envelope(item, dest), dest)
                return True
            raise Empty()
        finally:
            self._in_poll = None  # type: ignore[assignment]

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))  # type: ignore[no-untyped-call]
                if item:
                    self._maybe_update_queues_expire(client, queue)  # type: ignore[no-untyped-call]
                    return envelope(item, queue)
            self._maybe_update_queues_expire(client, queue)  # type: ignore[no-untyped-call]
            raise Empty()


def envelope(item: bytes | str, queue: str) -> dict[str, Any]:
    """The kombu envelope in a queue entry, or, when the entry is not one kombu can read, an
    envelope around its raw bytes that the consumer will refuse with the reason."""
    raw = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
    try:
        payload = loads(raw.decode("utf-8"))  # type: ignore[no-untyped-call]
    except (UnicodeDecodeError, ValueError, TypeError, DecodeError) as exc:
        return malformed(raw, queue, f"the queue entry is not a JSON message envelope: {exc}")
    problem = envelope_problem(payload)
    return malformed(raw, queue, problem) if problem else payload


def envelope_problem(payload: Any) -> str | None:
    """What in a parsed entry kombu would trip over before any handler runs, if anything."""
    if not isinstance(payload, dict):
        return f"the queue entry is a JSON {type(payload).__name__}, not a message envelope"
    props = payload.get("properties")
    if not isinstance(props, dict):
        return "the queue entry has no `properties` object"
    tag = props.get("delivery_tag")
    if not isinstance(tag, str) or not tag:
        return "the queue entry has no `delivery_tag`"
    info = props.get("delivery_info")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        return "the queue entry has no `delivery_info` with exchange and routing key"
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return "the queue entry's `headers` is not an object"
    for name in ("content-type", "content-encoding"):
        if payload.get(name) is not None and not isinstance(payload[name], str):
            return f"the queue entry's `{name}` is not a string"
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return "the queue entry's `body` is not a string"
    encoding = props.get("body_encoding")
    if encoding not in (None, "base64"):
        return f"the queue entry's body encoding {encoding!r} is not one kombu knows"
    if body and encoding == "base64":
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            return f"the queue entry's body is not base64: {exc}"
    return None


def malformed(raw: bytes, queue: str, reason: str) -> dict[str, Any]:
    """An envelope kombu reads, around the first ``RAW_MAX`` bytes of an entry it cannot."""
    return {
        "body": base64.b64encode(raw[:RAW_MAX]).decode(),
        "content-type": "application/x-conveyor-malformed",
        "content-encoding": "binary",
        "headers": {MALFORMED_HEADER: reason, RAW_SIZE_HEADER: len(raw)},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
        },
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Transport(kombu_redis.Transport):
    Channel = Channel
