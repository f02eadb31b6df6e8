"""Every process that needs the ledger meets a database that was never migrated with one clear
message and a non-zero exit, instead of dying mid-work on a missing table (#12.9)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from conveyor.testing.services import _fresh_database

COMMANDS = [
    ["recorder"],
    ["reconcile"],
    ["api"],
    ["worker", "-c", "1"],
    ["beat"],
    ["submit", "demo.add", "1", "2"],
    ["jobs", "list"],
    ["dlq", "list"],
    ["keys", "list"],
]


def conveyor(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def empty_env(services: Any) -> dict[str, str]:
    empty = _fresh_database(services.settings.database_url)
    return {**services.env(), "CONVEYOR_DATABASE_URL": empty}


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_unmigrated_database_is_named_with_the_fix(args: list[str], empty_env: Any) -> None:
    done = conveyor(args, empty_env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "is not migrated" in output and "conveyor migrate" in output, output
    assert "Traceback" not in output and "does not exist" not in output, output


def test_after_migrate_the_same_commands_work(empty_env: Any) -> None:
    empty = _fresh_database(empty_env["CONVEYOR_DATABASE_URL"])
    env = {**empty_env, "CONVEYOR_DATABASE_URL": empty}
    assert conveyor(["jobs", "list"], env).returncode != 0
    migrated = conveyor(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    listed = conveyor(["jobs", "list"], env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
