"""What every `conveyor` command needs: settings, the Celery app, the ledger, two consoles."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conveyor.config import Settings
from conveyor.errors import ConveyorError
from conveyor.logs import LogFormat

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        help="log lines as text or as one JSON object each [default: CONVEYOR_LOG_FORMAT or text]",
        show_default=False,
    ),
]


def export_log_format(log_format: LogFormat | None) -> None:
    """Make ``--log-format`` override ``CONVEYOR_LOG_FORMAT`` here and in every process this
    one starts (API server processes, `conveyor up`'s children), which build their own
    Settings from the environment."""
    if log_format:
        os.environ["CONVEYOR_LOG_FORMAT"] = log_format


def settings(log_format: LogFormat | None = None) -> Settings:
    """Settings from the environment and a running `conveyor up`; ``log_format`` is the
    command's ``--log-format`` option, if it has one."""
    from conveyor.runtime.context import discover

    export_log_format(log_format)
    return discover(Settings())


def celery_app(s: Settings) -> Any:
    from conveyor.api.app import load_celery_app
    from conveyor.packs import register_tasks
    from conveyor.runtime.install import install

    app = load_celery_app(s.app)
    install(app, s)
    register_tasks(app, s)
    app.loader.import_default_modules()
    return app


def require(s: Settings) -> Settings:
    if not s.database_url or not s.redis_url:
        err.print(
            "[red]No ledger configured:[/] set CONVEYOR_DATABASE_URL and CONVEYOR_REDIS_URL,"
            " or start the embedded stack with `conveyor up` in another terminal."
        )
        raise typer.Exit(2)
    return s


def require_migrated(s: Settings) -> Settings:
    """``require``, and the database holds the schema this Conveyor needs (else the error says
    to run `conveyor migrate`): for every command that reads or writes the ledger."""
    from conveyor.ledger.migrate import check_migrated

    require(s)
    check_migrated(s.database_url or "")
    return s


def ledger_engine() -> Any:
    """A one-connection engine on the ledger, for commands that only read or write rows."""
    from conveyor.ledger.db import make_engine

    s = require_migrated(settings())
    return make_engine(s.database_url or "", pool_size=1)


def when(value: datetime | None) -> str:
    """A timestamp for tables: UTC to the second, or ``-``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def services() -> Any:
    """Settings, Celery app, ledger engine and control plane for a one-shot command."""
    from conveyor.api.deps import Services
    from conveyor.control import Control
    from conveyor.ledger.db import make_engine

    s = require_migrated(settings())
    app = celery_app(s)
    engine = make_engine(s.database_url or "", pool_size=1)
    return Services(settings=s, app=app, engine=engine, control=Control(app, engine))


def print_table(table: Table, empty: str) -> None:
    """Print ``table``, or the sentence ``empty`` when it has no rows: a table of headers alone
    reads like an error, where "no jobs match" says the command worked and found nothing."""
    if table.row_count:
        out.print(table)
    else:
        out.print(empty)


def parse_value(raw: str) -> Any:
    """A value typed on the command line: JSON if it reads as JSON (5, true, [1], '"5"'),
    else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_kwargs(items: list[str] | None, option: str = "--kwarg") -> dict[str, Any]:
    """``key=value`` items as keyword arguments (values read by :func:`parse_value`); one
    without ``=`` is an error naming it (exit 2)."""
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            err.print(f"[red]{option} {item!r}: expected key=value[/]")
            raise typer.Exit(2)
        kwargs[key] = parse_value(value)
    return kwargs


@contextmanager
def refusals() -> Iterator[None]:
    """A refusal printed with its reason, naming the field: bad input exits 2, an unknown
    thing or an action that does not apply (now) exits 1."""
    from pydantic import ValidationError
    from rich.markup import escape

    try:
        yield
    except ValidationError as exc:
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "input"
            err.print(f"[red]refused:[/] {escape(where)}: {escape(problem['msg'])}")
        raise typer.Exit(2) from None
    except ConveyorError as exc:
        from conveyor.api.errors import status_for

        status = status_for(exc)
        if status == 404:
            err.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
        err.print(f"[red]refused:[/] {escape(str(exc))}")
        raise typer.Exit(2 if status == 422 else 1) from None
