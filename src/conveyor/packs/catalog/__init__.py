"""The catalog pack: a product catalog fed by large CSV imports, with webhooks.

See README.md in this directory.
"""

from __future__ import annotations

from conveyor.packs import NavEntry, Pack

PACK = Pack(
    name="catalog",
    title="Catalog",
    tasks="conveyor.packs.catalog.tasks:register",
    api="conveyor.packs.catalog.api:router",
    cli="conveyor.packs.catalog.cli:app",
    web="conveyor.packs.catalog.web:router",
    templates_dir="templates",
    nav=(
        NavEntry("Products", "catalog_products", "catalog-products"),
        NavEntry("Imports", "catalog_imports", "catalog-imports"),
        NavEntry("Webhooks", "catalog_webhooks", "catalog-webhooks"),
    ),
    streaming=("/api/v1/catalog/imports", "/catalog/imports"),
    tables="conveyor.packs.catalog.tables:metadata",
)
