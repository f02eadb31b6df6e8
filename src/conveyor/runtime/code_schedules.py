"""An app's ``beat_schedule`` entries as schedule specs, for ``ScheduleService.import_code``.

Celery's ``crontab`` becomes a cron trigger (in ``app.conf.timezone``); a number of seconds,
a ``timedelta`` or a ``celery.schedules.schedule`` an interval. Anything else (``solar``, a
custom schedule class) has no stored form: it is logged and skipped.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.schedules import schedule as interval_schedule

log = logging.getLogger(__name__)


def _cron_field(value: Any) -> str:
    if isinstance(value, str | int):
        return str(value).replace(" ", "")
    if isinstance(value, set | frozenset | list | tuple):
        return ",".join(str(v) for v in sorted(value))
    raise ValueError(f"cannot express {value!r} as a cron field")


def entry_spec(app: Celery, name: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The schedule spec of one ``beat_schedule`` entry, or None (logged) if it has none."""
    when = entry.get("schedule")
    spec: dict[str, Any] = {
        "task": entry.get("task"),
        "args": list(entry.get("args") or []),
        "kwargs": dict(entry.get("kwargs") or {}),
        "timezone": str(app.conf.timezone or "UTC"),
    }
    options = entry.get("options") or {}
    if options.get("queue"):
        spec["queue"] = options["queue"]
    if options.get("priority") is not None:
        spec["priority"] = options["priority"]
    if isinstance(when, bool):
        when = None
    if isinstance(when, int | float):
        spec["every"] = float(when)
    elif isinstance(when, timedelta):
        spec["every"] = when.total_seconds()
    elif isinstance(when, crontab):
        try:
            fields = (
                when._orig_minute,
                when._orig_hour,
                when._orig_day_of_month,
                when._orig_month_of_year,
                when._orig_day_of_week,
            )
            spec["cron"] = " ".join(_cron_field(f) for f in fields)
        except (AttributeError, ValueError) as exc:
            log.warning("beat_schedule entry %r skipped: %s", name, exc)
            return None
    elif isinstance(when, interval_schedule) and type(when) is interval_schedule:
        spec["every"] = when.run_every.total_seconds()
    else:
        log.warning(
            "beat_schedule entry %r skipped: its schedule %r is neither a crontab nor an "
            "interval; create it as a schedule through the API instead",
            name,
            when,
        )
        return None
    return spec


def code_schedules(app: Celery) -> dict[str, dict[str, Any]]:
    """Every ``beat_schedule`` entry of ``app`` that can be stored, by name."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in (app.conf.beat_schedule or {}).items():
        if not isinstance(entry, dict):
            log.warning("beat_schedule entry %r skipped: it is not a dict", name)
            continue
        spec = entry_spec(app, str(name), entry)
        if spec is not None:
            out[str(name)] = spec
    return out
