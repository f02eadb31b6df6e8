"""Time-ordered job ids (UUIDv7) so new rows land at the right edge of the primary key index."""

from __future__ import annotations

import os
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


def parse_job_id(raw: str) -> str:
    """The canonical form of a job id; anything that is not a UUID cannot be in the ledger."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise JobNotFound(raw) from None
