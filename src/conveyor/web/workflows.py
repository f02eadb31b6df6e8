"""Dashboard pages for workflows: the list with its "Run demo workflow" button, one
workflow's page (its DAG drawn live, progress, ETA, nodes per state, cancel and retry), and
the live fragments both pages poll.

Handlers stay thin: parse, call :class:`conveyor.workflows.Workflows` (the service the REST
API uses), build the views (``workflow_views``), render. Actions answer with a 303 to the
workflow's page, so reloading never repeats them.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.deps import Services, ServicesDep
from conveyor.api.errors import status_for
from conveyor.errors import InvalidTransition, SubmitError, WorkflowNotFound
from conveyor.web.pages import Pages, PagesDep, live_fragment, page_errors
from conveyor.web.session import page_scope
from conveyor.web.workflow_views import (
    WORKFLOW_STATES,
    WorkflowRow,
    WorkflowView,
    workflow_row,
    workflow_view,
)
from conveyor.workflows import WorkflowOut, Workflows

router = APIRouter(include_in_schema=False)

_WRITE = [Depends(page_scope("jobs:write"))]
PAGE_SIZE = 25
SCAN_MAX = 500
"""Most workflows one filtered page looks through for matches (states are aggregated from
the nodes, so the ledger cannot filter on them)."""

NOTICES: dict[str, str] = {
    "started": "Demo workflow started: its graph fills in as the steps run.",
    "cancelled": "Cancelled: running steps are asked to stop and steps not yet run never run.",
    "retried": "Retried: failed and never-run steps run again; succeeded ones keep their results.",
}
"""Messages an action leaves for the page it redirects to; the URL carries only the key."""


def service(services: Services) -> Workflows:
    """The workflows service the REST API uses, over this app's control plane."""
    return Workflows(services.control)


def parse_workflow_id(raw: str) -> str:
    """A workflow id in canonical form; anything that is not a UUID is an unknown workflow."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise WorkflowNotFound(raw) from None


def fetch(services: Services, workflow_id: str) -> WorkflowOut:
    """A workflow; WorkflowNotFound if unknown or malformed. (Every node is shown: a key
    limited to some tasks or queues opens no dashboard session.)"""
    return service(services).get_workflow(parse_workflow_id(workflow_id))


def load(services: Services, workflow_id: str) -> WorkflowView:
    """The page's view of a workflow; an unknown or malformed id is a 404 page."""
    with page_errors():
        return workflow_view(fetch(services, workflow_id))


@router.get("/workflows", name="web_workflows", response_class=HTMLResponse)
def workflows_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    state: str | None = None,
    cursor: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    """Workflows newest first, optionally only those in one state."""
    wanted = (state or "").strip().lower() or None
    problems = []
    if wanted is not None and wanted not in WORKFLOW_STATES:
        problems.append(
            f"unknown state {wanted!r} ignored; states are {', '.join(WORKFLOW_STATES)}"
        )
        wanted = None
    return render_list(
        request,
        services,
        pages,
        wanted,
        cursor,
        notice=NOTICES.get(notice or ""),
        problems=problems,
        status_code=400 if problems else 200,
    )


def newest(
    services: Services, state: str | None, cursor: str | None
) -> tuple[list[WorkflowRow], str | None]:
    """The workflows to list from ``cursor`` on (only those in ``state``, if given), and
    where the next page starts. Whole pages are read until enough match, the list ends or
    ``SCAN_MAX`` were looked at. ValueError for a cursor that is not one."""
    flows = service(services)
    shown: list[WorkflowRow] = []
    scanned = 0
    while True:
        found = flows.list_workflows(limit=PAGE_SIZE, cursor=cursor)
        scanned += len(found.items)
        for item in found.items:
            if state is None or item.state == state:
                shown.append(workflow_row(item))
        cursor = found.next_cursor
        if len(shown) >= PAGE_SIZE or cursor is None or scanned >= SCAN_MAX:
            return shown, cursor


