"""``conveyor assess …``: run an assessment from a file and follow it, get its report, list,
show, cancel, retry, examples (the same service as the API, straight on the ledger)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.packs.kit import Services

app = typer.Typer(no_args_is_help=True, help="Assess pack: AI-infrastructure assessments.")

ENDED = ("completed", "failed", "cancelled")


def _id(value: str, err: Console) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        err.print(f"[red]refused:[/] {value!r} is not an assessment id (a UUID)")
        raise typer.Exit(2) from None


def _dump(out: Console, value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


def _services_or_exit() -> tuple[Services, Console, Console]:
    from conveyor.packs.kit import cli_console, cli_services

    out, err = cli_console()
    return cli_services(), out, err


@app.command()
def run(
    inventory: Annotated[Path | None, typer.Argument(help="the inventory, JSON or YAML")] = None,
    example: Annotated[
        str | None, typer.Option(help="a shipped example instead (see `conveyor assess examples`)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="the assessment's name")] = None,
    analyzer: Annotated[
        list[str] | None, typer.Option("--analyzer", "-a", help="run only these (repeatable)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow progress until it ends")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to --wait")] = 3600,
) -> None:
    """Create an assessment of INVENTORY and start it; with --wait, one progress bar per
    analyzer and one overall until it ends (exit 0 completed, 1 otherwise)."""
    from conveyor.packs.assess import workflow
    from conveyor.packs.assess.errors import InventoryError
    from conveyor.packs.assess.inventory import load_inventory
    from conveyor.packs.kit import cli_console

    out, err = cli_console()
    if (inventory is None) == (example is None):
        err.print("[red]refused:[/] give an inventory file or --example NAME (one of them)")
        raise typer.Exit(2)
    try:
        if inventory is not None:
            inv = load_inventory(inventory.read_bytes(), inventory.name)
        else:
            inv = workflow.load_example(str(example))
    except OSError as exc:
        err.print(f"[red]refused:[/] cannot read {inventory}: {exc.strerror or exc}")
        raise typer.Exit(2) from None
    except ConveyorError as exc:
        if not isinstance(exc, InventoryError):
            err.print(f"[red]refused:[/] {exc}")
            raise typer.Exit(2) from None
        err.print(f"[red]refused:[/] {inventory} is not a usable inventory:")
        for issue in exc.issues:
            err.print(f"  {issue['path'] or '(document)'}: {issue['message']}")
        raise typer.Exit(2) from None
    services, out, err = _services_or_exit()
    try:
        assessment_id = workflow.create(
            services.engine,
            inv,
            name=name,
            source="example" if example else "upload",
            example=example,
            chosen=analyzer,
        )
        started = workflow.start(services, assessment_id)
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        services.control.close()
        raise typer.Exit(2) from None
    if not wait:
        services.control.close()
        _dump(out, {"assessment_id": str(assessment_id), "workflow_id": started.workflow_id})
        return
    err.print(f"assessment {assessment_id} (workflow {started.workflow_id}) started")
    try:
        final = follow(services, assessment_id, timeout, err)
    finally:
        services.control.close()
    _dump(out, _outline(final))
    raise typer.Exit(0 if final["status"] == "completed" else 1)


def follow(services: Services, assessment_id: uuid.UUID, timeout: float, err: Console) -> Any:
    """Rich progress bars (one per analyzer, one overall) until the assessment ends; its
    final status."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from conveyor.packs.assess import workflow

    deadline = time.monotonic() + timeout
    current = workflow.status(services, assessment_id)
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[state]}"),
        console=err,
        transient=False,
    ) as bars:
        overall = bars.add_task("overall", total=1.0, state="")
        per = {
            a["name"]: bars.add_task(a["name"], total=1.0, state=a["status"])
            for a in current["analyzers"]
        }
        while True:
            for a in current["analyzers"]:
                if a["name"] in per:
                    bars.update(per[a["name"]], completed=a["progress"], state=a["status"])
            eta = current["eta_seconds"]
            note = current["status"] + (f", ETA {eta:.0f} s" if eta is not None else "")
            bars.update(overall, completed=current["progress"], state=note)
            if current["status"] in ENDED or time.monotonic() > deadline:
                break
            time.sleep(0.5)
            current = workflow.status(services, assessment_id)
    if current["status"] not in ENDED:
        err.print(f"[yellow]still {current['status']} after {timeout:.0f} s[/]")
    elif current["partial"]:
        err.print(f"[yellow]partial:[/] missing {', '.join(current['missing'])}")
    return current


