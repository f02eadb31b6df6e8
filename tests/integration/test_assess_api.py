"""The assess pack through its API and a real worker (prefork) on its own queue: the full path,
an analyzer that fails and one that reaches its soft time limit (a partial report naming them),
retry of only those, cancel mid-run, bad inventories, start twice.

The failing and the slow analyzers are real analyzers plugged in as a deployment plugs its own
(``CONVEYOR_ASSESS_EXTRA_ANALYZERS``, see ``conveyor.testing.assess_analyzers``); the slow one's
soft limit is cut to 3 s with ``CONVEYOR_ASSESS_LIMITS`` on this module's worker. The worker
consumes only ``CONVEYOR_ASSESS_QUEUE``, so the session's shared worker (which knows none of
the extras) never takes these jobs. ``testing_stubborn`` ignores its soft limit and is killed at
its hard limit, cut to 3 s.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import text

from conveyor.testing.assess_analyzers import EXTRAS
from conveyor.testing.services import Process, ServiceSet, wait_for

pytestmark = pytest.mark.broker

QUEUE = "assess-it"
BASE = "/api/v1/assess"
QUICK = ["cto", "cloud_engineer", "infrastructure"]


def inventory() -> dict[str, Any]:
    """A small inventory: two GPU instances in one zone, one chat workload."""
    return {
        "organisation": {"name": "Tiny AI"},
        "workloads": [
            {
                "id": "chat",
                "type": "inference",
                "kind": "chat",
                "model": {"name": "llama-3-8b", "parameters_b": 8, "precision": "fp16"},
                "requests_per_s": 2,
                "slo": {"p95_ms": 2000, "ttft_ms": 500},
                "tokens": {"input": 500, "output": 200},
            }
        ],
        "compute": {
            "instances": [
                {
                    "id": f"gpu-{i}",
                    "type": "g5.xlarge",
                    "vcpu": 4,
                    "memory_gib": 16,
                    "gpu": {"model": "A10G", "count": 1},
                    "region": "us-east-1",
                    "zone": "us-east-1a",
                    "utilisation": {"gpu_p50": 12, "gpu_p95": 30},
                    "workloads": ["chat"],
                }
                for i in range(2)
            ]
        },
        "budget": {"monthly_usd": 5000},
    }


@pytest.fixture(scope="module")
def assess_env() -> Iterator[dict[str, str]]:
    """The pack's settings, for this process (the API under test) and the module's worker."""
    env = {
        "CONVEYOR_ASSESS_QUEUE": QUEUE,
        "CONVEYOR_ASSESS_EXTRA_ANALYZERS": EXTRAS,
        "CONVEYOR_ASSESS_LIMITS": json.dumps({"testing_slow": 3, "testing_stubborn": [1, 3]}),
    }
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def assess_worker(
    services: ServiceSet, assess_env: dict[str, str], artifacts: Path
) -> Iterator[Process]:
    env = {**services.env(), **assess_env}
    worker = Process(
        ["worker", "-c", "4", "-Q", QUEUE, "-n", f"assess-{os.getpid()}@%h"],
        env,
        artifacts / "assess-worker.log",
    ).start()
    yield worker
    worker.stop()


@pytest.fixture
def api(client: Any, assess_worker: Process) -> Any:
    return client


def create(api: Any, analyzers: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"inventory": inventory(), **extra}
    if analyzers is not None:
        body["analyzers"] = analyzers
    r = api.post(f"{BASE}/assessments", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    assert out["status"] == "created"
    return out


def start(api: Any, assessment_id: str) -> dict[str, Any]:
    r = api.post(f"{BASE}/assessments/{assessment_id}/start")
    assert r.status_code == 202, r.text
    out: dict[str, Any] = r.json()
    return out


def status(api: Any, assessment_id: str) -> dict[str, Any]:
    r = api.get(f"{BASE}/assessments/{assessment_id}")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def until_ended(api: Any, assessment_id: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = status(api, assessment_id)
        return s if s["status"] not in ("created", "running") else None

    out: dict[str, Any] = wait_for(
        check, timeout=timeout, interval=0.2, message=f"assessment {assessment_id} to end"
    )
    return out


def by_name(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in s["analyzers"]}


def test_the_startup_example_runs_to_a_report(api: Any) -> None:
    listed = api.get(f"{BASE}/examples").json()["items"]
    assert [e["name"] for e in listed] == ["startup", "saas", "enterprise"]
    assert listed[2]["instances"] >= 1000
    r = api.post(f"{BASE}/examples/startup/assessments")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["source"] == "example" and created["example"] == "startup"
    assert api.post(f"{BASE}/examples/nope/assessments").status_code == 404
    assert [a["name"] for a in created["analyzers"]] == [
        "cto", "cloud_engineer", "research", "mlops", "infrastructure", "compliance",
        "ai_consultant", "web_research", "simulation", "chatbot",
    ]  # fmt: skip
    started = start(api, created["id"])
    assert started["follow"] == f"{BASE}/assessments/{created['id']}/events"
    done = until_ended(api, created["id"])
    assert done["status"] == "completed", done
    assert done["progress"] == 1.0
    assert done["partial"] is False, done["missing"]
    assert all(a["status"] == "ok" and a["attempt"] == 1 for a in done["analyzers"])
    # The run is one Conveyor workflow: validate, ten analyzers, synthesize, report.
    wf = wait_for(
        lambda: (
            (r := api.get(f"/api/v1/workflows/{started['workflow_id']}")).status_code == 200
            and r.json()["state"] == "succeeded"
            and r.json()
        ),
        timeout=120,  # the recorder under CI load (compat runs beside)
        message="the workflow recorded as succeeded",
    )
    tasks = sorted(n["task"] for n in wf["nodes"])
    assert tasks.count("assess.validate") == 1 and "assess.report" in tasks
    assert len([t for t in tasks if t.startswith("assess.analyze.")]) == 10
    result = api.get(f"{BASE}/assessments/{created['id']}/result").json()
    assert result["synthesis"]["missing"] == done["missing"]
    assert result["synthesis"]["recommendations"], "the startup example has findings"
    assert len(result["results"]) == 10
    html = api.get(f"{BASE}/assessments/{created['id']}/report")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "<svg" in html.text
    pdf = api.get(f"{BASE}/assessments/{created['id']}/report?format=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    as_json = api.get(f"{BASE}/assessments/{created['id']}/report?format=json")
    assert as_json.json()["id"] == created["id"]


def test_a_failed_and_a_timed_out_analyzer_make_a_partial_report_then_retry_reruns_them(
    api: Any, ledger: Any
) -> None:
    created = create(api, [*QUICK, "testing_broken", "testing_slow"])
    start(api, created["id"])
    done = until_ended(api, created["id"], timeout=120)
    assert done["status"] == "completed", done
    assert done["partial"] is True
    assert {"testing_broken", "testing_slow"} <= set(done["missing"])
    states = by_name(done)
    assert states["testing_broken"]["status"] == "failed"
    assert "always fails" in states["testing_broken"]["error"]
    assert states["testing_slow"]["status"] == "timeout"
    assert "soft time limit of 3 s" in states["testing_slow"]["error"]
    result = api.get(f"{BASE}/assessments/{created['id']}/result").json()
    assert result["synthesis"]["partial"] is True
    assert result["synthesis"]["missing_status"]["testing_slow"] == "timeout"
    assert api.get(f"{BASE}/assessments/{created['id']}/report").status_code == 200

    # Retry: only the analyzers that did not end ok run again; the others keep their rows.
    before = by_name(done)
    r = api.post(f"{BASE}/assessments/{created['id']}/retry")
    assert r.status_code == 202, r.text
    again = set(r.json()["analyzers"])
    assert "testing_broken" in again and "testing_slow" in again
    assert not again & {n for n, a in before.items() if a["status"] == "ok"}
    after = until_ended(api, created["id"])
    assert after["run"] == 2
    for name, a in by_name(after).items():
        if name in again:
            assert a["attempt"] == before[name]["attempt"] + 1
            assert a["job_id"] != before[name]["job_id"]
        else:
            assert a["attempt"] == before[name]["attempt"] == 1
            assert a["job_id"] == before[name]["job_id"]
    with ledger.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM assess_results WHERE assessment_id = :id"),
            {"id": created["id"]},
        ).scalar()
    assert rows == len(QUICK) + 2  # one row per analyzer, whatever the runs


def worker_children(worker: Process) -> list[psutil.Process]:
    assert worker.proc is not None
    return psutil.Process(worker.proc.pid).children(recursive=True)


def test_cancel_mid_run_stops_every_analyzer(api: Any, assess_worker: Process) -> None:
    created = create(api, ["cto", "testing_slow_too", "testing_broken"])
    start(api, created["id"])
    wait_for(
        lambda: by_name(status(api, created["id"]))["testing_slow_too"]["progress"] > 0,
        timeout=60,
        message="the slow analyzer running",
    )
    r = api.post(f"{BASE}/assessments/{created['id']}/cancel")
    assert r.status_code == 202, r.text
    cancelled_at = time.monotonic()
    assert r.json()["status"] == "cancelled"

    def stopped() -> dict[str, Any] | None:
        a = by_name(status(api, created["id"]))["testing_slow_too"]
        return a if a["status"] == "cancelled" else None

    wait_for(stopped, timeout=10, interval=0.05, message="the slow analyzer cancelled")
    job_id = by_name(status(api, created["id"]))["testing_slow_too"]["job_id"]
    job = wait_for(
        lambda: (j := api.get(f"/api/v1/jobs/{job_id}").json())["state"] == "cancelled" and j,
        timeout=10,
        message="its job cancelled",
    )
    assert job["state"] == "cancelled"
    # Nothing of the run is left working: the pool's children go idle.
    time.sleep(max(0.0, 1.5 - (time.monotonic() - cancelled_at)))
    children = worker_children(assess_worker)
    for c in children:
        c.cpu_percent(None)
    time.sleep(1.0)
    busy = [c.pid for c in children if c.is_running() and c.cpu_percent(None) > 20]
    assert busy == [], f"worker children still busy after the cancel: {busy}"
    final = status(api, created["id"])
    assert final["status"] == "cancelled"
    assert api.post(f"{BASE}/assessments/{created['id']}/cancel").status_code == 409


def test_start_twice_is_409_and_unknown_is_404(api: Any) -> None:
    created = create(api, ["testing_slow_too"])
    start(api, created["id"])
    r = api.post(f"{BASE}/assessments/{created['id']}/start")
    assert r.status_code == 409 and "running" in r.json()["detail"]
    api.post(f"{BASE}/assessments/{created['id']}/cancel")
    assert api.post(f"{BASE}/assessments/{created['id']}/start").status_code == 409
    missing = "00000000-0000-4000-8000-000000000000"
    assert api.get(f"{BASE}/assessments/{missing}").status_code == 404
    assert api.post(f"{BASE}/assessments/{missing}/start").status_code == 404
    assert api.get(f"{BASE}/assessments/not-a-uuid").status_code == 422


def test_bad_inventories_are_422_naming_paths_and_store_nothing(api: Any, ledger: Any) -> None:
    with ledger.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM assess_assessments")).scalar()
    bad = inventory()
    bad["compute"]["instances"][1]["gpu"]["count"] = "8"
    del bad["budget"]
    r = api.post(f"{BASE}/assessments", json={"inventory": bad})
    assert r.status_code == 422, r.text
    locs = {tuple(p["loc"]) for p in r.json()["problems"]}
    assert ("inventory", "compute.instances[1].gpu.count") in locs
    assert ("inventory", "budget") in locs
    for body, ctype in (
        (b"", "application/json"),
        (b"\x00\x01binary", "application/octet-stream"),
        (b"{not json", "application/json"),
        (b"- a\n- list\n", "application/yaml"),
        (b"a: &x 1\nb: *x\n", "application/yaml"),
    ):
        r = api.post(
            f"{BASE}/assessments/upload?filename=inv.yaml", content=body,
            headers={"content-type": ctype},
        )  # fmt: skip
        assert r.status_code == 422, (body, r.text)
        assert r.json()["problems"]
    r = api.post(f"{BASE}/assessments", json={"inventory": inventory(), "analyzers": ["nope"]})
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    r = api.post(f"{BASE}/assessments", json={"inventory": inventory(), "analyzers": []})
    assert r.status_code == 422
    assert api.get(f"{BASE}/assessments?cursor=garbage").status_code == 422
    assert api.get(f"{BASE}/assessments?status=nope").status_code == 422
    with ledger.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM assess_assessments")).scalar()
    assert after == before


def test_upload_yaml_list_and_filters(api: Any) -> None:
    import yaml

    data = yaml.safe_dump(inventory()).encode()
    r = api.post(
        f"{BASE}/assessments/upload?filename=tiny.yaml&name=yaml-upload-list-test",
        content=data,
        headers={"content-type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "upload"
    r = api.post(
        f"{BASE}/assessments/upload",
        files={"file": ("tiny.yaml", data, "application/yaml")},
        params={"name": "yaml-upload-list-test"},
    )
    assert r.status_code == 201, r.text
    page = api.get(f"{BASE}/assessments?name=UPLOAD-LIST&limit=1").json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = api.get(f"{BASE}/assessments?name=upload-list&cursor={page['next_cursor']}").json()
    assert len(rest["items"]) == 1 and rest["items"][0]["id"] != page["items"][0]["id"]
    created = api.get(f"{BASE}/assessments?status=created&limit=200").json()["items"]
    assert all(i["status"] == "created" for i in created)


def test_events_stream_until_it_ends(api: Any) -> None:
    created = create(api, QUICK)
    start(api, created["id"])
    events = []
    with api.stream("GET", f"{BASE}/assessments/{created['id']}/events") as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "completed"
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_an_analyzer_killed_at_its_hard_limit_fails_the_run_and_retry_finishes_it(
    api: Any,
) -> None:
    created = create(api, ["cto", "testing_stubborn"])
    start(api, created["id"])
    done = until_ended(api, created["id"], timeout=120)
    # Its job ended without storing a result, so no chord callback can come: reading the
    # status settles the run as failed, naming the step.
    assert done["status"] == "failed", done
    assert "analyze.testing_stubborn" in done["error"]
    states = by_name(done)
    assert states["cto"]["status"] == "ok"
    assert states["testing_stubborn"]["status"] == "failed"
    r = api.post(f"{BASE}/assessments/{created['id']}/retry")
    assert r.status_code == 202 and r.json()["analyzers"] == ["testing_stubborn"]
