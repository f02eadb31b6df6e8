"""`conveyor`: run the platform and drive jobs from the terminal."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Annotated, Any, Literal

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.common import (
    LogFormatOption,
    celery_app,
    err,
    export_log_format,
    out,
    parse_kwargs,
    parse_value,
    print_table,
    require,
    require_migrated,
    services,
    settings,
)
from conveyor.cli.dlq import dlq_cli
from conveyor.cli.keys import keys_cli
from conveyor.cli.schedules import schedules_cli
from conveyor.cli.users import users_cli
from conveyor.cli.workflows import workflows_cli
from conveyor.config import Settings
from conveyor.core.ids import parse_job_id
from conveyor.errors import ConveyorError, InvalidArguments
from conveyor.logs import LogFormat

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Conveyor: a production job platform on Celery.",
)
jobs_cli = typer.Typer(no_args_is_help=True, help="List, inspect, cancel, retry, watch jobs.")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(users_cli, name="users")
cli.add_typer(schedules_cli, name="schedules")
cli.add_typer(workflows_cli, name="workflows")


def _add_pack_commands() -> None:
    # Every shipped pack's commands are listed; each checks its services when it runs.
    from conveyor.packs import SHIPPED, load

    for name in SHIPPED:
        pack = load(name)
        if pack.cli:
            cli.add_typer(pack.attribute(pack.cli), name=name)


_add_pack_commands()


@cli.command()
def up(
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    concurrency: Annotated[int | None, typer.Option("-c", help="pool size per worker")] = None,
    host: Annotated[
        str | None, typer.Option(help="address the API and dashboard listen on")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port of the API and dashboard")] = None,
    log_format: LogFormatOption = None,
) -> None:
    """Start everything: embedded PostgreSQL/Redis if unset, API, worker, beat, recorder.
    A child that exits is restarted (with backoff); Ctrl-C stops everything."""
    from conveyor.cli.stack import run_stack

    export_log_format(log_format)
    s = Settings()
    listen = {"api_host": host, "api_port": port}
    s = s.model_copy(update={k: v for k, v in listen.items() if v is not None})
    raise typer.Exit(run_stack(s, workers=workers, concurrency=concurrency))


@cli.command()
def migrate() -> None:
    """Apply the ledger's database migrations."""
    from conveyor.ledger.migrate import upgrade

    s = require(settings())
    assert s.database_url
    upgrade(s.database_url)
    err.print("ledger schema is up to date")


@cli.command()
def api(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[
        int, typer.Option(help="server processes (one SO_REUSEPORT socket each)")
    ] = 1,
    log_format: LogFormatOption = None,
) -> None:
    """Serve the REST API and dashboard."""
    from conveyor.api.server import serve

    s = require_migrated(settings(log_format))
    os.environ.setdefault("CONVEYOR_DATABASE_URL", s.database_url or "")
    os.environ.setdefault("CONVEYOR_REDIS_URL", s.redis_url or "")
    if s.broker_url:
        os.environ.setdefault("CONVEYOR_BROKER_URL", s.broker_url)
    from conveyor.api.auth import check_deployment

    # Refuse an unsafe production setup here, once: uvicorn would respawn its workers forever.
    check_deployment(s)
    serve(
        host or s.api_host,
        port or s.api_port,
        workers,
        log_format=s.log_format,
        log_level=s.log_level,
    )


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context, log_format: LogFormatOption = None) -> None:
    """Run a Celery worker with Conveyor's defaults (extra options go to `celery worker`)."""
    s = require_migrated(settings(log_format))
    app = celery_app(s)
    argv = ["worker", "--loglevel", s.log_level, *ctx.args]
    if "-Q" not in ctx.args and "--queues" not in ctx.args:
        argv += ["-Q", ",".join(app.conveyor_runtime.queues)]
    app.start(_celery_argv(s, argv))


def _submitters(value: str) -> str:
    if value == "auto" or (value.isdigit() and int(value) <= 16):
        return value
    raise typer.BadParameter(f"{value!r} is not 'auto' or a whole number from 0 to 16")


