"""Dashboard pages for jobs: the list, one job, its cancel and retry buttons, live refresh.

Handlers stay thin: parse, read through the ledger repository (``job_views``) or act through
``services.control``, render. Actions answer with a 303 back to the job page, so reloading
the page never repeats them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import Connection

from conveyor.api.deps import Services, ServicesDep
from conveyor.api.errors import status_for
from conveyor.api.routes.jobs import job_event_stream
from conveyor.config import PRIORITY_QUEUES
from conveyor.core.ids import parse_job_id
from conveyor.core.states import JobState
from conveyor.errors import InvalidTransition, JobNotFound, ScheduleNotFound, SubmitError
from conveyor.ledger import repository as repo
from conveyor.ledger.workflows import get_workflow_row
from conveyor.web.job_views import (
    STATES,
    JobDetail,
    job_summary,
    live_jobs,
    load_job_detail,
)
from conveyor.web.jobs_bulk import BULK_MAX, bulk_notice
from conveyor.web.list_query import WITHIN, ListQuery
from conveyor.web.pages import Pages, PagesDep, page_errors
from conveyor.web.session import page_scope

router = APIRouter(include_in_schema=False)

NOTICES: dict[str, str] = {
    "cancelled": "Cancelled: the job will not run.",
    "cancel_requested": (
        "Cancel requested: the job stops at its next progress or cancel check, "
        "or is terminated after a grace period."
    ),
    "retried": "Retry submitted: this is a new job with the same task and arguments.",
    "replayed": "Replayed: this is a new job, linked to the dead one it replaces.",
}
"""Messages an action can leave for the page it redirects to; the URL carries only the key."""


def task_names(services: Services) -> list[str]:
    """Registered task names, for the task filter's suggestions."""
    return sorted(name for name in services.app.tasks if not name.startswith("celery."))


def queue_names(services: Services) -> list[str]:
    """Known queues in priority order, for the queue filter's suggestions."""
    declared = [str(q) for q in services.app.amqp.queues]
    return list(dict.fromkeys([*services.settings.queues, *PRIORITY_QUEUES, *declared]))


def schedule_name(services: Services, schedule_id: str | None) -> str | None:
    """The name of the schedule the list is filtered by, for its label (None: no filter)."""
    if schedule_id is None:
        return None
    try:
        return str(services.schedules.get(schedule_id)["name"])
    except ScheduleNotFound:
        return "a deleted schedule"


def workflow_name(conn: Connection, workflow_id: str | None) -> str | None:
    """The name of the workflow the list is filtered by, for its label (None: no filter)."""
    if workflow_id is None:
        return None
    row = get_workflow_row(conn, workflow_id)
    if row is None:
        return "an unknown workflow"
    return str(row["name"] or workflow_id)


@router.get("/jobs", name="web_jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    state: Annotated[list[str] | None, Query()] = None,
    task: str | None = None,
    queue: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: str | None = None,
    within: str | None = None,
    after: str | None = None,
    before: str | None = None,
    schedule: str | None = None,
    workflow: str | None = None,
    notice: str | None = None,
    n: int = 0,
    m: int = 0,
) -> HTMLResponse:
    """Jobs newest first, filtered by state, task, queue, time, text, the schedule that fired
    them and their workflow; per-state counts on top."""
    query = ListQuery.parse(
        state,
        task,
        queue,
        q,
        cursor,
        limit,
        within=within,
        after=after,
        before=before,
        schedule=schedule,
        workflow=workflow,
    )
    now = datetime.now(UTC)
    with page_errors(), services.engine.connect() as conn:
        rows, next_cursor = repo.list_jobs(
            conn, query.job_filter(), limit=query.limit, cursor=query.cursor
        )
        counts = repo.state_counts(conn)
        named = workflow_name(conn, query.workflow)
    context: dict[str, Any] = {
        "query": query,
        "jobs": [job_summary(r, now) for r in rows],
        "next_cursor": next_cursor,
        "counts": counts,
        "total": sum(counts.values()),
        "states": STATES,
        "task_names": task_names(services),
        "queue_names": queue_names(services),
        "error": "; ".join(query.problems) or None,
        "notice": bulk_notice(notice, n, m),
        "bulk_max": BULK_MAX,
        "within_choices": WITHIN,
        "schedule_name": schedule_name(services, query.schedule),
        "workflow_name": named,
    }
    status = 400 if query.problems else 200
    return pages.render(request, "jobs.html", context, status_code=status, active="jobs")


def job_detail(services: Services, job_id: str) -> JobDetail:
    """What the job page shows of ``job_id``; an unknown or malformed id is a 404 page."""
    with page_errors():
        canonical = parse_job_id(job_id)
        with services.engine.connect() as conn:
            return load_job_detail(conn, canonical)


