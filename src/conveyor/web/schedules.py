"""The schedules pages: every schedule with its trigger in words, next fire, last run and
failure streak; one schedule with its next fires, its runs (live, linked to their jobs) and its
actions (pause with a note, resume, trigger now, backfill, reset to code, delete); and the
create/edit form, generated from the task's signature as the task page's is, with a live
preview of the next fires.

Handlers stay thin: read the form (``schedule_form``), call ``ScheduleService``, render.
Actions answer with a 303 back to the schedule, so reloading never repeats them; a refusal
renders the form (or page) again with the reason next to the field it names.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from conveyor.api.auth import Principal, authorize_submit
from conveyor.api.deps import Services, ServicesDep
from conveyor.api.errors import status_for
from conveyor.control import task_queue
from conveyor.errors import ConveyorError, ScheduleNotFound
from conveyor.ledger.schedule_store import ScheduleFilter
from conveyor.schedules import SchedulePatch, ScheduleSpec
from conveyor.web.formatting import seconds_between
from conveyor.web.pages import PageError, Pages, PagesDep, page_errors
from conveyor.web.schedule_form import (
    OPTION_FIELDS,
    OVERLAP_POLICIES,
    TIME_FIELDS,
    TRIGGER_KINDS,
    errors_by_field,
    read_schedule_form,
)
from conveyor.web.schedule_text import next_fire_in_words, trigger_in_words, zone
from conveyor.web.session import page_scope
from conveyor.web.task_form import form_fields
from conveyor.web.tasks import registered_task

router = APIRouter(include_in_schema=False)

# Creating, changing and firing schedules asks what submitting jobs asks, as in the API.
WRITE = [Depends(page_scope("jobs:write"))]
NEXT_FIRES = 5
PREVIEW_FIRES = 5
RUNS = 20

NOTICES: dict[str, str] = {
    "created": "Created: the scheduler picks it up within a second.",
    "updated": "Saved: the scheduler follows the change within a second.",
    "paused": "Paused: no fire runs until it is resumed.",
    "resumed": "Resumed: it fires again from its next fire time.",
    "triggered": "Triggered: a run was submitted now; it shows in the runs below.",
    "backfilled": "Backfill submitted: one run per fire time in the range.",
    "reset": "Reset to the code's version: your overrides are gone.",
    "deleted": "Deleted the schedule; the jobs it started stay in the ledger.",
}
"""Messages an action can leave for the page it redirects to; the URL carries only the key."""


@cache
def timezones() -> list[str]:
    """IANA zone names, for the timezone field's suggestions."""
    return sorted(zoneinfo.available_timezones())


@contextmanager
def schedule_errors() -> Iterator[None]:
    """``page_errors``, and an unknown schedule as a 404 page."""
    with page_errors():
        try:
            yield
        except ScheduleNotFound as exc:
            raise PageError(404, "Schedule not found", str(exc)) from None


def sees(principal: Principal, services: Services, s: dict[str, Any]) -> bool:
    """Whether ``principal`` may see schedule ``s``: a key limited to some tasks or queues
    sees the schedules it could submit, as in the API. (The login refuses such keys today; the
    pages check anyway, as the task page does, should that change.)"""
    queue = s["queue"] or task_queue(services.app, s["task"])
    return not principal.restricted or principal.sees(s["task"], queue)


