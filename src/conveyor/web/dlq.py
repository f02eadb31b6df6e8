"""The dead-letters page: jobs that used up their attempts (or never could run), to replay —
as they were or with edited arguments — or delete, one, a selection, or all that a filter
matches. Deleting everything that matches asks for a confirmation that names the count."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.auth import Principal
from conveyor.api.deps import ServicesDep
from conveyor.api.errors import status_for
from conveyor.core.ids import parse_job_id
from conveyor.errors import InvalidTransition, SubmitError
from conveyor.ledger import repository as repo
from conveyor.web.job_views import job_summary
from conveyor.web.jobs import queue_names, render_job, task_names
from conveyor.web.list_query import ListQuery
from conveyor.web.pages import PagesDep, page_errors
from conveyor.web.session import page_scope

router = APIRouter()

BULK_MAX = 10_000
_ADMIN = [Depends(page_scope("dlq:admin"))]
_ADMIN_JOB = [Depends(page_scope("dlq:admin", job_param="job_id"))]

# What an action can report on the page it redirects to: the URL carries the key and counts,
# never text, so nobody can craft a link that shows words of their choosing.
NOTICES: dict[str, str] = {
    "deleted": "Deleted {n} dead job(s) for good.",
    "replayed": "Replayed {n} dead job(s) as new jobs.",
    "replayed_some": (
        "Replayed {n} dead job(s) as new jobs; {refused} could not be replayed as they are (their "
        "task is gone or their arguments no longer fit it): open them to replay with edited "
        "arguments."
    ),
    "none": "Nothing selected.",
    "unknown": "Nothing done: unknown action.",
}


def notice_text(key: str | None, n: int, refused: int) -> str | None:
    template = NOTICES.get(key or "")
    return template.format(n=n, refused=refused) if template else None


def dead_query(
    task: str | None, queue: str | None, q: str | None, cursor: str | None, limit: str | None
) -> ListQuery:
    return replace(ListQuery.parse(None, task, queue, q, cursor, limit), states=("dead",))


def dead_filter(query: ListQuery, include_replayed: bool) -> repo.JobFilter:
    """The dead letters the page's filter selects; with ``include_replayed`` the replayed
    originals too (shown, never deleted)."""
    flt = repo.dead_letters(query.job_filter())
    return replace(flt, replayed=None) if include_replayed else flt


@router.get("/dlq", name="web_dlq", response_class=HTMLResponse)
def dlq_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    task: str | None = None,
    queue: str | None = None,
    q: str | None = None,
    replayed: bool = False,
    cursor: str | None = None,
    limit: str | None = None,
    notice: str | None = None,
    n: int = 0,
    refused: int = 0,
) -> HTMLResponse:
    """Dead jobs newest first, with their errors; replayed ones only when asked for."""
    query = dead_query(task, queue, q, cursor, limit)
    flt = dead_filter(query, replayed)
    now = datetime.now(UTC)
    with page_errors(), services.engine.connect() as conn:
        rows, next_cursor = repo.list_jobs(conn, flt, limit=query.limit, cursor=query.cursor)
        matching = repo.count_matching(conn, flt, BULK_MAX)
    context: dict[str, Any] = {
        "query": query,
        "replayed": replayed,
        "jobs": [(job_summary(r, now), r) for r in rows],
        "next_cursor": next_cursor,
        "matching": matching,
        "bulk_max": BULK_MAX,
        "task_names": task_names(services),
        "queue_names": queue_names(services),
        "notice": notice_text(notice, n, refused),
        "error": "; ".join(query.problems) or None,
    }
    status = 400 if query.problems else 200
    return pages.render(request, "dlq.html", context, status_code=status, active="dlq")


def _back(
    request: Request, query: ListQuery, replayed: bool, notice: str, n: int = 0, refused: int = 0
) -> RedirectResponse:
    params = dict(p for p in query.at(None).params() if p[0] != "state")
    if replayed:
        params["replayed"] = "true"
    params.update(notice=notice, n=str(n), refused=str(refused))
    url = request.url_for("web_dlq").include_query_params(**params)
    return RedirectResponse(str(url), status_code=303)


@router.post("/dlq/act", name="web_dlq_act", dependencies=_ADMIN)
def dlq_act(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    op: Annotated[str, Form()],
    ids: Annotated[list[str] | None, Form(alias="id")] = None,
    confirmed: Annotated[bool, Form()] = False,
    task: Annotated[str | None, Form()] = None,
    queue: Annotated[str | None, Form()] = None,
    q: Annotated[str | None, Form()] = None,
    replayed: Annotated[bool, Form()] = False,
) -> Response:
    """Replay or delete the selected dead jobs, or all that the page's filter matches."""
    query = dead_query(task, queue, q, None, None)
    flt = dead_filter(query, replayed)
    action, _, scope = op.partition("-")
    if action not in ("replay", "delete") or scope not in ("selected", "matching"):
        return _back(request, query, replayed, "unknown")
    principal: Principal = request.state.principal
    with page_errors():
        if scope == "selected":
            chosen = [parse_job_id(i) for i in ids or []]
            if not chosen:
                return _back(request, query, replayed, "none")
            with services.engine.connect() as conn:
                rows = [r for r in repo.get_jobs(conn, chosen) if r["state"] == "dead"]
            for r in rows:  # a key limited to some tasks/queues acts on those only
                principal.check_job(r["task"], r["queue"], job_id=str(r["id"]))
            chosen = [str(r["id"]) for r in rows]
        else:
            principal.check_filter(query.task, query.queue)
            with services.engine.connect() as conn:
                # Delete acts on dead letters only, whatever the page shows.
                targets = repo.dead_letters(flt) if action == "delete" else flt
                chosen = repo.matching_ids(conn, targets, BULK_MAX)
            if action == "delete" and not confirmed:
                context = {"count": len(chosen), "query": query, "replayed": replayed}
                return pages.render(request, "dlq_confirm.html", context, active="dlq")
        if action == "delete":
            with services.engine.begin() as conn:
                n = repo.delete_dead_letters(conn, chosen)
            return _back(request, query, replayed, "deleted", n)
        done = refused = 0
        for job_id in chosen:
            try:
                services.control.replay(job_id)
                done += 1
            except (SubmitError, InvalidTransition):
                refused += 1
    notice = "replayed_some" if refused else "replayed"
    return _back(request, query, replayed, notice, done, refused)


