"""`conveyor users`: create, list, disable and enable dashboard users, and set passwords.

Like `conveyor keys`, the CLI works on the ledger directly (it needs database access, not a
login). A password is read from stdin with ``--password-stdin`` (for scripts), else asked for
twice at a hidden prompt; it never appears in arguments, where `ps` and shell history would
show it. Bad input exits with code 2 and changes nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Column, Table

from conveyor.cli.common import err, ledger_engine, out, print_table, settings, when
from conveyor.errors import ConveyorError, UserNotFound
from conveyor.ledger import users as repo
from conveyor.ledger.users import ROLE_SCOPES, ROLES, User

users_cli = typer.Typer(
    no_args_is_help=True,
    help="Dashboard users: create, list, disable, enable, set-password, set-role, unlock.",
)

T = TypeVar("T")

PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="read the password from stdin (one line) instead"),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]{message}[/]", highlight=False)
    return typer.Exit(code)


def _read_password(from_stdin: bool) -> str:
    """The new password, checked against the policy before anything is written."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
        if typer.prompt("Repeat the password", hide_input=True) != password:
            raise _fail("the passwords differ; nothing was changed")
    try:
        repo.check_password(password)
    except ConveyorError as exc:
        raise _fail(f"{exc}; nothing was changed") from None
    return password


def _in_ledger(change: Callable[[Any], T]) -> T:
    """Run ``change(conn)`` in one transaction; a refusal becomes its message and exit code:
    1 for an unknown user (like `keys revoke`), 2 for bad input."""
    engine = ledger_engine()
    try:
        with engine.begin() as conn:
            return change(conn)
    except UserNotFound as exc:
        raise _fail(str(exc), 1) from None
    except ConveyorError as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()


@users_cli.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="the login name; letters, digits and . _ @ -")],
    role: Annotated[
        str, typer.Option("--role", "-r", help=f"one of: {', '.join(ROLES)}", show_default=False)
    ],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user with a role and a password."""
    try:  # refuse bad names and roles before asking for a password
        repo.normalize_username(name)
        repo.validate_role(role)
    except ConveyorError as exc:
        raise _fail(str(exc)) from None
    password = _read_password(password_stdin)
    user = _in_ledger(lambda conn: repo.create_user(conn, name, password, role))
    scopes = ", ".join(user.scopes)
    err.print(f"created user {user.username} with role {user.role} (scopes: {scopes})")


@users_cli.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Users with their roles and last logins; never their password hashes."""
    found: list[User] = _in_ledger(repo.list_users)
    if as_json:
        rows = [
            {
                "username": u.username,
                "role": u.role,
                "scopes": list(ROLE_SCOPES[u.role]),
                "status": "active" if u.active else "disabled",
                "created_at": u.created_at,
                "last_login_at": u.last_login_at,
                "password_changed_at": u.password_changed_at,
                "disabled_at": u.disabled_at,
            }
            for u in found
        ]
        out.print_json(json.dumps(rows, default=str))
        return
    # Names stay whole; the other columns wrap first in a narrow terminal.
    table = Table(Column("user", no_wrap=True), "role", "scopes", "created", "last login", "status")
    for u in found:
        table.add_row(
            u.username,
            u.role,
            ", ".join(u.scopes),
            when(u.created_at),
            when(u.last_login_at),
            "active" if u.active else f"[red]disabled {when(u.disabled_at)}[/]",
        )
    print_table(table, "no users; create one with `conveyor users create NAME --role ROLE`")


def _cache_note() -> str:
    return f"within {settings().auth_cache_seconds:g}s (CONVEYOR_AUTH_CACHE_SECONDS)"


@users_cli.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="the username")]) -> None:
    """Disable a user: no new logins, and their sessions end."""
    user = _in_ledger(lambda conn: repo.disable_user(conn, name))
    err.print(f"disabled {user.username}; the dashboard ends their sessions {_cache_note()}")


@users_cli.command("enable")
def users_enable(name: Annotated[str, typer.Argument(help="the username")]) -> None:
    """Let a disabled user log in again."""
    user = _in_ledger(lambda conn: repo.enable_user(conn, name))
    err.print(f"enabled {user.username} ({user.role})")


@users_cli.command("set-password")
def users_set_password(
    name: Annotated[str, typer.Argument(help="the username")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a new password; sessions started with the old one end."""
    password = _read_password(password_stdin)
    user = _in_ledger(lambda conn: repo.set_password(conn, name, password))
    err.print(f"set a new password for {user.username}; older sessions end {_cache_note()}")


@users_cli.command("set-role")
def users_set_role(
    name: Annotated[str, typer.Argument(help="the username")],
    role: Annotated[str, typer.Argument(help=f"one of: {', '.join(ROLES)}")],
) -> None:
    """Give a user another role."""
    user = _in_ledger(lambda conn: repo.set_role(conn, name, role))
    err.print(f"{user.username} is now {user.role}; their sessions follow {_cache_note()}")


@users_cli.command("unlock")
def users_unlock(name: Annotated[str, typer.Argument(help="the username")]) -> None:
    """Clear a user's failed-login throttle: every address's delay and the per-user ceiling."""
    import redis

    from conveyor.cli.common import require
    from conveyor.web.login_throttle import LoginThrottle

    user = _in_ledger(lambda conn: repo.get_user(conn, name))
    if user is None:
        raise _fail(str(UserNotFound(name.strip().casefold())), 1)
    client = redis.Redis.from_url(require(settings()).redis_url or "")
    try:
        held = LoginThrottle(lambda: client).unlock(user.username)
    except redis.RedisError as exc:
        raise _fail(f"Redis is unreachable, nothing was cleared: {exc}", 1) from None
    finally:
        client.close()
    err.print(
        f"unlocked {user.username}: cleared failed logins from {held} "
        f"address{'es' if held != 1 else ''} and the per-user ceiling"
    )
