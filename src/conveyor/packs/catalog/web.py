"""The catalog's dashboard pages: products, imports, webhooks."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.packs.catalog import web_imports, web_products, web_webhooks

router = APIRouter(include_in_schema=False)
router.include_router(web_products.router)
router.include_router(web_imports.router)
router.include_router(web_webhooks.router)
