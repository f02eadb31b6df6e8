"""How the dashboard writes values for people: durations, times, rates, numbers and JSON.

Plain functions with no web or database imports, so templates, the live JSON endpoint and
unit tests share one definition. ``static/conveyor.js`` mirrors ``format_duration`` and
``format_rate`` for values it computes in the browser; keep the two in step.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, tzinfo
from typing import Any

from markupsafe import Markup, escape

DASH = "—"
JSON_DISPLAY_LIMIT = 100_000
"""Characters of pretty JSON shown inline; the rest is reachable through the API."""


def format_duration(seconds: float | None) -> str:
    """``0.25`` → ``250 ms``, ``4.2`` → ``4.2 s``, ``185`` → ``3m 05s``, ``7300`` → ``2h 01m``."""
    if seconds is None or math.isnan(seconds):
        return DASH
    seconds = max(0.0, seconds)
    # Thresholds sit where rounding would print "1000 ms" or "60.0 s".
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes}m {secs:02d}s"
    if whole < 86400:
        hours, rest = divmod(whole, 3600)
        return f"{hours}h {rest // 60:02d}m"
    days, rest = divmod(whole, 86400)
    return f"{days}d {rest // 3600:02d}h"


def format_rate(per_second: float | None) -> str | None:
    """Units per second, switching to per minute for slow work so the figure stays readable."""
    if per_second is None or per_second <= 0 or math.isnan(per_second):
        return None
    if per_second < 0.1:
        return f"{per_second * 60:.1f}/min"
    if per_second < 10:
        return f"{per_second:.2f}/s"
    return f"{per_second:,.0f}/s"


def format_number(value: float | None) -> str:
    """Whole numbers without a decimal point, others with up to two decimals."""
    if value is None:
        return DASH
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _moment(value: datetime | str | None) -> datetime | None:
    # Pack pages show rows as their JSON API gives them: timestamps as ISO 8601 text.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def format_time(value: datetime | str | None) -> str:
    """A timestamp in UTC, to the second: ``2025-11-22 13:48:01`` (from a datetime or ISO
    8601 text)."""
    value = _moment(value)
    if value is None:
        return DASH
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def format_from_now(value: datetime, now: datetime) -> str:
    """How far ``value`` is from ``now``, in :func:`format_duration`'s words: ``in 4m 00s``,
    ``12.0 s ago``, or ``now`` within a second."""
    seconds = (value - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    text = format_duration(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def format_clock(value: datetime, zone: tzinfo, now: datetime) -> str:
    """``value`` on the clock of ``zone``, named: ``14:05 UTC`` on the same day as ``now``
    there, else with the date, ``2026-12-06 14:05 Europe/Berlin``; seconds only when not
    zero (an interval schedule's fires)."""
    local = value.astimezone(zone)
    clock = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    if local.date() != now.astimezone(zone).date():
        clock = f"{local:%Y-%m-%d} {clock}"
    return f"{clock} {zone}"


def iso_time(value: datetime | str | None) -> str:
    """A machine-readable timestamp for ``<time datetime=…>`` (empty when unknown)."""
    value = _moment(value)
    return value.isoformat() if value is not None else ""


_CODE_SPAN = re.compile(r"``(.+?)``|`([^`]+)`")


def doc_summary(doc: str | None) -> Markup:
    """A docstring's first paragraph as one line of HTML: whitespace folded, code spans
    (reST ``double`` or Markdown `single` backquotes) as ``<code>``, the rest escaped."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    out: list[str] = []
    last = 0
    for found in _CODE_SPAN.finditer(text):
        out.append(escape(text[last : found.start()]))
        out.append(Markup("<code>{}</code>").format(found.group(1) or found.group(2)))
        last = found.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def epoch(value: datetime | None) -> float | None:
    """Seconds since the epoch, the unit the live events use."""
    return value.timestamp() if value is not None else None


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds, or None when either end is unknown."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def json_text(value: Any) -> str:
    """Indented JSON, whole. The text is raw: the template's autoescaping makes it safe."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def pretty_json(value: Any, limit: int = JSON_DISPLAY_LIMIT) -> str:
    """Indented JSON for a ``<pre>``, cut at ``limit`` characters with a note saying so."""
    return truncate(json_text(value), limit)


def truncate(text: str, limit: int = JSON_DISPLAY_LIMIT) -> str:
    """``text`` cut at ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… {len(text) - limit:,} more characters not shown"


def short_id(job_id: str) -> str:
    """The tail of a time-ordered UUID: its head is the timestamp and repeats across rows."""
    return job_id[-12:] if len(job_id) > 12 else job_id
