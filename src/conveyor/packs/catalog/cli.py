"""``conveyor catalog …``: import a CSV from the terminal and follow it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from conveyor.errors import ConveyorError

app = typer.Typer(no_args_is_help=True, help="Catalog pack: import products from a CSV file.")


@app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    wait: Annotated[bool, typer.Option("--wait", help="follow progress until it ends")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to --wait")] = 3600,
) -> None:
    """Copy PATH into the uploads and import it as a job (as an upload in the dashboard does).

    The worker reads the copy, so this command must run where the workers' data directory is
    (CONVEYOR_DATA_DIR); from elsewhere, POST the file to /api/v1/catalog/imports.
    """
    from conveyor.packs.catalog import submission, uploads
    from conveyor.packs.kit import cli_console, cli_services, watch_job

    out, err = cli_console()
    services = cli_services()
    try:
        import_id, stored = uploads.new_upload()
        target = uploads.uploads_dir(services.settings) / stored
        with open(path, "rb") as f:
            uploads.copy_in(f, target, services.settings.upload_max_bytes)
        row = submission.accept(services, import_id, path.name, target)
    except ConveyorError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(2) from None
    finally:
        services.control.close()
    if not wait:
        out.print_json(json.dumps(row, default=str))
        return
    err.print(f"import {row['id']} (job {row['job_id']}) submitted")
    code = watch_job(services.engine, row["job_id"], timeout=timeout, console=err, out=out)
    raise typer.Exit(code)
