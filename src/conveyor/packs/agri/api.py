"""The agri pack's REST API, mounted at ``/api/v1/agri``.

Policies and plots (CRUD; plot boundaries checked by :mod:`.geometry`), a plot's weather series,
indices, images and NDVI timeline, assessments (``POST`` starts one as a job, idempotent per
plot and period), payouts (``POST …/approve`` and ``…/submit`` move them along), and proofs: the
canonical evidence document by CID, and ``POST /proofs/verify`` (public) that recomputes a CID.

Reading needs ``jobs:read`` and writing ``jobs:write`` on the pack's tasks (a key limited to some
tasks needs the assessment task); proof reads and verification are public, as anyone holding a
CID from a transaction must be able to check it.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from conveyor.errors import InputRejected, ResourceConflict
from conveyor.packs.agri import store
from conveyor.packs.agri.assessment import last_ended_period, period_of, policy_of
from conveyor.packs.agri.errors import ProofError
from conveyor.packs.agri.policies import plot_from, policy_from
from conveyor.packs.agri.proofs import cid_of, verify
from conveyor.packs.agri.tasks import ASSESS_TASK, PAYOUT_TASK
from conveyor.packs.kit import Principal, Public, ServicesDep, require

router = APIRouter(tags=["agri"])

Read = Annotated[Principal, Depends(require("jobs:read", ASSESS_TASK))]
Write = Annotated[Principal, Depends(require("jobs:write", ASSESS_TASK))]
Pay = Annotated[Principal, Depends(require("jobs:write", PAYOUT_TASK))]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
PayoutStatus = Literal["approved", "submitted", "confirmed", "failed"]
MAX_DOCUMENT = 1 << 20


# --- policies and plots ------------------------------------------------------------------------


@router.post("/policies", status_code=201)
def create_policy(
    principal: Write, services: ServicesDep, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """A policy (see ``policies.Policy``); 422 names each bad field, 409 a taken number."""
    return store.create_policy(services.engine, policy_from(body))


@router.get("/policies")
def list_policies(
    principal: Read, services: ServicesDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    return {"items": store.list_policies(services.engine, limit, offset)}


@router.get("/policies/{policy_id}")
def get_policy(policy_id: UUID, principal: Read, services: ServicesDep) -> dict[str, Any]:
    """A policy with its plots."""
    with services.engine.connect() as conn:
        out = store.public(store.get_policy(conn, policy_id))
        out["plots"] = store.list_plots(conn, policy_id, limit=1000)
    return out


@router.delete("/policies/{policy_id}", status_code=204)
def delete_policy(policy_id: UUID, principal: Write, services: ServicesDep) -> Response:
    """Delete a policy and its plots; 409 once anything was paid on it."""
    store.delete_policy(services.engine, policy_id)
    return Response(status_code=204)


@router.post("/plots", status_code=201)
def create_plots(
    principal: Write, services: ServicesDep, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """One plot ``{"name", "policy_number", "geometry"}`` or a list of them (all or none)."""
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > 10_000:
        raise InputRejected("send one plot or a list of 1 to 10,000 plots")
    plots = []
    for number, item in enumerate(items, 1):
        try:
            plots.append(plot_from(item))
        except InputRejected as exc:
            raise InputRejected(f"plot {number}: {exc}" if len(items) > 1 else str(exc)) from None
    created = store.create_plots(services.engine, plots)
    return {"items": created} if isinstance(body, list) else created[0]


@router.get("/plots")
def list_plots(
    principal: Read,
    services: ServicesDep,
    policy_id: UUID | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    return {"items": store.list_plots(services.engine, policy_id, limit, offset)}


@router.get("/plots/{plot_id}")
def get_plot(plot_id: UUID, principal: Read, services: ServicesDep) -> dict[str, Any]:
    return store.public(store.get_plot(services.engine, plot_id))


@router.put("/plots/{plot_id}")
def update_plot(
    plot_id: UUID, principal: Write, services: ServicesDep, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Replace a plot's name, policy and boundary."""
    return store.update_plot(services.engine, plot_id, plot_from(body))


@router.delete("/plots/{plot_id}", status_code=204)
def delete_plot(plot_id: UUID, principal: Write, services: ServicesDep) -> Response:
    store.delete_plot(services.engine, plot_id)
    return Response(status_code=204)


# --- series ----------------------------------------------------------------------------------


