"""Mount the dashboard on the API's FastAPI app.

One router module per page group (``jobs``, ``workflows``, ``dlq``, ``workers``, ``queues``,
``tasks``, ``schedules``, ``overview``): each defines its routes, ``pages.NAV`` lists them in the
sidebar (each pack's pages follow in a section of their own, titled with the pack's title), and this
function includes them. Static files (one stylesheet, one script) are served at ``/static``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from conveyor.api.auth import auth_required
from conveyor.packs import Pack
from conveyor.web import (
    accounts,
    csrf,
    dlq,
    jobs,
    jobs_bulk,
    login,
    login_throttle,
    overview,
    pages,
    queues,
    schedules,
    session,
    tasks,
    workers,
    workflows,
)

# A page answers its errors as an HTML error page (a refused form as JSON ``ErrorBody``, as
# the API does); documented on every page so the OpenAPI document lists what a page can answer.
PAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": HTTPStatus(status).phrase,
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}},
        },
    }
    for status in (400, 401, 403, 404, 409, 413, 422, 503)
}


def mount_web(app: FastAPI, packs: Sequence[Pack] = ()) -> None:
    """Add the dashboard's pages, its static files and its error pages to ``app``; each
    pack's pages, templates and navigation entries too."""
    sections = []
    template_dirs = []
    for pack in packs:
        if pack.nav:  # each pack's pages under its own title in the sidebar
            items = tuple(pages.NavItem(e.label, e.route, e.key) for e in pack.nav)
            sections.append(pages.NavSection(pack.name, pack.title, items))
        if pack.templates_dir:
            package = importlib.import_module(f"conveyor.packs.{pack.name}")
            template_dirs.append(Path(str(package.__file__)).parent / pack.templates_dir)
    pages.install(app, pages.Pages(pages.NAV, template_dirs=template_dirs, sections=sections))
    services = app.state.services
    settings = services.settings
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    signer = None
    if auth_required(settings):
        assert secret is not None  # create_app refuses to start without one
        signer = session.SessionSigner(secret, settings.session_max_age_seconds)
    session.install(app, signer)
    app.state.accounts = accounts.Accounts(
        services.engine,
        lambda: services.control.redis,
        cache_seconds=settings.auth_cache_seconds,
        throttle=login_throttle.Throttle(
            free_failures=settings.login_free_failures,
            backoff_seconds=settings.login_backoff_seconds,
            backoff_max_seconds=settings.login_backoff_max_seconds,
            user_ceiling=settings.login_user_ceiling,
            window_seconds=settings.login_window_seconds,
            ceiling_interval_seconds=settings.login_ceiling_interval_seconds,
        ),
    )
    app.state.csrf = csrf.CsrfGuard(secret, signer)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    # Every state-changing request, login included, must come from the dashboard's own pages:
    # csrf.protect checks the origin and the form's token once, for every router.
    protect = Depends(csrf.protect)
    app.include_router(login.router, dependencies=[protect], responses=PAGE_ERRORS)
    # Every page needs a session that may read jobs (while auth is on); actions ask more. The
    # session is checked first, so an expired one leads to the login page, not a CSRF error.
    readers = [Depends(session.page_scope("jobs:read")), protect]
    # Bulk actions first: /jobs/bulk must not fall to the job pages' catch-all route.
    app.include_router(jobs_bulk.router, dependencies=readers, responses=PAGE_ERRORS)
    app.include_router(jobs.router, dependencies=readers, responses=PAGE_ERRORS)
    app.include_router(workflows.router, dependencies=readers, responses=PAGE_ERRORS)
    # Reading dead letters is reading jobs; replaying and deleting them asks for dlq:admin.
    app.include_router(dlq.router, dependencies=readers, responses=PAGE_ERRORS)
    app.include_router(workers.router, dependencies=readers, responses=PAGE_ERRORS)
    app.include_router(queues.router, dependencies=readers, responses=PAGE_ERRORS)
    app.include_router(tasks.router, dependencies=readers, responses=PAGE_ERRORS)
    # Reading schedules is reading jobs; changing them asks for more (see web/schedules.py).
    app.include_router(schedules.router, dependencies=readers, responses=PAGE_ERRORS)
    app.include_router(overview.router, dependencies=readers, responses=PAGE_ERRORS)
    for pack in packs:
        if pack.web:
            # Pack pages are read with jobs:read like the rest (their actions ask for more),
            # and their forms carry the same CSRF token.
            app.include_router(
                pack.attribute(pack.web), dependencies=readers, responses=PAGE_ERRORS
            )
        if pack.public_web:
            # No session asked for: these pages are for people who never log in.
            app.include_router(
                pack.attribute(pack.public_web), dependencies=[protect], responses=PAGE_ERRORS
            )