@cli.command()
def beat(
    code: Annotated[
        bool, typer.Option(help="import the app's beat_schedule as code-declared schedules")
    ] = True,
    submitters: Annotated[
        str,
        typer.Option(
            callback=_submitters,
            help="processes that submit large bursts of fires alongside the scheduler: 'auto' "
            "(two, started ahead of a burst of 1,000+ fires and closed after a few quiet "
            "minutes), 0 (none) or a fixed number up to 16",
        ),
    ] = "auto",
    stage_threshold: Annotated[
        int,
        typer.Option(
            min=0,
            help="stage fires ahead of their minute (job rows written, publishes rehearsed) "
            "once at least this many are due within 30 s; 0: never",
        ),
    ] = 1000,  # runtime.scheduler.AUTO_THRESHOLD (not imported: the CLI starts fast)
    log_format: LogFormatOption = None,
) -> None:
    """Run the scheduler: fire the schedules stored in the ledger (run several for failover;
    one leads at a time)."""
    import logging

    from conveyor.ledger.db import make_engine
    from conveyor.logs import configure_logging
    from conveyor.runtime.scheduler import Scheduler

    s = require_migrated(settings(log_format))
    configure_logging(s.log_format, s.log_level)
    app = celery_app(s)
    app.finalize()
    engine = make_engine(s.database_url or "", pool_size=4)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    pool: int | Literal["auto"] = "auto" if submitters == "auto" else int(submitters)
    scheduler = Scheduler(
        app, engine, import_code=code, submitters=pool, stage_threshold=stage_threshold
    )
    logging.getLogger("conveyor.scheduler").info(
        "conveyor beat: scheduler %s starting", scheduler.holder
    )
    scheduler.run(stop)
    engine.dispose()


def _celery_argv(s: Settings, argv: list[str]) -> list[str]:
    if s.log_format != "json":
        return argv
    # Until Celery sets up its logging (whose formatter Conveyor then swaps), warnings it
    # issues on the way (running as root, ...) would be written as text.
    from conveyor.logs import configure_logging

    configure_logging("json", s.log_level)
    # Celery prints its start-up banner straight to stdout, as text; --quiet leaves it out
    # so that a JSON log holds nothing but JSON (the same facts are logged at start-up).
    return ["--quiet", *argv]


def _run_services(names: list[str], log_format: LogFormat | None) -> None:
    """Run background services as threads of this process until SIGTERM/SIGINT."""
    import logging

    import redis

    from conveyor.ledger.db import make_engine
    from conveyor.ledger.reconciler import Reconciler
    from conveyor.ledger.recorder import Recorder
    from conveyor.ledger.relay import OutboxRelay
    from conveyor.logs import configure_logging

    s = require_migrated(settings(log_format))
    configure_logging(s.log_format, s.log_level)
    assert s.database_url and s.redis_url
    app = celery_app(s)
    engine = make_engine(s.database_url, pool_size=4, pre_ping=False)
    client = redis.Redis.from_url(s.redis_url, socket_timeout=10, socket_connect_timeout=5)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    services: dict[str, Any] = {
        "recorder": lambda: Recorder(
            engine,
            client,
            batch=s.recorder_batch,
            block_ms=s.recorder_block_ms,
            inline_max=s.result_inline_max_bytes,
            linger_ms=s.recorder_linger_ms,
        ),
        "outbox-relay": lambda: OutboxRelay(app, engine, poll_interval=s.outbox_poll_interval),
        "reconciler": lambda: Reconciler(app, engine, client, s),
    }
    threads = [
        threading.Thread(target=services[name]().run, args=(stop,), name=name) for name in names
    ]
    for t in threads:
        t.start()
    logging.getLogger("conveyor.services").info("running: %s", ", ".join(names))
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join(timeout=10)


@cli.command()
def recorder(
    reconcile: Annotated[bool, typer.Option(help="also run the reconciler")] = True,
    log_format: LogFormatOption = None,
) -> None:
    """Record job events into the ledger, publish the outbox and reconcile (run one or more)."""
    names = ["recorder", "outbox-relay", *(["reconciler"] if reconcile else [])]
    _run_services(names, log_format)


@cli.command()
def doctor(
    broker: Annotated[
        bool, typer.Option(help="also ask the broker whether it would refuse the app's queues")
    ] = True,
) -> None:
    """What Conveyor changed in the app's Celery settings (CONVEYOR_APP), what it left, and
    the risks its settings leave, each with the setting that fixes it."""
    from rich.table import Table

    from conveyor.runtime.doctor import diagnose

    s = settings()
    app = celery_app(s)
    d = diagnose(app, check_broker=broker)
    mode = (
        "fidelity: install(app) keeps the app's own settings"
        if d.mode == "fidelity"
        else "production: create_celery() with Conveyor's defaults"
    )
    out.print(f"[bold]App[/] {s.app}  [bold]mode[/] {mode}")
    out.print(f"[bold]Queues Conveyor offers[/] {', '.join(d.queues)}")
    changed = Table(
        "setting", "the app's (or Celery's default)", "now", "why", title="Changed by Conveyor"
    )
    for row in d.changed:
        changed.add_row(*row)
    out.print(changed if d.changed else "[bold]Changed by Conveyor[/] nothing")
    kept = Table("setting", "value", title="Left as the app has it")
    for key, value in d.kept:
        kept.add_row(key, value)
    out.print(kept)
    if not d.risks:
        out.print("[green]No risks found.[/]")
    for risk in d.risks:
        out.print(f"[yellow]risk[/] {risk.what}\n     [bold]fix:[/] {risk.fix}")


