"""A schedule's trigger and its next fire in words, for the dashboard and the CLI.

Plain functions with no web or database imports. A cron expression is described by
``cron-descriptor`` (never parsed here); the shorthand aliases, which it does not know, are
looked up. Times go through ``formatting`` like every other time the dashboard shows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import ExpressionDescriptor, Options

from conveyor.web.formatting import format_clock, format_from_now

ALIASES = {
    "@hourly": "every hour, on the hour",
    "@daily": "every day at 00:00",
    "@midnight": "every day at 00:00",
    "@weekly": "every Sunday at 00:00",
    "@monthly": "on the 1st of every month at 00:00",
    "@yearly": "every 1 January at 00:00",
    "@annually": "every 1 January at 00:00",
}

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name``; UTC when it is empty or unknown (the service refuses unknown
    names on input, so this only guards what is shown)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def cron_in_words(expr: str) -> str:
    """``0 2 * * 0`` → ``at 02:00, only on Sunday``; the expression itself when it cannot be
    described."""
    text = expr.strip()
    if text.lower() in ALIASES:
        return ALIASES[text.lower()]
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        described = str(ExpressionDescriptor(text, options).get_description())
    except Exception:  # words are a courtesy: an odd expression is shown as it is
        return text
    return described[:1].lower() + described[1:]


def interval_in_words(every: float | timedelta) -> str:
    """``300`` → ``every 5 minutes``; the largest unit that divides the interval exactly."""
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"every {unit}" if n == 1 else f"every {n} {unit}s"
    n_text = f"{seconds:g}"
    return "every second" if seconds == 1 else f"every {n_text} seconds"


def trigger_in_words(
    kind: str,
    *,
    cron: str | None = None,
    every: float | timedelta | None = None,
    at: datetime | None = None,
    timezone: str | None = None,
    now: datetime | None = None,
) -> str:
    """A trigger as a sentence: ``every 5 minutes``, ``at 02:00, only on Sunday
    (Europe/Berlin)``, ``once, 2026-12-24 18:00 UTC``."""
    tz = zone(timezone)
    if kind == "cron" and cron:
        words = cron_in_words(cron)
        # A cron's wall times are the schedule's zone's; say which when it is not UTC.
        return words if tz.key == "UTC" else f"{words} ({tz.key})"
    if kind == "interval" and every is not None:
        return interval_in_words(every)
    if kind in ("at", "once", "one-off", "oneoff") and at is not None:
        return f"once, {format_clock(at, tz, now or datetime.now(UTC))}"
    return kind


def next_fire_in_words(
    when: datetime | None, now: datetime, timezone: str | None = None, *, paused: bool = False
) -> str:
    """``in 4m 00s · 14:05 UTC · 15:05 Europe/Berlin``: how far, in UTC, and in the
    schedule's zone when it is another; the page's script adds the viewer's own zone."""
    if paused:
        return "paused"
    if when is None:
        return "no further fires"
    parts = [format_from_now(when, now), format_clock(when, ZoneInfo("UTC"), now)]
    tz = zone(timezone)
    if tz.key != "UTC":
        parts.append(format_clock(when, tz, now))
    return " · ".join(parts)
