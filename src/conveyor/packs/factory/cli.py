"""``conveyor factory …``: create a batch and follow it, verify a token, export a batch."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Annotated

import typer
from pydantic import ValidationError

from conveyor.errors import ConveyorError

app = typer.Typer(no_args_is_help=True, help="Factory pack: product batches, tokens, proofs.")


@app.command()
def create(
    count: Annotated[int, typer.Option("--count", "-n", help="products in the batch")],
    name: Annotated[str, typer.Option("--name", help="product name")],
    category: Annotated[str, typer.Option("--category", help="product category")],
    factory_id: Annotated[str | None, typer.Option("--factory", help="factory id")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow progress until it ends")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to --wait")] = 3600,
) -> None:
    """Create a batch of COUNT products and start its job (as POST /api/v1/factory/batches)."""
    from conveyor.packs.factory import submission
    from conveyor.packs.factory.api import BatchCreate
    from conveyor.packs.factory.deployment import factory_of
    from conveyor.packs.kit import cli_console, cli_services, watch_job

    out, err = cli_console()
    try:
        body = BatchCreate(
            product_count=count, product_name=name, category=category, factory_id=factory_id
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        err.print(f"[red]refused:[/] {'.'.join(map(str, first['loc']))}: {first['msg']}")
        raise typer.Exit(2) from None
    services = cli_services()
    try:
        started = submission.start(services, body.spec(), factory_of(services).settings)
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from None
    finally:
        services.control.close()
    row = {"batch_id": str(started.batch_id), "job_id": started.job_id}
    if not wait:
        out.print_json(json.dumps(row))
        return
    err.print(f"batch {started.batch_id} (job {started.job_id}) submitted")
    code = watch_job(services.engine, started.job_id, timeout=timeout, console=err, out=out)
    raise typer.Exit(code)


@app.command()
def verify(token: Annotated[str, typer.Argument(help="a product token")]) -> None:
    """Whether TOKEN is a genuine product's, with its proof (JSON); exit 1 if not authentic."""
    from conveyor.packs.factory.deployment import factory_of
    from conveyor.packs.kit import cli_console, cli_services

    out, _ = cli_console()
    services = cli_services()
    try:
        result = factory_of(services).verifier.verify(token).as_dict()
    finally:
        services.control.close()
    out.print_json(json.dumps(result))
    raise typer.Exit(0 if result["authentic"] else 1)


@app.command()
def export(batch_id: Annotated[str, typer.Argument(help="the batch's id")]) -> None:
    """Write the batch's products as CSV to stdout (serial, token, verification_url, name,
    category), streamed from PostgreSQL: ``conveyor factory export ID > labels.csv``."""
    from conveyor.packs.factory import queries
    from conveyor.packs.factory.batches import get_batch
    from conveyor.packs.kit import cli_console, cli_services

    _, err = cli_console()
    try:
        key = uuid.UUID(batch_id)
    except ValueError:
        err.print(f"[red]refused:[/] {batch_id!r} is not a batch id (a UUID)")
        raise typer.Exit(2) from None
    services = cli_services()
    try:
        get_batch(services.engine, key)
        for block in queries.products_csv(services.engine, key):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
    except ConveyorError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        services.control.close()
