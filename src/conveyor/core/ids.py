"""Job ids: time-ordered UUIDs for new jobs, and the ledger's id for any Celery task id.

New jobs get a UUIDv7 so new rows land at the right edge of the primary key index. Celery
accepts any string as a task id (``send_task(..., task_id="order-123")``); the ledger keys jobs
by UUID, so a task id that is not one is mapped to a UUIDv5 derived from it. Every process
derives the same id without asking anyone, so a job's events from its publisher and its
workers meet on one row, and the id Celery knew is kept beside it (``external_id``).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid

from conveyor.errors import JobNotFound


def new_job_id() -> str:
    """A UUIDv7 string: 48-bit millisecond timestamp, version and variant bits, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# Fixed forever: changing it would move every job recorded under a non-UUID task id.
_NAMESPACE = uuid.UUID("6f1d3c52-4a8e-5b7d-9c0e-2f4a6b8d0c1e")


def ledger_id(task_id: str) -> str:
    """The ledger's id for a Celery task id: the id itself when it is a UUID (in its usual
    36-character form, any case), else a UUIDv5 of it (name-based, the same everywhere)."""
    if len(task_id) == 36:
        if _UUID.match(task_id):
            return task_id
        lowered = task_id.lower()
        if _UUID.match(lowered):
            return lowered
    # uuid.uuid5 by hand: it takes only text that encodes as UTF-8, and a task id may hold
    # lone surrogates.
    digest = hashlib.sha1(_NAMESPACE.bytes + task_id.encode("utf-8", "surrogatepass")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def parse_job_id(raw: str) -> str:
    """The ledger id of a job named by its id or by the task id Celery knew it by; a job
    that is not in the ledger is a ``JobNotFound`` where it is looked up."""
    if not isinstance(raw, str):
        raise JobNotFound(str(raw))
    return ledger_id(raw)
