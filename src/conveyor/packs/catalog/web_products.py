"""Dashboard: the products page — filters, sorting, keyset pages, add, inline edit, delete
with a confirmation, delete all after a confirmation that names the count."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from conveyor.errors import ConveyorError, InputRejected, ResourceConflict, ResourceNotFound
from conveyor.packs.catalog import product_changes, products
from conveyor.packs.catalog.api_products import ProductCreate
from conveyor.packs.kit import (
    PageError,
    PagesDep,
    ServicesDep,
    page_errors,
    page_scope,
)

router = APIRouter()
WRITE = [Depends(page_scope("jobs:write"))]
PAGE_SIZE = 50
SORTS = {"id": "Id", "sku": "SKU", "name": "Name", "updated_at": "Updated"}


def _query(request: Request) -> dict[str, str]:
    keep = ("sku", "name", "description", "active", "sort", "order")
    return {k: v for k in keep if (v := request.query_params.get(k, "").strip())}


@router.get("/catalog/products", name="catalog_products", response_class=HTMLResponse)
def products_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    sku: Annotated[str, Query(max_length=64)] = "",
    name: Annotated[str, Query(max_length=255)] = "",
    description: Annotated[str, Query(max_length=200)] = "",
    active: Annotated[str, Query(pattern="^(|true|false)$")] = "",
    sort: Annotated[str, Query(pattern="^(id|sku|name|updated_at)$")] = "id",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    notice: Annotated[str | None, Query(max_length=300)] = None,
    error: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    """A page of products matching the filters."""
    flt = products.ProductFilter(
        sku=sku.replace("\x00", "") or None,
        name=name.replace("\x00", "") or None,
        description=description.replace("\x00", "") or None,
        active=None if not active else active == "true",
    )
    with page_errors(), services.engine.connect() as conn:
        try:
            rows, next_cursor = products.list_products(
                conn, flt, sort=sort, descending=order == "desc", cursor=cursor, limit=PAGE_SIZE
            )
        except InputRejected as exc:
            raise PageError(400, "Bad page link", str(exc)) from None
        cap = products.COUNT_CAP
        total = products.count(conn, flt, cap=cap)
        everything = products.count(conn, cap=cap) if flt.where() else total
    query = _query(request)
    context = {
        "products": rows,
        "total": total,
        "everything": everything,
        "cap": cap,
        "query": query,
        "filtered": bool(flt.where()),
        "sorts": SORTS,
        "sort": sort,
        "order": order,
        "next_url": (
            str(
                request.url_for("catalog_products").include_query_params(
                    **query, cursor=next_cursor
                )
            )
            if next_cursor
            else None
        ),
        "first_url": str(request.url_for("catalog_products").include_query_params(**query)),
        "paged": cursor is not None,
        "notice": notice,
        "error": error,
    }
    return pages.render(request, "catalog_products.html", context, active="catalog-products")


def _back(request: Request, **params: str) -> RedirectResponse:
    url = request.url_for("catalog_products").include_query_params(**params)
    return RedirectResponse(str(url), status_code=303)


def _form_values(form: dict[str, Any]) -> dict[str, Any]:
    values = {
        "sku": form.get("sku", ""),
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "active": form.get("active") == "on",
    }
    try:
        return ProductCreate(**values).model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise InputRejected(problems) from None


@router.post("/catalog/products", name="catalog_product_add", dependencies=WRITE)
async def add_product(request: Request, services: ServicesDep) -> Response:
    """Create a product from the form; a duplicate SKU comes back as the page's error."""
    form = dict(await request.form())
    try:
        row = product_changes.add(services, _form_values(form))
    except (InputRejected, ResourceConflict) as exc:
        return _back(request, error=str(exc)[:300])
    return _back(request, notice=f"Added {row['sku']}.", sku=row["sku"])


@router.post("/catalog/products/{product_id}", name="catalog_product_edit", dependencies=WRITE)
async def edit_product(product_id: int, request: Request, services: ServicesDep) -> Response:
    """Save the inline edit form of one product."""
    form = dict(await request.form())
    try:
        row = product_changes.edit(services, product_id, _form_values(form))
    except (InputRejected, ResourceConflict, ResourceNotFound) as exc:
        return _back(request, error=str(exc)[:300])
    return _back(request, notice=f"Saved {row['sku']}.", sku=row["sku"])


def _confirm(
    request: Request, pages: PagesDep, product: dict[str, Any] | None, count: int
) -> Response:
    context = {"product": product, "count": count}
    return pages.render(request, "catalog_confirm.html", context, active="catalog-products")


@router.post(
    "/catalog/products/{product_id}/delete", name="catalog_product_delete", dependencies=WRITE
)
def delete_product(
    product_id: int,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    """Ask, then delete one product."""
    try:
        if not confirmed:
            with services.engine.connect() as conn:
                product = products.get(conn, product_id)
            return _confirm(request, pages, product, 1)
        row = product_changes.delete_one(services, product_id)
    except ResourceNotFound as exc:
        return _back(request, error=str(exc))
    return _back(request, notice=f"Deleted {row['sku']}.")


@router.post("/catalog/products-delete-all", name="catalog_delete_all", dependencies=WRITE)
def delete_all(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    """Ask ("This deletes N products and cannot be undone"), then delete every product."""
    with page_errors():
        if not confirmed:
            with services.engine.connect() as conn:
                return _confirm(request, pages, None, products.count(conn))
        try:
            n = product_changes.delete_all(services)
        except ConveyorError as exc:
            return _back(request, error=f"Nothing was deleted: {exc}")
    return _back(request, notice=f"Deleted all {n:,} products.")
