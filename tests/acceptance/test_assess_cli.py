"""``conveyor assess …`` as a user runs it: subprocesses against the test deployment and its
real worker — run an inventory file to its report with --wait, get the report as PDF, HTML and
JSON, list, show, examples, and the refusals (a bad file, a cancel of an ended run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.packs.assess.examples import example_text
from conveyor.testing.services import ServiceSet

pytestmark = pytest.mark.broker


def assess(services: ServiceSet, *args: str, timeout: float = 180) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "assess", *args],
        env=services.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_wait_then_report_list_show(client: Any, services: ServiceSet, tmp_path: Path) -> None:
    inventory = tmp_path / "startup.yaml"
    inventory.write_text(example_text("startup"))
    done = assess(services, "run", str(inventory), "--name", "cli startup", "--wait")
    assert done.returncode == 0, done.stderr
    outline = json.loads(done.stdout)
    assert outline["status"] == "completed" and outline["partial"] is False
    assert set(outline["analyzers"].values()) == {"ok"} and len(outline["analyzers"]) == 10
    # The rich progress: one bar per analyzer and the overall one, on stderr.
    for name in ("overall", "cto", "simulation", "chatbot"):
        assert name in done.stderr
    assessment_id = outline["id"]

    pdf = tmp_path / "report.pdf"
    written = assess(services, "report", assessment_id, "--pdf", str(pdf))
    assert written.returncode == 0, written.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    html = assess(services, "report", assessment_id, "--html")
    assert html.returncode == 0 and "<svg" in html.stdout
    as_json = assess(services, "report", assessment_id, "--json")
    assert json.loads(as_json.stdout)["synthesis"]["recommendations"]

    listed = assess(services, "list", "--name", "cli startup")
    assert listed.returncode == 0 and assessment_id in listed.stdout
    shown = assess(services, "show", assessment_id)
    assert json.loads(shown.stdout)["progress"] == 1.0
    refused = assess(services, "cancel", assessment_id)
    assert refused.returncode == 1 and "only a running one" in refused.stderr
    nothing = assess(services, "retry", assessment_id)
    assert nothing.returncode == 1 and "nothing to retry" in nothing.stderr


def test_examples_and_refusals(client: Any, services: ServiceSet, tmp_path: Path) -> None:
    listed = assess(services, "examples")
    assert [e["name"] for e in json.loads(listed.stdout)] == ["startup", "saas", "enterprise"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("organisation: {name: X}\ncompute: {instances: [{id: a}]}\n")
    refused = assess(services, "run", str(bad))
    assert refused.returncode == 2
    assert "budget" in refused.stderr and "compute.instances[0]" in refused.stderr
    assert assess(services, "run", str(tmp_path / "missing.yaml")).returncode == 2
    assert assess(services, "run").returncode == 2
    assert assess(services, "run", "--example", "nope").returncode == 2
    assert assess(services, "show", "not-a-uuid").returncode == 2
    unknown = assess(services, "show", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1 and "no assessment" in unknown.stderr
    assert assess(services, "list", "--status", "nope").returncode == 2
