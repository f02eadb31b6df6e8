"""Mount the dashboard on the API's FastAPI app.

One router module per page group (``jobs``, ``dlq``, ``workers``, ``queues``, ``tasks``; an
overview joins them later): each defines its routes, ``pages.NAV`` lists them in the
navigation, and this function includes them. Static files (one stylesheet, one script) are
served at ``/static``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from conveyor.api.auth import auth_required
from conveyor.packs import Pack
from conveyor.web import dlq, jobs, jobs_bulk, login, pages, queues, session, tasks, workers


def mount_web(app: FastAPI, packs: Sequence[Pack] = ()) -> None:
    """Add the dashboard's pages, its static files and its error pages to ``app``; each
    pack's pages, templates and navigation entries too."""
    nav = list(pages.NAV)
    template_dirs = []
    for pack in packs:
        nav.extend(pages.NavItem(e.label, e.route, e.key) for e in pack.nav)
        if pack.templates_dir:
            package = importlib.import_module(f"conveyor.packs.{pack.name}")
            template_dirs.append(Path(str(package.__file__)).parent / pack.templates_dir)
    pages.install(app, pages.Pages(nav, template_dirs=template_dirs))
    settings = app.state.services.settings
    signer = None
    if auth_required(settings):
        assert settings.secret_key is not None  # create_app refuses to start without one
        secret = settings.secret_key.get_secret_value()
        signer = session.SessionSigner(secret, settings.session_max_age_seconds)
    session.install(app, signer)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.include_router(login.router)
    # Every page needs a session whose key may read jobs (while auth is on); actions ask more.
    # Bulk actions first: /jobs/bulk must not fall to the job pages' catch-all route.
    app.include_router(jobs_bulk.router, dependencies=[Depends(session.page_scope("jobs:read"))])
    app.include_router(jobs.router, dependencies=[Depends(session.page_scope("jobs:read"))])
    # Reading dead letters is reading jobs; replaying and deleting them asks for dlq:admin.
    app.include_router(dlq.router, dependencies=[Depends(session.page_scope("jobs:read"))])
    app.include_router(workers.router, dependencies=[Depends(session.page_scope("jobs:read"))])
    app.include_router(queues.router, dependencies=[Depends(session.page_scope("jobs:read"))])
    app.include_router(tasks.router, dependencies=[Depends(session.page_scope("jobs:read"))])
    for pack in packs:
        if pack.web:
            # Pack pages are read with jobs:read like the rest; their actions ask for more.
            app.include_router(
                pack.attribute(pack.web), dependencies=[Depends(session.page_scope("jobs:read"))]
            )

    # The jobs list is the home page until an overview page takes its place.
    @app.get("/", name="web_home", include_in_schema=False)
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("web_jobs")), status_code=307)
