"""Dashboard sessions: who is looking at the dashboard, when ``CONVEYOR_AUTH=required``.

Someone logs in as a user with a password, or by pasting an API key (``login.py``); the
dashboard then keeps a cookie naming that user's id (or that key's id), when it was issued and
until when it holds, signed with HMAC-SHA256 under a key derived from ``CONVEYOR_SECRET_KEY``.
The cookie never holds a password or a key's secret, nor the scopes: each request re-reads the
user (``accounts.py``) or the key through a per-process cache, so disabling a user, changing
their role or password, or revoking a key ends or changes its sessions within
``CONVEYOR_AUTH_CACHE_SECONDS``.

Pages depend on :func:`page_scope`; without a valid session a browser is sent to ``/login``
and anything else gets a 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from conveyor.api.auth import OPEN, Authenticator, Principal, get_authenticator
from conveyor.api.deps import get_services
from conveyor.core.ids import parse_job_id
from conveyor.errors import NotAuthenticated, PermissionDenied
from conveyor.ledger import repository as repo
from conveyor.ledger.keys import Scope
from conveyor.web.accounts import get_accounts
from conveyor.web.pages import PageError, page_errors

T = TypeVar("T")
V = TypeVar("V")

COOKIE = "conveyor_session"
_VERSION = "v2"  # v1 cookies named a key and its scopes; they simply stop being accepted


@dataclass(frozen=True)
class Session:
    """What the cookie says: which user (or key) logged in, when, and until when."""

    user_id: int | None
    key_id: str | None
    issued_at: float
    expires_at: float


class SessionSigner:
    """Issues and checks session cookies."""

    def __init__(self, secret: str, max_age: int, clock: Callable[[], float] = time.time) -> None:
        # A key of its own, so a signature made here means nothing anywhere else the secret is used.
        self._key = hmac.new(secret.encode(), b"conveyor dashboard session", "sha256").digest()
        self.max_age = max_age
        self.clock = clock

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue_user(self, user_id: int) -> str:
        """A cookie value for a fresh session of a dashboard user."""
        return self._issue({"u": user_id})

    def issue_key(self, key_id: str) -> str:
        """A cookie value for a fresh session of an API key."""
        return self._issue({"k": key_id})

    def _issue(self, subject: dict[str, int | str]) -> str:
        now = self.clock()
        # Issued-at to the millisecond (rounded down, never in the future): a password change
        # a moment later must end the session.
        body = {**subject, "i": math.floor(now * 1000) / 1000, "e": int(now) + self.max_age}
        raw = json.dumps(body, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return f"{_VERSION}.{payload}.{self._sign(payload)}"

    def read(self, value: str | None) -> Session | None:
        """The session a cookie value carries, or None if it is absent, forged or expired."""
        if not value or len(value) > 4096:
            return None
        version, _, rest = value.partition(".")
        payload, _, signature = rest.partition(".")
        if version != _VERSION or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            user_id = int(body["u"]) if "u" in body else None
            key_id = str(body["k"]) if "k" in body else None
            session = Session(user_id, key_id, float(body["i"]), float(body["e"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if (user_id is None) == (key_id is None):  # a session is for exactly one of them
            return None
        return session if session.expires_at > self.clock() else None


def get_signer(request: Request) -> SessionSigner:
    return request.app.state.sessions  # type: ignore[no-any-return]


def set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


LIMITED_KEY = (
    "this key is limited to some tasks or queues, and the dashboard's pages show every task's "
    "jobs: log in as a user, or with a key without --task/--queue limits"
)
"""Why a key with allowlists opens no dashboard session (its pages are not filtered per job)."""


class LoginRequired(Exception):
    """No valid session: browsers go to the login page, other clients get a 401."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "log in to use the dashboard")
        self.reason = reason


async def session_principal(request: Request) -> Principal:
    """The principal behind the request's session (:data:`OPEN` while auth is off)."""
    authenticator: Authenticator = get_authenticator(request)
    if not authenticator.required:
        return OPEN
    session = get_signer(request).read(request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired()
    try:
        if session.user_id is not None:
            accounts = get_accounts(request)
            user = await _cached(accounts.cached, accounts.lookup, session.user_id)
            return accounts.principal_for(user, session.issued_at)
        assert session.key_id is not None  # SessionSigner.read ensures a user or a key
        key = await _cached(authenticator.cached, authenticator.lookup, session.key_id)
        principal = Authenticator.principal_for(key)
        if principal.restricted:  # a session from before the key could not log in any more
            raise NotAuthenticated(LIMITED_KEY)
        return principal
    except NotAuthenticated as exc:
        raise LoginRequired(str(exc)) from None


async def _cached(
    cached: Callable[[T], tuple[bool, V | None]], lookup: Callable[[T], V | None], ident: T
) -> V | None:
    """From the cache if fresh, else looked up in a thread (the ledger is blocking)."""
    fresh, value = cached(ident)
    if not fresh:
        with page_errors():
            value = await run_in_threadpool(lookup, ident)
    return value


def page_scope(
    scope: Scope, *, job_param: str | None = None
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency for dashboard routes: a session whose user's role (or key) holds ``scope``;
    with ``job_param``, also a job (named by that path parameter) within a key's allowlists."""

    async def dependency(request: Request) -> Principal:
        principal = await session_principal(request)
        request.state.principal = principal
        try:
            principal.require(scope)
            job_id = request.path_params.get(job_param) if job_param else None
            if job_id is not None and principal.restricted:
                await run_in_threadpool(_check_job, request, principal, str(job_id))
        except PermissionDenied as exc:
            raise PageError(403, "Not allowed", str(exc)) from None
        return principal

    dependency.__name__ = f"page_{scope.replace(':', '_')}"
    return dependency


def _check_job(request: Request, principal: Principal, job_id: str) -> None:
    with page_errors():
        canonical = parse_job_id(job_id)
        with get_services(request).engine.connect() as conn:
            row = repo.get_job(conn, canonical)
    principal.check_job(row["task"], row["queue"], job_id=canonical)


def install(app: FastAPI, signer: SessionSigner | None) -> None:
    """Store the signer and send requests without a session to the login page."""
    app.state.sessions = signer

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        if "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            url = f"{request.url_for('web_login')}?next={quote(target, safe='')}"
            response: Response = RedirectResponse(url, status_code=303)
        else:
            response = JSONResponse(
                {"detail": f"{exc}; log in at /login", "error": "NotAuthenticated"},
                status_code=401,
            )
        if exc.reason is not None:
            clear_session_cookie(request, response)
        return response

    app.add_exception_handler(LoginRequired, login_required)
