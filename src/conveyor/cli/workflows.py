"""`conveyor workflows`: list, show, run, cancel, retry workflows, through the same
``Workflows`` service the API and the dashboard use.

`run FILE` takes a spec as JSON or YAML (the body of ``POST /api/v1/workflows``; ``-`` reads
it from standard input), read by :func:`conveyor.documents.parse_document`. `--wait` follows a
workflow with a bar per node and the overall, weighted, bar. A refusal prints the reason,
naming the step or field, and exits with 2 (bad input) or 1 (no such workflow, or the action
does not apply now).
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from conveyor.cli.common import err, out, print_table, refusals, services, when

SPEC_MAX_BYTES = 16 * 1024 * 1024  # a spec of thousands of steps is well under this

workflows_cli = typer.Typer(
    no_args_is_help=True, help="Workflows: list, show, run (a JSON or YAML spec), cancel, retry."
)

IdArg = Annotated[str, typer.Argument(help="the workflow's id")]
JsonOpt = Annotated[bool, typer.Option("--json", help="as the API returns it")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="follow it, a bar per node, until it ends")]
TimeoutOpt = Annotated[float, typer.Option(help="seconds to --wait", min=0.1)]

# Exit codes of a followed workflow: as `conveyor submit --wait`.
SUCCEEDED, ENDED_OTHERWISE, STILL_RUNNING = 0, 1, 3


def _flows() -> Any:
    from conveyor.workflows import Workflows

    return Workflows(services().control)


def _workflow_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        err.print(f"[red]refused:[/] {escape(repr(raw))} is not a workflow id (a UUID)")
        raise typer.Exit(2) from None


def _percent(progress: float) -> str:
    return f"{progress * 100:.0f}%"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


@workflows_cli.command("list")
def workflows_list(
    source: Annotated[str | None, typer.Option(help="canvas or spec")] = None,
    name: Annotated[str | None, typer.Option(help="only workflows of this name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Workflows, newest first: state, progress and nodes per state."""
    if source not in (None, "canvas", "spec"):
        err.print(f"[red]refused:[/] --source must be canvas or spec, not {escape(repr(source))}")
        raise typer.Exit(2)
    with refusals():
        page = _flows().list_workflows(source=source, name=name, limit=limit)
    if as_json:
        out.print_json(page.model_dump_json())
        return
    table = Table("id", "name", "source", "state", "progress", "nodes", "created", "finished")
    for wf in page.items:
        table.add_row(
            wf.id,
            Text(wf.name or "-"),
            wf.source,
            wf.state,
            _percent(wf.progress),
            _counts(wf.counts),
            when(wf.created_at),
            when(wf.finished_at),
        )
    print_table(table, "no workflows yet; run one with `conveyor workflows run FILE`")


def _print_workflow(wf: Any) -> None:
    facts = Table.grid(padding=(0, 2))
    eta = f"{wf.eta_seconds:.0f}s" if wf.eta_seconds is not None else "-"
    for key, value in (
        ("id", wf.id),
        ("name", wf.name or "-"),
        ("source", wf.source),
        ("state", wf.state),
        ("progress", _percent(wf.progress)),
        ("eta", eta),
        ("nodes", _counts(wf.counts)),
        ("created", when(wf.created_at) + " UTC"),
        ("finished", when(wf.finished_at) + (" UTC" if wf.finished_at else "")),
    ):
        facts.add_row(f"[bold]{key}[/]", Text(value))
    out.print(facts)
    nodes = Table("step", "task", "state", "progress", "weight", "job", "error", title="nodes")
    for n in wf.nodes:
        error = f"{n.error_type or ''}: {n.error_message or ''}" if n.error_type else ""
        nodes.add_row(
            Text(n.name if n.name == n.step else f"{n.name} {n.step[:8]}"),
            Text(n.task),
            n.state,
            _percent(n.progress),
            f"{n.weight:g}",
            n.job_id or "-",
            Text(error[:80]),
        )
    out.print(nodes)
    label = {n.step: n.name if n.name == n.step else f"{n.name} {n.step[:8]}" for n in wf.nodes}
    out.print("[bold]edges[/]")
    if not wf.edges:
        out.print("  none")
    for e in wf.edges:
        out.print(Text(f"  {label.get(e.parent, e.parent)} → {label.get(e.child, e.child)}"))


