"""The factory's REST API, mounted at ``/api/v1/factory``.

Everything under ``/batches`` needs an API key (reading ``jobs:read``, creating and retrying
``jobs:write``). ``GET /verify/{token}`` is public: it is what a consumer's phone calls after
scanning a label. It answers 200 for every token — ``authentic: false`` with a reason for a
malformed, forged, unknown or altered one — so a caller never has to tell a 404 from an outage,
and it reveals nothing the token itself does not already carry.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.packs.factory import queries, submission
from conveyor.packs.factory.batches import BatchSpec, get_batch
from conveyor.packs.factory.deployment import factory_of
from conveyor.packs.kit import (
    Principal,
    Public,
    Services,
    ServicesDep,
    job_snapshot,
    require,
)

router = APIRouter(tags=["factory"])

# A batch is made by a job of PROCESS_TASK: a key limited to some tasks needs that one.
ReadBatches = Annotated[Principal, Depends(require("jobs:read", submission.PROCESS_TASK))]
WriteBatches = Annotated[Principal, Depends(require("jobs:write", submission.PROCESS_TASK))]

MAX_PRODUCTS = 10_000_000
METADATA_MAX_BYTES = 16_384
NO_NUL = "^[^\x00]*$"  # PostgreSQL text cannot hold U+0000
Status = Literal["pending", "processing", "anchoring", "completed", "failed"]


class BatchCreate(BaseModel):
    """A batch to make: ``product_count`` products named ``product_name``."""

    model_config = ConfigDict(extra="forbid")

    product_count: int = Field(ge=1, le=MAX_PRODUCTS)
    product_name: str = Field(min_length=1, max_length=255)
    category: str = Field(min_length=1, max_length=255)
    factory_id: str | None = Field(default=None, min_length=1, max_length=255)
    metadata: dict[str, Any] | None = None

    @field_validator("product_name", "category", "factory_id")
    @classmethod
    def no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold U+0000; refuse it here rather than fail in the insert.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain the NUL character (U+0000)")
        return value

    @field_validator("metadata")
    @classmethod
    def metadata_fits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        dumped = json.dumps(value)
        if len(dumped) > METADATA_MAX_BYTES:
            raise ValueError(f"metadata must be at most {METADATA_MAX_BYTES:,} bytes as JSON")
        if _has_nul(value):  # jsonb cannot hold U+0000 either
            raise ValueError("metadata must not contain the NUL character (U+0000)")
        return value

    def spec(self) -> BatchSpec:
        """The batch this request describes."""
        return BatchSpec(
            self.product_count, self.product_name, self.category, self.factory_id, self.metadata
        )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def batch_view(services: Services, batch_id: uuid.UUID) -> dict[str, Any]:
    """One batch with its job's state and progress, and links (the API's and the pages')."""
    with services.engine.connect() as conn:
        batch = get_batch(conn, batch_id)
    job = job_snapshot(services, batch.job_id) if batch.job_id else None
    out = queries.batch_public(batch, job)
    out["links"] = submission.job_links(batch.id, batch.job_id)
    return out


@router.post("/batches", status_code=202)
def create_batch(
    body: BatchCreate, principal: WriteBatches, services: ServicesDep
) -> dict[str, Any]:
    """Create a batch and start its job; 202 with the batch id, the job id and where to follow
    them. Bad input is a 422 naming the field, and nothing is recorded or enqueued."""
    started = submission.start(services, body.spec(), factory_of(services).settings)
    return {
        "batch_id": str(started.batch_id),
        "job_id": started.job_id,
        **batch_view(services, started.batch_id),
    }


@router.get("/batches")
def list_batches(
    principal: ReadBatches,
    services: ServicesDep,
    status: Status | None = None,
    factory_id: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    category: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Batches newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    flt = queries.BatchFilter(status, factory_id, category)
    with services.engine.connect() as conn:
        rows, next_cursor = queries.list_batches(conn, flt, limit, cursor)
    return {"items": [queries.batch_public(b) for b in rows], "next_cursor": next_cursor}


@router.get("/batches/stats")
def batch_stats(principal: ReadBatches, services: ServicesDep) -> dict[str, Any]:
    """Batches and products per status."""
    with services.engine.connect() as conn:
        return queries.stats(conn)


@router.get("/batches/{batch_id}")
def get_one(batch_id: uuid.UUID, principal: ReadBatches, services: ServicesDep) -> dict[str, Any]:
    """One batch: status, counts, Merkle root, anchor, timeline, error, job and progress."""
    return batch_view(services, batch_id)


@router.post("/batches/{batch_id}/retry", status_code=202)
def retry_batch(
    batch_id: uuid.UUID, principal: WriteBatches, services: ServicesDep
) -> dict[str, Any]:
    """Run a failed batch (or one whose job ended before it finished) again from the step it
    stopped at; written products are never written twice. 409 for any other batch."""
    submission.retry(services.engine, batch_id, submission.control_sender(services))
    return batch_view(services, batch_id)


@router.get("/batches/{batch_id}/products")
def list_products(
    batch_id: uuid.UUID,
    principal: ReadBatches,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, description="products with a serial above this")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """A batch's products in serial order: serial, token, verification URL."""
    with services.engine.connect() as conn:
        items, next_after = queries.product_page(conn, batch_id, after, limit)
    return {"items": items, "next_after": next_after}


@router.get("/batches/{batch_id}/products.csv")
def products_csv(
    batch_id: uuid.UUID, principal: ReadBatches, services: ServicesDep
) -> StreamingResponse:
    """Every product of a batch as CSV for label printing, streamed from PostgreSQL."""
    return csv_response(services, batch_id)


def csv_response(services: Services, batch_id: uuid.UUID) -> StreamingResponse:
    """The batch's CSV as a download (the API's and the dashboard's)."""
    get_batch(services.engine, batch_id)  # a 404 before the stream starts, not a broken file
    return StreamingResponse(
        queries.products_csv(services.engine, batch_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'},
    )


# `:path`: a token with a slash in it (`%2F` arrives decoded) is garbage to answer, not a 404.
@router.get("/verify/{token:path}", dependencies=[Public])
def verify(services: ServicesDep, token: str) -> dict[str, Any]:
    """Public (no key): whether ``token`` is a genuine product's, with the product, its batch,
    the RFC 9162 inclusion proof (hex) and the anchor. Always 200: see ``authentic``/``reason``."""
    return factory_of(services).verifier.verify(token).as_dict()
