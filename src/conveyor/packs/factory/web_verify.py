"""The public product verification page: what a phone opens after scanning a label.

Mounted without a session (``Pack.public_web``): anyone may check a token. It shows only what
the JSON verify endpoint returns to anyone — authentic or not, the product, its batch, the
anchor and the inclusion proof — never the rest of the dashboard.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.packs.factory.deployment import factory_of
from conveyor.packs.kit import PagesDep, ServicesDep

router = APIRouter(include_in_schema=False)


@router.get("/verify", name="factory_verify_form", response_class=HTMLResponse)
def verify_form(
    request: Request,
    pages: PagesDep,
    token: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """A form to paste a token into; with ``?token=`` the answer's page."""
    if token and token.strip():
        url = request.url_for("factory_verify", token=token.strip())
        return RedirectResponse(str(url), status_code=303)
    return pages.render(request, "factory_verify.html", {"result": None, "token": ""})


# `:path`: a token with a slash in it (`%2F` arrives decoded) gets its "not authentic" page.
@router.get("/verify/{token:path}", name="factory_verify", response_class=HTMLResponse)
def verify_page(token: str, request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """Whether ``token`` belongs to a genuine product, with its proof."""
    result = factory_of(services).verifier.verify(token).as_dict()
    return pages.render(request, "factory_verify.html", {"result": result, "token": token})
