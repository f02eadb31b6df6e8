"""``/api/v1/dlq``: dead jobs — list, replay (optionally with edited arguments), purge."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.auth import AdminDlq, authorize_job
from conveyor.api.deps import ServicesDep
from conveyor.api.schemas import JobPage, JobPublic, job_public
from conveyor.core.ids import parse_job_id
from conveyor.ledger import repository as repo

router = APIRouter(prefix="/dlq", tags=["dead letters"])

BULK_MAX = 10_000


class Replay(BaseModel):
    """Replay one dead job; arguments given here replace the dead job's."""

    model_config = ConfigDict(extra="forbid")
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None


class DeadFilter(BaseModel):
    """Which dead jobs a bulk action applies to (all given fields must match)."""

    model_config = ConfigDict(extra="forbid")
    task: str | None = Field(default=None, max_length=255)
    queue: str | None = Field(default=None, max_length=255)
    error_type: str | None = Field(default=None, max_length=255)
    q: str | None = Field(default=None, max_length=200)
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = Field(default=1000, ge=1, le=BULK_MAX)

    def to_filter(self) -> repo.JobFilter:
        return repo.JobFilter(
            task=self.task,
            queue=self.queue,
            error_type=self.error_type,
            text=self.q,
            created_after=self.created_after,
            created_before=self.created_before,
        )


class BulkReplayed(BaseModel):
    replayed: int
    job_ids: list[str]
    refused: list[dict[str, str]] = Field(
        description="dead jobs that could not be replayed as they are, with the reason"
    )


class Purged(BaseModel):
    purged: int


def _bad_filter(exc: ValueError) -> HTTPException:
    return HTTPException(422, detail=str(exc))


@router.get("", response_model=JobPage)
def list_dead(
    principal: AdminDlq,
    services: ServicesDep,
    task: str | None = None,
    queue: str | None = None,
    error_type: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    include_replayed: bool = False,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Dead letters (dead jobs not yet replayed), newest first; with ``include_replayed``
    the replayed originals too."""
    flt = principal.limit(
        repo.dead_letters(
            repo.JobFilter(
                task=task,
                queue=queue,
                error_type=error_type,
                text=q,
                created_after=created_after,
                created_before=created_before,
            )
        )
    )
    if include_replayed:
        flt = replace(flt, replayed=None)
    try:
        with services.engine.connect() as conn:
            rows, next_cursor = repo.list_jobs(conn, flt, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise _bad_filter(exc) from None
    return {"items": [job_public(r) for r in rows], "next_cursor": next_cursor}


@router.post("/{job_id}/replay", status_code=202, response_model=JobPublic)
def replay(
    job_id: str,
    principal: AdminDlq,
    services: ServicesDep,
    response: Response,
    body: Replay | None = None,
) -> dict[str, Any]:
    """A new job linked to the dead one (``retry_of``), with the dead job's arguments or the
    edited ones in the body; edited arguments are validated like any submission."""
    body = body or Replay()
    job_id = parse_job_id(job_id)
    authorize_job(principal, services, job_id)
    row = services.control.replay(job_id, args=body.args, kwargs=body.kwargs)
    response.headers["Location"] = f"/api/v1/jobs/{row['id']}"
    return job_public(row)


@router.post("/replay", response_model=BulkReplayed)
def replay_matching(body: DeadFilter, principal: AdminDlq, services: ServicesDep) -> dict[str, Any]:
    """Replay every dead letter (dead, not yet replayed) matching the filter (up to
    ``limit``)."""
    principal.check_filter(body.task, body.queue)
    try:
        done = services.control.replay_matching(body.to_filter(), body.limit)
    except ValueError as exc:
        raise _bad_filter(exc) from None
    return {"replayed": len(done.job_ids), "job_ids": done.job_ids, "refused": done.refused}


@router.post("/purge", response_model=Purged)
def purge_matching(body: DeadFilter, principal: AdminDlq, services: ServicesDep) -> dict[str, int]:
    """Delete the dead letters matching the filter (up to ``limit``) for good: what the list
    shows. Replayed originals stay, as the history their replays link to."""
    principal.check_filter(body.task, body.queue)
    try:
        return {"purged": services.control.purge_matching(body.to_filter(), body.limit)}
    except ValueError as exc:
        raise _bad_filter(exc) from None


@router.delete("/{job_id}", response_model=Purged)
def delete_dead(job_id: str, principal: AdminDlq, services: ServicesDep) -> dict[str, int]:
    """Delete one dead letter from the ledger (409 for a job that is not dead, or that was
    replayed: its replay links to it)."""
    job_id = parse_job_id(job_id)
    authorize_job(principal, services, job_id)
    with services.engine.begin() as conn:
        if repo.get_job(conn, job_id)["state"] != "dead":
            raise HTTPException(409, detail=f"job {job_id} is not dead; only dead jobs are purged")
        purged = repo.delete_dead_letters(conn, [job_id])
    if not purged:
        raise HTTPException(
            409,
            detail=f"job {job_id} was replayed; it stays as the history its replay links to "
            "(retry_of)",
        )
    return {"purged": purged}
