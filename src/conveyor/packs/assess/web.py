"""Dashboard pages of the assess pack: the assessments (live list, a new one from an example
or an uploaded inventory), one assessment's live page (its workflow graph, a bar per analyzer,
the overall bar with ETA, the partial banner, cancel and retry) and its rendered report with
downloads.

Handlers are thin over ``workflow`` (assess-run's functions, which the REST API uses too) and
``report``. The live parts reuse the workflow page's mechanism: the page's root is a
``.workflow`` with ``data-parts-url`` and the body's page is ``workflow``, so the dashboard's
script polls the parts endpoint (304 while nothing changed) and swaps every
``data-live-region`` that changed, until the wrapper says ``data-terminal="true"``.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from conveyor.errors import ConveyorError
from conveyor.packs.assess import workflow
from conveyor.packs.assess.api import UPLOAD_MAX_BYTES
from conveyor.packs.assess.api import _read_upload as read_upload
from conveyor.packs.assess.findings import AnalyzerResult
from conveyor.packs.assess.inventory import load_inventory
from conveyor.packs.assess.report import (
    AssessmentView,
    render_json,
    render_pdf,
    report_context,
)
from conveyor.packs.assess.synthesis import Synthesis
from conveyor.packs.kit import (
    PageError,
    PagesDep,
    Services,
    ServicesDep,
    live_fragment,
    page_errors,
    page_scope,
    page_uuid,
    workflow_graph,
)

router = APIRouter(include_in_schema=False)
WRITE = [Depends(page_scope("jobs:write"))]
STATUSES = ("created", "running", "completed", "failed", "cancelled")
LIVE = ("created", "running")
# An analyzer's status as a dashboard state (its badge colour).
BADGE = {"ok": "succeeded", "queued": "queued", "running": "running"}
NOTICES = {
    "started": "Started: the analyzers run in parallel; this page follows them live.",
    "cancelled": "Cancelled: running analyzers stop at their next check.",
    "retried": "Retried: only the analyzers that did not finish run again.",
}


@cache
def _examples() -> list[dict[str, Any]]:
    """The shipped examples for the form (static data; the enterprise one takes a moment to
    validate, so once per process)."""
    return workflow.example_listing()


def _uuid(value: str) -> uuid.UUID:
    return page_uuid(value, "assessment")


def _status(services: Services, assessment_id: uuid.UUID) -> dict[str, Any]:
    try:
        return workflow.status(services, assessment_id)
    except ConveyorError:
        raise PageError(404, "Assessment not found", f"No assessment {assessment_id}.") from None


def _to_assessment(request: Request, assessment_id: Any, **params: str) -> RedirectResponse:
    url = request.url_for("assess_assessment", assessment_id=str(assessment_id))
    return RedirectResponse(str(url.include_query_params(**params)), status_code=303)


def _to_list(request: Request, error: str) -> RedirectResponse:
    url = request.url_for("assess_assessments").include_query_params(error=error[:500])
    return RedirectResponse(str(url), status_code=303)


# --- the list and the new-assessment form ----------------------------------------------------


def _list_rows(services: Services, status: str | None, name: str | None) -> list[dict[str, Any]]:
    rows, _ = workflow.list_assessments(services.engine, status_is=status, name=name, limit=50)
    for row in rows:  # the running ones with their weighted progress
        row["progress"] = (
            _status(services, uuid.UUID(row["id"]))["progress"] if row["status"] in LIVE else None
        )
    return rows


def _list_context(services: Services, status: str | None, name: str | None) -> dict[str, Any]:
    rows = _list_rows(services, status, name)
    return {
        "rows": rows,
        "terminal": not any(r["status"] in LIVE for r in rows),
        "status": status,
        "statuses": STATUSES,
        "name": name or "",
    }


@router.get("/assess/assessments", name="assess_assessments", response_class=HTMLResponse)
def assessments_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    name: Annotated[str | None, Query(max_length=255)] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """The latest assessments, live while any runs; a form to run a new one."""
    status = status if status in STATUSES else None
    with page_errors():
        context = _list_context(services, status, name)
        context["examples"] = _examples()
    filters = {k: v for k, v in (("status", status), ("name", name)) if v}
    parts_url = request.url_for("assess_assessments_parts").include_query_params(**filters)
    context.update(error=error, max_bytes=UPLOAD_MAX_BYTES, parts_url=str(parts_url))
    return pages.render(request, "assess_assessments.html", context, active="assess-assessments")


@router.get("/assess/live/assessments", name="assess_assessments_parts")
def assessments_parts(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    name: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """The list's table alone, for the page's script to swap in."""
    status = status if status in STATUSES else None
    with page_errors():
        context = _list_context(services, status, name)
    return _parts(request, pages, "assess_assessments_live.html", context)


def _create_and_start(services: Services, create: Any) -> uuid.UUID:
    assessment_id: uuid.UUID = create()
    workflow.start(services, assessment_id)
    return assessment_id


@router.post("/assess/assessments/example", name="assess_run_example", dependencies=WRITE)
def run_example(
    request: Request,
    services: ServicesDep,
    example: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    """Create an assessment of a shipped example and start it; to its live page."""
    try:
        inventory = workflow.load_example(example)
        assessment_id = _create_and_start(
            services,
            lambda: workflow.create(
                services.engine,
                inventory,
                name=name.strip() or None,
                source="example",
                example=example,
            ),
        )
    except ConveyorError as exc:
        return _to_list(request, str(exc))
    return _to_assessment(request, assessment_id, notice="started")


@router.post("/assess/assessments/upload", name="assess_upload", dependencies=WRITE)
async def upload(request: Request, services: ServicesDep) -> Response:
    """Create an assessment of an uploaded inventory (JSON or YAML) and start it. Answers JSON
    to the page's script, else redirects; a refused file names its problems' paths."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        # The form's file field without script; the raw body, named in ?filename=, with it.
        data, filename = await read_upload(request, request.query_params.get("filename"))
        inventory = await run_in_threadpool(load_inventory, data, filename)
        assessment_id = await run_in_threadpool(
            _create_and_start,
            services,
            lambda: workflow.create(services.engine, inventory, source="upload"),
        )
    except ConveyorError as exc:  # InventoryError's message names each problem's path
        if wants_json:
            return JSONResponse({"detail": str(exc)[:2000]}, status_code=422)
        return _to_list(request, str(exc))
    page = request.url_for("assess_assessment", assessment_id=str(assessment_id))
    page = page.include_query_params(notice="started")
    if wants_json:
        return JSONResponse({"id": str(assessment_id), "url": str(page)}, status_code=201)
    return RedirectResponse(str(page), status_code=303)


