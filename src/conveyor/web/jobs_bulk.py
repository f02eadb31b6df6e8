"""Bulk actions on the jobs list: cancel or retry the selected jobs, or every job the list's
filter matches (up to ``BULK_MAX``, after a confirmation that names the count)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from conveyor.api.auth import Principal
from conveyor.api.deps import ServicesDep
from conveyor.core.ids import parse_job_id
from conveyor.core.states import JobState
from conveyor.errors import InvalidTransition, JobNotFound, SubmitError
from conveyor.ledger import repository as repo
from conveyor.web.list_query import ListQuery
from conveyor.web.pages import PagesDep, page_errors
from conveyor.web.session import page_scope

router = APIRouter()

BULK_MAX = 1000

# The URL carries the key and the counts, never text.
NOTICES: dict[str, str] = {
    "cancelled": "Cancelled {n} waiting job(s); {m} running job(s) asked to stop.",
    "retried": "Retried {n} finished job(s) as new jobs; {m} could not be retried as they are.",
    "run_now": "{n} scheduled job(s) due now; {m} selected job(s) were not scheduled.",
    "none": "Nothing selected.",
    "unknown": "Nothing done: unknown action.",
}


def bulk_notice(key: str | None, n: int, m: int) -> str | None:
    template = NOTICES.get(key or "")
    return template.format(n=n, m=m) if template else None


def _valid_ids(raw: list[str]) -> list[str]:
    out: list[str] = []
    for value in raw:
        try:
            job_id = parse_job_id(value.strip())
        except JobNotFound:
            continue  # not an id at all: nothing to act on
        if job_id not in out:
            out.append(job_id)
    return out


def _back(request: Request, query: ListQuery, notice: str, n: int = 0, m: int = 0) -> Response:
    url = request.url_for("web_jobs").include_query_params(notice=notice, n=n, m=m)
    params = query.at(None).query_string().lstrip("?")
    target = f"{url}&{params}" if params else str(url)
    return RedirectResponse(target, status_code=303)


@router.post("/jobs/bulk", name="web_jobs_bulk", dependencies=[Depends(page_scope("jobs:write"))])
def bulk(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    op: Annotated[str, Form()],
    ids: Annotated[list[str] | None, Form(alias="id")] = None,
    confirmed: Annotated[bool, Form()] = False,
    state: Annotated[list[str] | None, Form()] = None,
    task: Annotated[str | None, Form()] = None,
    queue: Annotated[str | None, Form()] = None,
    q: Annotated[str | None, Form()] = None,
    within: Annotated[str | None, Form()] = None,
    after: Annotated[str | None, Form()] = None,
    before: Annotated[str | None, Form()] = None,
    schedule: Annotated[str | None, Form()] = None,
    workflow: Annotated[str | None, Form()] = None,
) -> Response:
    """Cancel or retry the selection, or all that the filter matches."""
    query = ListQuery.parse(
        state,
        task,
        queue,
        q,
        None,
        None,
        within=within,
        after=after,
        before=before,
        schedule=schedule,
        workflow=workflow,
    )
    action, _, scope = op.partition("-")
    known = action in ("cancel", "retry") or (action == "runnow" and scope == "selected")
    if not known or scope not in ("selected", "matching"):
        return _back(request, query, "unknown")
    principal: Principal = request.state.principal
    with page_errors():
        with services.engine.connect() as conn:
            if scope == "selected":
                chosen = _valid_ids(ids or [])[:BULK_MAX]
                if not chosen:
                    return _back(request, query, "none")
                rows = repo.get_jobs(conn, chosen)
            else:
                principal.check_filter(query.task, query.queue)
                rows = repo.get_jobs(conn, repo.matching_ids(conn, query.job_filter(), BULK_MAX))
        for r in rows:  # a key limited to some tasks/queues acts on those only
            principal.check_job(r["task"], r["queue"], job_id=str(r["id"]))
        if scope == "matching" and not confirmed:
            context = {"action": action, "count": len(rows), "query": query, "limit": BULK_MAX}
            return pages.render(request, "jobs_confirm.html", context, active="jobs")
        if action == "runnow":
            due = services.control.run_now_many([str(r["id"]) for r in rows])
            return _back(request, query, "run_now", due, len(rows) - due)
        if action == "cancel":
            waiting = [str(r["id"]) for r in rows if not JobState(r["state"]).terminal]
            stopped, asked = services.control.cancel_many(waiting)
            return _back(request, query, "cancelled", stopped, asked)
        done = refused = 0
        for r in rows:
            if not JobState(r["state"]).terminal:
                continue
            try:
                services.control.retry(str(r["id"]))
                done += 1
            except (SubmitError, InvalidTransition):
                refused += 1
    return _back(request, query, "retried", done, refused)
