"""The assess pack's REST API, mounted at ``/api/v1/assess`` (see docs/assess.md).

Reading needs ``jobs:read``, creating, starting, cancelling and retrying ``jobs:write``; a key
limited to some tasks needs ``assess.validate`` (the task that opens every run). An inventory
that cannot be used is a 422 whose ``problems`` name each path, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from conveyor.errors import InputRejected, PayloadTooLarge, ResourceNotFound
from conveyor.packs.assess import workflow
from conveyor.packs.assess.errors import InventoryError
from conveyor.packs.assess.inventory import Inventory, load_inventory
from conveyor.packs.kit import Principal, Services, ServicesDep, require

router = APIRouter(tags=["assess"])

Read = Annotated[Principal, Depends(require("jobs:read", workflow.VALIDATE_TASK))]
Write = Annotated[Principal, Depends(require("jobs:write", workflow.VALIDATE_TASK))]

UPLOAD_MAX_BYTES = 16 * 1024 * 1024
ANALYZER_NAME = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class AssessmentCreate(BaseModel):
    """An assessment of ``inventory`` (the format of ``data/inventory.schema.json``)."""

    model_config = ConfigDict(extra="forbid")

    inventory: dict[str, Any]
    name: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^\x00]*$")
    analyzers: list[ANALYZER_NAME] | None = Field(
        default=None, min_length=1, max_length=64, description="default: all ten"
    )


class FromExample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    example: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=255, pattern=r"^[^\x00]*$")
    analyzers: list[ANALYZER_NAME] | None = Field(default=None, min_length=1, max_length=64)


def refused(exc: InventoryError) -> JSONResponse:
    """The 422 for an inventory: ``problems`` with each path as ``loc``."""
    problems = [
        {"loc": ["inventory", *([i["path"]] if i["path"] else [])], "msg": i["message"]}
        for i in exc.issues
    ]
    return JSONResponse(
        {"detail": str(exc), "error": "InventoryError", "problems": problems}, status_code=422
    )


def _created(
    services: Services,
    inventory: Inventory,
    *,
    name: str | None,
    source: str,
    example: str | None = None,
    chosen: list[str] | None = None,
) -> dict[str, Any]:
    assessment_id = workflow.create(
        services.engine, inventory, name=name, source=source, example=example, chosen=chosen
    )
    return workflow.status(services, assessment_id)


def _parse(raw: bytes | str, filename: str | None) -> Inventory:
    return load_inventory(raw, filename)


@router.post("/assessments", status_code=201, response_model=None)
def create_assessment(
    body: AssessmentCreate, principal: Write, services: ServicesDep
) -> dict[str, Any] | JSONResponse:
    """Store an assessment of the inventory in the body; 201. Nothing runs until it is
    started. A refused inventory is a 422 naming each path."""
    try:
        inventory = _parse(json.dumps(body.inventory), "inventory.json")
    except InventoryError as exc:
        return refused(exc)
    return _created(services, inventory, name=body.name, source="api", chosen=body.analyzers)


async def _read_upload(request: Request, filename: str | None) -> tuple[bytes, str | None]:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InputRejected("send the inventory in the form field 'file'")
        data = await part.read(UPLOAD_MAX_BYTES + 1)
        name = filename or part.filename
        await form.close()
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > UPLOAD_MAX_BYTES:
                break
            chunks.append(chunk)
        data, name = b"".join(chunks), filename or request.headers.get("x-filename")
        if size > UPLOAD_MAX_BYTES:
            data += b"?"
    if len(data) > UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(f"the inventory exceeds {UPLOAD_MAX_BYTES:,} bytes")
    return data, name


@router.post("/assessments/upload", status_code=201, response_model=None)
async def upload_assessment(
    request: Request,
    principal: Write,
    services: ServicesDep,
    filename: Annotated[str | None, Query(max_length=255)] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=255, pattern=r"^[^\x00]*$")] = None,
    analyzers: Annotated[list[str] | None, Query(max_length=64)] = None,
) -> dict[str, Any] | JSONResponse:
    """Store an assessment of an uploaded inventory file, JSON or YAML (by ``filename``'s
    extension, else sniffed), as the raw body or the multipart field ``file``; 201."""
    data, file_name = await _read_upload(request, filename)
    try:
        inventory = await run_in_threadpool(_parse, data, file_name)
    except InventoryError as exc:
        return refused(exc)
    return await run_in_threadpool(
        lambda: _created(services, inventory, name=name, source="upload", chosen=analyzers)
    )


@router.get("/examples")
def list_examples(principal: Read) -> dict[str, Any]:
    """The example inventories shipped with the pack."""
    return {"items": workflow.example_listing()}


@router.post("/examples/{example}/assessments", status_code=201, response_model=None)
def create_from_example(
    example: str, principal: Write, services: ServicesDep, body: FromExample | None = None
) -> dict[str, Any]:
    """Store an assessment of a shipped example; 201."""
    inventory = workflow.load_example(example)
    return _created(
        services,
        inventory,
        name=body.name if body else None,
        source="example",
        example=example,
        chosen=body.analyzers if body else None,
    )


@router.get("/assessments")
def list_assessments(
    principal: Read,
    services: ServicesDep,
    status: Literal["created", "running", "completed", "failed", "cancelled"] | None = None,
    name: Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Newest first; filter by status and by part of the name (any case); ``next_cursor``
    pages on."""
    items, nxt = workflow.list_assessments(
        services.engine, status_is=status, name=name, limit=limit, cursor=cursor
    )
    return {"items": items, "next_cursor": nxt}


