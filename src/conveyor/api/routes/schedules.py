"""``/api/v1/schedules``: create, edit, pause, trigger, backfill and preview schedules.

Reading needs ``jobs:read``, changing ``jobs:write``. A key limited to some tasks or queues sees
and acts on the schedules whose task and queue it may submit to (others are a 404, as jobs are).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from conveyor.api.auth import Principal, ReadJobs, WriteJobs, authorize_submit
from conveyor.api.deps import Services, ServicesDep
from conveyor.control import task_queue
from conveyor.errors import ScheduleNotFound
from conveyor.ledger.schedule_store import ScheduleFilter
from conveyor.schedules import MAX_PREVIEW, ScheduleOut, SchedulePatch, ScheduleRun, ScheduleSpec

router = APIRouter(tags=["schedules"])


class PauseBody(BaseModel):
    note: str | None = Field(default=None, max_length=1000, description="why it is paused")


class BackfillBody(BaseModel):
    start: datetime = Field(description="fires after this instant (with a timezone)")
    end: datetime = Field(description="up to and including this instant")


class Triggered(BaseModel):
    job_id: str


class Backfilled(BaseModel):
    job_ids: list[str]


class NextFires(BaseModel):
    next_fires: list[datetime]


class Preview(BaseModel):
    description: str
    next_fires: list[datetime]


def _visible(principal: Principal, services: Services, ref: str) -> dict[str, Any]:
    """The schedule, or 404 for one outside a limited key's allowlists."""
    row = services.schedules.get_row(ref)
    if principal.restricted and not principal.sees(
        row["task"], row["queue"] or task_queue(services.app, row["task"])
    ):
        raise ScheduleNotFound(ref)
    return row


@router.get("/schedules", response_model=list[ScheduleOut])
def list_schedules(
    principal: ReadJobs,
    services: ServicesDep,
    task: str | None = None,
    source: Annotated[str | None, Query(pattern="^(user|code)$")] = None,
    paused: bool | None = None,
    retired: Annotated[bool | None, Query(description="true: only retired; omit: active")] = False,
    q: Annotated[str | None, Query(max_length=200, description="text in the name")] = None,
) -> list[dict[str, Any]]:
    flt = ScheduleFilter(task=task, source=source, paused=paused, retired=retired, text=q)
    return [
        s
        for s in services.schedules.list(flt)
        if not principal.restricted
        or principal.sees(s["task"], s["queue"] or task_queue(services.app, s["task"]))
    ]


@router.post("/schedules", status_code=201, response_model=ScheduleOut)
def create_schedule(
    body: ScheduleSpec, principal: WriteJobs, services: ServicesDep, response: Response
) -> dict[str, Any]:
    authorize_submit(principal, services, body.task, body.queue)
    out = services.schedules.create(body)
    response.headers["Location"] = f"/api/v1/schedules/{out['id']}"
    return out


@router.post("/schedules/preview", response_model=Preview)
def preview_schedule(
    body: ScheduleSpec,
    principal: ReadJobs,
    services: ServicesDep,
    n: Annotated[int, Query(ge=1, le=MAX_PREVIEW)] = 5,
) -> dict[str, Any]:
    """Validate a schedule without storing it, and show its next fires (for forms)."""
    authorize_submit(principal, services, body.task, body.queue)
    return services.schedules.preview(body, n)


@router.get("/schedules/{ref}", response_model=ScheduleOut)
def get_schedule(ref: str, principal: ReadJobs, services: ServicesDep) -> dict[str, Any]:
    """A schedule by id or name."""
    _visible(principal, services, ref)
    return services.schedules.get(ref)


@router.patch("/schedules/{ref}", response_model=ScheduleOut)
def update_schedule(
    ref: str, body: SchedulePatch, principal: WriteJobs, services: ServicesDep
) -> dict[str, Any]:
    row = _visible(principal, services, ref)
    authorize_submit(
        principal,
        services,
        body.task or row["task"],
        body.queue if "queue" in body.model_fields_set else row["queue"],
    )
    return services.schedules.update(str(row["id"]), body)


@router.delete("/schedules/{ref}", status_code=204)
def delete_schedule(ref: str, principal: WriteJobs, services: ServicesDep) -> Response:
    row = _visible(principal, services, ref)
    services.schedules.delete(str(row["id"]))
    return Response(status_code=204)


@router.post("/schedules/{ref}/pause", response_model=ScheduleOut)
def pause_schedule(
    ref: str, principal: WriteJobs, services: ServicesDep, body: PauseBody | None = None
) -> dict[str, Any]:
    row = _visible(principal, services, ref)
    return services.schedules.pause(str(row["id"]), body.note if body else None)


@router.post("/schedules/{ref}/resume", response_model=ScheduleOut)
def resume_schedule(ref: str, principal: WriteJobs, services: ServicesDep) -> dict[str, Any]:
    row = _visible(principal, services, ref)
    return services.schedules.resume(str(row["id"]))


@router.post("/schedules/{ref}/reset", response_model=ScheduleOut)
def reset_schedule(ref: str, principal: WriteJobs, services: ServicesDep) -> dict[str, Any]:
    """Drop a user's edits of a schedule declared in code: the code's version again."""
    row = _visible(principal, services, ref)
    return services.schedules.reset_to_code(str(row["id"]))


@router.post("/schedules/{ref}/trigger", status_code=202, response_model=Triggered)
async def trigger_schedule(
    ref: str, principal: WriteJobs, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """Run the schedule's task now, outside its trigger."""
    row = await run_in_threadpool(_visible, principal, services, ref)
    job_id = await run_in_threadpool(services.schedules.trigger, str(row["id"]))
    response.headers["Location"] = f"/api/v1/jobs/{job_id}"
    return {"job_id": job_id}


@router.post("/schedules/{ref}/backfill", status_code=202, response_model=Backfilled)
def backfill_schedule(
    ref: str, body: BackfillBody, principal: WriteJobs, services: ServicesDep
) -> dict[str, Any]:
    """Run every fire the trigger has in (start, end] that has not run yet (at most 1,000)."""
    row = _visible(principal, services, ref)
    return {"job_ids": services.schedules.backfill(str(row["id"]), body.start, body.end)}


@router.get("/schedules/{ref}/next", response_model=NextFires)
def next_fires(
    ref: str,
    principal: ReadJobs,
    services: ServicesDep,
    n: Annotated[int, Query(ge=1, le=MAX_PREVIEW)] = 5,
) -> dict[str, Any]:
    row = _visible(principal, services, ref)
    return {"next_fires": services.schedules.next_fires(str(row["id"]), n)}


@router.get("/schedules/{ref}/runs", response_model=list[ScheduleRun])
def schedule_runs(
    ref: str,
    principal: ReadJobs,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """The schedule's fires, newest first, each with what became of it and its job's state."""
    row = _visible(principal, services, ref)
    return services.schedules.runs(str(row["id"]), limit)
