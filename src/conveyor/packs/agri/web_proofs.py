"""The public proof page: anyone holding a proof CID (from a payout transaction's data, a
farmer's notice) recomputes it from the stored evidence document — no session needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.errors import ConveyorError
from conveyor.packs.agri import proofs, store
from conveyor.packs.kit import PagesDep, ServicesDep

router = APIRouter(include_in_schema=False)


@router.get("/proofs", name="agri_proof_form", response_class=HTMLResponse)
def proof_form(
    request: Request, pages: PagesDep, cid: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    """A form for a CID; with ``?cid=`` the CID's page."""
    if cid and cid.strip():
        return RedirectResponse(str(request.url_for("agri_proof", cid=cid.strip())), 303)
    return pages.render(request, "agri_proof.html", {"result": None, "cid": ""})


@router.get("/proofs/{cid}", name="agri_proof", response_class=HTMLResponse)
def proof_page(cid: str, request: Request, services: ServicesDep, pages: PagesDep) -> Response:
    """Whether the stored evidence document recomputes to ``cid``, with the document."""
    result: dict[str, object] = {"cid": cid}
    try:
        document = store.proof_document(services.engine, cid)
    except ConveyorError as exc:
        result.update(valid=False, reason=str(exc))
    else:
        computed = proofs.cid_of(document)
        result.update(
            valid=computed == cid,
            computed_cid=computed,
            document=document.decode("utf-8"),
            size=len(document),
        )
        if computed != cid:
            result["reason"] = "the stored document does not hash to this CID"
    return pages.render(request, "agri_proof.html", {"result": result, "cid": cid})
