"""Cross-site request forgery protection: one dependency on every state-changing dashboard route.

``routes.py`` applies :func:`protect` to every dashboard router (login included), and it checks
each POST, PUT, PATCH and DELETE twice:

1. **Same origin.** Browsers say where a request came from (``Sec-Fetch-Site``, else
   ``Origin``); one sent on behalf of another site is refused. Clients that send neither (curl,
   scripts) are not browsers riding on someone's session.
2. **A token.** Every form the dashboard renders carries a hidden ``csrf_token`` (scripts may
   send it as an ``X-CSRF-Token`` header instead). The token is an HMAC of what ties the browser
   to its session: the session cookie once logged in, else a random pre-session cookie
   (``conveyor_csrf``, set by the first page that renders a form, such as the login page, so a
   forged login is refused too). Another site can neither read these HttpOnly cookies nor the
   page, so it cannot produce the token; a new login or logout changes it.

The HMAC key is derived from ``CONVEYOR_SECRET_KEY``. While auth is off (the development
default) and no secret is set, the key is a fixed constant and the token is in effect a
double-submit token: it must match the pre-session cookie, which another site still cannot read
or set. The check itself applies either way, since an open dashboard is the one a forged request
could drive without any login.

A refused request gets a 403 page saying why; nothing is changed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from conveyor.web.pages import PageError
from conveyor.web.session import COOKIE, SessionSigner

CSRF_COOKIE = "conveyor_csrf"
FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_FIELDS = 1000  # the jobs and dead-letter pages post up to a page of ids
_NO_SECRET = b"conveyor csrf: no CONVEYOR_SECRET_KEY (double-submit only)"


class CsrfGuard:
    """Issues the token a page's forms carry and checks the one a request presents."""

    def __init__(self, secret: str | None, signer: SessionSigner | None) -> None:
        base = secret.encode() if secret else _NO_SECRET
        # A key of its own, so a token means nothing anywhere else the secret is used.
        self._key = hmac.new(base, b"conveyor dashboard csrf", hashlib.sha256).digest()
        self.signer = signer

    def _binding(self, request: Request, nonce: str | None) -> str | None:
        session = request.cookies.get(COOKIE)
        if session and self.signer is not None and self.signer.read(session) is not None:
            return f"session:{session}"
        if nonce and 16 <= len(nonce) <= 128:
            return f"pre-session:{nonce}"
        return None

    def _mac(self, binding: str) -> str:
        return hmac.new(self._key, binding.encode(), hashlib.sha256).hexdigest()

    def token(self, request: Request) -> str:
        """The token for forms on this request's page; starts a pre-session cookie if the
        browser has neither a session nor one (:meth:`attach` sends it)."""
        nonce = getattr(request.state, "csrf_nonce", None) or request.cookies.get(CSRF_COOKIE)
        binding = self._binding(request, nonce)
        if binding is None:
            request.state.csrf_nonce = secrets.token_urlsafe(32)
            binding = f"pre-session:{request.state.csrf_nonce}"
        return self._mac(binding)

    def field(self, request: Request) -> Markup:
        """The hidden input every POST form carries."""
        return Markup('<input type="hidden" name="{}" value="{}">').format(
            FIELD, escape(self.token(request))
        )

    def attach(self, request: Request, response: Response) -> None:
        """Set the pre-session cookie if :meth:`token` started one for this response."""
        nonce = getattr(request.state, "csrf_nonce", None)
        if nonce is None:
            return
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def valid(self, request: Request, presented: str | None) -> bool:
        """Whether ``presented`` is the token for this request's session or pre-session."""
        binding = self._binding(request, request.cookies.get(CSRF_COOKIE))
        if binding is None or not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._mac(binding).encode())


def get_guard(request: Request) -> CsrfGuard:
    """The app's :class:`CsrfGuard`, created by ``mount_web``."""
    return request.app.state.csrf  # type: ignore[no-any-return]


def require_same_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser sent on behalf of another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        allowed = site in ("same-origin", "none")
    else:
        origin = request.headers.get("origin")
        allowed = origin is None or urlsplit(origin).netloc == request.headers.get("host")
    if not allowed:
        raise PageError(
            403, "Cross-site request refused", "This action must be sent from the dashboard."
        )


async def presented_token(request: Request) -> str | None:
    """The token a request carries: the header, else the form field — or, for a multipart
    body, the ``csrf_token`` query parameter (a multipart body may be a large upload that its
    route streams to disk itself; parsing it here would read it into this request first)."""
    header = request.headers.get(HEADER)
    if header is not None:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return request.query_params.get(FIELD)
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return None
    # Parsed once and cached on the request: the route's own Form() parameters reuse it.
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    value = form.get(FIELD)
    return value if isinstance(value, str) else None


async def protect(request: Request) -> None:
    """The dependency on every dashboard router: for state-changing methods, same origin and
    a valid CSRF token, else a 403 page."""
    if request.method in SAFE_METHODS:
        return
    require_same_origin(request)
    if not get_guard(request).valid(request, await presented_token(request)):
        raise PageError(
            403,
            "CSRF token missing or invalid",
            "This form's CSRF token is missing or does not match your session, so nothing was "
            "changed. Reload the page and submit the form again.",
        )
