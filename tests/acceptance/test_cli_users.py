"""`conveyor users` as an operator runs it: a subprocess against the real ledger."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from typing import Any

PASSWORD = "a long enough password"


def conveyor(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "users", *args],
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=120,
    )


def listed(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = conveyor("list", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return {row["username"]: row for row in json.loads(out.stdout)}


def test_create_list_disable_enable_and_set_password(services: Any) -> None:
    env = services.env()
    name = f"Op-{secrets.token_hex(3)}"
    made = conveyor(
        "create", name, "--role", "operator", "--password-stdin", env=env, stdin=PASSWORD + "\n"
    )
    assert made.returncode == 0, made.stderr
    assert f"created user {name.lower()} with role operator" in made.stderr
    assert "jobs:write" in made.stderr and PASSWORD not in made.stdout + made.stderr

    row = listed(env)[name.lower()]
    assert row["role"] == "operator" and row["status"] == "active"
    assert row["scopes"] == ["jobs:read", "jobs:write", "dlq:admin"]
    assert "password_hash" not in row and row["last_login_at"] is None
    table = conveyor("list", env=env)
    assert table.returncode == 0 and name.lower() in table.stdout and "scrypt" not in table.stdout

    off = conveyor("disable", name.upper(), env=env)
    assert off.returncode == 0 and "disabled" in off.stderr
    assert listed(env)[name.lower()]["status"] == "disabled"
    on = conveyor("enable", name, env=env)
    assert on.returncode == 0 and listed(env)[name.lower()]["status"] == "active"

    before = listed(env)[name.lower()]["password_changed_at"]
    new = conveyor(
        "set-password", name, "--password-stdin", env=env, stdin="another fine password\n"
    )
    assert new.returncode == 0, new.stderr
    assert listed(env)[name.lower()]["password_changed_at"] > before
    promoted = conveyor("set-role", name, "admin", env=env)
    assert promoted.returncode == 0 and listed(env)[name.lower()]["role"] == "admin"


def test_bad_input_is_refused_with_exit_code_2_and_changes_nothing(services: Any) -> None:
    env = services.env()
    name = f"bad-{secrets.token_hex(3)}"
    short = conveyor(
        "create", name, "--role", "viewer", "--password-stdin", env=env, stdin="short\n"
    )
    assert short.returncode == 2 and "at least 12" in short.stderr
    role = conveyor("create", name, "--role", "root", "--password-stdin", env=env, stdin=PASSWORD)
    assert role.returncode == 2 and "unknown role 'root'" in role.stderr
    spaced = conveyor("create", "two words", "--role", "viewer", "--password-stdin", env=env)
    assert spaced.returncode == 2 and "a username must be" in spaced.stderr
    assert name not in listed(env)

    ok = conveyor("create", name, "--role", "viewer", "--password-stdin", env=env, stdin=PASSWORD)
    assert ok.returncode == 0, ok.stderr
    taken = conveyor(
        "create", name.upper(), "--role", "admin", "--password-stdin", env=env, stdin=PASSWORD
    )
    assert taken.returncode == 2 and "already exists" in taken.stderr
    weak = conveyor("set-password", name, "--password-stdin", env=env, stdin="tiny\n")
    assert weak.returncode == 2 and "nothing was changed" in weak.stderr
    assert listed(env)[name]["role"] == "viewer"

    ghost = conveyor("disable", f"ghost-{secrets.token_hex(3)}", env=env)
    assert ghost.returncode == 1 and "no user named" in ghost.stderr


def test_interactive_prompt_asks_twice_and_refuses_a_mismatch(services: Any) -> None:
    env = services.env()
    name = f"prompt-{secrets.token_hex(3)}"
    differ = conveyor(
        "create", name, "--role", "viewer", env=env, stdin=f"{PASSWORD}\nother one!!\n"
    )
    assert differ.returncode == 2 and "the passwords differ" in differ.stderr
    assert name not in listed(env)
    same = conveyor("create", name, "--role", "viewer", env=env, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert same.returncode == 0, same.stderr
    assert PASSWORD not in same.stdout + same.stderr
