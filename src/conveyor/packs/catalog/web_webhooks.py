"""Dashboard: webhooks — add, edit, enable/disable, delete (after a confirmation), test (shows
the response code and time), and each webhook's delivery log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.errors import ConveyorError
from conveyor.packs.catalog import events, webhooks
from conveyor.packs.catalog.api_webhooks import send_test
from conveyor.packs.kit import (
    EgressPolicy,
    PageError,
    PagesDep,
    ServicesDep,
    page_errors,
    page_scope,
)

router = APIRouter()
WRITE = [Depends(page_scope("jobs:write"))]


def _back(request: Request, **params: str) -> RedirectResponse:
    url = request.url_for("catalog_webhooks").include_query_params(**params)
    return RedirectResponse(str(url), status_code=303)


@router.get("/catalog/webhooks", name="catalog_webhooks", response_class=HTMLResponse)
def webhooks_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: Annotated[str | None, Query(max_length=500)] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """Every webhook with its delivery counts; the add form."""
    with page_errors(), services.engine.connect() as conn:
        hooks = webhooks.all_with_stats(conn)
    context = {"hooks": hooks, "event_names": events.EVENTS, "notice": notice, "error": error}
    return pages.render(request, "catalog_webhooks.html", context, active="catalog-webhooks")


def _values(form: Any, *, enabled_default: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "url": str(form.get("url", "")).strip(),
        "events": sorted({str(e) for e in form.getlist("events")}),
        "description": str(form.get("description", "")).replace("\x00", "")[:255],
        "enabled": form.get("enabled") == "on" if "enabled_shown" in form else enabled_default,
    }
    if "\x00" in values["url"]:
        values["url"] = ""
    return values


@router.post("/catalog/webhooks", name="catalog_webhook_add", dependencies=WRITE)
async def add(request: Request, services: ServicesDep) -> Response:
    values = _values(await request.form(), enabled_default=True)
    try:
        with services.engine.begin() as conn:
            hook = webhooks.create(conn, values, EgressPolicy.from_settings(services.settings))
    except ConveyorError as exc:
        return _back(request, error=str(exc)[:500])
    return _back(
        request,
        notice=f"Added webhook {hook['id']}. Its signing secret, shown only now: {hook['secret']}",
    )


@router.post("/catalog/webhooks/{webhook_id}", name="catalog_webhook_edit", dependencies=WRITE)
async def edit(webhook_id: int, request: Request, services: ServicesDep) -> Response:
    values = _values(await request.form(), enabled_default=True)
    try:
        with services.engine.begin() as conn:
            webhooks.change(conn, webhook_id, values, EgressPolicy.from_settings(services.settings))
    except ConveyorError as exc:
        return _back(request, error=str(exc)[:500])
    return _back(request, notice=f"Saved webhook {webhook_id}.")


@router.post(
    "/catalog/webhooks/{webhook_id}/toggle", name="catalog_webhook_toggle", dependencies=WRITE
)
def toggle(webhook_id: int, request: Request, services: ServicesDep) -> Response:
    try:
        with services.engine.begin() as conn:
            hook = webhooks.get(conn, webhook_id)
            policy = EgressPolicy.from_settings(services.settings)
            webhooks.change(conn, webhook_id, {"enabled": not hook["enabled"]}, policy)
    except ConveyorError as exc:
        return _back(request, error=str(exc)[:500])
    state = "disabled" if hook["enabled"] else "enabled"
    return _back(request, notice=f"Webhook {webhook_id} {state}.")


@router.post(
    "/catalog/webhooks/{webhook_id}/delete", name="catalog_webhook_delete", dependencies=WRITE
)
def remove(
    webhook_id: int,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    try:
        with services.engine.begin() as conn:
            if not confirmed:
                hook = webhooks.public(webhooks.get(conn, webhook_id))
                return pages.render(
                    request, "catalog_webhook_confirm.html", {"hook": hook},
                    active="catalog-webhooks",
                )  # fmt: skip
            webhooks.remove(conn, webhook_id)
    except ConveyorError as exc:
        return _back(request, error=str(exc)[:500])
    return _back(request, notice=f"Deleted webhook {webhook_id} and its delivery log.")


@router.post("/catalog/webhooks/{webhook_id}/test", name="catalog_webhook_test", dependencies=WRITE)
async def test(webhook_id: int, request: Request, services: ServicesDep) -> Response:
    """Send a test event now and say what the receiver answered, and how fast."""
    try:
        outcome = await run_in_threadpool(send_test, services, webhook_id)
    except ConveyorError as exc:
        return _back(request, error=str(exc)[:500])
    ms = f"{outcome['response_ms']:.0f} ms"
    if outcome["ok"]:
        return _back(
            request, notice=f"Test of webhook {webhook_id}: HTTP {outcome['status_code']} in {ms}."
        )
    code = f"HTTP {outcome['status_code']}" if outcome["status_code"] else "no response"
    return _back(
        request,
        error=f"Test of webhook {webhook_id} failed: {code} after {ms} ({outcome['error']})",
    )


@router.get("/catalog/webhooks/{webhook_id}", name="catalog_webhook", response_class=HTMLResponse)
def webhook_page(
    webhook_id: int, request: Request, services: ServicesDep, pages: PagesDep
) -> HTMLResponse:
    """One webhook and its latest deliveries."""
    with page_errors():
        try:
            with services.engine.connect() as conn:
                hook = webhooks.public(webhooks.get(conn, webhook_id))
                log = webhooks.delivery_log(conn, webhook_id, 100)
        except ConveyorError:
            raise PageError(404, "Webhook not found", f"No webhook with id {webhook_id}.") from None
    context = {"hook": hook, "deliveries": log, "event_names": events.EVENTS}
    return pages.render(request, "catalog_webhook.html", context, active="catalog-webhooks")
