"""The queues page: depth in the broker, consumers, how long the oldest job has waited, jobs
finished per minute over the last 15 minutes, and the ledger's count of jobs waiting and
running per queue; admins purge a queue — every job
waiting in it is cancelled in the ledger (so nothing republishes it) and the broker's queue is
emptied — after a confirmation that names the counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.deps import ServicesDep
from conveyor.api.routes.system import queue_list
from conveyor.ledger import repository as repo
from conveyor.ledger import stats
from conveyor.web.pages import PageError, PagesDep, page_errors
from conveyor.web.session import page_scope

router = APIRouter()

_ADMIN = [Depends(page_scope("admin"))]


THROUGHPUT_WINDOW = timedelta(minutes=15)


def _queues(services: Any) -> list[dict[str, Any]]:
    queues = queue_list(services)
    with services.engine.connect() as conn:
        active = repo.active_counts_by_queue(conn)
        recent = stats.totals(conn, datetime.now(UTC) - THROUGHPUT_WINDOW, by="queue")
    minutes = THROUGHPUT_WINDOW.total_seconds() / 60
    for q in queues:
        figures = recent.get(q["name"], {})
        q["finished_per_minute"] = (
            sum(figures.get(e, 0) for e in ("succeeded", *stats.FAILED_EVENTS)) / minutes
        )
        q["failed_recently"] = int(sum(figures.get(e, 0) for e in stats.FAILED_EVENTS))
        q.update({state: active.get((q["name"], state), 0) for state in repo.WAITING_STATES})
        q["running"] = active.get((q["name"], "running"), 0)
        q["waiting"] = sum(q[state] for state in repo.WAITING_STATES)
    return queues


@router.get("/queues", name="web_queues", response_class=HTMLResponse)
def queues_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    purged: str | None = None,
    paused: str | None = None,
    resumed: str | None = None,
    n: int = 0,
) -> HTMLResponse:
    """Every known queue, in priority order."""
    with page_errors():
        queues = _queues(services)
    notice = None
    if purged:
        notice = f"Purged {purged}: {n} waiting job(s) cancelled and the broker queue emptied."
    interval = services.settings.heartbeat_interval
    if paused:
        notice = (
            f"Paused {paused}: workers stop taking its jobs within {interval:g} s "
            "(jobs they already hold finish); new jobs wait in it."
        )
    if resumed:
        notice = f"Resumed {resumed}: workers take its jobs again within {interval:g} s."
    context = {"queues": queues, "notice": notice}
    return pages.render(request, "queues.html", context, active="queues")


@router.post(
    "/queues/{name}/pause",
    name="web_queue_pause",
    dependencies=[Depends(page_scope("jobs:write"))],
)
def pause_or_resume(
    name: str, request: Request, services: ServicesDep, op: Annotated[str, Form()]
) -> Response:
    """Pause a queue (workers stop taking its jobs) or resume it."""
    if op not in ("pause", "resume"):
        raise PageError(400, "Unknown action", "A queue can be paused or resumed.")
    with page_errors():
        if op == "pause":
            services.control.pause_queue(name)
        else:
            services.control.resume_queue(name)
    url = request.url_for("web_queues").include_query_params(**{f"{op}d": name})
    return RedirectResponse(str(url), status_code=303)


@router.post("/queues/{name}/purge", name="web_queue_purge", dependencies=_ADMIN)
def purge(
    name: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    """Cancel every job waiting in the queue and empty it in the broker."""
    with page_errors():
        queue = next((q for q in _queues(services) if q["name"] == name), None)
        if queue is None:
            raise PageError(404, "Queue not found", f"No queue named {name!r} is known here.")
        if not confirmed:
            return pages.render(request, "queue_confirm.html", {"queue": queue}, active="queues")
        cancelled = services.control.purge_queue(name)
    url = request.url_for("web_queues").include_query_params(purged=name, n=cancelled)
    return RedirectResponse(str(url), status_code=303)
