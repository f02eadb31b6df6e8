"""``/api/v1/catalog/imports``: upload a CSV, follow and cancel its import, fetch what it
skipped, retry it.

An upload is the request body itself (``Content-Type: text/csv``, the file name in
``?filename=``) or a ``multipart/form-data`` form with the field ``file``; either way it is
streamed to disk and never held in memory. Progress is the import job's: follow
``links.events`` (Server-Sent Events) or poll ``links.job``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from conveyor.errors import InputRejected, InvalidTransition
from conveyor.packs.catalog import import_log, submission, uploads
from conveyor.packs.catalog.tasks import IMPORT_TASK
from conveyor.packs.kit import Principal, Services, ServicesDep, require

router = APIRouter(tags=["catalog imports"])

# An import is a job of IMPORT_TASK: a key limited to some tasks needs that one.
ReadImports = Annotated[Principal, Depends(require("jobs:read", IMPORT_TASK))]
WriteImports = Annotated[Principal, Depends(require("jobs:write", IMPORT_TASK))]


async def store_upload(request: Request, services: Services, filename: str | None) -> str:
    """Stream the request's file into the uploads and accept it as an import; its id."""
    settings = services.settings
    import_id, stored = uploads.new_upload()
    target = uploads.uploads_dir(settings) / stored
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        # Starlette spools file parts to a temporary file past 1 MB, not to memory.
        form = await request.form(max_files=1, max_fields=10)
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InputRejected("send the CSV file in the form field 'file'")
        name = filename or part.filename
        await run_in_threadpool(uploads.copy_in, part.file, target, settings.upload_max_bytes)
        await form.close()
    else:
        name = filename or request.headers.get("x-filename")
        await uploads.receive(request.stream(), target, settings.upload_max_bytes)
    row = await run_in_threadpool(
        submission.accept, services, import_id, uploads.clean_filename(name), target
    )
    return str(row["id"])


@router.post("/imports", status_code=202)
async def upload(
    request: Request,
    principal: WriteImports,
    services: ServicesDep,
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> dict[str, Any]:
    """Upload a products CSV (header with sku and name, description optional) and start its
    import; 202 with the import and where to follow it. A file that is empty, not a CSV or
    missing a required column is refused with 422 and nothing is enqueued."""
    import_id = await store_upload(request, services, filename)
    return await run_in_threadpool(_get, services, import_id)


def _get(services: Services, import_id: str) -> dict[str, Any]:
    with services.engine.connect() as conn:
        return submission.links(import_log.get(conn, import_id))


@router.get("/imports")
def list_imports(
    principal: ReadImports,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The latest imports, newest first, with their summaries."""
    with services.engine.connect() as conn:
        return {"items": [submission.links(r) for r in import_log.recent(conn, limit)]}


@router.get("/imports/{import_id}")
def get_import(
    import_id: uuid.UUID, principal: ReadImports, services: ServicesDep
) -> dict[str, Any]:
    """One import: its state, summary (rows, inserted, updated, unchanged, skipped) and
    links."""
    return _get(services, str(import_id))


@router.get("/imports/{import_id}/errors")
def skipped_rows(
    import_id: uuid.UUID,
    principal: ReadImports,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, description="rows after this row number")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The rows an import skipped, with their row number (the header is row 1) and reason."""
    with services.engine.connect() as conn:
        import_log.get(conn, str(import_id))
        rows = import_log.skipped_rows(conn, str(import_id), after, limit)
    next_after = rows[-1]["row"] if len(rows) == limit else None
    return {"items": rows, "next_after": next_after}


@router.get("/imports/{import_id}/errors.csv")
def error_report(
    import_id: uuid.UUID, principal: ReadImports, services: ServicesDep
) -> StreamingResponse:
    """The skipped rows as a CSV file to download."""
    return report_response(services, str(import_id))


def report_response(services: Services, import_id: str) -> StreamingResponse:
    """The skipped rows of an import as a CSV download (the API's and the dashboard's)."""
    with services.engine.connect() as conn:
        row = import_log.get(conn, import_id)
    name = row["filename"].rsplit(".", 1)[0] or "import"
    return StreamingResponse(
        import_log.error_report(services.engine, import_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_ascii(name)}-skipped-rows.csv"'},
    )


def _ascii(name: str) -> str:
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_." else "_" for ch in name)


@router.post("/imports/{import_id}/cancel")
def cancel_import(
    import_id: uuid.UUID, principal: WriteImports, services: ServicesDep
) -> dict[str, Any]:
    """Cancel a waiting or running import; the products stay as they were before it."""
    row = _get(services, str(import_id))
    if row["state"] in import_log.ENDED or not row["job_id"]:
        raise InvalidTransition(f"import {row['id']} is {row['state']}; nothing to cancel")
    services.control.cancel(row["job_id"])
    return _get(services, str(import_id))


@router.post("/imports/{import_id}/retry", status_code=202)
def retry_import(
    import_id: uuid.UUID, principal: WriteImports, services: ServicesDep
) -> dict[str, Any]:
    """Run a failed or cancelled import again from its kept upload."""
    return submission.retry(services, str(import_id))
