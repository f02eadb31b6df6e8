"""Products: list with filters, sorting and keyset pagination; create, change, delete; delete
all. Plain functions over a SQLAlchemy connection, shared by the API and the dashboard.

Keyset pagination: a page ends with a cursor holding the last row's sort value and id, and the
next page starts after it, so page 10,000 costs what page 1 costs (no OFFSET) and rows
inserted meanwhile never shift a page. The SKU filter is a case-insensitive prefix, served by
the ``lower(sku)`` index; name and description filters are case-insensitive substrings.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from conveyor.errors import InputRejected, ResourceConflict, ResourceNotFound
from conveyor.packs.catalog.tables import products

Sort = Literal["id", "sku", "name", "created_at", "updated_at"]
SORTS: tuple[str, ...] = ("id", "sku", "name", "created_at", "updated_at")
MAX_ID = 2**63 - 1  # bigint
COUNT_CAP = 10_000  # list pages count matches up to here ("10,000+")
FIELDS = ("id", "sku", "name", "description", "active", "created_at", "updated_at")


@dataclass(frozen=True)
class ProductFilter:
    sku: str | None = None  # prefix, any case
    name: str | None = None  # contains, any case
    description: str | None = None  # contains, any case
    active: bool | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.sku:
            clauses.append(func.lower(products.c.sku).startswith(self.sku.lower(), autoescape=True))
        if self.name:
            clauses.append(products.c.name.icontains(self.name, autoescape=True))
        if self.description:
            clauses.append(products.c.description.icontains(self.description, autoescape=True))
        if self.active is not None:
            clauses.append(products.c.active.is_(self.active))
        return clauses


def _sort_key(sort: str) -> ColumnElement[Any]:
    if sort == "sku":
        return func.lower(products.c.sku)
    return products.c[sort]


def _encode_cursor(sort: str, value: Any, row_id: int) -> str:
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    raw = json.dumps([sort, value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, row_id = json.loads(raw)
    except (ValueError, TypeError):
        raise InputRejected("the cursor is not one this API returned; start from page 1") from None
    if kind != sort:
        raise InputRejected("the cursor belongs to another sort order; start from page 1")
    if not isinstance(row_id, int) or not 0 <= row_id <= MAX_ID:
        raise InputRejected("the cursor is damaged; start from page 1")
    if sort == "id" and (not isinstance(value, int) or not 0 <= value <= MAX_ID):
        raise InputRejected("the cursor is damaged; start from page 1")
    if sort != "id" and (not isinstance(value, str) or "\x00" in value):
        raise InputRejected("the cursor is damaged; start from page 1")
    if sort in ("created_at", "updated_at"):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            raise InputRejected("the cursor is damaged; start from page 1") from None
    return value, row_id


def list_products(
    conn: Connection,
    flt: ProductFilter,
    *,
    sort: str = "id",
    descending: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of products and the cursor of the next page (None on the last page)."""
    if sort not in SORTS:
        raise InputRejected(f"cannot sort by {sort!r}; choose one of {', '.join(SORTS)}")
    key = _sort_key(sort)
    clauses = flt.where()
    if cursor:
        value, after_id = _decode_cursor(cursor, sort)
        bound = tuple_(key, products.c.id)
        after = tuple_(literal(value, key.type), literal(after_id))
        clauses.append(bound < after if descending else bound > after)
    order = [key.desc(), products.c.id.desc()] if descending else [key, products.c.id]
    query = select(products).where(and_(*clauses)).order_by(*order).limit(limit + 1)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value = last["sku"].lower() if sort == "sku" else last[sort]
        next_cursor = _encode_cursor(sort, value, last["id"])
    return rows, next_cursor


def count(conn: Connection, flt: ProductFilter | None = None, *, cap: int | None = None) -> int:
    """How many products match (all of them without a filter). With ``cap``, counting stops
    past ``cap`` matches (the answer is then ``cap + 1``): a list page says "10,000+" after
    reading that many rows instead of scanning half a million for an exact figure."""
    inner = select(products.c.id)
    if flt is not None:
        inner = inner.where(and_(*flt.where()))
    if cap is not None:
        inner = inner.limit(cap + 1)
    return int(conn.execute(select(func.count()).select_from(inner.subquery())).scalar_one())


def get(conn: Connection, product_id: int) -> dict[str, Any]:
    row = conn.execute(select(products).where(products.c.id == product_id)).mappings().first()
    if row is None:
        raise ResourceNotFound(f"no product with id {product_id}")
    return dict(row)


def _duplicate(sku: str) -> ResourceConflict:
    return ResourceConflict(
        f"a product with SKU {sku!r} already exists (SKUs are unique regardless of case); "
        "edit that product instead, or choose another SKU"
    )


def create(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    """Insert a product; ResourceConflict if its SKU exists in any case."""
    try:
        with conn.begin_nested():
            row = conn.execute(insert(products).values(**values).returning(products)).mappings()
            return dict(row.one())
    except IntegrityError:
        raise _duplicate(values["sku"]) from None


def change(conn: Connection, product_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Update some fields of a product; ResourceConflict if the new SKU is taken."""
    if not values:
        return get(conn, product_id)
    try:
        with conn.begin_nested():
            row = conn.execute(
                update(products)
                .where(products.c.id == product_id)
                .values(**values, updated_at=func.now())
                .returning(products)
            ).mappings()
            found = row.first()
    except IntegrityError:
        raise _duplicate(values.get("sku", "")) from None
    if found is None:
        raise ResourceNotFound(f"no product with id {product_id}")
    return dict(found)


def remove(conn: Connection, product_id: int) -> dict[str, Any]:
    """Delete one product; what it was."""
    row = conn.execute(
        delete(products).where(products.c.id == product_id).returning(products)
    ).mappings()
    found = row.first()
    if found is None:
        raise ResourceNotFound(f"no product with id {product_id}")
    return dict(found)


def remove_all(conn: Connection, *, lock_timeout_ms: int = 5_000) -> int:
    """Delete every product at once (TRUNCATE: instant at any size); how many there were.

    TRUNCATE waits for running imports; past ``lock_timeout_ms`` it gives up and says why,
    rather than leave the caller hanging for a whole import.
    """
    conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
    try:
        with conn.begin_nested():
            conn.execute(text("LOCK TABLE catalog_products IN ACCESS EXCLUSIVE MODE"))
    except DBAPIError as exc:
        if "lock timeout" not in str(exc.orig).lower():
            raise
        raise ResourceConflict(
            "the products are busy (an import is probably merging right now); try again "
            "when it has finished"
        ) from None
    total = count(conn)
    conn.execute(text("TRUNCATE catalog_products"))
    return total
