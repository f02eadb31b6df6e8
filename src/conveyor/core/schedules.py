"""Schedule triggers and their fire times: cron, interval, one-off.

A trigger is one of three kinds:

- ``cron``: five fields (minute hour day-of-month month day-of-week) or an alias (``@hourly``,
  ``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``), read by
  `cronsim <https://github.com/cuu508/cronsim>`_ in the schedule's timezone;
- ``interval``: every N seconds (``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"2d"``), counted from
  an anchor (the schedule's start, else the Unix epoch, so "every 5m" fires on :00, :05, ...);
- ``at``: once, at an aware instant.

DST, for cron triggers at a fixed hour and minute (cronsim's Debian-cron rule): a wall time
that does not exist that day (02:30 on a spring-forward night) fires once, at the next valid
instant (03:00); a wall time that happens twice (02:30 on a fall-back night) fires once, at
its first occurrence. Triggers with ``*`` in the minute or hour field step through real
instants instead, so "every 15 minutes" stays every 15 real minutes across a transition.
Intervals and one-offs are instants and ignore DST.

No celery, sqlalchemy or fastapi here: the service, the engine and the form all use this.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from conveyor.errors import InvalidSchedule

TriggerKind = Literal["cron", "interval", "at"]

CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
CRON_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
MAX_INTERVAL = 366 * 86400.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Trigger:
    """When a schedule fires: exactly one of ``cron`` / ``every`` / ``at`` for its kind."""

    kind: TriggerKind
    cron: str | None = None
    every: float | None = None  # seconds
    at: datetime | None = None
    anchor: datetime | None = None  # intervals count from here (None: the epoch)

    def describe(self) -> str:
        if self.kind == "cron":
            return f"cron {self.cron}"
        if self.kind == "interval":
            return f"every {format_interval(self.every or 0)}"
        return f"once at {self.at.isoformat() if self.at else '?'}"


def parse_cron(expr: str) -> str:
    """The five-field form of a cron expression or alias; InvalidSchedule naming the field
    that is wrong otherwise."""
    text = " ".join(str(expr).split())
    if text.lower() in CRON_ALIASES:
        return CRON_ALIASES[text.lower()]
    if text.startswith("@"):
        raise InvalidSchedule(
            "cron", f"unknown alias {text!r}; known: {', '.join(sorted(CRON_ALIASES))}"
        )
    parts = text.split(" ") if text else []
    if len(parts) != 5:
        raise InvalidSchedule(
            "cron",
            f"needs 5 fields ({' '.join(CRON_FIELDS)}), got {len(parts)}",
        )
    # Each field on its own (the others wildcards), so the message names the one that is wrong.
    for i, name in enumerate(CRON_FIELDS):
        probe = ["*"] * 5
        probe[i] = parts[i]
        try:
            CronSim(" ".join(probe), EPOCH)
        except CronSimError:
            raise InvalidSchedule(
                "cron", f"the {name} field {parts[i]!r} is not valid in {text!r}"
            ) from None
    try:
        CronSim(text, EPOCH)  # together (day 31 of February only, say)
    except CronSimError as exc:
        raise InvalidSchedule("cron", f"{text!r}: {str(exc).lower()} (no such date)") from None
    return text


def parse_interval(value: str | float | int) -> float:
    """Seconds in an interval given as a number of seconds or ``90s``/``5m``/``1h``/``2d``."""
    if isinstance(value, bool):
        raise InvalidSchedule("every", "must be a number of seconds or like 90s, 5m, 1h, 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _INTERVAL.match(value)
        if match is None:
            raise InvalidSchedule(
                "every", f"{value!r} is not an interval; write seconds or like 90s, 5m, 1h, 2d"
            )
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidSchedule("every", "must be more than 0 seconds")
    if seconds > MAX_INTERVAL:
        raise InvalidSchedule("every", "must be at most 366 days")
    return seconds


def format_interval(seconds: float) -> str:
    """``300`` → ``5m``; the largest unit that divides it, else seconds."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; InvalidSchedule if there is none of that name."""
    try:
        if not name or name != name.strip() or ".." in name or name.startswith("/"):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(
            "timezone", f"unknown timezone {name!r}; use an IANA name like Europe/Berlin or UTC"
        ) from None


def aware(value: datetime, field: str) -> datetime:
    """``value`` in UTC; InvalidSchedule if it has no timezone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSchedule(field, "needs a timezone (like 2026-12-05T09:00:00+01:00 or Z)")
    return value.astimezone(UTC)


def iter_fires(trigger: Trigger, tz: str, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after``, earliest first, as aware UTC datetimes (lazily:
    a cron trigger is stepped only as far as the caller reads)."""
    after = aware(after, "after")
    if trigger.kind == "cron":
        for fire in CronSim(trigger.cron or "", after.astimezone(zone(tz))):
            yield fire.astimezone(UTC)
    elif trigger.kind == "interval":
        every = trigger.every or 0.0
        anchor = trigger.anchor.astimezone(UTC) if trigger.anchor else EPOCH
        k = 0 if after < anchor else math.floor((after - anchor).total_seconds() / every) + 1
        step = timedelta(seconds=every)
        fire = anchor + step * k
        while fire <= after:  # float rounding at large k
            fire += step
        while True:
            yield fire
            fire += step
    elif trigger.at is not None and trigger.at > after:
        yield trigger.at.astimezone(UTC)


def next_fires(trigger: Trigger, tz: str, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times strictly after ``after``, as aware UTC datetimes."""
    if n <= 0:
        aware(after, "after")
        return []
    return list(itertools.islice(iter_fires(trigger, tz, after), n))


def fires_between(
    trigger: Trigger, tz: str, start: datetime, end: datetime, limit: int
) -> list[datetime]:
    """Fire times in ``(start, end]``, at most ``limit`` of them (the earliest)."""
    within = itertools.takewhile(lambda fire: fire <= end, iter_fires(trigger, tz, start))
    return list(itertools.islice(within, limit))


def jitter_offset(key: str, jitter: float) -> float:
    """A delay in ``[0, jitter)`` seconds that depends only on ``key`` (a fire's identity):
    every replica and every retry of a fire computes the same one."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter
