"""FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from celery import Celery
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from conveyor.api.auth import Authenticator, auth_required, check_declared, check_deployment
from conveyor.api.deps import Services
from conveyor.api.docs import install_docs
from conveyor.api.errors import ERROR_RESPONSES, install_error_handlers
from conveyor.api.limits import RequestLimits
from conveyor.api.transport import api_docs_enabled, install_transport
from conveyor.config import Settings
from conveyor.control import Control
from conveyor.ledger.db import make_engine
from conveyor.runtime.context import discover


def load_celery_app(spec: str) -> Celery:
    """Import ``module:attribute`` and make sure Conveyor is installed on it."""
    import importlib

    from conveyor.runtime.install import install

    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app")
    install(app)
    return app


def import_code_schedules(services: Services) -> None:
    from conveyor.runtime.code_schedules import code_schedules

    try:
        services.schedules.import_code(code_schedules(services.app))
    except Exception:
        logging.getLogger(__name__).warning(
            "could not import the app's beat_schedule as schedules", exc_info=True
        )


def create_app(settings: Settings | None = None, celery_app: Celery | None = None) -> FastAPI:
    settings = discover(settings or Settings())
    check_deployment(settings)  # before anything starts: an unsafe production setup never serves
    if not settings.database_url:
        from conveyor.errors import ConfigurationError

        raise ConfigurationError("CONVEYOR_DATABASE_URL is not set and no `conveyor up` is running")
    celery_app = celery_app or load_celery_app(settings.app)
    from conveyor.runtime.install import install

    install(celery_app, settings)
    if celery_app.conveyor_runtime.production:
        from conveyor.runtime.queues import refuse_mismatched_queues_now

        refuse_mismatched_queues_now(celery_app)
    from conveyor.packs import register_tasks

    packs = register_tasks(celery_app, settings)
    celery_app.loader.import_default_modules()
    celery_app.finalize()
    engine = make_engine(settings.database_url)
    services = Services(
        settings=settings, app=celery_app, engine=engine, control=Control(celery_app, engine)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The app's beat_schedule as code-declared schedules, so the API lists them before any
        # `conveyor beat` ran (a few rows; a failure is logged, never fatal).
        await run_in_threadpool(import_code_schedules, services)
        yield
        services.control.close()
        engine.dispose()

    docs = api_docs_enabled(settings)
    app = FastAPI(
        title="Conveyor",
        version="0.1.0",
        description="Control plane for Celery jobs: submit, follow, cancel, retry.",
        lifespan=lifespan,
        # Served by install_docs from local files, not FastAPI's CDN pages;
        # CONVEYOR_API_DOCS: off in production unless asked for.
        openapi_url="/openapi.json" if docs else None,
        docs_url=None,
        redoc_url=None,
    )
    if docs:
        install_docs(app)
    app.state.services = services
    app.state.authenticator = Authenticator(
        engine, required=auth_required(settings), cache_seconds=settings.auth_cache_seconds
    )
    install_error_handlers(app)
    app.add_middleware(
        RequestLimits,
        max_body=settings.payload_max_bytes,
        max_depth=settings.json_max_depth,
        max_items=settings.json_max_items,
        # Upload routes stream their bodies to disk under CONVEYOR_UPLOAD_MAX_BYTES instead.
        streaming=tuple(path for pack in packs for path in pack.streaming),
    )

    from conveyor.api import metrics
    from conveyor.api.routes import dlq, jobs, schedules, system, workflows

    errors = ERROR_RESPONSES  # documented on every route: one error body for them all
    app.include_router(jobs.router, prefix="/api/v1", responses=errors)
    app.include_router(dlq.router, prefix="/api/v1", responses=errors)
    app.include_router(schedules.router, prefix="/api/v1", responses=errors)
    app.include_router(workflows.router, prefix="/api/v1", responses=errors)
    app.include_router(system.router, prefix="/api/v1", responses=errors)
    app.include_router(system.health, responses=errors)
    app.include_router(metrics.router, responses=errors)
    for pack in packs:
        if pack.api:
            app.include_router(
                pack.attribute(pack.api), prefix=f"/api/v1/{pack.name}", responses=errors
            )
    check_declared(app)  # a route that declares no requirement would bind no key's allowlist

    from conveyor.web.routes import mount_web

    mount_web(app, packs)
    install_transport(app, settings)  # last: trusted proxies settle scheme and client first
    return app
