"""`conveyor schedules`: list, show, create, edit, pause, resume, trigger, delete schedules
(and their next fires, and backfills), through the same ``ScheduleService`` the API uses.

A schedule is named by its id or its name. A refusal prints the reason, naming the field, and
exits with 2 (bad input) or 1 (no such schedule, or the action does not apply).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.common import (
    err,
    out,
    parse_kwargs,
    parse_value,
    print_table,
    refusals,
    services,
    when,
)
from conveyor.web.schedule_form import wall_time
from conveyor.web.schedule_text import next_fire_in_words, trigger_in_words

schedules_cli = typer.Typer(
    no_args_is_help=True,
    help="Schedules: list, show, create, edit, pause, resume, trigger, delete, next, backfill.",
)

T = TypeVar("T")

Ref = Annotated[str, typer.Argument(help="the schedule's id or name")]
CronOpt = Annotated[
    str | None, typer.Option("--cron", help="5 fields or an alias: '*/5 * * * *', @daily")
]
EveryOpt = Annotated[str | None, typer.Option("--every", help="seconds, or 90s, 5m, 1h, 2d")]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="once, at this time: 2026-12-24T18:00 (in --tz)")
]
TzOpt = Annotated[
    str | None, typer.Option("--tz", "--timezone", help="IANA zone, e.g. Europe/Berlin")
]
ArgOpt = Annotated[
    list[str] | None,
    typer.Option("--arg", "-a", help="a positional argument, read as JSON, else as text"),
]
KwargOpt = Annotated[
    list[str] | None,
    typer.Option("--kwarg", "-k", help="k=v, v read as JSON, else as text"),
]
QueueOpt = Annotated[str | None, typer.Option(help="queue of its jobs (default: the task's)")]
PriorityOpt = Annotated[int | None, typer.Option(min=0, max=9)]
OverlapOpt = Annotated[
    str | None,
    typer.Option(help="skip | buffer_one | allow_all | cancel_previous"),
]
CatchupOpt = Annotated[
    str | None, typer.Option("--catchup-window", help="run missed fires this recent, e.g. 10m")
]
CatchupRunsOpt = Annotated[
    int | None, typer.Option("--catchup-max", min=1, help="missed fires run, at most")
]
JitterOpt = Annotated[str | None, typer.Option(help="delay each fire up to this, e.g. 30s")]
StartOpt = Annotated[str | None, typer.Option("--start", help="no fire before (in --tz)")]
EndOpt = Annotated[str | None, typer.Option("--end", help="no fire after (in --tz)")]
MaxRunsOpt = Annotated[int | None, typer.Option("--max-runs", min=1)]


def _service() -> Any:
    return services().schedules


def _call(fn: Callable[[], T]) -> T:
    with refusals():
        return fn()


def _when(moment: datetime | None) -> str:
    return when(moment) + " UTC" if moment else "-"


def _status(s: dict[str, Any]) -> Text:
    marks = []
    if s["paused"]:
        marks.append("paused" + (f" ({s['paused_note']})" if s["paused_note"] else ""))
    if s["retired_at"]:
        marks.append("retired")
    marks.append(s["source"])
    if s["overridden"]:
        marks.append("overridden: " + ", ".join(s["overridden"]))
    return Text("; ".join(marks))  # the note is the user's text: never read as markup


def _trigger(s: dict[str, Any]) -> str:
    return trigger_in_words(
        s["trigger_kind"], cron=s["cron"], every=s["every"], at=s["at"], timezone=s["timezone"]
    )


def _next(s: dict[str, Any], now: datetime) -> str:
    return next_fire_in_words(s["next_fire_at"], now, s["timezone"], paused=s["paused"])


def _dump(s: dict[str, Any]) -> None:
    from conveyor.schedules import ScheduleOut

    out.print_json(ScheduleOut(**s).model_dump_json())


@schedules_cli.command("list")
def schedules_list(
    as_json: Annotated[bool, typer.Option("--json", help="as GET /api/v1/schedules")] = False,
) -> None:
    """Every schedule: trigger in words, next fire, last run, failure streak, status."""
    from conveyor.ledger.schedule_store import ScheduleFilter

    found = _call(lambda: _service().list(ScheduleFilter(retired=None)))
    if as_json:
        out.print_json(json.dumps(found, default=str))
        return
    now = datetime.now(UTC)
    table = Table("name", "task", "trigger", "next fire", "last run", "failures", "status")
    for s in found:
        last = s["last_runs"][0] if s["last_runs"] else None
        table.add_row(
            Text(s["name"]),
            Text(s["task"]),
            Text(_trigger(s)),
            _next(s, now),
            f"{last['state'] or last['outcome']} {when(last['fire_time'])}" if last else "-",
            str(s["failure_streak"]),
            _status(s),
        )
    print_table(table, "no schedules yet; create one with `conveyor schedules create`")


@schedules_cli.command("show")
def schedules_show(ref: Ref, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One schedule: its fields, next fires and last runs."""
    svc = _service()
    s = _call(lambda: svc.get(ref))
    if as_json:
        _dump(s)
        return
    now = datetime.now(UTC)
    facts = Table.grid(padding=(0, 2))
    runs_text = str(s["run_count"]) + (f" of at most {s['max_runs']}" if s["max_runs"] else "")
    for key, value in (
        ("id", s["id"]),
        ("name", s["name"]),
        ("task", s["task"]),
        ("args", json.dumps(s["args"])),
        ("kwargs", json.dumps(s["kwargs"])),
        ("trigger", _trigger(s)),
        ("timezone", s["timezone"]),
        ("next fire", _next(s, now)),
        ("overlap", s["overlap"]),
        ("runs", runs_text),
        ("failures in a row", str(s["failure_streak"])),
        ("status", _status(s).plain),
    ):
        facts.add_row(f"[bold]{key}[/]", Text(value))
    out.print(facts)
    if not s["paused"] and not s["retired_at"]:
        out.print("[bold]next fires[/]")
        for t in _call(lambda: svc.next_fires(s["id"], 5)):
            out.print(f"  {next_fire_in_words(t, now, s['timezone'])}")
    runs = Table("fire time", "outcome", "job", "state", title="last runs")
    for run in _call(lambda: svc.runs(s["id"], 10)):
        fired = _when(run["fire_time"])
        runs.add_row(fired, run["outcome"], run["job_id"] or "-", run["state"] or "-")
    print_table(runs, "no runs yet")


