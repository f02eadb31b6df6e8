"""Job events on their way from producers (submitters, workers) to the ledger.

Producers append one JSON document per event to a Redis stream in the same round trip that
does their other work; the recorder folds them into PostgreSQL in batches. An event is a dict
with at least ``k`` (kind: a JobState value or ``"progress"``), ``id`` and ``ts`` (epoch seconds).
"""

from __future__ import annotations

import bisect
import json
import time
from typing import Any

from conveyor.core.ids import ledger_id

STREAM = "conveyor:events"
GROUP = "conveyor-recorders"
JOB_CHANNEL = "conveyor:job:"  # + job id: live state/progress for SSE subscribers
CANCEL_KEY = "conveyor:cancel:"  # + job id: set while a cancel is pending or done
CANCEL_TTL = 7 * 24 * 3600
WORKERS_KEY = "conveyor:workers"  # hash: hostname -> heartbeat JSON
SUPERVISED_KEY = "conveyor:supervised"  # hash: host/child -> `conveyor up` child status JSON
SILENT_BEATS = 3  # a worker whose last heartbeat is this many intervals old is gone
PAUSED_QUEUES = "conveyor:paused-queues"  # set: queues whose consumers workers cancel
PURGED_QUEUES = "conveyor:purged-queues"  # hash: queue -> epoch seconds of its last purge
PROGRESS = "progress"


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=repr)


def decode(raw: bytes | str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict) or "id" not in value or "k" not in value:
        raise ValueError(f"not a job event: {raw!r:.200}")
    return value


