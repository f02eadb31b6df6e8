"""``/login`` and ``/logout``: a dashboard session from an API key.

Login checks the pasted key exactly as the API would (same cache, same revocation and expiry
rules) and needs ``jobs:read``, the least a dashboard page shows. The form posts only to the
same origin, and the cookie is HttpOnly and SameSite=Strict, so another site can neither read
the session nor ride on it.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.auth import get_authenticator
from conveyor.errors import NotAuthenticated
from conveyor.web.pages import PagesDep, require_same_origin
from conveyor.web.session import clear_session_cookie, get_signer, set_session_cookie

router = APIRouter(include_in_schema=False)

MAX_FORM_BYTES = 4096
NO_STORE = {"Cache-Control": "no-store"}


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only, never another origin."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


@router.get("/login", name="web_login", response_class=HTMLResponse)
def login_page(request: Request, pages: PagesDep, next: str | None = None) -> Response:
    """The login form (or straight on, while the dashboard needs no login)."""
    if not get_authenticator(request).required:
        return RedirectResponse(safe_next(next), status_code=303)
    response = pages.render(request, "login.html", {"next": safe_next(next)}, active="login")
    response.headers.update(NO_STORE)
    return response


@router.post("/login", name="web_login_submit")
async def login(request: Request, pages: PagesDep) -> Response:
    """Check the pasted key and start a session for it."""
    require_same_origin(request)
    authenticator = get_authenticator(request)
    raw = await request.body()
    form = parse_qs(raw[:MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=4)
    target = safe_next((form.get("next") or [""])[0])
    if not authenticator.required:
        return RedirectResponse(target, status_code=303)
    presented = (form.get("key") or [""])[0].strip()

    def refuse(message: str, status: int) -> Response:
        context = {"next": target, "error": message}
        response = pages.render(request, "login.html", context, status_code=status)
        response.headers.update(NO_STORE)
        return response

    if not presented:
        return refuse("Paste an API key to log in.", 400)
    try:
        principal = await authenticator.authenticate(presented)
    except NotAuthenticated as exc:
        return refuse(f"Login refused: {exc}.", 401)
    if not principal.has("jobs:read") or principal.key_id is None:
        return refuse(
            "Login refused: this key lacks the scope 'jobs:read', which the dashboard needs.",
            403,
        )
    signer = get_signer(request)
    response = RedirectResponse(target, status_code=303)
    scopes = tuple(sorted(principal.scopes))
    set_session_cookie(request, response, signer.issue(principal.key_id, scopes), signer.max_age)
    return response


@router.post("/logout", name="web_logout")
def logout(request: Request) -> Response:
    """End the session."""
    require_same_origin(request)
    response = RedirectResponse(str(request.url_for("web_login")), status_code=303)
    clear_session_cookie(request, response)
    return response