@router.get("/plots/{plot_id}/weather")
def plot_weather(
    plot_id: UUID,
    principal: Read,
    services: ServicesDep,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    """The plot's stored daily weather (precipitation mm, Tmax/Tmin °C), oldest first."""
    if start and end and end < start:
        raise InputRejected(f"end ({end}) is before start ({start})")
    with services.engine.connect() as conn:
        store.get_plot(conn, plot_id)
        return {"items": store.weather_series(conn, plot_id, start, end)}


@router.get("/plots/{plot_id}/indices")
def plot_indices(plot_id: UUID, principal: Read, services: ServicesDep) -> dict[str, Any]:
    """The plot's daily indices (drought, flood, heat, GDD, stress), newest first."""
    with services.engine.connect() as conn:
        store.get_plot(conn, plot_id)
        return {"items": store.list_indices(conn, plot_id)}


@router.get("/plots/{plot_id}/ndvi")
def plot_ndvi(plot_id: UUID, principal: Read, services: ServicesDep) -> dict[str, Any]:
    """The plot's daily NDVI (mean, p10, p90, valid fraction) and the baseline of each day."""
    with services.engine.connect() as conn:
        store.get_plot(conn, plot_id)
        return {"items": store.ndvi_timeline(conn, plot_id)}


@router.get("/images")
def list_images(
    principal: Read, services: ServicesDep, plot_id: UUID | None = None, limit: Limit = 100
) -> dict[str, Any]:
    """Satellite image orders (pending, completed, failed, expired), newest first."""
    return {"items": store.list_images(services.engine, plot_id, limit)}


# --- assessments -----------------------------------------------------------------------------


class AssessmentRequest(BaseModel):
    """Assess ``plot_id`` over the policy period holding ``day`` (default: the last ended)."""

    model_config = ConfigDict(extra="forbid")

    plot_id: UUID
    day: date | None = None


@router.post("/assessments", status_code=202)
def start_assessment(
    body: AssessmentRequest, principal: Write, services: ServicesDep
) -> dict[str, Any]:
    """Start an assessment job. The same plot and period give the same job (an idempotency
    key), and the assessment itself is unique per plot and period: never two payouts."""
    today = datetime.now(UTC).date()
    with services.engine.connect() as conn:
        plot = store.get_plot(conn, body.plot_id)
        if body.day is not None:
            start, end = period_of(conn, body.plot_id, body.day, today)
        else:
            policy = policy_of(store.get_policy(conn, plot.policy_id))
            period = last_ended_period(policy, today)
            if period is None:
                raise InputRejected("none of the policy's assessment periods has ended yet")
            start, end = period
    kwargs = {"plot_id": str(body.plot_id), "start": start.isoformat(), "end": end.isoformat()}
    job, created = services.control.submit(
        ASSESS_TASK,
        kwargs=kwargs,
        idempotency_key=f"agri-assess:{body.plot_id}:{start}:{end}",
    )
    return {"job_id": str(job["id"]), "created": created, **kwargs}


@router.get("/assessments")
def list_assessments(
    principal: Read, services: ServicesDep, plot_id: UUID | None = None, limit: Limit = 100
) -> dict[str, Any]:
    return {"items": store.list_assessments(services.engine, plot_id, limit)}


@router.get("/assessments/{assessment_id}")
def get_assessment(assessment_id: UUID, principal: Read, services: ServicesDep) -> dict[str, Any]:
    return store.public(store.get_assessment(services.engine, assessment_id))


# --- payouts ---------------------------------------------------------------------------------


@router.get("/payouts")
def list_payouts(
    principal: Read,
    services: ServicesDep,
    status: PayoutStatus | None = None,
    plot_id: UUID | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    return {"items": store.list_payouts(services.engine, status, plot_id, limit)}


@router.get("/payouts/{payout_id}")
def get_payout(payout_id: UUID, principal: Read, services: ServicesDep) -> dict[str, Any]:
    return store.public(store.get_payout(services.engine, payout_id))


@router.post("/payouts/{payout_id}/submit", status_code=202)
def submit_payout(payout_id: UUID, principal: Pay, services: ServicesDep) -> dict[str, Any]:
    """Send an approved (or stuck submitted) payout now rather than at the next schedule; one
    job per payout at a time, and the chain step never pays twice whatever runs it."""
    row = store.get_payout(services.engine, payout_id)
    if row.status not in ("approved", "submitted"):
        raise ResourceConflict(f"payout {payout_id} is {row.status}; nothing to send")
    job, created = services.control.submit(
        PAYOUT_TASK,
        kwargs={"payout_id": str(payout_id)},
        idempotency_key=f"agri-payout:{payout_id}:{row.attempts}",
    )
    return {"job_id": str(job["id"]), "created": created, "payout_id": str(payout_id)}


# --- proofs (public) -------------------------------------------------------------------------


@router.get("/proofs/{cid}", dependencies=[Public])
def get_proof(cid: str, services: ServicesDep) -> Response:
    """The canonical evidence document (RFC 8785 JSON) a CID names, byte for byte."""
    if len(cid) > 100:
        raise InputRejected("that is not a proof CID (too long)")
    document = store.proof_document(services.engine, cid)
    return Response(document, media_type="application/json")


class VerifyRequest(BaseModel):
    """A document (as the JSON text, or base64 of its bytes) and the CID it should have."""

    model_config = ConfigDict(extra="forbid")

    cid: str = Field(max_length=100)
    document: str | None = Field(default=None, max_length=MAX_DOCUMENT)
    document_base64: str | None = Field(default=None, max_length=MAX_DOCUMENT * 4 // 3 + 4)


@router.post("/proofs/verify", dependencies=[Public])
def verify_proof(body: VerifyRequest, services: ServicesDep) -> dict[str, Any]:
    """Whether ``cid`` names the document: recomputed here (CIDv1, raw, sha2-256). Without a
    document, the one stored under ``cid`` is checked. Always 200 with ``valid``; a malformed
    CID is ``valid: false`` with the reason."""
    if body.document is not None and body.document_base64 is not None:
        raise InputRejected("send document or document_base64, not both")
    if body.document_base64 is not None:
        try:
            data = base64.b64decode(body.document_base64, validate=True)
        except ValueError:
            raise InputRejected("document_base64 is not base64") from None
    elif body.document is not None:
        data = body.document.encode("utf-8")
    else:
        try:
            data = store.proof_document(services.engine, body.cid)
        except ProofError as exc:
            return {"valid": False, "cid": body.cid, "computed_cid": None, "reason": str(exc)}
    try:
        valid = verify(data, body.cid)
    except ProofError as exc:
        return {"valid": False, "cid": body.cid, "computed_cid": cid_of(data), "reason": str(exc)}
    out: dict[str, Any] = {"valid": valid, "cid": body.cid, "computed_cid": cid_of(data)}
    if not valid:
        out["reason"] = "the document's CID differs: it is not the document the CID names"
    return out
