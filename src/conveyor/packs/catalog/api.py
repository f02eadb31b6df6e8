"""The catalog's REST API, mounted at ``/api/v1/catalog``."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.packs.catalog import api_imports, api_products, api_webhooks

router = APIRouter()
router.include_router(api_imports.router)
router.include_router(api_products.router)
router.include_router(api_webhooks.router)
