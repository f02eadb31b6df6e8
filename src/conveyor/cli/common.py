"""What every `conveyor` command needs: settings, the Celery app, the ledger, two consoles."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from conveyor.config import Settings

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def settings() -> Settings:
    from conveyor.runtime.context import discover

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


def services() -> Any:
    """Settings, Celery app, ledger engine and control plane for a one-shot command."""
    from conveyor.api.deps import Services
    from conveyor.control import Control
    from conveyor.ledger.db import make_engine

    s = require(settings())
    app = celery_app(s)
    engine = make_engine(s.database_url or "", pool_size=1)
    return Services(settings=s, app=app, engine=engine, control=Control(app, engine))