# --- one assessment, live --------------------------------------------------------------------


def _view(services: Services, assessment_id: uuid.UUID) -> dict[str, Any]:
    """The live page's view: the status with each analyzer's badge and percent, what failed,
    what can be done, and the workflow's graph once recorded."""
    st = _status(services, assessment_id)
    for a in st["analyzers"]:
        a["badge"] = BADGE.get(a["status"], a["status"])
        a["percent"] = round(100 * a["progress"], 1)
    troubled = [a for a in st["analyzers"] if a["status"] in ("failed", "timeout", "cancelled")]
    ended = st["status"] not in LIVE
    view = {
        "a": st,
        "percent": round(100 * st["progress"], 1),
        "terminal": ended,
        "troubled": troubled,
        "done": sum(1 for a in st["analyzers"] if a["status"] not in ("queued", "running")),
        "can_start": st["status"] == "created",
        "can_cancel": st["status"] == "running",
        "can_retry": ended and st["status"] != "created" and (bool(troubled) or st["partial"]),
        "has_report": st["status"] == "completed",
        "wf": workflow_graph(services, st["workflow_id"]) if st["workflow_id"] else None,
    }
    return {**view, "view": view}  # the parts' macros take the view as one argument


@router.get(
    "/assess/assessments/{assessment_id}", name="assess_assessment", response_class=HTMLResponse
)
def assessment_page(
    assessment_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: Annotated[str | None, Query(max_length=32)] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """One assessment: live while it runs; links to its report once it is done."""
    with page_errors():
        context = _view(services, _uuid(assessment_id))
    context.update(notice=NOTICES.get(notice or ""), error=error)
    return pages.render(request, "assess_assessment.html", context, active="assess-assessments")


@router.get("/assess/live/assessments/{assessment_id}", name="assess_assessment_parts")
def assessment_parts(
    assessment_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> Response:
    """The parts of the live page that change, for its script to swap in (304 if unchanged)."""
    with page_errors():
        context = _view(services, _uuid(assessment_id))
    return _parts(request, pages, "assess_assessment_live.html", context)


def _parts(request: Request, pages: Any, template: str, context: dict[str, Any]) -> Response:
    response = pages.render(request, template, context, active="assess-assessments")
    return live_fragment(request, response)


def _act(request: Request, services: Services, assessment_id: str, action: str) -> Response:
    key = _uuid(assessment_id)
    _status(services, key)  # 404 page for an unknown one
    try:
        if action == "start":
            workflow.start(services, key)
        elif action == "cancel":
            workflow.cancel(services, key)
        else:
            workflow.retry(services, key)
    except ConveyorError as exc:
        return _to_assessment(request, key, error=str(exc)[:500])
    done = {"start": "started", "cancel": "cancelled", "retry": "retried"}[action]
    return _to_assessment(request, key, notice=done)


@router.post("/assess/assessments/{assessment_id}/start", name="assess_start", dependencies=WRITE)
def start(assessment_id: str, request: Request, services: ServicesDep) -> Response:
    """Start an assessment that was created but not started (through the API)."""
    return _act(request, services, assessment_id, "start")


@router.post("/assess/assessments/{assessment_id}/cancel", name="assess_cancel", dependencies=WRITE)
def cancel(assessment_id: str, request: Request, services: ServicesDep) -> Response:
    """Stop every running analyzer; the assessment reads cancelled."""
    return _act(request, services, assessment_id, "cancel")


@router.post("/assess/assessments/{assessment_id}/retry", name="assess_retry", dependencies=WRITE)
def retry(assessment_id: str, request: Request, services: ServicesDep) -> Response:
    """Run again only the analyzers that did not finish, then synthesis and report."""
    return _act(request, services, assessment_id, "retry")


# --- the report ------------------------------------------------------------------------------


def _report_inputs(
    services: Services, assessment_id: uuid.UUID
) -> tuple[AssessmentView, Synthesis, list[AnalyzerResult]]:
    with services.engine.connect() as conn:
        row = workflow.get_row(conn, assessment_id)
        stored = workflow.result_rows(conn, assessment_id)
    if row["synthesis"] is None or row["status"] != "completed":
        raise PageError(
            404,
            "No report yet",
            f"Assessment {assessment_id} is {row['status']}; its report comes once it completes.",
        )
    found = [
        AnalyzerResult.model_validate(stored[n]["result"])
        for n in row["analyzers"]
        if n in stored and stored[n]["result"]
    ]
    return AssessmentView.of(row), Synthesis.model_validate(row["synthesis"]), found


@router.get(
    "/assess/assessments/{assessment_id}/report",
    name="assess_report",
    response_class=HTMLResponse,
)
def report_page(
    assessment_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> HTMLResponse:
    """The rendered report inside the dashboard, with its downloads."""
    key = _uuid(assessment_id)
    with page_errors():
        _status(services, key)
        view, synthesis, found = _report_inputs(services, key)
    context = report_context(view, synthesis, found)
    return pages.render(request, "assess_report.html", context, active="assess-assessments")


@router.get("/assess/assessments/{assessment_id}/report.{fmt}", name="assess_report_download")
def report_download(assessment_id: str, fmt: str, services: ServicesDep) -> Response:
    """The report as a file: the stored HTML document, a PDF of it, or the JSON."""
    key = _uuid(assessment_id)
    if fmt not in ("html", "pdf", "json"):
        raise PageError(
            404, "No such format", f"The report comes as html, pdf or json, not {fmt!r}."
        )
    with page_errors():
        _status(services, key)
        view, synthesis, found = _report_inputs(services, key)
        filename = f"assessment-{key}.{fmt}"
        disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if fmt == "html":
            body: bytes | str = workflow.report_html(services.engine, key)
            return Response(body, media_type="text/html; charset=utf-8", headers=disposition)
        if fmt == "pdf":
            body = render_pdf(view, synthesis, found)
            return Response(body, media_type="application/pdf", headers=disposition)
        body = render_json(view, synthesis, found)
        return Response(body, media_type="application/json", headers=disposition)