@router.post("/dlq/{job_id}/replay", name="web_dlq_replay", dependencies=_ADMIN_JOB)
def replay_one(
    job_id: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    args: Annotated[str, Form()] = "",
    kwargs: Annotated[str, Form()] = "",
) -> Response:
    """Replay one dead job, with the arguments as edited on its page (JSON), as a new job."""
    with page_errors():
        canonical = parse_job_id(job_id)

    def again(error: str, status: int) -> HTMLResponse:
        edited = {"args": args, "kwargs": kwargs}
        return render_job(
            request, services, pages, canonical, error=error, status_code=status, edited=edited
        )

    try:
        new_args = json.loads(args) if args.strip() else None
        new_kwargs = json.loads(kwargs) if kwargs.strip() else None
    except ValueError as exc:
        return again(f"The arguments are not valid JSON: {exc}", 422)
    if new_args is not None and not isinstance(new_args, list):
        return again("args must be a JSON array, e.g. [1, 2]", 422)
    if new_kwargs is not None and not isinstance(new_kwargs, dict):
        return again('kwargs must be a JSON object, e.g. {"retries": 3}', 422)
    try:
        row = services.control.replay(canonical, args=new_args, kwargs=new_kwargs)
    except (SubmitError, InvalidTransition) as exc:
        return again(str(exc), status_for(exc))
    url = request.url_for("web_job", job_id=str(row["id"])).include_query_params(notice="replayed")
    return RedirectResponse(str(url), status_code=303)


@router.get("/dlq/{rest:path}", include_in_schema=False)
def dlq_get_fallback(request: Request, rest: str) -> Response:
    """A GET of an action's URL (a bookmark, the back button) shows the list."""
    return RedirectResponse(str(request.url_for("web_dlq")), status_code=303)
