"""`conveyor schedules` as a user runs it: a subprocess against the real stack (ledger,
worker), through the same service the API uses."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.testing.services import wait_for


def conveyor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "schedules", *args],
        env={**env, "COLUMNS": "250"},
        text=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(autouse=True)
def _clean(ledger: Any) -> Iterator[None]:
    yield
    with ledger.begin() as conn:
        conn.execute(text("DELETE FROM conveyor_schedules WHERE source = 'user'"))


@pytest.mark.broker
def test_create_list_show_edit_pause_resume_trigger_delete(services: Any, client: Any) -> None:
    env = services.env()
    name = f"cli-{uuid.uuid4().hex[:8]}"
    made = conveyor(
        "create", name, "demo.add", "--cron", "0 2 * * 0", "--tz", "Europe/Berlin",
        "-k", "x=40", "-k", "y=2",
        env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    schedule_id = made.stdout.strip()
    stored = client.get(f"/api/v1/schedules/{schedule_id}").json()
    assert (stored["name"], stored["kwargs"], stored["cron"]) == (
        name,
        {"x": 40, "y": 2},
        "0 2 * * 0",
    )

    listed = conveyor("list", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert "at 02:00, only on Sunday (Europe/Berlin)" in row and "02:00 Europe/Berlin" in row

    shown = conveyor("show", name, env=env)
    assert shown.returncode == 0 and schedule_id in shown.stdout and "next fires" in shown.stdout
    assert shown.stdout.count("02:00 Europe/Berlin") >= 5
    as_json = conveyor("show", schedule_id, "--json", env=env)
    assert as_json.returncode == 0 and f'"id": "{schedule_id}"' in as_json.stdout

    nxt = conveyor("next", name, "-n", "3", env=env)
    assert nxt.returncode == 0 and len(nxt.stdout.strip().splitlines()) == 3

    edited = conveyor("edit", name, "--every", "90s", env=env)
    assert edited.returncode == 0 and "every 90 seconds" in edited.stdout, edited.stderr

    # Backfill: one run per fire in (start, end]; 540 s hold exactly six 90 s fires.
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(seconds=540)
    filled = conveyor(
        "backfill", name, "--start", start.isoformat(), "--end", end.isoformat(), env=env
    )
    assert filled.returncode == 0, filled.stderr
    assert len(filled.stdout.split()) == 6 and "backfilled 6 fires" in filled.stderr
    again = conveyor(
        "backfill", name, "--start", end.isoformat(), "--end", start.isoformat(), env=env
    )
    assert again.returncode == 2 and "must be after start" in again.stderr

    paused = conveyor("pause", name, "--note", "supplier [b]down[/b]", env=env)
    assert paused.returncode == 0 and "supplier [b]down[/b]" in paused.stdout
    row = next(line for line in conveyor("list", env=env).stdout.splitlines() if name in line)
    assert "paused (supplier [b]down[/b])" in row
    resumed = conveyor("resume", name, env=env)
    assert resumed.returncode == 0 and "resumed; next fire in" in resumed.stdout

    fired = conveyor("trigger", name, env=env)
    assert fired.returncode == 0, fired.stderr
    job_id = fired.stdout.strip()
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "succeeded",
        timeout=30,
        message="the triggered run",
    )
    assert client.get(f"/api/v1/jobs/{job_id}").json()["schedule_id"] == schedule_id

    gone = conveyor("delete", name, "--yes", env=env)
    assert gone.returncode == 0 and f"{name} deleted" in gone.stdout
    assert client.get(f"/api/v1/schedules/{schedule_id}").status_code == 404


def test_bad_input_is_refused_with_its_reason_and_nothing_is_stored(
    services: Any, client: Any, ledger: Any
) -> None:
    env = services.env()

    def refused(*args: str) -> str:
        out = conveyor("create", "cli-bad", *args, env=env)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        return out.stderr

    assert "hour field '25'" in refused(
        "demo.add", "--cron", "0 25 * * *", "-k", "x=1", "-k", "y=1"
    )
    assert "unknown timezone" in refused(
        "demo.add", "--cron", "@daily", "--tz", "Mars/Olympus", "-k", "x=1", "-k", "y=1"
    )
    assert "unknown task 'demo.nope'" in refused("demo.nope", "--every", "5m")
    assert "more than 0" in refused("demo.add", "--every", "0", "-k", "x=1", "-k", "y=1")
    assert "x:" in refused("demo.add", "--every", "5m", "-k", "x=two", "-k", "y=1")
    assert "give one trigger" in refused("demo.add", "--every", "5m", "--cron", "@daily")
    assert "give a trigger" in refused("demo.add")
    assert "expected key=value" in refused("demo.add", "--every", "5m", "-k", "novalue")
    with ledger.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM conveyor_schedules WHERE name = 'cli-bad'")
        ).scalar_one()
    assert count == 0
    missing = conveyor("pause", "no-such-schedule", env=env)
    assert missing.returncode == 1 and "no schedule with id or name" in missing.stderr