def schedule_row(s: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the list and the page show of one schedule besides its fields (``ScheduleOut``):
    the trigger and next fire in words, the latest run."""
    return {
        "s": s,
        "trigger": trigger_in_words(
            s["trigger_kind"],
            cron=s["cron"],
            every=s["every"],
            at=s["at"],
            timezone=s["timezone"],
            now=now,
        ),
        "next": next_fire_in_words(s["next_fire_at"], now, s["timezone"], paused=s["paused"]),
        "last_run": s["last_runs"][0] if s["last_runs"] else None,
    }


@router.get("/schedules", name="web_schedules", response_class=HTMLResponse)
def schedules_page(
    request: Request, services: ServicesDep, pages: PagesDep, notice: str | None = None
) -> HTMLResponse:
    """Every schedule: trigger in words, next fire, last run, failure streak, badges."""
    now = datetime.now(UTC)
    with schedule_errors():
        found = services.schedules.list(ScheduleFilter(retired=None))
    principal = request.state.principal
    context = {
        "schedules": [schedule_row(s, now) for s in found if sees(principal, services, s)],
        "notice": NOTICES.get(notice or ""),
    }
    return pages.render(request, "schedules.html", context, active="schedules")


# ---------------------------------------------------------------- the form


def _form_context(
    services: Services,
    task_name: str | None,
    values: dict[str, str],
    errors: dict[str, str],
    preview: list[datetime] | None = None,
) -> dict[str, Any]:
    task = registered_task(services, task_name) if task_name else None
    now = datetime.now(UTC)
    timezone = values.get("timezone") or "UTC"
    return {
        "task": task,
        "task_names": sorted(t for t in services.app.tasks if not t.startswith("celery.")),
        "fields": form_fields(task["schema"]) if task else [],
        "queues": list(
            dict.fromkeys([*([task["queue"]] if task else []), *services.control.known_queues()])
        ),
        "values": values,
        "errors": errors,
        "kinds": TRIGGER_KINDS,
        "overlaps": OVERLAP_POLICIES,
        "timezones": timezones(),
        "preview": [(t, next_fire_in_words(t, now, timezone)) for t in preview or []],
        "error": errors.get("") or ("Fix the fields marked below." if errors else None),
    }


def _render_form(
    request: Request,
    pages: Pages,
    context: dict[str, Any],
    *,
    schedule: Any = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {**context, "schedule": schedule}
    return pages.render(
        request, "schedule_form.html", context, status_code=status_code, active="schedules"
    )


def _values_of(s: dict[str, Any], names: list[str]) -> dict[str, str]:
    """A stored schedule as the form shows it: its arguments (``names``: the task's, in the
    signature's order) and options as text, its times on its zone's clock."""
    tz = zone(s["timezone"])
    values: dict[str, str] = {
        "name": s["name"],
        "queue": s["queue"] or "",
        "kind": s["trigger_kind"],
        "cron": s["cron"] or "",
        "timezone": s["timezone"],
        "overlap": s["overlap"],
    }
    for key in ("priority", "every", "catchup_window", "catchup_max", "jitter", "max_runs"):
        value = s[key]
        values[key] = "" if value is None else f"{value:g}"
    for key in TIME_FIELDS:
        moment = s[key]
        values[key] = moment.astimezone(tz).strftime("%Y-%m-%dT%H:%M") if moment else ""
    # Positional arguments (as code declares them) fill the signature's fields in order; the
    # form saves every argument by keyword.
    args = s["args"] or []
    given = {**dict(zip(names, args, strict=False)), **(s["kwargs"] or {})}
    for name, value in given.items():
        values[name] = value if isinstance(value, str) else json.dumps(value)
    # What no named parameter takes (a task of *args) stays positional, as JSON.
    values["positional_args"] = json.dumps(args[len(names) :]) if args[len(names) :] else ""
    return values


def _refusal(exc: Exception, known: list[str]) -> tuple[dict[str, str], int]:
    """A service's refusal as errors by form field, and the status to answer with."""
    if isinstance(exc, ValidationError):
        found = [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()]
        return errors_by_field(found, known), 422
    assert isinstance(exc, ConveyorError)
    problems = getattr(exc, "problems", None)
    errors = errors_by_field(problems, known) if problems else {"": str(exc)}
    return errors, status_for(exc)


async def _posted(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=200)
    return {k: str(v) for k, v in form.items() if k != "csrf_token"}


@router.get("/schedules/new", name="web_schedule_new", response_class=HTMLResponse)
def new_schedule_page(
    request: Request, services: ServicesDep, pages: PagesDep, task: str | None = None
) -> HTMLResponse:
    """The create form: first the task, then its arguments, the trigger and the policies."""
    values = {"kind": "cron", "cron": "*/5 * * * *", "timezone": "UTC", "overlap": "skip"}
    context = _form_context(services, task or None, values, {})
    return _render_form(request, pages, context)


async def _save(
    request: Request,
    services: Services,
    pages: Pages,
    schedule: dict[str, Any] | None = None,
) -> Response:
    """Create (``schedule`` None) or update from the posted form; the preview button asks
    for the next fires only, storing nothing."""
    values = await _posted(request)
    task_name = schedule["task"] if schedule is not None else values.get("task", "").strip()
    if not task_name:
        context = _form_context(services, None, values, {"task": "choose a task"})
        return _render_form(request, pages, context, status_code=422)
    task = registered_task(services, task_name)
    fields = form_fields(task["schema"])
    known = [*OPTION_FIELDS, "task", *(f.name for f in fields)]
    spec, errors = read_schedule_form(values, fields)
    spec["task"] = task_name
    preview: list[datetime] | None = None
    if not errors:
        try:
            with page_errors():
                authorize_submit(request.state.principal, services, task_name, spec["queue"])
                checked = ScheduleSpec(**{**spec, "name": spec["name"] or "preview"})
                preview = services.schedules.preview(checked, PREVIEW_FIRES)["next_fires"]
                if values.get("op") != "preview":
                    if schedule is None:
                        saved = services.schedules.create(ScheduleSpec(**spec))
                    else:
                        patch = SchedulePatch(**spec)
                        saved = services.schedules.update(str(schedule["id"]), patch)
                    key = "created" if schedule is None else "updated"
                    return _to_schedule(request, saved["id"], key)
        except (ConveyorError, ValidationError) as exc:
            errors, status = _refusal(exc, known)
            context = _form_context(services, task_name, values, errors)
            return _render_form(request, pages, context, schedule=schedule, status_code=status)
    context = _form_context(services, task_name, values, errors, preview)
    return _render_form(
        request, pages, context, schedule=schedule, status_code=422 if errors else 200
    )


@router.post("/schedules/new", name="web_schedule_create", dependencies=WRITE)
async def create_schedule(request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """Create the schedule from the form; its page, or the form again with what was wrong."""
    return await _save(request, services, pages)


@router.post("/schedules/preview", name="web_schedule_preview", response_class=HTMLResponse)
async def preview_fires(request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """The form's live preview: the next fires of the schedule as typed so far (nothing is
    stored), or what keeps it from firing, as the fragment the page's script swaps in."""
    values = await _posted(request)
    task_name = values.get("task", "").strip()
    fires: list[tuple[datetime, str]] = []
    problem = None
    now = datetime.now(UTC)
    try:
        fields = form_fields(registered_task(services, task_name)["schema"]) if task_name else []
        spec, errors = read_schedule_form(values, fields)
        spec["task"] = task_name
        if errors:
            problem = "; ".join(f"{k}: {v}" if k else v for k, v in errors.items())
        else:
            checked = ScheduleSpec(**{**spec, "name": spec["name"] or "preview"})
            with page_errors():
                moments = services.schedules.preview(checked, PREVIEW_FIRES)["next_fires"]
            fires = [(t, next_fire_in_words(t, now, values.get("timezone"))) for t in moments]
    except (ConveyorError, ValidationError) as exc:
        errors, _ = _refusal(exc, [*OPTION_FIELDS, "task"])
        problem = "; ".join(f"{k}: {v}" if k else v for k, v in errors.items())
    response = pages.render(
        request,
        "schedule_preview.html",
        {"fires": fires, "problem": problem, "zone": values.get("timezone") or "UTC"},
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- one schedule


def _load(request: Request, services: Services, ref: str) -> dict[str, Any]:
    """The schedule ``ref`` (id or name); a 404 page when unknown or not the viewer's to see."""
    with schedule_errors():
        s = services.schedules.get(ref)
        if not sees(request.state.principal, services, s):
            raise ScheduleNotFound(ref)
    return s


def _to_schedule(request: Request, schedule_id: str, notice: str) -> RedirectResponse:
    url = request.url_for("web_schedule", schedule_id=schedule_id)
    return RedirectResponse(str(url.include_query_params(notice=notice)), status_code=303)


def render_schedule(
    request: Request,
    services: Services,
    pages: Pages,
    schedule_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The schedule page; an unknown id is a 404 page."""
    now = datetime.now(UTC)
    s = _load(request, services, schedule_id)
    with schedule_errors():
        waiting = not s["paused"] and not s["retired_at"]
        fires = services.schedules.next_fires(s["id"], NEXT_FIRES) if waiting else []
        runs = services.schedules.runs(s["id"], RUNS)
    for run in runs:
        run["duration"] = seconds_between(run["started_at"], run["finished_at"])
    context = {
        **schedule_row(s, now),
        "fires": [(t, next_fire_in_words(t, now, s["timezone"])) for t in fires],
        "runs": runs,
        "overlaps": OVERLAP_POLICIES,
        "notice": notice,
        "error": error,
    }
    return pages.render(
        request, "schedule.html", context, status_code=status_code, active="schedules"
    )


@router.get("/schedules/{schedule_id}", name="web_schedule", response_class=HTMLResponse)
def schedule_page(
    schedule_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: str | None = None,
) -> HTMLResponse:
    """One schedule: trigger, policies, next fires, runs, actions."""
    return render_schedule(request, services, pages, schedule_id, notice=NOTICES.get(notice or ""))


@router.get("/schedules/{schedule_id}/edit", name="web_schedule_edit", response_class=HTMLResponse)
def edit_schedule_page(
    schedule_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> HTMLResponse:
    """The edit form, filled in with the schedule as stored."""
    s = _load(request, services, schedule_id)
    with schedule_errors():
        fires = services.schedules.next_fires(s["id"], PREVIEW_FIRES)
    names = [f.name for f in form_fields(registered_task(services, s["task"])["schema"])]
    context = _form_context(services, s["task"], _values_of(s, names), {}, fires)
    return _render_form(request, pages, context, schedule=s)


@router.post("/schedules/{schedule_id}/edit", name="web_schedule_update", dependencies=WRITE)
async def update_schedule(
    schedule_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """Save the edited schedule; its page, or the form again with what was wrong."""
    return await _save(request, services, pages, _load(request, services, schedule_id))


def _act(
    request: Request,
    services: Services,
    pages: Pages,
    schedule_id: str,
    notice: str,
    action: Any,
) -> Response:
    """Run ``action(service, id)``; back to the schedule with ``notice``, or its page with the
    refusal."""
    s = _load(request, services, schedule_id)
    try:
        with schedule_errors():
            action(services.schedules, s["id"])
    except ConveyorError as exc:
        return render_schedule(
            request, services, pages, s["id"], error=str(exc), status_code=status_for(exc)
        )
    return _to_schedule(request, s["id"], notice)


@router.post("/schedules/{schedule_id}/pause", name="web_schedule_pause", dependencies=WRITE)
def pause_schedule(
    schedule_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Pause, with an optional note saying why (shown on the list and the page)."""
    return _act(
        request, services, pages, schedule_id, "paused", lambda svc, i: svc.pause(i, note.strip())
    )


@router.post("/schedules/{schedule_id}/resume", name="web_schedule_resume", dependencies=WRITE)
def resume_schedule(
    schedule_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """Resume a paused schedule."""
    return _act(request, services, pages, schedule_id, "resumed", lambda svc, i: svc.resume(i))


@router.post("/schedules/{schedule_id}/trigger", name="web_schedule_trigger", dependencies=WRITE)
def trigger_schedule(
    schedule_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """Run the schedule's task now, once, as one of its runs (overlap and max runs do not
    apply)."""
    return _act(request, services, pages, schedule_id, "triggered", lambda svc, i: svc.trigger(i))


@router.post("/schedules/{schedule_id}/reset", name="web_schedule_reset", dependencies=WRITE)
def reset_schedule(
    schedule_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """Drop a code schedule's overrides: back to what the code declares."""
    return _act(request, services, pages, schedule_id, "reset", lambda svc, i: svc.reset_to_code(i))


@router.post("/schedules/{schedule_id}/backfill", name="web_schedule_backfill", dependencies=WRITE)
def backfill_schedule(
    schedule_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    start: Annotated[str, Form()] = "",
    end: Annotated[str, Form()] = "",
) -> Response:
    """Submit one run for each fire time between start and end (the schedule's wall times)."""
    from conveyor.web.schedule_form import wall_time

    s = _load(request, services, schedule_id)
    try:
        span = (wall_time(start.strip(), s["timezone"]), wall_time(end.strip(), s["timezone"]))
    except ValueError as exc:
        message = f"Backfill: {exc}"
        return render_schedule(request, services, pages, s["id"], error=message, status_code=422)
    return _act(
        request, services, pages, schedule_id, "backfilled", lambda svc, i: svc.backfill(i, *span)
    )


@router.post("/schedules/{schedule_id}/delete", name="web_schedule_delete", dependencies=WRITE)
def delete_schedule(schedule_id: str, request: Request, services: ServicesDep) -> Response:
    """Delete the schedule (its jobs stay in the ledger); back to the list."""
    s = _load(request, services, schedule_id)
    with schedule_errors():
        services.schedules.delete(s["id"])
    url = request.url_for("web_schedules").include_query_params(notice="deleted")
    return RedirectResponse(str(url), status_code=303)


@router.get("/schedules/{schedule_id}/{action}", include_in_schema=False)
def action_get_fallback(schedule_id: str, action: str, request: Request) -> Response:
    """A GET of an action's URL (a bookmark, the back button) shows the schedule."""
    url = request.url_for("web_schedule", schedule_id=schedule_id)
    return RedirectResponse(str(url), status_code=303)