@cli.command()
def reconcile(log_format: LogFormatOption = None) -> None:
    """Run only the reconciler: requeue jobs of dead workers, enforce cancels, re-seed flags."""
    _run_services(["reconciler"], log_format)


@cli.command()
def submit(
    task: Annotated[str, typer.Argument(help="registered task name, e.g. demo.add")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="positional args, each read as JSON, else as text"),
    ] = None,
    kwarg: Annotated[
        list[str] | None,
        typer.Option("--kwarg", "-k", help="k=v, v read as JSON, else as text: 5, true, '\"5\"'"),
    ] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[int | None, typer.Option(min=0, max=9)] = None,
    countdown: Annotated[float | None, typer.Option(min=0)] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="follow progress until the job ends")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds to --wait")] = 3600,
) -> None:
    """Submit a job; with --wait, show a live progress bar and then the result or error."""
    from conveyor.control import Control
    from conveyor.ledger.db import make_engine

    s = require_migrated(settings())
    kwargs = parse_kwargs(kwarg)
    app = celery_app(s)
    engine = make_engine(s.database_url or "", pool_size=2)
    try:
        job, created = Control(app, engine).submit(
            task,
            [parse_value(a) for a in args or []],
            kwargs,
            queue=queue,
            priority=priority,
            countdown=countdown,
            idempotency_key=idempotency_key,
        )
    except InvalidArguments as exc:
        err.print(f"[red]refused:[/] {exc}")
        err.print(
            "(values are read as JSON, else as text: 5 is a number, true a boolean, "
            "'\"5\"' a string; each must be of the type the task declares)"
        )
        raise typer.Exit(2) from None
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from None
    job_id = str(job["id"])
    if not wait:
        out.print(job_id)
        return
    err.print(f"job {job_id} {'submitted' if created else '(existing, same idempotency key)'}")
    from conveyor.cli.watch import watch_job

    raise typer.Exit(watch_job(engine, job_id, timeout=timeout, console=err, out=out))