def _moment(option: str, text: str, tz: str | None) -> datetime:
    """An ISO 8601 time from the command line; without an offset, on the clock of ``tz``
    (UTC when not given)."""
    try:
        return wall_time(text, tz or "UTC")
    except ValueError as exc:
        err.print(f"[red]{option}: {exc}[/]")
        raise typer.Exit(2) from None


def _fields(given: dict[str, Any]) -> dict[str, Any]:
    """The schedule options among a command's parameters (its ``locals()``: `create` and
    `edit` take the same ones), as the service's fields; at most one trigger."""
    cron, every, at, tz = given["cron"], given["every"], given["at"], given["tz"]
    args, kwargs, start, end = given["args"], given["kwargs"], given["start"], given["end"]
    triggers = [k for k, v in (("cron", cron), ("every", every), ("at", at)) if v is not None]
    if len(triggers) > 1:
        err.print(f"[red]give one trigger, not {' and '.join('--' + t for t in triggers)}[/]")
        raise typer.Exit(2)
    fields: dict[str, Any] = {}
    if cron is not None:
        fields["cron"] = cron
    elif every is not None:
        fields["every"] = parse_value(every)
    elif at is not None:
        fields["at"] = _moment("--at", at, tz)
    for key in ("queue", "priority", "overlap", "catchup_window", "catchup_max", "jitter"):
        if given[key] is not None:
            fields[key] = given[key]
    for key, value in (
        ("timezone", tz),
        ("max_runs", given["max_runs"]),
        ("start_at", start and _moment("--start", start, tz)),
        ("end_at", end and _moment("--end", end, tz)),
    ):
        if value is not None:
            fields[key] = value
    if args is not None:
        fields["args"] = [parse_value(a) for a in args]
    if kwargs is not None:
        fields["kwargs"] = parse_kwargs(kwargs)
    return fields


@schedules_cli.command("create")
def schedules_create(
    name: Annotated[str, typer.Argument(help="a unique name")],
    task: Annotated[str, typer.Argument(help="registered task name, e.g. demo.add")],
    cron: CronOpt = None,
    every: EveryOpt = None,
    at: AtOpt = None,
    tz: TzOpt = None,
    args: ArgOpt = None,
    kwargs: KwargOpt = None,
    queue: QueueOpt = None,
    priority: PriorityOpt = None,
    overlap: OverlapOpt = None,
    catchup_window: CatchupOpt = None,
    catchup_max: CatchupRunsOpt = None,
    jitter: JitterOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    max_runs: MaxRunsOpt = None,
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
) -> None:
    """Create a schedule (one of --cron, --every, --at); prints its id."""
    from conveyor.schedules import ScheduleSpec

    fields = _fields(locals())
    if not {"cron", "every", "at"} & fields.keys():
        err.print("[red]give a trigger: --cron, --every or --at[/]")
        raise typer.Exit(2)
    svc = _service()
    if paused:
        fields["paused"] = True
    created = _call(lambda: svc.create(ScheduleSpec(name=name, task=task, **fields)))
    out.print(created["id"])


