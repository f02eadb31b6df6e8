"""``conveyor factory create|verify|export`` as a user runs them: subprocesses against the
test deployment and its real worker."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from typing import Any

from conveyor.testing.forgery import altered_token
from conveyor.testing.services import ServiceSet


def conveyor(services: ServiceSet, *args: str, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "factory", *args],
        env=services.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_create_wait_export_and_verify(client: Any, services: ServiceSet) -> None:
    done = conveyor(services, "create", "--count", "5000", "--name", "Cli", "--category", "c",
                    "--wait")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["product_count"] == 5000
    assert "succeeded" in done.stderr
    exported = conveyor(services, "export", result["batch_id"])
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 5000 and rows[0]["serial"] == "1" and rows[0]["name"] == "Cli"
    good = conveyor(services, "verify", rows[4999]["token"])
    assert good.returncode == 0, good.stderr
    answer = json.loads(good.stdout)
    assert answer["authentic"] and answer["proof"]["root"] == result["merkle_root"]
    bad = conveyor(services, "verify", altered_token(rows[0]["token"]))
    assert bad.returncode == 1 and json.loads(bad.stdout)["authentic"] is False


def test_bad_input_is_refused(client: Any, services: ServiceSet) -> None:
    refused = conveyor(services, "create", "--count", "0", "--name", "X", "--category", "c")
    assert refused.returncode == 2 and "product_count" in refused.stderr
    assert conveyor(services, "export", "not-a-uuid").returncode == 2
    unknown = conveyor(services, "export", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "no factory batch" in unknown.stderr