@router.get("/assessments/{assessment_id}")
def get_assessment(
    assessment_id: uuid.UUID, principal: Read, services: ServicesDep
) -> dict[str, Any]:
    """The assessment with each analyzer's state and progress, overall progress and ETA."""
    return workflow.status(services, assessment_id)


@router.post("/assessments/{assessment_id}/start", status_code=202)
def start_assessment(
    assessment_id: uuid.UUID, principal: Write, services: ServicesDep
) -> dict[str, Any]:
    """Start the run; 202 with the workflow (and its first job) id and the URL to follow.
    409 if it is running or already ran (retry it instead)."""
    started = workflow.start(services, assessment_id)
    return _started(started)


def _started(started: workflow.Started) -> dict[str, Any]:
    links = workflow.links(started.assessment_id, started.workflow_id)
    return {
        "assessment_id": str(started.assessment_id),
        "workflow_id": started.workflow_id,
        "job_id": started.workflow_id,
        "run": started.run,
        "analyzers": started.analyzers,
        "follow": links["follow"],
        "links": links,
    }


@router.post("/assessments/{assessment_id}/cancel", status_code=202)
def cancel_assessment(
    assessment_id: uuid.UUID, principal: Write, services: ServicesDep
) -> dict[str, Any]:
    """Cancel the running assessment: every analyzer stops at its next check (within a
    second); 409 if it is not running."""
    return workflow.cancel(services, assessment_id)


@router.post("/assessments/{assessment_id}/retry", status_code=202)
def retry_assessment(
    assessment_id: uuid.UUID, principal: Write, services: ServicesDep
) -> dict[str, Any]:
    """Run again only the analyzers that did not end ok, then synthesis and report over all
    the stored results; 202. 409 while it runs or when nothing is left to retry."""
    return _started(workflow.retry(services, assessment_id))


@router.get("/assessments/{assessment_id}/result")
def get_result(assessment_id: uuid.UUID, principal: Read, services: ServicesDep) -> dict[str, Any]:
    """The synthesis and every analyzer's stored result (404 before the synthesis ran)."""
    return workflow.result(services.engine, assessment_id)


@router.get("/assessments/{assessment_id}/report", response_model=None)
def get_report(
    assessment_id: uuid.UUID,
    principal: Read,
    services: ServicesDep,
    format: Literal["html", "pdf", "json"] = "html",
) -> Response | dict[str, Any]:
    """The report as HTML, PDF or JSON (404 until the report step ran)."""
    if format == "json":
        return workflow.result(services.engine, assessment_id)
    html = workflow.report_html(services.engine, assessment_id)
    if format == "html":
        return HTMLResponse(html)
    pdf = workflow.report_pdf(services.engine, assessment_id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="assessment-{assessment_id}.pdf"'},
    )


@router.get("/assessments/{assessment_id}/events")
async def follow(
    assessment_id: uuid.UUID, request: Request, principal: Read, services: ServicesDep
) -> StreamingResponse:
    """Server-sent events: ``status`` (the same body as GET) whenever it changes, until the
    assessment ends."""
    first = await run_in_threadpool(workflow.status, services, assessment_id)

    async def stream() -> Any:
        current = first
        yield _sse("status", current)
        while current["status"] in ("created", "running"):
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.5)
            try:
                fresh = await run_in_threadpool(workflow.status, services, assessment_id)
            except ResourceNotFound:
                return
            if _changed(current, fresh):
                yield _sse("status", fresh)
            current = fresh

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def key(s: dict[str, Any]) -> Any:
        return (s["status"], s["progress"], [(a["status"], a["progress"]) for a in s["analyzers"]])

    return bool(key(old) != key(new))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
