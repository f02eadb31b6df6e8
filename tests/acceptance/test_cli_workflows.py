"""`conveyor workflows` as a user runs it: a subprocess against the real stack (ledger,
worker, recorder and relay), through the same service the API uses."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.broker

FAST = {"seconds": 0.1}
DIAMOND = [
    {"name": "A", "task": "demo.step", "args": [1], "kwargs": FAST},
    {"name": "B", "task": "demo.step", "kwargs": {"add": 10, **FAST}, "after": ["A"],
     "pass_result": True},
    {"name": "C", "task": "demo.step", "kwargs": {"add": 20, **FAST}, "after": ["A"],
     "pass_result": True, "weight": 2},
    {"name": "D", "task": "demo.merge", "kwargs": {"seconds": 0}, "after": ["B", "C"],
     "pass_result": True},
]  # fmt: skip


def conveyor(*args: str, env: dict[str, str], stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "workflows", *args],
        env={**env, "COLUMNS": "250"},
        text=True,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def spec_file(tmp_path: Path, steps: list[dict[str, Any]], name: str = "cli") -> str:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({"name": name, "steps": steps}))
    return str(path)


def test_run_wait_list_show_cancel_retry(services: Any, client: Any, tmp_path: Path) -> None:
    env = services.env()
    name = f"cli-{uuid.uuid4().hex[:8]}"
    ran = conveyor("run", spec_file(tmp_path, DIAMOND, name), "--wait", env=env)
    assert ran.returncode == 0, ran.stderr
    workflow_id = ran.stdout.split()[0]
    assert str(uuid.UUID(workflow_id)) == workflow_id
    # The bars: the overall one and one per node, ended.
    assert "workflow" in ran.stderr and "succeeded" in ran.stderr
    assert all(f"  {step} " in ran.stderr for step in "ABCD")
    assert "100%" in ran.stderr
    assert "A → B" in ran.stdout and "C → D" in ran.stdout  # then the workflow, shown

    listed = conveyor("list", "--name", name, env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if workflow_id in line)
    assert "succeeded" in row and "100%" in row and "4 succeeded" in row

    shown = conveyor("show", workflow_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("succeeded") >= 5 and "B → D" in shown.stdout
    as_json = json.loads(conveyor("show", workflow_id, "--json", env=env).stdout)
    assert as_json == client.get(f"/api/v1/workflows/{workflow_id}").json() | {"eta_seconds": None}

    # Ended: nothing to cancel, nothing to retry (exit 1, the reason said).
    cancelled = conveyor("cancel", workflow_id, env=env)
    assert cancelled.returncode == 1 and "nothing to cancel" in cancelled.stderr
    retried = conveyor("retry", workflow_id, env=env)
    assert retried.returncode == 1 and "only a failed or cancelled" in retried.stderr

    # A long one, from standard input: cancelled, then retried and cancelled again.
    slow = json.dumps({"steps": [{"name": "long", "task": "demo.sleep", "args": [30]}]})
    started = conveyor("run", "-", env=env, stdin=slow)
    assert started.returncode == 0, started.stderr
    slow_id = started.stdout.strip()
    assert conveyor("cancel", slow_id, env=env).returncode == 0
    again = conveyor("retry", slow_id, env=env)
    # Cancelling takes a moment to show once the job was running; either way, it ends.
    if again.returncode == 0:
        assert "retrying workflow" in again.stderr
    else:
        assert "is running" in again.stderr
    assert conveyor("cancel", slow_id, env=env).returncode in (0, 1)


def test_a_failed_run_exits_1_and_retry_wait_follows_it(services: Any, tmp_path: Path) -> None:
    env = services.env()
    marker = tmp_path / "ready"
    steps = [
        {"name": "a", "task": "demo.add", "args": [1, 2]},
        {"name": "b", "task": "testing.needs_file", "args": [str(marker)], "after": ["a"],
         "pass_result": True},
    ]  # fmt: skip
    ran = conveyor("run", spec_file(tmp_path, steps), "--wait", env=env)
    assert ran.returncode == 1, ran.stderr
    workflow_id = ran.stdout.split()[0]
    assert "FileNotFoundError" in ran.stdout
    marker.write_text("ok")
    retried = conveyor("retry", workflow_id, "--wait", env=env)
    assert retried.returncode == 0, retried.stderr
    assert "1 failed" not in retried.stdout and "2 succeeded" in retried.stdout


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{not json", "not valid JSON"),
        ('{"steps": []}', "steps"),
        ('{"steps": [{"name": "a", "task": "demo.nope"}]}', "demo.nope"),
        ('{"steps": [{"name": "a", "task": "demo.noop", "after": ["a"]}]}', "cycle: a → a"),
        ('{"steps": [{"name": "a", "task": "demo.add", "args": [1, "x"]}]}', "steps.a.y"),
        ("[1, 2]", "expected a mapping at the top, got list"),
        ("[" * 100_000, "nested deeper than"),
        ('{"steps": [{"name": "[bold]x", "task": "demo.noop"}]}', "steps.0.name"),
    ],
)
def test_bad_specs_exit_2_saying_what_is_wrong(
    services: Any, tmp_path: Path, content: str, said: str
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(content)
    ran = conveyor("run", str(path), env=services.env())
    assert ran.returncode == 2, ran.stderr
    assert said in ran.stderr
    assert ran.stdout == ""


def test_unknown_files_and_workflows(services: Any, tmp_path: Path) -> None:
    env = services.env()
    missing = conveyor("run", str(tmp_path / "nope.json"), env=env)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    unknown = str(uuid.uuid4())
    for verb in ("show", "cancel", "retry"):
        r = conveyor(verb, unknown, env=env)
        assert r.returncode == 1 and "no workflow with id" in r.stderr, (verb, r.stderr)
        bad = conveyor(verb, "[red]not-an-id", env=env)
        assert bad.returncode == 2 and "'[red]not-an-id' is not a workflow id" in bad.stderr
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    unreadable = conveyor("run", str(binary), env=env)
    assert unreadable.returncode == 2 and "not UTF-8 text" in unreadable.stderr
    assert conveyor("list", "--source", "other", env=env).returncode == 2


def test_a_yaml_spec_runs_and_yaml_aliases_are_refused(
    services: Any, client: Any, tmp_path: Path
) -> None:
    env = services.env()
    good = tmp_path / "spec.yaml"
    good.write_text("name: yaml spec\nsteps:\n  - name: a\n    task: demo.add\n    args: [1, 2]\n")
    ran = conveyor("run", str(good), "--wait", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "1 succeeded" in ran.stdout
    bomb = tmp_path / "bomb.yml"
    bomb.write_text("a: &x [1]\nsteps: *x\n")
    refused = conveyor("run", str(bomb), env=env)
    assert refused.returncode == 2
    assert "aliases are not accepted" in refused.stderr
