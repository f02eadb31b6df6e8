"""Dashboard pages of the factory: the batches (with a form for a new one) and one batch's
page (live progress through its job, timeline, root, anchor, a sample of products, the CSV,
retry). The public verification page is in ``web_verify.py``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from conveyor.errors import ConveyorError
from conveyor.packs.factory import queries, submission
from conveyor.packs.factory.api import MAX_PRODUCTS, BatchCreate, batch_view, csv_response
from conveyor.packs.factory.batches import STATUSES, get_batch
from conveyor.packs.factory.deployment import factory_of
from conveyor.packs.kit import (
    PageError,
    PagesDep,
    Services,
    ServicesDep,
    job_snapshot,
    page_errors,
    page_scope,
    page_uuid,
)

router = APIRouter(include_in_schema=False)
WRITE = [Depends(page_scope("jobs:write"))]
ENDED = ("completed", "failed")


def _batch_id(value: str) -> uuid.UUID:
    return page_uuid(value, "batch")


def _view(services: Services, batch_id: uuid.UUID) -> dict[str, Any]:
    try:
        return batch_view(services, batch_id)
    except ConveyorError:
        raise PageError(404, "Batch not found", f"No batch with id {batch_id}.") from None


@router.get("/factory/batches", name="factory_batches", response_class=HTMLResponse)
def batches_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """The latest batches with their status and their running jobs' progress; a new batch."""
    status = status if status in STATUSES else None
    with page_errors(), services.engine.connect() as conn:
        try:
            rows, next_cursor = queries.list_batches(conn, queries.BatchFilter(status), 50, cursor)
        except ConveyorError:  # a cursor from somewhere else: start at the top
            rows, next_cursor = queries.list_batches(conn, queries.BatchFilter(status), 50)
        stats = queries.stats(conn)
    jobs = {b.id: job_snapshot(services, b.job_id) if b.job_id else None for b in rows}
    context = {
        "batches": [(b, jobs[b.id]) for b in rows],
        "stats": stats,
        "status": status,
        "statuses": STATUSES,
        "next_cursor": next_cursor,
        "error": error,
        "max_products": MAX_PRODUCTS,
    }
    return pages.render(request, "factory_batches.html", context, active="factory-batches")


@router.post("/factory/batches/new", name="factory_batch_create", dependencies=WRITE)
def create(
    request: Request,
    services: ServicesDep,
    product_count: Annotated[str, Form(max_length=20)],
    product_name: Annotated[str, Form(max_length=1000)],
    category: Annotated[str, Form(max_length=1000)],
    factory_id: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Start a batch from the form; back to the list with the reason if it is refused."""
    try:
        body = BatchCreate.model_validate(
            {
                "product_count": product_count.strip().replace(",", "").replace("_", ""),
                "product_name": product_name.strip(),
                "category": category.strip(),
                "factory_id": factory_id.strip() or None,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        message = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        url = request.url_for("factory_batches").include_query_params(error=message[:500])
        return RedirectResponse(str(url), status_code=303)
    with page_errors():
        started = submission.start(services, body.spec(), factory_of(services).settings)
    url = request.url_for("factory_batch", batch_id=str(started.batch_id))
    return RedirectResponse(str(url), status_code=303)


@router.get("/factory/batches/{batch_id}", name="factory_batch", response_class=HTMLResponse)
def batch_page(
    batch_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: Annotated[str | None, Query(max_length=300)] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """One batch: live while its job runs; timeline, root, anchor, products, CSV, retry."""
    key = _batch_id(batch_id)
    with page_errors():
        batch = _view(services, key)
        job = job_snapshot(services, batch["job_id"]) if batch["job_id"] else None
        with services.engine.connect() as conn:
            sample, _ = queries.product_page(conn, key, 0, 10)
            can_retry = submission.retryable(conn, get_batch(conn, key))
    context = {
        "batch": batch,
        "job": job,
        "sample": sample,
        "can_retry": can_retry,
        "ended": batch["status"] in ENDED,
        "notice": notice,
        "error": error,
    }
    return pages.render(request, "factory_batch.html", context, active="factory-batches")


@router.get("/factory/batches/{batch_id}/ended", name="factory_batch_ended")
def ended(batch_id: str, services: ServicesDep) -> JSONResponse:
    """Whether the batch finished (the page reloads to show its outcome)."""
    batch = _view(services, _batch_id(batch_id))
    return JSONResponse(
        {"ended": batch["status"] in ENDED, "status": batch["status"]},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/factory/batches/{batch_id}/products.csv", name="factory_batch_csv")
def download(batch_id: str, services: ServicesDep) -> Response:
    """Every product as CSV, for the label printer."""
    key = _batch_id(batch_id)
    _view(services, key)
    return csv_response(services, key)


@router.post("/factory/batches/{batch_id}/retry", name="factory_batch_retry", dependencies=WRITE)
async def retry(batch_id: str, request: Request, services: ServicesDep) -> Response:
    """Run the batch again from the step it stopped at."""
    key = _batch_id(batch_id)
    target = request.url_for("factory_batch", batch_id=str(key))
    try:
        await run_in_threadpool(
            submission.retry, services.engine, key, submission.control_sender(services)
        )
    except ConveyorError as exc:
        return RedirectResponse(str(target.include_query_params(error=str(exc)[:500])), 303)
    return RedirectResponse(str(target.include_query_params(notice="Started again.")), 303)
