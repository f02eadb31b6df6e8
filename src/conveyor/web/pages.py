"""The dashboard's page machinery: templates, navigation, security headers and error pages.

Every page group (``jobs.py`` today; overview, workers, queues, dead letters later) renders
through one :class:`Pages` object that ``mount_web`` stores on the app, and signals failures by
raising :class:`PageError`, which becomes an HTML error page instead of the API's JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import jinja2
import redis
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError

from conveyor.errors import (
    JobNotFound,
    LedgerUnavailable,
    PermissionDenied,
    QueueNotFound,
    WorkflowNotFound,
)
from conveyor.web import formatting

if TYPE_CHECKING:  # csrf.py builds on this module; at run time the guard is found on the app
    from conveyor.web.csrf import CsrfGuard

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def asset_version(directory: Path = STATIC_DIR) -> str:
    """A digest of the static files, appended to their URLs so a browser never pairs new
    pages with a stale cached script or stylesheet."""
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class NavItem:
    """One entry of the navigation: its label, the route name it links to, its key."""

    label: str
    route: str
    key: str


@dataclass(frozen=True)
class NavSection:
    """One group of the sidebar: Conveyor's own pages (``pack`` empty, no title), or a pack's
    pages under the pack's title, in the order its descriptor lists them."""

    pack: str
    title: str
    items: tuple[NavItem, ...]


NAV: tuple[NavItem, ...] = (
    NavItem("Overview", "web_home", "overview"),
    NavItem("Jobs", "web_jobs", "jobs"),
    NavItem("Workflows", "web_workflows", "workflows"),
    NavItem("Dead letters", "web_dlq", "dlq"),
    NavItem("Schedules", "web_schedules", "schedules"),
    NavItem("Workers", "web_workers", "workers"),
    NavItem("Queues", "web_queues", "queues"),
    NavItem("Tasks", "web_tasks", "tasks"),
)
"""Conveyor's own pages in the sidebar, in order. A new page group adds its entry here; packs
get a section of their own from their descriptor (see ``mount_web``)."""

# Job arguments, results and errors are arbitrary text from users and tasks: besides escaping
# everything, the pages allow no inline script or style, so an escaping slip cannot run code.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class PageError(Exception):
    """Raised by a dashboard route to answer with an HTML error page."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message


def make_environment(extra_dirs: Sequence[Path] = ()) -> jinja2.Environment:
    """The Jinja environment: autoescaping always on, undefined names are errors. Packs'
    template directories come after Conveyor's, so their pages extend ``base.html``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([TEMPLATES_DIR, *extra_dirs]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=formatting.format_duration,
        rate=formatting.format_rate,
        number=formatting.format_number,
        when=formatting.format_time,
        iso=formatting.iso_time,
        pretty_json=formatting.pretty_json,
        truncate_text=formatting.truncate,
        short_id=formatting.short_id,
        doc_summary=formatting.doc_summary,
    )
    return env


class Pages:
    """Renders dashboard templates with the context every page shares."""

    def __init__(
        self,
        nav: Sequence[NavItem] = NAV,
        template_dirs: Sequence[Path] = (),
        sections: Sequence[NavSection] = (),
    ) -> None:
        # The sidebar: the core pages first, then one section per pack.
        self.nav = (NavSection("", "", tuple(nav)), *sections)
        self.templates = Jinja2Templates(env=make_environment(template_dirs))
        self.asset_version = asset_version()

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        active: str = "",
    ) -> HTMLResponse:
        """Render ``template`` with the shared context (nav, flash messages, asset URLs)."""
        base: dict[str, Any] = {
            "nav": self.nav,
            "active": active,
            "notice": None,
            "error": None,
            "docs_url": getattr(request.app.state, "docs_url", None),
            "asset_version": self.asset_version,
            **access_context(request),
        }
        base.update(context or {})
        response = self.templates.TemplateResponse(
            request, template, base, status_code=status_code, headers=SECURITY_HEADERS
        )
        guard: CsrfGuard | None = getattr(request.app.state, "csrf", None)
        if guard is not None:  # the template is rendered by now: a token it used needs its cookie
            guard.attach(request, response)
        return response

    def error(self, request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
        """An error page that keeps the navigation, so the user can find their way back."""
        return self.render(
            request,
            "error.html",
            {"status_code": status_code, "title": title, "message": message},
            status_code=status_code,
        )


def access_context(request: Request) -> dict[str, Any]:
    """What every page shows about access: a warning while anyone may act without logging in,
    else who is logged in (set by ``session.page_scope``); and the CSRF field for its forms."""
    authenticator = getattr(request.app.state, "authenticator", None)
    principal = getattr(request.state, "principal", None)
    guard: CsrfGuard | None = getattr(request.app.state, "csrf", None)
    return {
        "open_access": authenticator is not None and not authenticator.required,
        "viewer": principal if principal is not None and principal.logged_in else None,
        # Pages offer an action only to someone who may take it (the route checks again).
        "can": lambda scope: principal is not None and principal.has(scope),
        # Called by each POST form; a page without forms issues no token.
        "csrf_field": (lambda: guard.field(request)) if guard is not None else (lambda: ""),
        # For multipart (upload) forms, which carry the token in their action URL.
        "csrf_token": (lambda: guard.token(request)) if guard is not None else (lambda: ""),
    }


def live_fragment(request: Request, response: Response) -> Response:
    """A page fragment a script polls (the workflow page's parts, a pack's live parts): marked
    with an ETag of its body and never cached; a 304 without the body when it is what the
    script already has (its ``If-None-Match``), so a poll while nothing changes costs little."""
    etag = '"' + hashlib.sha256(bytes(response.body)).hexdigest()[:32] + '"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-store"})
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "no-store"
    return response


def get_pages(request: Request) -> Pages:
    """The app's :class:`Pages`, created by ``mount_web``."""
    return request.app.state.pages  # type: ignore[no-any-return]


PagesDep = Annotated[Pages, Depends(get_pages)]


@contextmanager
def page_errors() -> Iterator[None]:
    """Turn the errors a page can expect into error pages: unknown job, queue or workflow,
    services down."""
    try:
        yield
    except JobNotFound as exc:
        raise PageError(404, "Job not found", str(exc)) from None
    except QueueNotFound as exc:
        raise PageError(404, "Queue not found", str(exc)) from None
    except WorkflowNotFound as exc:
        raise PageError(404, "Workflow not found", str(exc)) from None
    except PermissionDenied as exc:
        raise PageError(403, "Not allowed", str(exc)) from None
    except (LedgerUnavailable, OperationalError):
        raise PageError(
            503, "Ledger unavailable", "PostgreSQL is unreachable right now; try again shortly."
        ) from None
    except redis.RedisError:
        raise PageError(
            503, "Redis unavailable", "Redis is unreachable right now; try again shortly."
        ) from None


def install(app: FastAPI, pages: Pages) -> None:
    """Store ``pages`` on the app and answer :class:`PageError` with its error page."""
    app.state.pages = pages

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return pages.error(request, exc.status_code, exc.title, exc.message)

    app.add_exception_handler(PageError, page_error)