def render_list(
    request: Request,
    services: Services,
    pages: Pages,
    state: str | None,
    cursor: str | None,
    *,
    notice: str | None = None,
    problems: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The list page; ``problems`` shown above it."""
    problems = list(problems or [])
    with page_errors():
        try:
            shown, next_cursor = newest(services, state, cursor)
        except ValueError:
            problems.append("that page link is not valid any more; showing the newest workflows")
            status_code, cursor = 400, None
            shown, next_cursor = newest(services, state, None)
    context: dict[str, Any] = {
        "workflows": shown,
        "state": state,
        "states": WORKFLOW_STATES,
        "paged": bool(cursor),
        "follow": follows(shown, cursor),
        "live_query": query_string(state=state, cursor=cursor),
        "newest_query": query_string(state=state),
        "older_query": query_string(state=state, cursor=next_cursor) if next_cursor else None,
        "notice": notice,
        "error": "; ".join(problems) or None,
    }
    return pages.render(
        request, "workflows.html", context, status_code=status_code, active="workflows"
    )


def follows(shown: list[WorkflowRow], cursor: str | None) -> bool:
    """Whether the list's rows can still change: the first page (new workflows appear on
    it), or a page with a workflow still running."""
    return cursor is None or any(row.state == "running" for row in shown)


@router.get("/live/workflows", name="web_workflows_parts", response_class=HTMLResponse)
def live_rows(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    state: str | None = None,
    cursor: str | None = None,
) -> Response:
    """The list's rows (same filters as the page), for its script to swap in; 304 when they
    are what it has. A state or cursor that is not one answers 400: the page shown with it
    does not poll with it (it corrected them)."""
    if state is not None and state not in WORKFLOW_STATES:
        return Response(status_code=400)
    with page_errors():
        try:
            shown, _ = newest(services, state, cursor)
        except ValueError:
            return Response(status_code=400)
    context = {"workflows": shown, "state": state, "follow": follows(shown, cursor)}
    return live_fragment(request, pages.render(request, "workflows_live.html", context))


def query_string(**params: str | None) -> str:
    """``?…`` of the parameters that are set, or an empty string."""
    present = {k: v for k, v in params.items() if v}
    return "?" + urlencode(present) if present else ""


@router.post("/workflows/demo", name="web_workflow_demo", dependencies=_WRITE)
def run_demo(request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """Start the demo diamond workflow and show its page; if this app cannot run it (the
    demo tasks are not registered), say why on the list."""
    with page_errors():
        try:
            workflow_id = service(services).start_demo()
        except SubmitError as exc:
            problem = f"the demo workflow cannot run here: {exc}"
            return render_list(
                request,
                services,
                pages,
                None,
                None,
                problems=[problem],
                status_code=status_for(exc),
            )
    return redirect(request, workflow_id, "started")


@router.get("/workflows/{workflow_id}", name="web_workflow", response_class=HTMLResponse)
def workflow_page(
    workflow_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: str | None = None,
) -> HTMLResponse:
    """One workflow: its graph, progress and ETA, nodes per state, cancel and retry."""
    return render(request, pages, load(services, workflow_id), notice=NOTICES.get(notice or ""))


def render(
    request: Request,
    pages: Pages,
    wf: WorkflowView,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The workflow page, with a message above it."""
    context = {"wf": wf, "notice": notice, "error": error}
    return pages.render(
        request, "workflow.html", context, status_code=status_code, active="workflows"
    )


def redirect(request: Request, workflow_id: str, notice: str) -> RedirectResponse:
    """303 to a workflow's page, naming the message it should show."""
    url = request.url_for("web_workflow", workflow_id=workflow_id)
    return RedirectResponse(str(url.include_query_params(notice=notice)), status_code=303)


def act(
    request: Request, services: Services, pages: Pages, workflow_id: str, action: str
) -> Response:
    """Cancel or retry a workflow, then show its page; a refusal (it ended meanwhile, it is
    still running, a canvas whose unsent steps cannot be placed) is shown on its page with
    the reason."""
    with page_errors():
        try:
            workflow_id = fetch(services, workflow_id).id
            flows = service(services)
            if action == "cancel":
                flows.cancel(workflow_id)
            else:
                flows.retry(workflow_id)
        except InvalidTransition as exc:
            wf = load(services, workflow_id)
            return render(request, pages, wf, error=str(exc), status_code=status_for(exc))
    return redirect(request, workflow_id, "cancelled" if action == "cancel" else "retried")


@router.post("/workflows/{workflow_id}/cancel", name="web_workflow_cancel", dependencies=_WRITE)
def cancel_workflow(
    workflow_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """Cancel every queued and running step; steps not yet run never run."""
    return act(request, services, pages, workflow_id, "cancel")


@router.post("/workflows/{workflow_id}/retry", name="web_workflow_retry", dependencies=_WRITE)
def retry_workflow(
    workflow_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """Run the failed and never-run steps again, keeping the succeeded ones' results."""
    return act(request, services, pages, workflow_id, "retry")


@router.get("/workflows/{workflow_id}/{action}", name="web_workflow_action_get")
def action_by_get(workflow_id: str, action: str, request: Request) -> Response:
    """A GET of an action's URL (a bookmark, the back button) leads to the workflow's page,
    and does nothing; any other path below a workflow is a 404 page."""
    if action not in ("cancel", "retry"):
        with page_errors():
            raise WorkflowNotFound(f"{workflow_id}/{action}")
    return RedirectResponse(str(request.url_for("web_workflow", workflow_id=workflow_id)), 303)


@router.get("/live/workflows/{workflow_id}", name="web_workflow_parts", response_class=HTMLResponse)
def live_parts(
    workflow_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """The parts of the workflow page that change while it runs (state, buttons, progress,
    counts, the graph), rendered from the ledger, for the page's script to swap in; 304 when
    they are what the script has (its ``If-None-Match``), so a waiting graph costs little."""
    wf = load(services, workflow_id)
    response = pages.render(request, "workflow_live.html", {"wf": wf}, active="workflows")
    return live_fragment(request, response)
