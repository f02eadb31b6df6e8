"""How requests reach the API: which proxies are believed, HTTPS (HSTS), and whether the
interactive API docs are served.

Behind a reverse proxy the TCP peer is the proxy, and the client's address and scheme arrive in
``X-Forwarded-For`` and ``X-Forwarded-Proto``. Those headers are believed only from the
addresses in ``CONVEYOR_TRUSTED_PROXIES``: from anyone else they would let a client pick its own
address (and so dodge the per-address login throttle) or claim https. The app applies the rule
itself (uvicorn's own proxy handling, which trusts 127.0.0.1 by default, is switched off in
``server.py``), so every way of serving it behaves the same.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from conveyor.config import Settings


def api_docs_enabled(settings: Settings) -> bool:
    """``CONVEYOR_API_DOCS`` if set; otherwise on, except in production (where the API's
    shape is nobody's business but its callers')."""
    if settings.api_docs is not None:
        return settings.api_docs
    return settings.env != "production"


class StrictTransportSecurity:
    """Adds ``Strict-Transport-Security`` to every response of a request that came over
    https (directly, or as a trusted proxy says), so browsers stop trying plain http."""

    def __init__(self, app: ASGIApp, max_age: int) -> None:
        self.app = app
        self.header = (b"strict-transport-security", f"max-age={max_age}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_hsts)


def install_transport(app: FastAPI, settings: Settings) -> None:
    """Believe forwarded headers from the trusted proxies only, then add HSTS over https.
    Call last in ``create_app``: the proxy rule must run before everything else."""
    if settings.hsts_max_age > 0:
        app.add_middleware(StrictTransportSecurity, max_age=settings.hsts_max_age)
    # Added last, so outermost: the scheme and client are settled before any other code runs.
    # An empty list trusts no peer (uvicorn's middleware would default to 127.0.0.1).
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
