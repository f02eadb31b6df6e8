"""``/api/v1/workflows``: submit a spec, list, read the graph, cancel, retry.

A key limited to some tasks or queues may submit a workflow whose every step is within its
limits and read, cancel or retry one whose every node is; any other workflow is a 404 to it,
like a job outside its limits. The list spans every task, so it is for unlimited keys.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRouter

from conveyor.api.auth import Principal, ReadJobs, WholeRead, WriteJobs, authorize_submit
from conveyor.api.deps import Services, ServicesDep
from conveyor.control import task_queue
from conveyor.errors import WorkflowNotFound
from conveyor.workflows import TEXT_PATTERN, WorkflowOut, WorkflowPage, Workflows, WorkflowSpec

router = APIRouter(tags=["workflows"])


def _visible(principal: Principal, services: Services, workflow_id: uuid.UUID) -> WorkflowOut:
    """The workflow, if every node of it is within the key's limits (else a 404)."""
    out = Workflows(services.control).get_workflow(str(workflow_id))
    if principal.restricted and not all(
        principal.sees(n.task, n.queue or task_queue(services.app, n.task)) for n in out.nodes
    ):
        raise WorkflowNotFound(str(workflow_id))
    return out


@router.post("/workflows", status_code=202, response_model=WorkflowOut)
async def submit_workflow(
    body: WorkflowSpec, principal: WriteJobs, services: ServicesDep, response: Response
) -> WorkflowOut:
    """Validate the spec as a DAG (unknown steps, cycles, unknown tasks, arguments that do
    not fit: 422 naming them, nothing stored), record it and submit the steps that depend on
    nothing; each later step is submitted once all of its `after` steps have succeeded."""
    for step in body.steps:
        authorize_submit(principal, services, step.task, step.queue)
    out = await run_in_threadpool(Workflows(services.control).submit_spec, body)
    response.headers["Location"] = f"/api/v1/workflows/{out.id}"
    return out


@router.get("/workflows", response_model=WorkflowPage)
def list_workflows(
    principal: WholeRead,
    services: ServicesDep,
    source: Literal["canvas", "spec"] | None = None,
    name: Annotated[str | None, Query(max_length=255, pattern=TEXT_PATTERN)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> WorkflowPage:
    """Newest first, with each workflow's state."""
    try:
        return Workflows(services.control).list_workflows(
            source=source, name=name, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        from fastapi import HTTPException

        raise HTTPException(422, detail=str(exc)) from None


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut)
def get_workflow(workflow_id: uuid.UUID, principal: ReadJobs, services: ServicesDep) -> WorkflowOut:
    """Nodes (each a job, or a step not yet run), edges, states, progress and ETA."""
    return _visible(principal, services, workflow_id)


@router.post("/workflows/{workflow_id}/cancel", response_model=WorkflowOut)
def cancel_workflow(
    workflow_id: uuid.UUID, principal: WriteJobs, services: ServicesDep
) -> WorkflowOut:
    """Cancel every queued and running node; steps not yet run never run. 409 if it ended."""
    _visible(principal, services, workflow_id)
    return Workflows(services.control).cancel(str(workflow_id))


@router.post("/workflows/{workflow_id}/retry", status_code=202, response_model=WorkflowOut)
def retry_workflow(
    workflow_id: uuid.UUID, principal: WriteJobs, services: ServicesDep
) -> WorkflowOut:
    """Re-run a failed or cancelled workflow's failed and never-run steps, keeping the
    results of those that succeeded (a canvas' too: its unfinished part is driven from the
    ledger from then on). 409 for a workflow still running or one that succeeded, and for a
    canvas whose never-sent steps cannot be placed from what was recorded."""
    _visible(principal, services, workflow_id)
    return Workflows(services.control).retry(str(workflow_id))
