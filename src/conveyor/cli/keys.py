"""`conveyor keys`: create, list and revoke API keys.

The CLI works on the ledger directly, so it needs database access, not a key. A new key's
secret is printed once, on stdout (so a script can capture it); everything else goes to stderr.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from conveyor.cli.common import err, ledger_engine, out, print_table, settings, when
from conveyor.errors import ConveyorError
from conveyor.ledger import keys as repo
from conveyor.ledger.keys import SCOPES

keys_cli = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what uses the key, e.g. ci-deployer")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help=f"repeatable; one of: {', '.join(SCOPES)}"),
    ],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="limit to this task (repeatable)")
    ] = None,
    queue: Annotated[
        list[str] | None, typer.Option("--queue", help="limit to this queue (repeatable)")
    ] = None,
    pack: Annotated[
        list[str] | None,
        typer.Option(
            "--pack",
            help="add the tasks a pack's API needs to the --task list, e.g. --pack catalog "
            "(repeatable; a key limited to tasks reaches a pack's routes only with them)",
        ),
    ] = None,
    expires_in_days: Annotated[
        float | None, typer.Option("--expires-in-days", min=0.001, help="expire after N days")
    ] = None,
) -> None:
    """Create a key and print its secret, once."""
    try:
        repo.validate_scopes(scope)
        if pack:
            task = [*(task or []), *(t for name in pack for t in _pack_tasks(name))]
    except ConveyorError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    expires_at = (
        datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days is not None else None
    )
    engine = ledger_engine()
    try:
        with engine.begin() as conn:
            created = repo.create_key(
                conn,
                name,
                scope,
                allowed_tasks=task,
                allowed_queues=queue,
                expires_at=expires_at,
            )
    except ConveyorError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    key = created.key
    err.print(f"created API key {key.prefix} ({key.name}) with scopes {', '.join(key.scopes)}")
    if key.allowed_tasks is not None:
        err.print(f"  limited to tasks: {', '.join(key.allowed_tasks)}")
    if key.allowed_queues is not None:
        err.print(f"  limited to queues: {', '.join(key.allowed_queues)}")
    if key.expires_at is not None:
        err.print(f"  expires at {when(key.expires_at)} UTC")
    err.print(
        "[bold yellow]Store this key now: it is shown only this once and cannot be recovered.[/]"
    )
    out.print(created.secret, highlight=False, soft_wrap=True)


def _pack_tasks(name: str) -> list[str]:
    """The tasks pack ``name``'s API routes declare (ConfigurationError for an unknown pack)."""
    from conveyor.api.auth import pack_tasks
    from conveyor.packs import load

    found = load(name)
    return pack_tasks(found.attribute(found.api)) if found.api else []


@keys_cli.command("list")
def keys_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Keys with their scopes, limits and use; never their secrets."""
    engine = ledger_engine()
    try:
        with engine.connect() as conn:
            found = repo.list_keys(conn, include_revoked=include_revoked)
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    if as_json:
        rows = [
            {
                "key_id": k.key_id,
                "prefix": k.prefix,
                "name": k.name,
                "scopes": list(k.scopes),
                "allowed_tasks": k.allowed_tasks,
                "allowed_queues": k.allowed_queues,
                "status": k.status(now),
                "created_at": k.created_at,
                "last_used_at": k.last_used_at,
                "expires_at": k.expires_at,
                "revoked_at": k.revoked_at,
            }
            for k in found
        ]
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table("key", "name", "scopes", "tasks", "queues", "created", "last used", "status")
    for k in found:
        status: str = k.status(now)
        if status == "active" and k.expires_at is not None:
            status = f"active until {when(k.expires_at)}"
        table.add_row(
            k.prefix,
            k.name,
            ", ".join(k.scopes),
            ", ".join(k.allowed_tasks) if k.allowed_tasks is not None else "any",
            ", ".join(k.allowed_queues) if k.allowed_queues is not None else "any",
            when(k.created_at),
            when(k.last_used_at),
            status if status.startswith("active") else f"[red]{status}[/]",
        )
    revoked = "" if include_revoked else " (--all shows revoked ones)"
    print_table(table, f"no API keys{revoked}; create one with `conveyor keys create NAME`")


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key id, e.g. k3x9q2ab or cvk_k3x9q2ab")],
) -> None:
    """Revoke a key. API processes stop accepting it within CONVEYOR_AUTH_CACHE_SECONDS."""
    engine = ledger_engine()
    try:
        with engine.begin() as conn:
            key = repo.revoke_key(conn, repo.normalize_key_id(key_id))
    except ConveyorError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    cache = settings().auth_cache_seconds
    err.print(
        f"revoked {key.prefix} ({key.name}); running API processes refuse it within {cache:g}s "
        "(their key cache, CONVEYOR_AUTH_CACHE_SECONDS)"
    )
