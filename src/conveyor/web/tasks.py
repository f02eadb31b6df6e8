"""The tasks pages: every registered task with its limits and its last 24 hours (submitted,
outcomes, retries, failure rate, mean run time, from the ledger's per-minute statistics), and a
submit form per task generated from its argument schema."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.deps import ServicesDep
from conveyor.api.errors import status_for
from conveyor.api.routes.system import registered_tasks
from conveyor.errors import SubmitError, UnknownTask
from conveyor.ledger import stats
from conveyor.runtime.doctor import settings_risks
from conveyor.runtime.limits import limits_summary
from conveyor.web.pages import PageError, Pages, PagesDep, page_errors
from conveyor.web.session import page_scope
from conveyor.web.task_form import form_fields, parse_form

router = APIRouter()

MAX_FORM_BYTES = 256 * 1024


RECENT = timedelta(hours=24)


@router.get("/tasks", name="web_tasks", response_class=HTMLResponse)
def tasks_page(request: Request, services: ServicesDep, pages: PagesDep) -> HTMLResponse:
    """Registered tasks: queue, limits, and their last day from the ledger's statistics."""
    with page_errors(), services.engine.connect() as conn:
        recent = stats.totals(conn, datetime.now(UTC) - RECENT)
    tasks = registered_tasks(services)
    for t in tasks:
        t["limits_summary"] = limits_summary(t["limits"])
        t["recent"] = stats.TaskFigures.of(t["name"], recent.get(t["name"], {"run_seconds": 0.0}))
    context = {"tasks": tasks, "risks": settings_risks(services.app)}
    return pages.render(request, "tasks.html", context, active="tasks")


def registered_task(services: Any, name: str) -> dict[str, Any]:
    """The task ``name`` as ``GET /api/v1/tasks`` describes it; an unknown one is a 404 page."""
    for t in registered_tasks(services):
        if t["name"] == name:
            t["limits_summary"] = limits_summary(t["limits"])
            return t
    raise PageError(404, "Task not found", str(UnknownTask(name)))


def _render_task(
    request: Request,
    services: Any,
    pages: Pages,
    name: str,
    *,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    task = registered_task(services, name)
    context = {
        "task": task,
        "fields": form_fields(task["schema"]),
        "values": values,
        "queues": list(dict.fromkeys([task["queue"], *services.control.known_queues()])),
        "error": error,
    }
    return pages.render(request, "task.html", context, status_code=status_code, active="tasks")


@router.get("/tasks/{name}", name="web_task", response_class=HTMLResponse)
def task_page(name: str, request: Request, services: ServicesDep, pages: PagesDep) -> HTMLResponse:
    """One task: its documentation, schema, limits, and a form to submit it."""
    return _render_task(request, services, pages, name)


@router.post(
    "/tasks/{name}/submit",
    name="web_task_submit",
    dependencies=[Depends(page_scope("jobs:write"))],
)
async def submit(name: str, request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """Submit the task with the form's arguments; the new job's page, or the form again with
    what was wrong."""
    task = registered_task(services, name)
    form = {k: str(v) for k, v in (await request.form(max_files=0, max_fields=200)).items()}
    fields = form_fields(task["schema"])
    kwargs, problems = parse_form(fields, form)

    def again(message: str, status: int) -> HTMLResponse:
        return _render_task(
            request, services, pages, name, values=form, error=message, status_code=status
        )

    if problems:
        return again("; ".join(problems), 422)
    priority = form.get("priority", "").strip()
    countdown = form.get("countdown", "").strip()
    try:
        options: dict[str, Any] = {
            "queue": form.get("queue") or None,
            "priority": int(priority) if priority else None,
            "countdown": float(countdown) if countdown else None,
        }
    except ValueError:
        return again("priority must be a whole number 0..9 and countdown a number of seconds", 422)
    with page_errors():
        principal = request.state.principal
        if principal.restricted:
            principal.check_job(name, options["queue"] or task["queue"])
        try:
            job = services.control.prepare(name, [], kwargs, **options)
            row, _ = await asyncio.wrap_future(services.control.intake.submit(job).committed)
        except SubmitError as exc:
            return again(str(exc), status_for(exc))
    url = request.url_for("web_job", job_id=str(row["id"]))
    return RedirectResponse(str(url), status_code=303)