def render_job(
    request: Request,
    services: Services,
    pages: Pages,
    job_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    edited: dict[str, str] | None = None,
) -> HTMLResponse:
    """The job page; an unknown or malformed id is a 404 page. ``edited``: replay arguments
    as the user typed them, shown again after an error."""
    context = {
        "job": job_detail(services, job_id),
        "notice": notice,
        "error": error,
        "edited": edited,
    }
    return pages.render(request, "job.html", context, status_code=status_code, active="jobs")


@router.get("/jobs/{job_id}", name="web_job", response_class=HTMLResponse)
def job_page(
    job_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: str | None = None,
) -> HTMLResponse:
    """One job: details, arguments, live progress, attempts, error or result, relations."""
    return render_job(request, services, pages, job_id, notice=NOTICES.get(notice or ""))


def redirect_to_job(request: Request, job_id: str, notice: str) -> RedirectResponse:
    """303 to a job page, naming the message it should show."""
    url = request.url_for("web_job", job_id=job_id).include_query_params(notice=notice)
    return RedirectResponse(str(url), status_code=303)


@router.post(
    "/jobs/{job_id}/cancel",
    name="web_job_cancel",
    dependencies=[Depends(page_scope("jobs:write", job_param="job_id"))],
)
def cancel_job(job_id: str, request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """Cancel: a waiting job never runs; a running one is asked to stop."""
    with page_errors():
        canonical = parse_job_id(job_id)
        try:
            row = services.control.cancel(canonical)
        except InvalidTransition as exc:
            return render_job(request, services, pages, canonical, error=str(exc), status_code=409)
    done = row["state"] == JobState.CANCELLED.value
    return redirect_to_job(request, canonical, "cancelled" if done else "cancel_requested")


@router.post(
    "/jobs/{job_id}/retry",
    name="web_job_retry",
    dependencies=[Depends(page_scope("jobs:write", job_param="job_id"))],
)
def retry_job(job_id: str, request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """Retry a finished job as a new job, and show the new one."""
    with page_errors():
        canonical = parse_job_id(job_id)
        try:
            row = services.control.retry(canonical)
        except (InvalidTransition, SubmitError) as exc:
            status = status_for(exc)
            return render_job(
                request, services, pages, canonical, error=str(exc), status_code=status
            )
    return redirect_to_job(request, str(row["id"]), "retried")


@router.api_route("/jobs/{rest:path}", methods=["GET", "POST"], name="web_job_unknown")
def unknown_job_path(rest: str, request: Request) -> Response:
    """Anything else below /jobs/: an id with a slash in it cannot be a job, so a 404 page.

    A GET of an action's URL (a bookmark, the back button) leads to the job page instead.
    """
    head, _, action = rest.rpartition("/")
    if head and action in ("cancel", "retry"):
        if request.method == "GET" and "/" not in head:
            return RedirectResponse(str(request.url_for("web_job", job_id=head)), status_code=303)
        rest = head
    with page_errors():
        raise JobNotFound(rest)


@router.get(
    "/live/jobs/{job_id}/events",
    name="web_job_events",
    dependencies=[Depends(page_scope("jobs:read", job_param="job_id"))],
)
async def live_events(job_id: str, request: Request, services: ServicesDep) -> Response:
    """The job page's live stream: the API's SSE stream, behind the dashboard's session (an
    EventSource sends the session cookie, never an API key)."""
    with page_errors():
        canonical = parse_job_id(job_id)
        return await job_event_stream(services, canonical, request)


@router.get(
    "/live/jobs/{job_id}/parts",
    name="web_job_parts",
    response_class=HTMLResponse,
    dependencies=[Depends(page_scope("jobs:read", job_param="job_id"))],
)
def live_parts(
    job_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> HTMLResponse:
    """The parts of the job page that change while it runs (state, actions, facts, error and
    result, attempts), rendered from the ledger, for the page's script to swap in."""
    detail = job_detail(services, job_id)
    response = pages.render(request, "job_live.html", {"job": detail}, active="jobs")
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/live/jobs", name="web_live_jobs")
def live(
    services: ServicesDep,
    ids: Annotated[list[str] | None, Query(alias="id")] = None,
    counts: bool = False,
) -> JSONResponse:
    """State, progress and duration of the given jobs (and optionally the per-state counts),
    for the pages' script to refresh in place."""
    with services.engine.connect() as conn:
        body: dict[str, Any] = {"jobs": live_jobs(conn, ids or [])}
        if counts:
            body["counts"] = repo.state_counts(conn)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
