"""``/api/v1/jobs``: submit, list, inspect, follow, cancel, retry."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from conveyor.api.auth import ReadJobs, WriteJobs, authorize_job, authorize_submit
from conveyor.api.deps import Services, ServicesDep
from conveyor.api.schemas import (
    JobDetail,
    JobPage,
    JobPublic,
    JobResult,
    JobSubmit,
    job_public,
)
from conveyor.core.ids import parse_job_id
from conveyor.core.states import JobState
from conveyor.ledger import events as ev
from conveyor.ledger import repository as repo

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=202, response_model=JobPublic)
async def submit_job(
    body: JobSubmit,
    principal: WriteJobs,
    services: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    """Validate against the task's signature, record, publish; 202 with the job.

    The 202 comes once the job is committed to the ledger (with its outbox row); publishing
    follows right after, off the request's path. Validation is CPU only, so the route runs on
    the event loop and waits for the group commit without holding a thread.
    """
    authorize_submit(principal, services, body.task, body.queue)
    job = services.control.prepare(
        body.task,
        body.args,
        body.kwargs,
        queue=body.queue,
        priority=body.priority,
        countdown=body.countdown,
        eta=body.eta,
        idempotency_key=idempotency_key,
    )
    row, created = await asyncio.wrap_future(services.control.intake.submit(job).committed)
    response.headers["Location"] = f"/api/v1/jobs/{row['id']}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return job_public(row)


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    principal: ReadJobs,
    services: ServicesDep,
    state: Annotated[list[JobState] | None, Query()] = None,
    task: str | None = None,
    queue: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    q: Annotated[str | None, Query(max_length=200, description="text in args or error")] = None,
    root_id: uuid.UUID | None = None,
    schedule: Annotated[uuid.UUID | None, Query(description="jobs fired by this schedule")] = None,
    workflow: Annotated[uuid.UUID | None, Query(description="jobs of this workflow")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    flt = principal.limit(
        repo.JobFilter(
            states=tuple(s.value for s in state or ()),
            task=task,
            queue=queue,
            created_after=created_after,
            created_before=created_before,
            text=q or None,
            root_id=str(root_id) if root_id else None,
            schedule_id=str(schedule) if schedule else None,
            workflow_id=str(workflow) if workflow else None,
        )
    )
    try:
        with services.engine.connect() as conn:
            rows, next_cursor = repo.list_jobs(conn, flt, limit=limit, cursor=cursor)
    except ValueError as exc:
        from fastapi import HTTPException

        raise HTTPException(422, detail=str(exc)) from None
    return {"items": [job_public(r) for r in rows], "next_cursor": next_cursor}


@router.get("/jobs/{job_id}", response_model=JobDetail)
def get_job(job_id: str, principal: ReadJobs, services: ServicesDep) -> dict[str, Any]:
    job_id = parse_job_id(job_id)
    with services.engine.connect() as conn:
        row = repo.get_job(conn, job_id)
        principal.check_visible(row, job_id)
        out = job_public(row)
        out["traceback"] = row["traceback"]
        out["raw_message"] = row["raw_message"]
        out["has_result"] = row["result"] is not None or row["result_ref"] is not None
        out["attempts"] = repo.get_attempts(conn, job_id)
        out["children"] = [
            {k: (str(v) if k in ("id", "parent_id") else v) for k, v in c.items()}
            for c in repo.get_children(conn, job_id)
            if principal.sees(c["task"], c["queue"])
        ]
    return out


@router.get("/jobs/{job_id}/result", response_model=JobResult)
def get_result(job_id: str, principal: ReadJobs, services: ServicesDep) -> dict[str, Any]:
    job_id = parse_job_id(job_id)
    with services.engine.connect() as conn:
        row = repo.get_job(conn, job_id)
        principal.check_visible(row, job_id)
        result = row["result"]
        if row["result_ref"]:
            blob = repo.get_blob(conn, row["result_ref"])
            result = json.loads(blob) if blob is not None else None
    return {
        "id": job_id,
        "state": row["state"],
        "ready": JobState(row["state"]).terminal,
        "result": result,
        "error_type": row["error_type"],
        "error_message": row["error_message"],
    }


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, principal: WriteJobs, services: ServicesDep) -> dict[str, Any]:
    job_id = parse_job_id(job_id)
    authorize_job(principal, services, job_id)
    return job_public(services.control.cancel(job_id))


@router.post("/jobs/{job_id}/retry", status_code=202, response_model=JobPublic)
def retry_job(
    job_id: str, principal: WriteJobs, services: ServicesDep, response: Response
) -> dict[str, Any]:
    job_id = parse_job_id(job_id)
    authorize_job(principal, services, job_id)
    row = services.control.retry(job_id)
    response.headers["Location"] = f"/api/v1/jobs/{row['id']}"
    return job_public(row)


@router.post("/jobs/{job_id}/run-now", response_model=JobPublic)
def run_job_now(job_id: str, principal: WriteJobs, services: ServicesDep) -> dict[str, Any]:
    """Run a scheduled job now rather than at its time; 409 for a job that is not scheduled."""
    job_id = parse_job_id(job_id)
    authorize_job(principal, services, job_id)
    return job_public(services.control.run_now(job_id))


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: str, principal: ReadJobs, services: ServicesDep, request: Request
) -> StreamingResponse:
    """Server-Sent Events: the job now, then each state and progress change until it ends."""
    job_id = parse_job_id(job_id)
    await run_in_threadpool(authorize_job, principal, services, job_id)
    return await job_event_stream(services, job_id, request)


async def job_event_stream(services: Services, job_id: str, request: Request) -> StreamingResponse:
    """The SSE stream of one job (404 before it starts if the job is unknown); the API and the
    dashboard serve the same stream behind their own authentication."""

    def snapshot() -> dict[str, Any]:
        # Serialised as the JSON endpoints serialise it (progress an object, times ISO 8601).
        with services.engine.connect() as conn:
            job = JobPublic.model_validate(job_public(repo.get_job(conn, job_id)))
        return job.model_dump(mode="json")

    first = await run_in_threadpool(snapshot)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        client = aioredis.Redis.from_url(services.settings.redis_url or "")
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(ev.JOB_CHANNEL + job_id)
            yield _sse("job", first)
            current = first
            if JobState(first["state"]).terminal:
                return
            last_poll = asyncio.get_running_loop().time()
            while not await request.is_disconnected():
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    event = json.loads(msg["data"])
                    kind = event.get("k")
                    if kind == ev.PROGRESS:
                        yield _sse(
                            "progress",
                            {
                                k: event.get(k)
                                for k in ("current", "total", "step", "message", "ts")
                            },
                        )
                        continue
                    yield _sse(
                        "state",
                        {"state": kind, "attempt": event.get("attempt"), "ts": event.get("ts")},
                    )
                    if kind in {s.value for s in JobState if s.terminal}:
                        await asyncio.sleep(0.3)  # let the recorder land the final row
                        yield _sse("job", await run_in_threadpool(snapshot))
                        return
                now = asyncio.get_running_loop().time()
                if now - last_poll >= 2.0:
                    # Changes made straight in the ledger (a cancel) publish nothing; poll.
                    last_poll = now
                    fresh = await run_in_threadpool(snapshot)
                    if (
                        fresh["state"] != current["state"]
                        or fresh["progress"] != current["progress"]
                    ):
                        current = fresh
                        yield _sse("job", fresh)
                    if JobState(fresh["state"]).terminal:
                        return
        finally:
            await pubsub.aclose()
            await client.aclose()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
