"""What pack routers and pages build on: Conveyor's API and dashboard pieces, in one place.

A pack imports these names from here rather than reaching into ``conveyor.api`` or
``conveyor.web``, so the surface packs depend on is this list and nothing else. Everything a
pack sends over HTTP goes through :class:`EgressClient` (see :mod:`conveyor.egress`).

Every API route of a pack declares what it needs with :func:`require` — the scope, and the
tasks whose jobs it starts or whose data it shows, e.g.
``ReadImports = Annotated[Principal, Depends(require("jobs:read", IMPORT_TASK))]`` — or
``dependencies=[Public]`` for a route meant to be open; an app whose pack route declares
nothing refuses to start (``conveyor.api.auth.check_declared``). ``ReadJobs``/``WriteJobs``
are for routes that check each job themselves (``authorize_job``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from rich.console import Console
from sqlalchemy import Engine

from conveyor.api.auth import (
    Principal,
    Public,
    ReadJobs,
    WriteJobs,
    authorize_job,
    authorize_submit,
    require,
)
from conveyor.api.deps import Services, ServicesDep
from conveyor.egress import Answer, EgressClient, EgressPolicy
from conveyor.errors import EgressError, EgressFailed, EgressRefused
from conveyor.web.charts import Bar, Chart
from conveyor.web.csrf import require_same_origin
from conveyor.web.pages import PageError, PagesDep, live_fragment, page_errors
from conveyor.web.session import page_scope

if TYPE_CHECKING:  # web3 is optional: loaded on first use, see __getattr__
    from conveyor.packs.rpc import GuardedRPCProvider


def cli_services() -> Services:
    """Settings, Celery app (with packs), ledger engine and control plane for a CLI command;
    close ``.control`` when done. Exits with a message when no ledger is configured."""
    from conveyor.cli.common import services

    result: Services = services()
    return result


def cli_console() -> tuple[Console, Console]:
    """The CLI's consoles: (stdout for results, stderr for progress and errors)."""
    from conveyor.cli.common import err, out

    return out, err


def page_uuid(value: str, what: str) -> uuid.UUID:
    """A page's id argument as a UUID; anything else is the 404 page "<What> not found"
    (``what`` in lower case: "batch", "import", "assessment")."""
    try:
        return uuid.UUID(value)
    except ValueError:
        message = f"No {what} with id {value!r}."
        raise PageError(404, f"{what.capitalize()} not found", message) from None


def job_snapshot(services: Services, job_id: str) -> dict[str, Any] | None:
    """A job as the API shows it (state, progress with rate and ETA), or None if unknown."""
    from conveyor.api.schemas import job_public
    from conveyor.errors import JobNotFound
    from conveyor.ledger import repository

    try:
        with services.engine.connect() as conn:
            return job_public(repository.get_job(conn, job_id))
    except JobNotFound:
        return None


def job_snapshots(services: Services, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Several jobs as :func:`job_snapshot` shows them, in one query; unknown ids are left out."""
    from conveyor.api.schemas import job_public
    from conveyor.ledger import repository

    if not job_ids:
        return {}
    with services.engine.connect() as conn:
        rows = repository.get_jobs(conn, job_ids)
    return {str(row["id"]): job_public(row) for row in rows}


def cancel_workflow(services: Services, workflow_id: str) -> bool:
    """Cancel a running workflow as ``POST /api/v1/workflows/{id}/cancel`` does (its queued
    and running jobs, and a canvas' steps not yet sent); False if it is unknown (not recorded
    yet) or already ended."""
    from conveyor.errors import InvalidTransition, WorkflowNotFound
    from conveyor.workflows import Workflows

    try:
        Workflows(services.control).cancel(workflow_id)
    except (WorkflowNotFound, InvalidTransition):
        return False
    return True


def workflow_graph(services: Services, workflow_id: str) -> Any | None:
    """A workflow as the dashboard's workflow page shows it, for a pack page that draws its
    graph with ``workflow_parts.html``'s ``graph`` macro; None if it is not recorded (yet)."""
    from conveyor.errors import WorkflowNotFound
    from conveyor.web.workflow_views import workflow_view
    from conveyor.workflows import Workflows

    try:
        return workflow_view(Workflows(services.control).get_workflow(workflow_id))
    except WorkflowNotFound:
        return None


def __getattr__(name: str) -> Any:
    # web3 is an optional extra: import the provider only when a pack asks for it.
    if name == "GuardedRPCProvider":
        from conveyor.packs.rpc import GuardedRPCProvider

        return GuardedRPCProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def watch_job(engine: Engine, job_id: str, **options: Any) -> int:
    """Follow a job in the terminal with a progress bar; its exit code (see cli/watch.py)."""
    from conveyor.cli.watch import watch_job as watch

    return watch(engine, job_id, **options)


__all__ = [
    "Answer",
    "Bar",
    "Chart",
    "EgressClient",
    "EgressError",
    "EgressFailed",
    "EgressPolicy",
    "EgressRefused",
    "GuardedRPCProvider",
    "PageError",
    "PagesDep",
    "Principal",
    "Public",
    "ReadJobs",
    "Services",
    "ServicesDep",
    "WriteJobs",
    "authorize_job",
    "authorize_submit",
    "cancel_workflow",
    "cli_console",
    "cli_services",
    "job_snapshot",
    "job_snapshots",
    "live_fragment",
    "page_errors",
    "page_scope",
    "page_uuid",
    "require",
    "require_same_origin",
    "watch_job",
    "workflow_graph",
]
