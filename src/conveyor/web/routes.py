"""Mount the dashboard on the API's FastAPI app.

One router module per page group (``jobs`` today; overview, workers, queues and dead letters
join it later): each defines its routes, ``pages.NAV`` lists them in the navigation, and this
function includes them. Static files (one stylesheet, one script) are served at ``/static``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from conveyor.web import jobs, pages


def mount_web(app: FastAPI) -> None:
    """Add the dashboard's pages, its static files and its error pages to ``app``."""
    pages.install(app, pages.Pages())
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.include_router(jobs.router)

    # The jobs list is the home page until an overview page takes its place.
    @app.get("/", name="web_home", include_in_schema=False)
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("web_jobs")), status_code=307)