@workflows_cli.command("show")
def workflows_show(workflow_id: IdArg, as_json: JsonOpt = False) -> None:
    """One workflow: its nodes with their states and jobs, and its edges."""
    wf_id = _workflow_id(workflow_id)
    with refusals():
        wf = _flows().get_workflow(wf_id)
    if as_json:
        out.print_json(wf.model_dump_json())
        return
    _print_workflow(wf)


def _read_spec(file: str) -> Any:
    """The spec in ``file`` (``-``: standard input), validated; exits 2 naming what is wrong."""
    from conveyor.documents import DocumentError, parse_document
    from conveyor.workflows import WorkflowSpec

    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        err.print(f"[red]refused:[/] cannot read {escape(file)}: {escape(str(exc))}")
        raise typer.Exit(2) from None
    try:
        data = parse_document(
            raw, None if file == "-" else file, max_bytes=SPEC_MAX_BYTES, what="the spec"
        )
    except DocumentError as exc:
        err.print(f"[red]refused:[/] {escape(file)}: {escape(str(exc))}")
        raise typer.Exit(2) from None
    with refusals():
        return WorkflowSpec.model_validate(data)


@workflows_cli.command("run")
def workflows_run(
    file: Annotated[
        str, typer.Argument(help="a spec as JSON or YAML (as POST /api/v1/workflows); -")
    ],
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600,
) -> None:
    """Validate and start a workflow from a JSON or YAML spec; prints its id.

    With --wait, follow it to its end: exit 0 if it succeeded, 1 if not, 3 if still running
    at --timeout."""
    spec = _read_spec(file)
    flows = _flows()
    with refusals():
        started = flows.submit_spec(spec)
    out.print(started.id)
    if wait:
        raise typer.Exit(follow(flows, started.id, timeout=timeout))


@workflows_cli.command("cancel")
def workflows_cancel(workflow_id: IdArg) -> None:
    """Cancel every queued and running node; steps not yet run never run."""
    wf_id = _workflow_id(workflow_id)
    with refusals():
        wf = _flows().cancel(wf_id)
    err.print(f"cancelling workflow {wf.id}: {_counts(wf.counts)}")


@workflows_cli.command("retry")
def workflows_retry(workflow_id: IdArg, wait: WaitOpt = False, timeout: TimeoutOpt = 3600) -> None:
    """Run a failed or cancelled workflow (spec or canvas) on.

    Its failed and never-run steps run again; succeeded ones are kept with their results."""
    wf_id = _workflow_id(workflow_id)
    flows = _flows()
    with refusals():
        wf = flows.retry(wf_id)
    err.print(f"retrying workflow {wf.id}: {_counts(wf.counts)}")
    if wait:
        raise typer.Exit(follow(flows, wf_id, timeout=timeout))


def follow(flows: Any, workflow_id: str, *, timeout: float) -> int:
    """Poll the workflow until it ends, with a bar per node (added as nodes become known)
    and the weighted overall bar; then print it. The exit code (see ``SUCCEEDED``...)."""
    deadline = time.monotonic() + timeout
    bars: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description:<28}"),
        TextColumn("[bold]{task.fields[state]:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        overall = bar.add_task("workflow", total=1.0, state="running")
        while True:
            with refusals():
                wf = flows.get_workflow(workflow_id)
            bar.update(overall, completed=wf.progress, state=wf.state)
            for n in wf.nodes:
                if n.step not in bars:
                    name = n.name if n.name == n.step else f"{n.name} {n.step[:8]}"
                    # A task's name is any text: never read as markup.
                    label = escape(f"  {name[:26]}")
                    bars[n.step] = bar.add_task(label, total=1.0, state=n.state)
                bar.update(bars[n.step], completed=n.progress, state=n.state)
            if wf.state != "running":
                break
            if time.monotonic() > deadline:
                err.print(f"[yellow]still running after {timeout:g}s; stopped following")
                return STILL_RUNNING
            time.sleep(0.3)
    _print_workflow(wf)
    return SUCCEEDED if wf.state == "succeeded" else ENDED_OTHERWISE
