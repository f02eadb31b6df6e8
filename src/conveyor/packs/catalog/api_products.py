"""``/api/v1/catalog/products``: list with filters, sorting and keyset pages; create, read,
change and delete one product; delete all of them after an explicit confirmation.

Every change is announced to the webhooks subscribed to it (``product.created``,
``product.updated``, ``product.deleted``) by jobs of their own, after the change commits: a
slow receiver never slows this API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from conveyor.errors import InputRejected
from conveyor.packs.catalog import product_changes, products
from conveyor.packs.catalog.tables import DESCRIPTION_MAX, NAME_MAX, SKU_MAX
from conveyor.packs.catalog.tasks import DELIVER_TASK, IMPORT_TASK
from conveyor.packs.kit import Principal, ServicesDep, require

router = APIRouter(tags=["catalog products"])

# Products are written by imports and each change is announced by webhook deliveries: a key
# limited to some tasks needs both.
ReadProducts = Annotated[Principal, Depends(require("jobs:read", IMPORT_TASK, DELIVER_TASK))]
WriteProducts = Annotated[Principal, Depends(require("jobs:write", IMPORT_TASK, DELIVER_TASK))]

# PostgreSQL text cannot hold NUL: refused here with a 422 rather than by the database.
NO_NUL = r"^[^\x00]*$"
Sku = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=SKU_MAX, pattern=NO_NUL)
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX, pattern=NO_NUL),
]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX, pattern=NO_NUL)]
ProductId = Annotated[int, Path(ge=1, le=products.MAX_ID)]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    name: Name
    description: Description = ""
    active: bool = True


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku | None = None
    name: Name | None = None
    description: Description | None = None
    active: bool | None = None


class ProductPublic(BaseModel):
    id: int
    sku: str
    name: str
    description: str
    active: bool
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductPublic]
    next_cursor: str | None
    total: int = Field(description="products matching the filters, counted up to 10,000")
    total_exact: bool = Field(description="false when more than `total` products match")


class Deleted(BaseModel):
    deleted: int


@router.get("/products", response_model=ProductPage)
def list_products(
    principal: ReadProducts,
    services: ServicesDep,
    sku: Annotated[
        str | None, Query(max_length=SKU_MAX, pattern=NO_NUL, description="SKU starts with")
    ] = None,
    name: Annotated[
        str | None, Query(max_length=NAME_MAX, pattern=NO_NUL, description="name contains")
    ] = None,
    description: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="description contains")
    ] = None,
    active: bool | None = None,
    sort: Literal["id", "sku", "name", "created_at", "updated_at"] = "id",
    order: Literal["asc", "desc"] = "asc",
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """A page of products; pass ``next_cursor`` back as ``cursor`` for the next one."""
    flt = products.ProductFilter(sku=sku, name=name, description=description, active=active)
    with services.engine.connect() as conn:
        rows, next_cursor = products.list_products(
            conn, flt, sort=sort, descending=order == "desc", cursor=cursor, limit=limit
        )
        total = products.count(conn, flt, cap=products.COUNT_CAP)
    exact = total <= products.COUNT_CAP
    return {
        "items": rows,
        "next_cursor": next_cursor,
        "total": min(total, products.COUNT_CAP),
        "total_exact": exact,
    }


@router.post("/products", status_code=201, response_model=ProductPublic)
def create_product(
    body: ProductCreate, principal: WriteProducts, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """Create a product; 409 if its SKU exists already (in any case)."""
    row = product_changes.add(services, body.model_dump())
    response.headers["Location"] = f"/api/v1/catalog/products/{row['id']}"
    return row


@router.get("/products/{product_id}", response_model=ProductPublic)
def get_product(
    product_id: ProductId, principal: ReadProducts, services: ServicesDep
) -> dict[str, Any]:
    with services.engine.connect() as conn:
        return products.get(conn, product_id)


@router.patch("/products/{product_id}", response_model=ProductPublic)
def update_product(
    product_id: ProductId, body: ProductUpdate, principal: WriteProducts, services: ServicesDep
) -> dict[str, Any]:
    """Change the fields given; 409 if a new SKU belongs to another product."""
    values = body.model_dump(exclude_unset=True)
    if any(values.get(k) is None for k in values):
        raise InputRejected("sku, name, description and active cannot be null")
    return product_changes.edit(services, product_id, values)


@router.delete("/products/{product_id}", status_code=204)
def delete_product(
    product_id: ProductId, principal: WriteProducts, services: ServicesDep
) -> Response:
    product_changes.delete_one(services, product_id)
    return Response(status_code=204)


@router.delete("/products", response_model=Deleted)
def delete_all_products(
    principal: WriteProducts,
    services: ServicesDep,
    confirm: Annotated[
        str | None, Query(description="must be `all`: this cannot be undone")
    ] = None,
) -> dict[str, int]:
    """Delete every product (instant at any size); requires ``?confirm=all``. Subscribers of
    ``product.deleted`` get one event ``{"all": true, "count": N}``, not one per product."""
    if confirm != "all":
        with services.engine.connect() as conn:
            n = products.count(conn)
        raise InputRejected(
            f"this deletes {n:,} products and cannot be undone; repeat with ?confirm=all"
        )
    return {"deleted": product_changes.delete_all(services)}
