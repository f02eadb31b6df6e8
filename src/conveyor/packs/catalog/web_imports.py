"""Dashboard: the imports page (upload with a progress bar, recent imports) and one import's
page (live phase, rows, rate and ETA over SSE; summary, skipped rows, cancel, retry)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from conveyor.errors import ConveyorError
from conveyor.packs.catalog import import_log, submission
from conveyor.packs.catalog.api_imports import report_response, store_upload
from conveyor.packs.kit import (
    PageError,
    PagesDep,
    ServicesDep,
    job_snapshot,
    page_errors,
    page_scope,
    page_uuid,
)

router = APIRouter()
WRITE = [Depends(page_scope("jobs:write"))]


@router.get("/catalog/imports", name="catalog_imports", response_class=HTMLResponse)
def imports_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """Upload a CSV; the latest imports."""
    with page_errors(), services.engine.connect() as conn:
        rows = import_log.recent(conn, 50)
    context = {"imports": rows, "error": error, "max_bytes": services.settings.upload_max_bytes}
    return pages.render(request, "catalog_imports.html", context, active="catalog-imports")


@router.post("/catalog/imports/upload", name="catalog_upload", dependencies=WRITE)
async def upload(
    request: Request,
    services: ServicesDep,
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """Take the file (the page's script streams it as the body; without script, the form
    posts it as multipart) and start its import. Answers JSON to the script, else redirects."""
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        import_id = await store_upload(request, services, filename)
    except ConveyorError as exc:
        if wants_json:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        url = request.url_for("catalog_imports").include_query_params(error=str(exc)[:500])
        return RedirectResponse(str(url), status_code=303)
    page = str(request.url_for("catalog_import", import_id=import_id))
    if wants_json:
        return JSONResponse({"id": import_id, "url": page}, status_code=202)
    return RedirectResponse(page, status_code=303)


def _import(services: Any, import_id: str) -> dict[str, Any]:
    try:
        with services.engine.connect() as conn:
            return import_log.get(conn, import_id)
    except ConveyorError:
        raise PageError(404, "Import not found", f"No import with id {import_id}.") from None


@router.get("/catalog/imports/{import_id}", name="catalog_import", response_class=HTMLResponse)
def import_page(
    import_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: Annotated[str | None, Query(max_length=300)] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """One import: live while it runs, its summary and skipped rows once it ended."""
    with page_errors():
        row = _import(services, _uuid(import_id))
        job = job_snapshot(services, row["job_id"]) if row["job_id"] else None
        with services.engine.connect() as conn:
            skipped = import_log.skipped_rows(conn, row["id"], 0, 50)
    context = {
        "imp": row,
        "job": job,
        "skipped_rows": skipped,
        "notice": notice,
        "error": error,
        "ended": row["state"] in import_log.ENDED,
    }
    return pages.render(request, "catalog_import.html", context, active="catalog-imports")


@router.get("/catalog/imports/{import_id}/ended", name="catalog_import_ended")
def ended(import_id: str, services: ServicesDep) -> JSONResponse:
    """Whether the import ended (the page reloads to show its outcome)."""
    row = _import(services, _uuid(import_id))
    return JSONResponse(
        {"ended": row["state"] in import_log.ENDED, "state": row["state"]},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/catalog/imports/{import_id}/skipped.csv", name="catalog_import_report")
def skipped_report(import_id: str, services: ServicesDep) -> Response:
    """The skipped rows as a CSV download."""
    key = _uuid(import_id)
    _import(services, key)
    return report_response(services, key)


def _uuid(value: str) -> str:
    return str(page_uuid(value, "import"))


def _to_import(request: Request, import_id: str, **params: str) -> RedirectResponse:
    url = request.url_for("catalog_import", import_id=import_id).include_query_params(**params)
    return RedirectResponse(str(url), status_code=303)


@router.post(
    "/catalog/imports/{import_id}/cancel", name="catalog_import_cancel", dependencies=WRITE
)
def cancel(import_id: str, request: Request, services: ServicesDep) -> Response:
    """Stop the import; the products stay as they were."""
    row = _import(services, _uuid(import_id))
    if row["state"] in import_log.ENDED or not row["job_id"]:
        return _to_import(request, row["id"], error=f"The import is {row['state']} already.")
    with page_errors():
        services.control.cancel(row["job_id"])
    return _to_import(request, row["id"], notice="Cancel requested.")


@router.post("/catalog/imports/{import_id}/retry", name="catalog_import_retry", dependencies=WRITE)
async def retry(import_id: str, request: Request, services: ServicesDep) -> Response:
    """Run a failed or cancelled import again from its kept file."""
    key = _uuid(import_id)
    try:
        await run_in_threadpool(submission.retry, services, key)
    except ConveyorError as exc:
        return _to_import(request, key, error=str(exc)[:500])
    return _to_import(request, key, notice="Started again.")