@jobs_cli.command("list")
def jobs_list(
    state: Annotated[list[str] | None, typer.Option("--state", "-s")] = None,
    task: Annotated[str | None, typer.Option()] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Newest jobs first, optionally filtered."""
    from conveyor.core.states import JobState
    from conveyor.ledger import repository as repo
    from conveyor.ledger.db import make_engine

    s = require_migrated(settings())
    for st in state or []:
        if st not in {x.value for x in JobState}:
            err.print(
                f"[red]unknown state {st!r}[/]; one of: {', '.join(x.value for x in JobState)}"
            )
            raise typer.Exit(2)
    engine = make_engine(s.database_url or "", pool_size=1)
    with engine.connect() as conn:
        rows, _ = repo.list_jobs(
            conn, repo.JobFilter(states=tuple(state or ()), task=task, queue=queue), limit=limit
        )
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table("id", "task", "state", "queue", "attempt", "created", "progress")
    for r in rows:
        prog = ""
        if r.get("progress_current") is not None:
            total = r.get("progress_total")
            prog = f"{r['progress_current']:g}/{total:g}" if total else f"{r['progress_current']:g}"
        table.add_row(
            str(r["id"]),
            Text(r["task"]),  # names from the broker: never read as markup
            r["state"],
            Text(r["queue"]),
            str(r["attempt"]),
            r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            prog,
        )
    print_table(table, "no jobs match" if state or task or queue else "no jobs yet")


@jobs_cli.command("show")
def jobs_show(job_id: str) -> None:
    """Everything the ledger knows about one job."""
    from conveyor.ledger import repository as repo

    engine = services().engine
    try:
        with engine.connect() as conn:
            row = repo.get_job(conn, parse_job_id(job_id))
            row["attempts"] = repo.get_attempts(conn, str(row["id"]))
    except ConveyorError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    out.print_json(json.dumps(row, default=str))


def _on_job(verb: str, job_id: str) -> dict[str, Any]:
    """Call ``Control.<verb>`` on a job; a Conveyor error is printed and exits with 1."""
    control = services().control
    try:
        row: dict[str, Any] = getattr(control, verb)(parse_job_id(job_id))
    except ConveyorError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    return row


@jobs_cli.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a job (a waiting one never runs; a running one stops at its next check)."""
    row = _on_job("cancel", job_id)
    out.print(
        f"{row['id']} {row['state']}" + (" (cancel requested)" if row["state"] == "running" else "")
    )


@jobs_cli.command("retry")
def jobs_retry(job_id: str) -> None:
    """Submit a finished job again as a new job linked to it."""
    out.print(str(_on_job("retry", job_id)["id"]))


@jobs_cli.command("run-now")
def jobs_run_now(job_id: str) -> None:
    """Run a scheduled job now instead of at its time."""
    row = _on_job("run_now", job_id)
    out.print(f"{row['id']} due now (the outbox relay publishes it within a second)")


@jobs_cli.command("watch")
def jobs_watch(job_id: str, timeout: float = 3600) -> None:
    """Follow a job's progress until it ends."""
    from conveyor.cli.watch import watch_job

    engine = services().engine
    try:
        raise typer.Exit(
            watch_job(engine, parse_job_id(job_id), timeout=timeout, console=err, out=out)
        )
    except ConveyorError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


@cli.command()
def workers() -> None:
    """Workers alive (from their heartbeats)."""
    from conveyor.api.routes.system import worker_list

    table = Table("hostname", "pid", "concurrency", "active", "queues", "heartbeat", "alive")
    for w in worker_list(services()):
        table.add_row(
            w["hostname"],
            str(w["pid"]),
            str(w["concurrency"]),
            str(w["active"]),
            ",".join(w["queues"]),
            f"{w['heartbeat_age']:.1f}s ago",
            "yes" if w["alive"] else "[red]no[/]",
        )
    print_table(table, "no worker has sent a heartbeat; start one with `conveyor worker`")


@cli.command()
def tasks(
    as_json: Annotated[bool, typer.Option("--json", help="as GET /api/v1/tasks answers")] = False,
) -> None:
    """Registered tasks: queue and every limit (rates, concurrency, time limits, retries)."""
    from conveyor.api.routes.system import registered_tasks
    from conveyor.runtime.limits import limits_summary

    found = registered_tasks(services())
    if as_json:
        out.print_json(data=found)
        return
    table = Table("task", "queue", "limits")
    for t in found:
        table.add_row(t["name"], t["queue"], "; ".join(limits_summary(t["limits"])))
    out.print(table)


queues_cli = typer.Typer(help="Queues: depth, consumers, pause and resume.")
cli.add_typer(queues_cli, name="queues")


@queues_cli.callback(invoke_without_command=True)
def queues(ctx: typer.Context) -> None:
    """Queue depth, consumers, paused or not, and the oldest waiting job."""
    if ctx.invoked_subcommand is not None:
        return
    from conveyor.api.routes.system import queue_list

    table = Table("queue", "depth", "consumers", "paused", "oldest waiting")
    for q in queue_list(services()):
        age = q["oldest_age_seconds"]
        table.add_row(
            q["name"],
            str(q["depth"]),
            str(q["consumers"]),
            "[yellow]paused[/]" if q["paused"] else "-",
            f"{age:.1f}s" if age is not None else "-",
        )
    out.print(table)


def _pause(queue: str, pause: bool) -> None:
    svc = services()
    try:
        changed = svc.control.pause_queue(queue) if pause else svc.control.resume_queue(queue)
    except ConveyorError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    verb = "paused" if pause else "resumed"
    already = "" if changed else f" (it was already {verb if pause else 'running'})"
    out.print(
        f"{queue} {verb}{already}; workers follow within {svc.settings.heartbeat_interval:g} s"
    )


@queues_cli.command("pause")
def queues_pause(queue: str) -> None:
    """Stop workers taking jobs from a queue (new jobs wait in it) until it is resumed."""
    _pause(queue, True)


@queues_cli.command("resume")
def queues_resume(queue: str) -> None:
    """Let workers take jobs from a paused queue again."""
    _pause(queue, False)


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmarks in bench/ (same as `make bench`)."""
    import runpy

    sys.argv = ["bench", *ctx.args]
    runpy.run_module("bench", run_name="__main__")


def main() -> None:
    try:
        cli()
    except ConveyorError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)


__all__ = ["main", "time"]
