"""``conveyor agri …``: import plots, assess a plot, verify a proof, list payouts."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from conveyor.errors import ConveyorError

app = typer.Typer(no_args_is_help=True, help="Agri pack: plots, assessments, payouts, proofs.")


@app.command("import")
def import_plots(
    path: Annotated[Path, typer.Argument(help="plots as GeoJSON (.geojson/.json) or CSV")],
) -> None:
    """Import the plots of a GeoJSON FeatureCollection (properties ``name`` and
    ``policy_number``) or a CSV (``name,policy_number,geometry`` with GeoJSON or WKT cells):
    all or nothing, every problem numbered by feature or row; the plots created as JSON lines."""
    from conveyor.packs.agri import store
    from conveyor.packs.agri.imports import parse_plots
    from conveyor.packs.kit import cli_console, cli_services

    out, err = cli_console()
    try:
        data = path.read_bytes()
    except OSError as exc:
        err.print(f"[red]refused:[/] cannot read {path}: {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        plots = parse_plots(data, filename=path.name)
    except ConveyorError as exc:
        for line in getattr(exc, "problems", [str(exc)]):
            err.print(f"[red]refused:[/] {line}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None
    services = cli_services()
    try:
        created = store.create_plots(services.engine, plots)
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from None
    finally:
        services.control.close()
    for row in created:
        out.print(json.dumps(row), soft_wrap=True, highlight=False)
    err.print(f"{len(created)} plot(s) imported")


@app.command("verify-proof")
def verify_proof(
    cid: Annotated[str, typer.Argument(help="the proof's CIDv1 (b…)")],
    document: Annotated[
        Path | None, typer.Option("--document", "-d", help="a local copy of the document")
    ] = None,
) -> None:
    """Recompute the CID of a proof document (a file, or the one stored under CID) and say
    whether CID names it; exit 1 if not."""
    from conveyor.packs.agri import proofs, store
    from conveyor.packs.kit import cli_console, cli_services

    out, err = cli_console()
    if document is not None:
        try:
            data = document.read_bytes()
        except OSError as exc:
            err.print(f"[red]refused:[/] cannot read {document}: {exc.strerror}")
            raise typer.Exit(2) from None
    else:
        services = cli_services()
        try:
            data = store.proof_document(services.engine, cid)
        except ConveyorError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        finally:
            services.control.close()
    try:
        valid = proofs.verify(data, cid)
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from None
    out.print_json(json.dumps({"cid": cid, "computed_cid": proofs.cid_of(data), "valid": valid}))
    raise typer.Exit(0 if valid else 1)


@app.command()
def assess(
    plot_id: Annotated[str, typer.Argument(help="the plot's id")],
    day: Annotated[
        str | None, typer.Option(help="a day (YYYY-MM-DD) of the period; the last ended one")
    ] = None,
) -> None:
    """Assess PLOT_ID over one of its policy's periods now, in this process (once per plot and
    period: a second run prints the same assessment); the assessment as JSON."""
    from conveyor.packs.agri.assessment import assess as run
    from conveyor.packs.agri.assessment import period_of
    from conveyor.packs.kit import cli_console, cli_services

    out, err = cli_console()
    try:
        key = uuid.UUID(plot_id)
        today = datetime.now(UTC).date()
        when = date.fromisoformat(day) if day else today - timedelta(days=1)
    except ValueError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from None
    services = cli_services()
    try:
        with services.engine.connect() as conn:
            start, end = period_of(conn, key, when, today)
        row = run(services.engine, key, start, end)
    except ConveyorError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        services.control.close()
    out.print_json(json.dumps(row))
    raise typer.Exit(0 if row["status"] == "completed" else 1)


@app.command()
def payouts(
    status: Annotated[
        str | None, typer.Option(help="approved, submitted, confirmed or failed")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List payouts, newest first (JSON lines)."""
    from conveyor.packs.agri import store
    from conveyor.packs.kit import cli_console, cli_services

    out, err = cli_console()
    if status not in (None, "approved", "submitted", "confirmed", "failed"):
        err.print(f"[red]refused:[/] unknown status {status!r}")
        raise typer.Exit(2)
    services = cli_services()
    try:
        for row in store.list_payouts(services.engine, status, None, limit):
            out.print(json.dumps(row), soft_wrap=True, highlight=False)
    finally:
        services.control.close()
