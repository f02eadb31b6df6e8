"""``/login`` and ``/logout``: a dashboard session for a user (username and password) or, the
second option, for an API key.

A user logs in with the password ``conveyor users create`` set; a wrong password, an unknown
name and a disabled user get the same answer (``accounts.py``). Pasting an API key is checked
exactly as the API would (same cache, same revocation and expiry rules). Either way the session
needs ``jobs:read``, the least a dashboard page shows. The form carries a CSRF token bound to a
pre-session cookie (``csrf.py``), so another site cannot log a browser into its own account;
the session cookie is HttpOnly and SameSite=Strict, so another site can neither read it nor
ride on it.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.auth import get_authenticator
from conveyor.errors import LoginThrottled, NotAuthenticated
from conveyor.web.accounts import get_accounts
from conveyor.web.pages import PagesDep, page_errors
from conveyor.web.session import (
    LIMITED_KEY,
    clear_session_cookie,
    get_signer,
    set_session_cookie,
)

router = APIRouter(include_in_schema=False)

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
    """Check a username and password, or a pasted key, and start a session."""
    authenticator = get_authenticator(request)
    form = await request.form()  # parsed (and size-capped) by csrf.protect already
    field = {k: v if isinstance(v, str) else "" for k, v in form.items()}
    target = safe_next(field.get("next"))
    if not authenticator.required:
        return RedirectResponse(target, status_code=303)
    key = field.get("key", "").strip()
    username = field.get("username", "").strip()

    def refuse(message: str, status: int) -> Response:
        context = {"next": target, "error": message, "username": username, "with_key": key != ""}
        response = pages.render(request, "login.html", context, status_code=status)
        response.headers.update(NO_STORE)
        return response

    signer = get_signer(request)
    if key:
        try:
            principal = await authenticator.authenticate(key)
        except NotAuthenticated as exc:
            return refuse(f"Login refused: {exc}.", 401)
        if principal.key_id is None or not principal.has("jobs:read"):
            return refuse(
                "Login refused: this key lacks the scope 'jobs:read', which the dashboard needs.",
                403,
            )
        if principal.restricted:
            return refuse(f"Login refused: {LIMITED_KEY}.", 403)
        cookie = signer.issue_key(principal.key_id)
    else:
        password = field.get("password", "")
        if not username or not password:
            return refuse("Enter your username and password to log in.", 400)
        accounts = get_accounts(request)
        # The real client (uvicorn's, or a trusted proxy's X-Forwarded-For: api/transport.py).
        address = request.client.host if request.client else "unknown"
        try:
            with page_errors():
                user = await run_in_threadpool(accounts.log_in, username, password, address)
        except LoginThrottled as exc:
            response = refuse(f"Login refused: {exc}.", 429)
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return response
        except NotAuthenticated as exc:
            return refuse(f"Login refused: {exc}.", 401)
        cookie = signer.issue_user(user.id)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, cookie, signer.max_age)
    return response


@router.post("/logout", name="web_logout")
def logout(request: Request) -> Response:
    """End the session."""
    response = RedirectResponse(str(request.url_for("web_login")), status_code=303)
    clear_session_cookie(request, response)
    return response
