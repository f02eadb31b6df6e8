"""`conveyor dlq`: list, replay and purge dead jobs."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.common import err, out, print_table, services
from conveyor.core.ids import parse_job_id
from conveyor.errors import ConveyorError

dlq_cli = typer.Typer(no_args_is_help=True, help="Dead jobs: list, replay, purge.")

TaskOpt = Annotated[str | None, typer.Option(help="only jobs of this task")]
QueueOpt = Annotated[str | None, typer.Option(help="only jobs from this queue")]
ErrorOpt = Annotated[str | None, typer.Option("--error-type", help="e.g. TimeoutError")]


def _filter(task: str | None, queue: str | None, error_type: str | None) -> Any:
    from conveyor.ledger.repository import JobFilter

    return JobFilter(task=task, queue=queue, error_type=error_type)


def _json_option(raw: str | None, kind: type, name: str) -> Any:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        err.print(f"[red]{name} is not valid JSON:[/] {exc}")
        raise typer.Exit(2) from None
    if not isinstance(value, kind):
        err.print(f"[red]{name} must be a JSON {kind.__name__}[/]")
        raise typer.Exit(2)
    return value


@dlq_cli.command("list")
def dlq_list(
    task: TaskOpt = None,
    queue: QueueOpt = None,
    error_type: ErrorOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """Dead letters (dead jobs not yet replayed), newest first."""
    from conveyor.ledger import repository as repo

    svc = services()
    flt = repo.dead_letters(_filter(task, queue, error_type))
    with svc.engine.connect() as conn:
        rows, _ = repo.list_jobs(conn, flt, limit=limit)
    table = Table("id", "task", "queue", "attempts", "error", "died")
    for r in rows:
        error = f"{r['error_type'] or ''}: {(r['error_message'] or '')[:60]}"
        died = r["finished_at"].strftime("%Y-%m-%d %H:%M:%S") if r["finished_at"] else "-"
        # As Text, not markup: a refused message's reason quotes its body, `[/x]` and all.
        table.add_row(
            str(r["id"]), Text(r["task"]), Text(r["queue"]), str(r["attempt"]), Text(error), died
        )
    filtered = task or queue or error_type
    print_table(table, "no dead jobs match" if filtered else "no dead jobs waiting for a replay")


@dlq_cli.command("replay")
def dlq_replay(
    job_id: Annotated[str | None, typer.Argument(help="one dead job; omit with --all")] = None,
    args: Annotated[str | None, typer.Option("--args", help="replacement args, JSON list")] = None,
    kwargs: Annotated[
        str | None, typer.Option("--kwargs", help="replacement kwargs, JSON object")
    ] = None,
    all_matching: Annotated[bool, typer.Option("--all", help="every dead job matching")] = False,
    task: TaskOpt = None,
    queue: QueueOpt = None,
    error_type: ErrorOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
) -> None:
    """Replay one dead job (optionally with edited arguments) or all that match filters."""
    if (job_id is None) == (not all_matching):
        err.print("[red]give a job id, or --all (with optional filters), not both[/]")
        raise typer.Exit(2)
    svc = services()
    try:
        if job_id is not None:
            row = svc.control.replay(
                parse_job_id(job_id),
                args=_json_option(args, list, "--args"),
                kwargs=_json_option(kwargs, dict, "--kwargs"),
            )
            out.print(str(row["id"]))
            return
        if args is not None or kwargs is not None:
            err.print("[red]--args/--kwargs edit one job; they cannot apply to --all[/]")
            raise typer.Exit(2)
        done = svc.control.replay_matching(_filter(task, queue, error_type), limit)
    except (ConveyorError, ValueError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    err.print(f"replayed {len(done.job_ids)} dead jobs")
    for refused in done.refused:
        err.print(f"[yellow]not replayed {refused['id']}:[/] {refused['error']}")
    for new_id in done.job_ids:
        out.print(new_id)


@dlq_cli.command("purge")
def dlq_purge(
    task: TaskOpt = None,
    queue: QueueOpt = None,
    error_type: ErrorOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Delete the dead letters matching the filters (what `dlq list` shows) for good; replayed
    originals stay, as the history their replays link to."""
    from conveyor.ledger import repository as repo

    svc = services()
    flt = _filter(task, queue, error_type)
    try:
        with svc.engine.connect() as conn:
            n = repo.count_matching(conn, repo.dead_letters(flt), limit)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if n == 0:
        err.print("no dead letters match")
        return
    if not yes and not typer.confirm(
        f"Delete {n} dead letters from the ledger? This cannot be undone"
    ):
        raise typer.Exit(1)
    err.print(f"purged {svc.control.purge_matching(flt, limit)} dead letters")
