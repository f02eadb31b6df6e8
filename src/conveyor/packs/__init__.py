"""Workload packs: how a pack plugs into the worker, the API and the dashboard.

A pack is a package under ``conveyor/packs/<name>/`` that describes itself with one
:class:`Pack` in its ``__init__``. Every part is named by an import string and loaded only by
the process that needs it, so a worker never imports FastAPI routers and the API never imports
task bodies it does not run:

- ``tasks``: ``module:function`` taking the Celery app; registers the pack's tasks on it
  (the worker, the API and the CLI all call it, so each knows the task names);
- ``api``: ``module:attribute``, a FastAPI router mounted at ``/api/v1/<name>``;
- ``web``: a FastAPI router of dashboard pages, with templates in ``templates_dir`` and
  ``nav`` entries, which the dashboard's sidebar lists in a section titled with the pack's
  ``title``;
- ``public_web``: a router of pages anyone may open without logging in (the factory's
  product verification page, which a consumer reaches by scanning a label); its forms still
  carry the CSRF check;
- ``tables``: the pack's SQLAlchemy ``MetaData``; its Alembic migrations live with the ledger's
  (``ledger/migrations/versions``), and a test checks the two agree;
- ``cli``: a typer app, added to the ``conveyor`` command as ``conveyor <name> …``;
- ``local``: ``module:function`` taking the settings, called by ``conveyor up`` after the
  migration: starts the pack's local peers (an HTTP server speaking a provider's shapes, a
  local chain) when nothing real is configured, and returns :class:`LocalServices` — the
  environment and egress allowlist entries the children need, and how to stop them;
- ``health``: ``module:function`` taking the API's ``Services``, returning check name -> "ok"
  or why not (its providers, its object store); shown under ``details`` of ``/readyz``;
- ``streaming``: path prefixes whose routes read large bodies themselves (uploads), exempt from
  the JSON body cap of ``RequestLimits``.

Which packs are on is ``CONVEYOR_PACKS`` (see :func:`enabled`). Packs import Conveyor's public
API (``conveyor``, ``conveyor.packs`` and ``conveyor.packs.kit``) and never each other.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conveyor.config import Settings
from conveyor.errors import ConfigurationError

__all__ = [
    "SHIPPED",
    "LocalServices",
    "NavEntry",
    "Pack",
    "all_tables",
    "enabled",
    "load",
    "psycopg_url",
    "register_tasks",
    "settings_of",
]


@dataclass(frozen=True)
class NavEntry:
    """A navigation entry a pack adds to the dashboard: label, route name, key."""

    label: str
    route: str
    key: str


@dataclass
class LocalServices:
    """What a pack's ``local`` hook started for ``conveyor up``."""

    env: dict[str, str] = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    """``CONVEYOR_EGRESS_ALLOW`` entries for the peers (loopback is refused otherwise)."""
    stop: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Pack:
    """What a pack contributes; every part is an import string, loaded on use."""

    name: str
    title: str
    tasks: str | None = None
    api: str | None = None
    web: str | None = None
    public_web: str | None = None  # pages that need no session (see the module docstring)
    tables: str | None = None
    templates_dir: str | None = None  # a directory inside the pack's package
    cli: str | None = None  # a typer app, added as `conveyor <name> …`
    nav: tuple[NavEntry, ...] = ()
    streaming: tuple[str, ...] = ()
    local: str | None = None  # `conveyor up`'s local peers (see the module docstring)
    health: str | None = None  # the pack's checks for /readyz's details

    def attribute(self, spec: str) -> Any:
        """Import ``module:attribute``."""
        module_name, _, attr = spec.partition(":")
        return getattr(importlib.import_module(module_name), attr)


SHIPPED: dict[str, str] = {
    "catalog": "conveyor.packs.catalog:PACK",
    "factory": "conveyor.packs.factory:PACK",
    "assess": "conveyor.packs.assess:PACK",
    "agri": "conveyor.packs.agri:PACK",
}
"""Every pack Conveyor ships: name -> where its :class:`Pack` is."""


def load(name: str) -> Pack:
    """The shipped pack called ``name``."""
    spec = SHIPPED.get(name)
    if spec is None:
        raise ConfigurationError(
            f"unknown pack {name!r} in CONVEYOR_PACKS; shipped packs: {', '.join(SHIPPED)}"
        )
    module_name, _, attr = spec.partition(":")
    pack: Pack = getattr(importlib.import_module(module_name), attr)
    return pack


def enabled(settings: Settings) -> list[Pack]:
    """The packs ``settings`` switch on.

    ``CONVEYOR_PACKS`` unset: every shipped pack when the Celery app is one of Conveyor's own
    (the demo app `conveyor up` serves, the test app), so a fresh `make run` shows them; none
    for an application of yours, which asks for the ones it wants.
    """
    names = settings.packs
    if names is None:
        names = list(SHIPPED) if settings.app.startswith("conveyor.") else []
    return [load(name) for name in names]


def register_tasks(app: Any, settings: Settings) -> list[Pack]:
    """Register the tasks of every enabled pack on the Celery ``app``; the packs."""
    packs = enabled(settings)
    for pack in packs:
        if pack.tasks:
            pack.attribute(pack.tasks)(app)
    return packs


def all_tables() -> list[Any]:
    """The ``MetaData`` of every shipped pack (enabled or not: migrations create them all)."""
    out = []
    for name in SHIPPED:
        pack = load(name)
        if pack.tables:
            out.append(pack.attribute(pack.tables))
    return out


def settings_of(app: Any) -> Settings:
    """The settings a Celery app runs with (for pack tasks, which get ids, not settings)."""
    from conveyor.runtime.context import runtime_of

    return runtime_of(app).settings


def psycopg_url(settings: Settings) -> str:
    """The database URL in the form psycopg (and libpq) take."""
    url = settings.database_url or ""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url
