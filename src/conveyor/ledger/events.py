"""Job events on their way from producers (submitters, workers) to the ledger.

Producers append one JSON document per event to a Redis stream in the same round trip that
does their other work; the recorder folds them into PostgreSQL in batches. An event is a dict
with at least ``k`` (kind: a JobState value or ``"progress"``), ``id`` and ``ts`` (epoch seconds).
"""

from __future__ import annotations

import json
import time
from typing import Any

STREAM = "conveyor:events"
GROUP = "conveyor-recorders"
JOB_CHANNEL = "conveyor:job:"  # + job id: live state/progress for SSE subscribers
CANCEL_KEY = "conveyor:cancel:"  # + job id: set while a cancel is pending or done
CANCEL_TTL = 7 * 24 * 3600
WORKERS_KEY = "conveyor:workers"  # hash: hostname -> heartbeat JSON
PROGRESS = "progress"


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=repr)


def decode(raw: bytes | str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict) or "id" not in value or "k" not in value:
        raise ValueError(f"not a job event: {raw!r:.200}")
    return value


def now() -> float:
    return time.time()


# One round trip on the worker's hot path: check the job's cancel flag and, unless cancelled,
# append the event and notify live subscribers. Returns 1 if the job was cancelled.
RECORD_UNLESS_CANCELLED = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 1
end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 0
"""

RECORD = """
redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 0
"""
