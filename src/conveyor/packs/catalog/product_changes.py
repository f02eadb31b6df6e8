"""Changing products and announcing it: each change and its webhook deliveries commit
together, and the delivery jobs are submitted after the commit. The API and the dashboard both
change products through these."""

from __future__ import annotations

from typing import Any

from conveyor.packs.catalog import events, products
from conveyor.packs.kit import Services


def _announce(services: Services, sent: list[int]) -> None:
    events.dispatch(services.control, sent)


def add(services: Services, values: dict[str, Any]) -> dict[str, Any]:
    """Create a product (ResourceConflict for a SKU that exists in any case)."""
    with services.engine.begin() as conn:
        row = products.create(conn, values)
        sent = events.record(conn, "product.created", row)
    _announce(services, sent)
    return row


def edit(services: Services, product_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Change some fields of a product."""
    with services.engine.begin() as conn:
        row = products.change(conn, product_id, values)
        sent = events.record(conn, "product.updated", row)
    _announce(services, sent)
    return row


def delete_one(services: Services, product_id: int) -> dict[str, Any]:
    """Delete a product; what it was."""
    with services.engine.begin() as conn:
        row = products.remove(conn, product_id)
        sent = events.record(conn, "product.deleted", row)
    _announce(services, sent)
    return row


def delete_all(services: Services) -> int:
    """Delete every product; how many. Subscribers get one ``product.deleted`` event
    ``{"all": true, "count": N}``, not one per product."""
    with services.engine.begin() as conn:
        n = products.remove_all(conn)
        sent = events.record(conn, "product.deleted", {"all": True, "count": n})
    _announce(services, sent)
    return n