def keyed_by_ledger_id(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` keyed by ledger ids (``core.ids.ledger_id``): a task id that is not a UUID is
    replaced by the id derived from it and kept as ``xid``; parent and root ids likewise.
    Producers apply it before they touch a job's Redis keys (cancel flag, attempts, live
    channel), so the API, which knows a job by its ledger id, finds them."""
    job_id = event["id"]
    mapped = ledger_id(job_id)
    if mapped != job_id:
        event = {**event, "id": mapped, "xid": job_id}
    for key in ("parent_id", "root_id"):
        value = event.get(key)
        if isinstance(value, str) and ledger_id(value) != value:
            event = {**event, key: ledger_id(value)}
    return event


def now() -> float:
    return time.time()


def heartbeat_alive(beat: dict[str, Any], at: float) -> bool:
    """Whether a worker's heartbeat (its JSON, decoded) was fresh at epoch time ``at``."""
    return at - float(beat["heartbeat_at"]) < SILENT_BEATS * float(beat.get("interval") or 5)


ATTEMPTS_KEY = "conveyor:attempts:"  # + job id: deliveries that reached a worker
DONE_KEY = "conveyor:done:"  # + job id: its last attempt, once it ended (absorbs duplicates)
RUNS_KEY = "conveyor:runs:"  # + job id: hash of the publish nonces that started -> attempt
PUBLISH_NONCE = "conveyor_publish"  # message header: one value per publish (not per delivery)
RESEND = "conveyor_resend"  # message header: Conveyor re-sends a message it believes lost
# message header: the schedule whose fire this job is (the ledger row has it from the submit;
# the header lets task code read it as ``self.request.conveyor_schedule``)
SCHEDULE_HEADER = "conveyor_schedule"
# The scheduler's counters (fired, skipped_overlap, missed, buffered, cancelled_previous) and
# its last lag in seconds, one hash field each.
METRICS_SCHEDULES = "conveyor:metrics:schedules"

LIMIT_KEY = "conveyor:limit:"  # + rate|conc : task : key value

# Prometheus counters, kept by whoever sees the event, in the same round trip as the event:
# hash field JSON [kind, task, queue] -> count (kind: "submitted", a terminal state, "retrying");
# run times: field JSON [task, bucket index] -> count and [task, "sum"] -> seconds.
METRICS_JOBS = "conveyor:metrics:jobs"
METRICS_RUNTIME = "conveyor:metrics:runtime"
# Events the recorder could not write even after making their values storable (counter).
METRICS_UNRECORDABLE = "conveyor:metrics:unrecordable"
RUNTIME_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    float("inf"),
)


def count_field(kind: str, task: str, queue: str | None) -> str:
    return json.dumps([kind, task, queue or ""], separators=(",", ":"))


def runtime_fields(task: str, seconds: float) -> tuple[str, str]:
    """The (bucket, sum) fields of METRICS_RUNTIME for one attempt's run time."""
    slot = bisect.bisect_left(RUNTIME_BUCKETS, seconds)
    sep = (",", ":")
    return json.dumps([task, slot], separators=sep), json.dumps([task, "sum"], separators=sep)


# Outcomes of START.
STARTED, CANCELLED, DUPLICATE, OVER_CAP, RATE_WAIT, CONCURRENCY_FULL = 0, 1, 2, 3, 4, 5

# The worker's one round trip at task start. Counts the delivery as an attempt (so a message
# redelivered after its worker died is attempt 2, not 1 again) and, unless the job was cancelled,
# already finished, or is over its attempt cap, appends `running` and notifies subscribers.
# ARGV[1] is the event's JSON without its closing brace; the attempt number is added here.
#
# Finished (KEYS[5] holds the last attempt number): the delivery is a duplicate if it is the
# same publish again — its nonce (ARGV[12], set by the publishing process) already started
# (KEYS[6] holds the nonces that did), or it is a re-send (ARGV[13] = "1": Conveyor's own, or
# a broker redelivery of a message without a nonce). Any other delivery is a new publish that
# reuses the id: a new run, as in Celery, numbered on from the last attempt (`"rerun":true`),
# its attempt cap counted from there (KEYS[6] field `_base`).
#
# Limits (ARGV[4..9], empty when the task has none), checked before the attempt is counted:
# - concurrency: a sorted set of running job ids scored by when their claim lapses (the hard
#   time limit), so a claim of a worker that died frees itself;
# - rate: GCRA, twice. The rate key holds the theoretical arrival time of reservations: a job
#   over the rate reserves the next slot and is told how long to wait, and comes back with
#   ARGV[10] = "1" holding it, so waiting jobs come back spread out, in order. A reservation is
#   not a start, though: a job may come back late (its pool was busy) and find the next ones
#   back too, and starting them all at once broke the limit. So every start, reserved or not,
#   also passes a GCRA over actual starts (the rate key + ":started"), updated only by a start;
#   a job it holds back keeps its reservation and waits the little that is left.
START = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, 0} end
local nonce, resend = ARGV[12], ARGV[13]
local done = redis.call('GET', KEYS[5])
if done then
  if resend == '1' then return {2, 0} end
  if nonce ~= '' and redis.call('HEXISTS', KEYS[6], nonce) == 1 then return {2, 0} end
end
local conc_key, conc_max, conc_ttl = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local rate_key, interval, tolerance = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local slot = ARGV[10]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local job = ARGV[11]
if conc_key ~= '' then
  redis.call('ZREMRANGEBYSCORE', conc_key, '-inf', now)
  if not redis.call('ZSCORE', conc_key, job) and redis.call('ZCARD', conc_key) >= conc_max then
    return {5, 0}
  end
end
if rate_key ~= '' then
  if slot ~= '1' then
    local tat = tonumber(redis.call('GET', rate_key) or '0')
    if tat < now then tat = now end
    local allowed_at = tat - tolerance
    redis.call('SET', rate_key, tat + interval, 'PX', math.ceil(tat + interval - now + 60000))
    if allowed_at > now then return {4, math.ceil(allowed_at - now)} end
  end
  local started_key = rate_key .. ':started'
  local started = tonumber(redis.call('GET', started_key) or '0')
  if started < now then started = now end
  if started - tolerance > now then return {4, math.ceil(started - tolerance - now)} end
  local next_start = started + interval
  redis.call('SET', started_key, next_start, 'PX', math.ceil(next_start - now + 60000))
end
if conc_key ~= '' then
  redis.call('ZADD', conc_key, now + conc_ttl, job)
  redis.call('PEXPIRE', conc_key, conc_ttl + 60000)
end
local rerun = ''
if done then
  local last = tonumber(done) or 0
  redis.call('DEL', KEYS[5])
  redis.call('SET', KEYS[4], last)
  redis.call('HSET', KEYS[6], '_base', last)
  rerun = ',"rerun":true'
end
local n = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[3])
if nonce ~= '' then
  redis.call('HSET', KEYS[6], nonce, n)
  redis.call('EXPIRE', KEYS[6], ARGV[3])
end
local base = tonumber(redis.call('HGET', KEYS[6], '_base') or '0')
local cap = tonumber(ARGV[2])
if cap > 0 and n - base > cap then return {3, n} end
local doc = ARGV[1] .. ',"attempt":' .. n .. rerun .. '}'
redis.call('XADD', KEYS[1], '*', 'e', doc)
redis.call('PUBLISH', KEYS[3], doc)
return {0, n}
"""

# Any other event: append and notify; a terminal one also sets the done marker (to the attempt
# number, ARGV[10], from which a new run of the same id counts on) and drops the attempt
# counter; an attempt's end frees its concurrency claim. ARGV: event JSON, "1" if terminal,
# done-marker TTL in seconds, concurrency key ("" if none), job id, then the metrics: a
# METRICS_JOBS field to count ("" if none), a METRICS_RUNTIME bucket field ("" if none), its
# sum field and the seconds to add; then the attempt number.
RECORD = """
redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
if ARGV[2] == '1' then
  redis.call('SET', KEYS[3], ARGV[10], 'EX', ARGV[3])
  redis.call('DEL', KEYS[4])
end
if ARGV[4] ~= '' then redis.call('ZREM', ARGV[4], ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[6], 1) end
if ARGV[7] ~= '' then
  redis.call('HINCRBY', KEYS[6], ARGV[7], 1)
  redis.call('HINCRBYFLOAT', KEYS[6], ARGV[8], ARGV[9])
end
return 0
"""

# Progress: the same as RECORD for a non-terminal event, unless the job's cancel flag is set.
PROGRESS_UNLESS_CANCELLED = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 0
"""


def paused_queues(client: Any) -> set[str]:
    """The queues paused now (``Control.pause_queue``), from a ``redis.Redis`` client."""
    return {m.decode() for m in client.smembers(PAUSED_QUEUES)}
