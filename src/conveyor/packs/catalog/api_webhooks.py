"""``/api/v1/catalog/webhooks``: add, change, enable/disable, delete, test; delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from conveyor.packs.catalog import events, webhooks
from conveyor.packs.catalog.api_products import NO_NUL
from conveyor.packs.kit import (
    EgressClient,
    EgressPolicy,
    Principal,
    Services,
    ServicesDep,
    require,
)

router = APIRouter(tags=["catalog webhooks"])

# Webhooks are delivered by jobs of DELIVER_TASK: a key limited to some tasks needs that one.
ReadWebhooks = Annotated[Principal, Depends(require("jobs:read", events.DELIVER_TASK))]
WriteWebhooks = Annotated[Principal, Depends(require("jobs:write", events.DELIVER_TASK))]

Event = Literal["product.created", "product.updated", "product.deleted", "import.completed"]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000,
                                       pattern=r"^https?://[^\x00\s]+$")]  # fmt: skip
Text = Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)]
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url
    events: list[Event] = Field(min_length=1, max_length=len(events.EVENTS))
    description: Text = ""
    enabled: bool = True


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url | None = None
    events: list[Event] | None = Field(default=None, min_length=1, max_length=len(events.EVENTS))
    description: Text | None = None
    enabled: bool | None = None
    rotate_secret: bool = False


class WebhookPublic(BaseModel):
    id: int
    url: str
    events: list[str]
    description: str
    enabled: bool
    secret_hint: str
    secret: str | None = Field(
        default=None, description="only right after creation or rotation: store it then"
    )
    created_at: datetime
    updated_at: datetime
    deliveries: int | None = None
    succeeded: int | None = None
    dead: int | None = None
    last_delivery_at: datetime | None = None


class Delivery(BaseModel):
    id: int
    event: str
    state: str
    attempts: int
    status_code: int | None
    response_ms: float | None
    error: str | None
    job_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class TestOutcome(BaseModel):
    delivery_id: int
    ok: bool
    status_code: int | None
    response_ms: float
    error: str | None


@router.get("/webhooks", response_model=list[WebhookPublic])
def list_webhooks(principal: ReadWebhooks, services: ServicesDep) -> list[dict[str, Any]]:
    """Every webhook with its delivery counts."""
    with services.engine.connect() as conn:
        return webhooks.all_with_stats(conn)


@router.post("/webhooks", status_code=201, response_model=WebhookPublic)
def create_webhook(
    body: WebhookCreate, principal: WriteWebhooks, services: ServicesDep
) -> dict[str, Any]:
    """Add a webhook; the answer holds its signing secret, shown this once."""
    values = body.model_dump()
    values["events"] = sorted(set(values["events"]))
    with services.engine.begin() as conn:
        return webhooks.create(conn, values, EgressPolicy.from_settings(services.settings))


@router.get("/webhooks/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: WebhookId, principal: ReadWebhooks, services: ServicesDep) -> Any:
    with services.engine.connect() as conn:
        return webhooks.public(webhooks.get(conn, webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookPublic)
def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, principal: WriteWebhooks, services: ServicesDep
) -> dict[str, Any]:
    """Change the fields given; ``enabled: false`` pauses deliveries (new events are not
    recorded for it); ``rotate_secret: true`` answers with a new secret, shown this once."""
    values = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "events" in values:
        values["events"] = sorted(set(values["events"]))
    with services.engine.begin() as conn:
        policy = EgressPolicy.from_settings(services.settings)
        return webhooks.change(conn, webhook_id, values, policy)


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(
    webhook_id: WebhookId, principal: WriteWebhooks, services: ServicesDep
) -> Response:
    with services.engine.begin() as conn:
        webhooks.remove(conn, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[Delivery])
def delivery_log(
    webhook_id: WebhookId,
    principal: ReadWebhooks,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """The webhook's latest deliveries, newest first: state, attempts, response code, time."""
    with services.engine.connect() as conn:
        return webhooks.delivery_log(conn, webhook_id, limit)


@router.post("/webhooks/{webhook_id}/test", response_model=TestOutcome)
async def test_webhook(
    webhook_id: WebhookId, principal: WriteWebhooks, services: ServicesDep
) -> dict[str, Any]:
    """Send a signed ``webhook.test`` event now and answer with the receiver's response code
    and time (the one delivery a person waits for; it is logged like the others). Only a
    status line is shown (``HTTP 500``), or why the destination was refused: never the
    receiver's body."""
    return await run_in_threadpool(send_test, services, webhook_id)


def send_test(services: Services, webhook_id: int) -> dict[str, Any]:
    """Record and send a test delivery; how it went."""
    with services.engine.begin() as conn:
        delivery_id, hook = webhooks.record_test(conn, webhook_id)
    body = events.payload(delivery_id, events.TEST_EVENT, {"test": True, "webhook_id": webhook_id})
    with EgressClient.from_settings(services.settings) as client:
        outcome = events.post(
            client, hook["url"], hook["secret"], delivery_id, events.TEST_EVENT, body
        )
    result = outcome.as_dict()
    with services.engine.begin() as conn:
        state = "succeeded" if outcome.ok else "failed"
        webhooks.record_outcome(conn, delivery_id, state, 1, result)
    result.pop("ok")
    return {"delivery_id": delivery_id, "ok": outcome.ok, **result}
