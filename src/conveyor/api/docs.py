"""The API's interactive documentation, served whole by this process: Swagger UI at ``/docs``,
ReDoc at ``/redoc``.

FastAPI's own docs pages load Swagger UI and ReDoc from a public CDN: blank on a closed network,
and every reader's browser calls out to a third party. Here the scripts and styles come from
the ``fastapi-offline`` package, which ships current builds of both (served under
``/static/api-docs``), and the pages carry a Content-Security-Policy that lets them fetch from
this origin only (ReDoc's sidebar would otherwise fetch its vendor's logo).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/static/api-docs"

# Both pages start their bundle with an inline script or style (FastAPI's page templates) and
# ReDoc runs its search in a worker made from a blob; nothing may come from another origin.
DOCS_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "worker-src 'self' blob:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI and ReDoc for ``app``'s OpenAPI document, assets included; the
    dashboard links to ``app.state.docs_url``. Create ``app`` with ``docs_url=None`` and
    ``redoc_url=None`` so FastAPI's CDN pages do not answer first."""
    openapi_url = app.openapi_url or "/openapi.json"
    # Mounted before the dashboard's /static, so this prefix is matched first.
    app.mount(
        ASSETS_URL,
        StaticFiles(packages=[("fastapi_offline", "static")]),
        name="api_docs_assets",
    )
    favicon = "/static/favicon.svg"

    title = f"{app.title} API"

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _local_only(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=title,
                swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=favicon,
            )
        )

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _local_only(
            get_redoc_html(
                openapi_url=openapi_url,
                title=title,
                redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=favicon,
                with_google_fonts=False,
            )
        )

    app.state.docs_url = DOCS_URL


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(DOCS_HEADERS)
    return page