def _outline(status: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "status", "partial", "missing", "error", "workflow_id", "progress")
    return {
        **{k: status[k] for k in keys},
        "analyzers": {a["name"]: a["status"] for a in status["analyzers"]},
    }


@app.command()
def report(
    assessment_id: Annotated[str, typer.Argument(help="the assessment's id")],
    pdf: Annotated[Path | None, typer.Option("--pdf", help="write the PDF here")] = None,
    html: Annotated[bool, typer.Option("--html", help="print the HTML report")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """The report of a completed assessment: --pdf FILE, --html (stdout) or --json (stdout)."""
    from conveyor.packs.assess import workflow

    services, out, err = _services_or_exit()
    key = _id(assessment_id, err)
    try:
        if pdf is not None:
            data = workflow.report_pdf(services.engine, key)
            pdf.write_bytes(data)
            err.print(f"wrote {pdf} ({len(data):,} bytes)")
        elif html:
            typer.echo(workflow.report_html(services.engine, key))
        else:
            if not as_json:
                err.print("(no format given: JSON; --pdf FILE or --html for the others)")
            _dump(out, workflow.result(services.engine, key))
    except ConveyorError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        services.control.close()


@app.command(name="list")
def list_(
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    name: Annotated[str | None, typer.Option(help="part of the name")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """Assessments, newest first."""
    from rich.table import Table

    from conveyor.packs.assess import workflow

    services, out, err = _services_or_exit()
    if status is not None and status not in workflow.STATUSES:
        err.print(f"[red]refused:[/] status must be one of {', '.join(workflow.STATUSES)}")
        raise typer.Exit(2)
    try:
        items, _ = workflow.list_assessments(
            services.engine, status_is=status, name=name, limit=limit
        )
    finally:
        services.control.close()
    if not items:
        err.print("no assessments match")
        return
    table = Table("name", "status", "partial", "created")
    table.add_column("id", no_wrap=True, min_width=36)
    for r in items:
        table.add_row(
            r["name"],
            r["status"],
            "yes" if r["partial"] else "",
            f"{r['created_at']:%Y-%m-%d %H:%M}",
            r["id"],
        )
    out.print(table)


@app.command()
def show(assessment_id: Annotated[str, typer.Argument(help="the assessment's id")]) -> None:
    """The assessment's status, per analyzer, as JSON."""
    from conveyor.packs.assess import workflow

    services, out, err = _services_or_exit()
    try:
        _dump(out, workflow.status(services, _id(assessment_id, err)))
    except ConveyorError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        services.control.close()


@app.command()
def cancel(assessment_id: Annotated[str, typer.Argument(help="the assessment's id")]) -> None:
    """Cancel a running assessment."""
    from conveyor.packs.assess import workflow

    services, out, err = _services_or_exit()
    try:
        _dump(out, _outline(workflow.cancel(services, _id(assessment_id, err))))
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        services.control.close()


@app.command()
def retry(
    assessment_id: Annotated[str, typer.Argument(help="the assessment's id")],
    wait: Annotated[bool, typer.Option("--wait", help="follow progress until it ends")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to --wait")] = 3600,
) -> None:
    """Run again the analyzers that did not end ok, then synthesis and report."""
    from conveyor.packs.assess import workflow

    services, out, err = _services_or_exit()
    key = _id(assessment_id, err)
    try:
        started = workflow.retry(services, key)
        if wait:
            final = follow(services, key, timeout, err)
            _dump(out, _outline(final))
            raise typer.Exit(0 if final["status"] == "completed" else 1)
        _dump(out, {"assessment_id": assessment_id, "workflow_id": started.workflow_id,
                    "analyzers": started.analyzers})  # fmt: skip
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        services.control.close()


@app.command()
def examples() -> None:
    """The example inventories shipped with the pack (run one with
    `conveyor assess run --example NAME --wait`)."""
    from conveyor.packs.assess import workflow
    from conveyor.packs.kit import cli_console

    out, _ = cli_console()
    _dump(out, workflow.example_listing())