@schedules_cli.command("edit")
def schedules_edit(
    ref: Ref,
    name: Annotated[str | None, typer.Option(help="rename it")] = None,
    cron: CronOpt = None,
    every: EveryOpt = None,
    at: AtOpt = None,
    tz: TzOpt = None,
    args: ArgOpt = None,
    kwargs: KwargOpt = None,
    queue: QueueOpt = None,
    priority: PriorityOpt = None,
    overlap: OverlapOpt = None,
    catchup_window: CatchupOpt = None,
    catchup_max: CatchupRunsOpt = None,
    jitter: JitterOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    max_runs: MaxRunsOpt = None,
) -> None:
    """Change the given fields of a schedule (the others stay); a code schedule's changes
    are kept as overrides until `reset`."""
    from conveyor.schedules import SchedulePatch

    fields = _fields(locals())
    if name is not None:
        fields["name"] = name
    if not fields:
        err.print("[red]nothing to change: give the options to change[/]")
        raise typer.Exit(2)
    svc = _service()
    s = _call(lambda: svc.get(ref))
    updated = _call(lambda: svc.update(s["id"], SchedulePatch(**fields)))
    out.print(f"{updated['name']} saved; {_trigger(updated)}")


@schedules_cli.command("pause")
def schedules_pause(
    ref: Ref,
    note: Annotated[str, typer.Option(help="why, shown beside it")] = "",
) -> None:
    """Pause a schedule: no fire runs until it is resumed."""
    svc = _service()
    s = _call(lambda: svc.get(ref))
    _call(lambda: svc.pause(s["id"], note or None))
    out.print(Text(f"{s['name']} paused" + (f": {note}" if note else "")))


@schedules_cli.command("resume")
def schedules_resume(ref: Ref) -> None:
    """Resume a paused schedule from its next fire time."""
    svc = _service()
    s = _call(lambda: svc.get(ref))
    resumed = _call(lambda: svc.resume(s["id"]))
    out.print(f"{s['name']} resumed; next fire {_next(resumed, datetime.now(UTC))}")


@schedules_cli.command("trigger")
def schedules_trigger(ref: Ref) -> None:
    """Run the schedule's task now, once; prints the job id."""
    svc = _service()
    s = _call(lambda: svc.get(ref))
    out.print(_call(lambda: svc.trigger(s["id"])))


@schedules_cli.command("delete")
def schedules_delete(
    ref: Ref,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a schedule; the jobs it started stay in the ledger."""
    svc = _service()
    s = _call(lambda: svc.get(ref))
    if not yes and not typer.confirm(f"Delete schedule {s['name']!r}?"):
        raise typer.Exit(1)
    _call(lambda: svc.delete(s["id"]))
    out.print(f"{s['name']} deleted")


@schedules_cli.command("next")
def schedules_next(ref: Ref, n: Annotated[int, typer.Option("-n", min=1, max=100)] = 5) -> None:
    """The schedule's next N fire times."""
    svc = _service()
    s = _call(lambda: svc.get(ref))
    now = datetime.now(UTC)
    for t in _call(lambda: svc.next_fires(s["id"], n)):
        out.print(next_fire_in_words(t, now, s["timezone"]))


@schedules_cli.command("backfill")
def schedules_backfill(
    ref: Ref,
    start: Annotated[str, typer.Option("--start", help="from, e.g. 2026-12-01T00:00")],
    end: Annotated[str, typer.Option("--end", help="until (times in the schedule's zone)")],
) -> None:
    """Submit one run per fire time between --start and --end; prints the job ids."""
    svc = _service()
    s = _call(lambda: svc.get(ref))
    span = (_moment("--start", start, s["timezone"]), _moment("--end", end, s["timezone"]))
    job_ids = _call(lambda: svc.backfill(s["id"], *span))
    err.print(f"backfilled {len(job_ids)} fires of {s['name']}")
    for job_id in job_ids:
        out.print(str(job_id))
