"""The workers page: every worker's heartbeat (host, pid, pool size, queues, active jobs,
memory), the processes `conveyor up` supervises (restarts, last exit), and for admins Celery's
remote control — grow or shrink a worker's pool, shut it down (after a confirmation)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.api.deps import ServicesDep
from conveyor.api.routes.system import worker_list
from conveyor.ledger import events as ev
from conveyor.runtime.context import runtime_of
from conveyor.web.pages import PageError, PagesDep, page_errors
from conveyor.web.session import page_scope

router = APIRouter()

_ADMIN = [Depends(page_scope("admin"))]
REPLY_TIMEOUT = 3.0

NOTICES: dict[str, str] = {
    "grown": "Asked {worker} to add a pool process; its heartbeat shows the new size shortly.",
    "shrunk": "Asked {worker} to stop a pool process once it is idle.",
    "shutdown": "Asked {worker} to shut down: it finishes its running jobs first (warm shutdown).",
    "no_reply": "{worker} did not answer within a few seconds; it may be busy or gone.",
}


def _uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def supervised(services: Any, now: float) -> list[dict[str, Any]]:
    """The children of each `conveyor up` using this Redis, as their supervisor last wrote
    them; a record its supervisor stopped refreshing (killed, not stopped) is marked stale."""
    out = []
    for raw in runtime_of(services.app).redis.hgetall(ev.SUPERVISED_KEY).values():
        try:
            child = json.loads(raw)
            updated = float(child["updated_at"])
        except (ValueError, LookupError, TypeError):
            continue
        child["stale"] = now - updated > ev.SILENT_BEATS * float(child.get("interval") or 5)
        child["uptime"] = _uptime(now - child["started_at"]) if child.get("started_at") else None
        exited = child.get("last_exit_at")
        child["last_exit_when"] = datetime.fromtimestamp(exited, UTC) if exited else None
        out.append(child)
    return sorted(out, key=lambda c: (c.get("host") or "", c.get("name") or ""))


@router.get("/workers", name="web_workers", response_class=HTMLResponse)
def workers_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    notice: str | None = None,
    worker: str | None = None,
) -> HTMLResponse:
    """Workers from their heartbeats; a worker that stopped beating shows as gone."""
    now = time.time()
    with page_errors():
        workers = worker_list(services)
        children = supervised(services, now)
    for w in workers:
        w["uptime"] = _uptime(now - float(w.get("started_at") or now))
    template = NOTICES.get(notice or "")
    context: dict[str, Any] = {
        "workers": workers,
        "children": children,
        "alive": sum(1 for w in workers if w["alive"]),
        "notice": template.format(worker=worker or "the worker") if template else None,
    }
    return pages.render(request, "workers.html", context, active="workers")


def _known(services: Any, hostname: str) -> None:
    if not any(w["hostname"] == hostname for w in worker_list(services)):
        raise PageError(404, "Worker not found", f"No worker named {hostname!r} has a heartbeat.")


def _back(request: Request, notice: str, hostname: str) -> RedirectResponse:
    url = request.url_for("web_workers").include_query_params(notice=notice, worker=hostname)
    return RedirectResponse(str(url), status_code=303)


@router.post("/workers/{hostname}/pool", name="web_worker_pool", dependencies=_ADMIN)
def resize_pool(
    hostname: str,
    request: Request,
    services: ServicesDep,
    op: Annotated[str, Form()],
) -> Response:
    """Grow or shrink one worker's pool by one process (Celery's pool_grow / pool_shrink)."""
    with page_errors():
        _known(services, hostname)
    app: Celery = services.app
    if op == "grow":
        replies = app.control.pool_grow(
            1, destination=[hostname], reply=True, timeout=REPLY_TIMEOUT
        )
        return _back(request, "grown" if replies else "no_reply", hostname)
    if op == "shrink":
        replies = app.control.pool_shrink(
            1, destination=[hostname], reply=True, timeout=REPLY_TIMEOUT
        )
        return _back(request, "shrunk" if replies else "no_reply", hostname)
    raise PageError(400, "Unknown action", "The pool can grow or shrink.")


@router.post("/workers/{hostname}/shutdown", name="web_worker_shutdown", dependencies=_ADMIN)
def shutdown(
    hostname: str,
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    confirmed: Annotated[bool, Form()] = False,
) -> Response:
    """Shut one worker down (warm: running jobs finish), after a confirmation."""
    with page_errors():
        _known(services, hostname)
    if not confirmed:
        return pages.render(
            request, "worker_confirm.html", {"hostname": hostname}, active="workers"
        )
    services.app.control.shutdown(destination=[hostname])
    return _back(request, "shutdown", hostname)
