"""Mount the dashboard on the API's FastAPI app.

One router module per page group (``jobs``, ``dlq``, ``workers``, ``queues``, ``tasks``,
``overview``): each defines its routes, ``pages.NAV`` lists them in the
navigation, and this function includes them. Static files (one stylesheet, one script) are
served at ``/static``.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from conveyor.api.auth import auth_required
from conveyor.web import (
    dlq,
    jobs,
    jobs_bulk,
    login,
    overview,
    pages,
    queues,
    session,
    tasks,
    workers,
)


def mount_web(app: FastAPI) -> None:
    """Add the dashboard's pages, its static files and its error pages to ``app``."""
    pages.install(app, pages.Pages())
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
    app.include_router(overview.router, dependencies=[Depends(session.page_scope("jobs:read"))])
