"""The schedule form: what it offers, what comes back, and where each problem is shown.

Plain functions over the submitted fields. Arguments are read by ``task_form`` from the task's
signature as the task page reads them; the trigger, timezone and policies are passed on as
typed (``5m`` stays ``5m``) for the schedule service to judge, which has the last word and
whose refusals are shown next to the fields they name. Times typed in the form's
``datetime-local`` inputs are wall times of the schedule's timezone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conveyor.web.task_form import FormField, parse_form

TRIGGER_KINDS: dict[str, str] = {
    "cron": "Cron",
    "interval": "Interval",
    "at": "One-off",
}
OVERLAP_POLICIES: dict[str, str] = {
    "skip": "skip a fire while the previous run is active",
    "buffer_one": "buffer one fire until the previous run ends",
    "allow_all": "start every fire",
    "cancel_previous": "cancel the previous run, then start",
}
TIME_FIELDS = ("at", "start_at", "end_at")
"""Form fields holding a wall time of the schedule's zone."""
OPTION_FIELDS = (
    "name",
    "queue",
    "priority",
    "kind",
    "cron",
    "every",
    "timezone",
    "overlap",
    "catchup_window",
    "catchup_max",
    "jitter",
    "max_runs",
    "positional_args",
    *TIME_FIELDS,
)
"""The form's own fields besides the task's arguments (which a task may name alike: the
arguments are read first from the field list the signature gives, so none is lost)."""


def wall_time(text: str, timezone: str) -> datetime:
    """``2026-12-24T18:00`` read on the clock of ``timezone`` (or carrying its own offset);
    ValueError saying what to type otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a time like 2026-12-24T18:00") from None
    if moment.tzinfo is not None:
        return moment
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("fix the timezone first: this time is read in it") from None
    return moment.replace(tzinfo=zone)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a whole number") from None


def _seconds_or_text(text: str) -> float | str:
    """A number of seconds as a number; ``5m`` and friends as typed, for the service."""
    try:
        return float(text)
    except ValueError:
        return text


def read_schedule_form(
    form: Mapping[str, str], fields: list[FormField]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The schedule as the service's input (``ScheduleSpec`` fields: every one the form
    has, None where left empty, so an edit can clear a field), and what is wrong, keyed by the
    form field to show it under. The chosen trigger kind's input alone is passed on."""
    kwargs, problems = parse_form(fields, dict(form))
    errors = dict(problem.split(": ", 1) for problem in problems)
    text = {key: (form.get(key) or "").strip() for key in OPTION_FIELDS}
    spec: dict[str, Any] = {"args": [], "kwargs": kwargs}
    if text["positional_args"]:
        try:
            spec["args"] = json.loads(text["positional_args"])
        except ValueError as exc:
            errors["positional_args"] = f"not valid JSON ({exc})"
        if not isinstance(spec["args"], list):
            errors["positional_args"] = "must be a JSON list, e.g. [1, 2]"
            spec["args"] = []
    for key in ("name", "queue", "timezone", "overlap"):
        spec[key] = text[key] or None
    kind = text["kind"] or "cron"
    if kind not in TRIGGER_KINDS:
        errors["kind"] = f"choose one of {', '.join(TRIGGER_KINDS)}"
    needed = {"cron": "cron", "interval": "every", "at": "at"}.get(kind)
    if needed and not text[needed]:
        errors[needed] = f"required for a {TRIGGER_KINDS[kind].lower()} schedule"
    spec["cron"] = text["cron"] if kind == "cron" else None
    spec["every"] = _seconds_or_text(text["every"]) if kind == "interval" else None
    for key in ("catchup_window", "jitter"):
        spec[key] = _seconds_or_text(text[key]) if text[key] else None
    for key in ("priority", "catchup_max", "max_runs"):
        spec[key] = None
        if text[key]:
            try:
                spec[key] = _integer(text[key])
            except ValueError as exc:
                errors[key] = str(exc)
    for key in TIME_FIELDS:
        spec[key] = None
        if key == "at" and kind != "at":
            continue
        if text[key]:
            try:
                spec[key] = wall_time(text[key], text["timezone"])
            except ValueError as exc:
                errors[key] = str(exc)
    return spec, errors


def errors_by_field(problems: Iterable[Mapping[str, Any]], known: Iterable[str]) -> dict[str, str]:
    """A refusal's problems (``{"loc": [...], "msg": ...}``, as the API answers them) keyed by
    the form field each names; what names no field of the form goes under ``""``."""
    fields = set(known)
    out: dict[str, str] = {}
    for problem in problems:
        loc = [str(part) for part in problem.get("loc") or ()]
        # ("kwargs", "x") and ("x",) both mean the argument x; ("trigger", "cron") the cron.
        name = next((part for part in reversed(loc) if part in fields), "")
        message = str(problem.get("msg", ""))
        out[name] = f"{out[name]}; {message}" if name in out else message
    return out
