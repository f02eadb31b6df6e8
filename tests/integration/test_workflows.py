"""Workflows through real workers: canvas sent from code and specs posted over REST, read back
as one graph; bad specs refused; cancel and retry of a whole workflow."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conveyor.testing.services import ServiceSet, python_last_line, wait_for

pytestmark = pytest.mark.broker


def post_spec(client: Any, steps: list[dict[str, Any]], name: str = "test") -> dict[str, Any]:
    r = client.post("/api/v1/workflows", json={"name": name, "steps": steps})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/api/v1/workflows/{r.json()['id']}"
    return r.json()


def until_workflow(
    client: Any, workflow_id: str, *states: str, nodes: int | None = None, timeout: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/workflows/{workflow_id}")
        if r.status_code != 200:
            return None
        out: dict[str, Any] = r.json()
        if out["state"] not in states or (nodes is not None and len(out["nodes"]) != nodes):
            return None
        return out

    return wait_for(check, timeout=timeout, message=f"workflow {workflow_id} to reach {states}")


def results(ledger: Any, job_ids: list[str]) -> dict[str, Any]:
    """job id -> its recorded result."""
    with ledger.connect() as conn:
        rows = conn.execute(
            text("SELECT id::text, result FROM conveyor_jobs WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": job_ids},
        ).all()
    return dict(rows)


def labelled_edges(wf: dict[str, Any], label: dict[str, Any]) -> set[tuple[Any, Any]]:
    return {(label[e["parent"]], label[e["child"]]) for e in wf["edges"]}


def send_canvas(client: Any, services: ServiceSet, canvas: str) -> dict[str, Any]:
    """Send ``canvas`` (an expression over the demo tasks) from another process with Celery's
    own canvas API, as an app's code would; its last task's id and result (from the ledger:
    the demo app stores no results in the result backend)."""
    code = (
        "from celery import chain, chord, group\n"
        "from conveyor.demo import add, merge, sleep, step\n"
        f"print(({canvas}).apply_async().id)\n"
    )
    last = python_last_line(code, services.env())

    def ended() -> dict[str, Any] | None:
        r = client.get(f"/api/v1/jobs/{last}/result")
        return r.json() if r.status_code == 200 and r.json()["ready"] else None

    done = wait_for(ended, timeout=90, message=f"the canvas' last job {last}")
    return {"last": last, "result": done["result"]}


def workflow_of(client: Any, job_id: str) -> str:
    def check() -> str | None:
        r = client.get(f"/api/v1/jobs/{job_id}")
        return r.json().get("workflow_id") if r.status_code == 200 else None

    return str(wait_for(check, timeout=30, message=f"job {job_id} to be in a workflow"))


# --- canvas from code ------------------------------------------------------------------------


def test_nested_canvas_is_recorded_as_one_graph(
    client: Any, services: ServiceSet, ledger: Any
) -> None:
    # a → (b, c) → d → chord(e, f) → g, results passed along as Celery passes them.
    sent = send_canvas(
        client,
        services,
        "chain(add.s(1, 1), group(add.s(10), add.s(20)), merge.s(seconds=0),"
        " chord([add.s(1), add.s(2)], merge.s(seconds=0)))",
    )
    assert sent["result"] == 71  # Celery's semantics kept: (34+1) + (34+2)
    wf_id = workflow_of(client, sent["last"])
    wf = until_workflow(client, wf_id, "succeeded", nodes=7)
    assert wf["source"] == "canvas"
    assert wf["progress"] == 1.0
    assert all(n["state"] == "succeeded" and n["job_id"] for n in wf["nodes"])
    label = results(ledger, [n["job_id"] for n in wf["nodes"]])
    assert sorted(label.values()) == [2, 12, 22, 34, 35, 36, 71]
    assert labelled_edges(wf, label) == {
        (2, 12),
        (2, 22),
        (12, 34),
        (22, 34),
        (34, 35),
        (34, 36),
        (35, 71),
        (36, 71),
    }


def test_chord_with_a_hundred_header_tasks(client: Any, services: ServiceSet, ledger: Any) -> None:
    sent = send_canvas(
        client, services, "chord([add.s(i, i) for i in range(100)], merge.s(seconds=0))"
    )
    assert sent["result"] == 9900
    wf = until_workflow(client, workflow_of(client, sent["last"]), "succeeded", nodes=101)
    callback = next(n for n in wf["nodes"] if n["job_id"] == sent["last"])
    parents = {e["parent"] for e in wf["edges"] if e["child"] == callback["step"]}
    assert len(parents) == 100
    assert len(wf["edges"]) == 100
    assert wf["counts"] == {"succeeded": 101}


def test_plain_tasks_make_no_workflow(client: Any, services: ServiceSet) -> None:
    sent = send_canvas(client, services, "add.s(2, 2)")
    r = wait_for(
        lambda: (j := client.get(f"/api/v1/jobs/{sent['last']}")).status_code == 200 and j,
        message="the job",
    )
    assert r.json()["workflow_id"] is None


# --- spec over REST ----------------------------------------------------------------------------

FAST = {"seconds": 0.1}


def diamond(**c_kwargs: Any) -> list[dict[str, Any]]:
    return [
        {"name": "A", "task": "demo.step", "args": [1], "kwargs": FAST},
        {
            "name": "B",
            "task": "demo.step",
            "kwargs": {"add": 10, **FAST},
            "after": ["A"],
            "pass_result": True,
        },
        {
            "name": "C",
            "task": "demo.step",
            "kwargs": {"add": 20, **FAST, **c_kwargs},
            "after": ["A"],
            "pass_result": True,
            "weight": 2,
        },
        {
            "name": "D",
            "task": "demo.merge",
            "kwargs": {"seconds": 0},
            "after": ["B", "C"],
            "pass_result": True,
        },
    ]


def test_spec_runs_as_a_dag_passing_results(client: Any, ledger: Any) -> None:
    wf = post_spec(client, diamond())
    assert wf["source"] == "spec"
    assert wf["state"] == "running"
    assert [n["step"] for n in wf["nodes"]] == ["A", "B", "C", "D"]
    first = {n["step"]: n for n in wf["nodes"]}
    assert first["A"]["job_id"] and first["A"]["state"] == "queued"
    assert first["D"]["job_id"] is None and first["D"]["state"] == "pending"
    assert {(e["parent"], e["child"]) for e in wf["edges"]} == {
        ("A", "B"),
        ("A", "C"),
        ("B", "D"),
        ("C", "D"),
    }
    assert 0 <= wf["progress"] < 1
    done = until_workflow(client, wf["id"], "succeeded", "failed")
    assert done["state"] == "succeeded"
    assert done["progress"] == 1.0
    assert done["finished_at"] is not None
    by_step = {n["step"]: n for n in done["nodes"]}
    got = results(ledger, [n["job_id"] for n in done["nodes"]])
    assert got[by_step["A"]["job_id"]] == 2
    assert got[by_step["B"]["job_id"]] == 12
    assert got[by_step["C"]["job_id"]] == 22
    assert got[by_step["D"]["job_id"]] == 34  # B's and C's results, in `after` order
    assert by_step["C"]["weight"] == 2


def test_progress_is_weighted(client: Any) -> None:
    wf = post_spec(
        client,
        [
            {"name": "quick", "task": "demo.add", "args": [1, 1], "weight": 1},
            {"name": "slow", "task": "demo.sleep", "args": [30], "weight": 3},
        ],
    )

    def quick_done() -> dict[str, Any] | None:
        out = client.get(f"/api/v1/workflows/{wf['id']}").json()
        nodes = {n["step"]: n for n in out["nodes"]}
        return out if nodes["quick"]["state"] == "succeeded" else None

    out = wait_for(quick_done, timeout=30, message="the quick step")
    slow = next(n for n in out["nodes"] if n["step"] == "slow")
    assert out["progress"] == pytest.approx((1 + 3 * slow["progress"]) / 4)
    assert out["eta_seconds"] is not None and out["eta_seconds"] > 0
    client.post(f"/api/v1/workflows/{wf['id']}/cancel")


def count_rows(ledger: Any) -> tuple[int, int]:
    with ledger.connect() as conn:
        jobs = conn.execute(text("SELECT count(*) FROM conveyor_jobs")).scalar_one()
        wfs = conn.execute(text("SELECT count(*) FROM conveyor_workflows")).scalar_one()
    return int(jobs), int(wfs)


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        (
            [
                {"name": "a", "task": "demo.noop", "after": ["c"]},
                {"name": "b", "task": "demo.noop", "after": ["a"]},
                {"name": "c", "task": "demo.noop", "after": ["b"]},
            ],
            "cycle: a → b → c → a",
        ),
        ([{"name": "a", "task": "demo.noop", "after": ["a"]}], "cycle: a → a"),
        ([{"name": "a", "task": "demo.noop", "after": ["ghost"]}], "unknown step ghost"),
        ([{"name": "a", "task": "demo.nope"}], "'demo.nope'"),
        ([{"name": "a", "task": "demo.add", "args": [1, "x"]}], "steps.a.y"),
        ([{"name": "a", "task": "demo.add", "args": [1, 2, 3]}], "too many positional"),
        (
            [{"name": "a", "task": "demo.noop"}, {"name": "a", "task": "demo.noop"}],
            "unique: a",
        ),
        ([{"name": "a", "task": "demo.noop", "queue": "nowhere"}], "steps.a.queue"),
        ([{"name": "a b", "task": "demo.noop"}], "steps.0.name"),
        ([{"name": "a", "task": "demo.noop", "weight": 0}], "steps.0.weight"),
        ([], "steps"),
    ],
)
def test_bad_specs_are_refused_and_store_nothing(
    client: Any, ledger: Any, steps: list[dict[str, Any]], named: str
) -> None:
    before = count_rows(ledger)
    r = client.post("/api/v1/workflows", json={"steps": steps})
    assert r.status_code == 422, r.text
    assert named in r.text
    assert count_rows(ledger) == before


def test_pass_result_counts_as_the_first_argument(client: Any) -> None:
    ok = [
        {"name": "a", "task": "demo.add", "args": [1, 2]},
        {"name": "b", "task": "demo.add", "args": [5], "after": ["a"], "pass_result": True},
    ]
    post_spec(client, ok)
    too_many = [ok[0], {**ok[1], "args": [5, 6]}]
    r = client.post("/api/v1/workflows", json={"steps": too_many})
    assert r.status_code == 422
    assert "steps" in r.json()["problems"][0]["loc"]


def test_unknown_workflow_is_404(client: Any) -> None:
    r = client.get(f"/api/v1/workflows/{uuid.uuid4()}")
    assert r.status_code == 404
    assert r.json()["error"] == "WorkflowNotFound"


def test_list_newest_first(client: Any) -> None:
    a = post_spec(client, [{"name": "x", "task": "demo.noop"}], name="list-a")
    b = post_spec(client, [{"name": "x", "task": "demo.noop"}], name="list-b")
    items = client.get("/api/v1/workflows", params={"source": "spec", "limit": 2}).json()["items"]
    assert [i["id"] for i in items] == [b["id"], a["id"]]
    named = client.get("/api/v1/workflows", params={"name": "list-a"}).json()["items"]
    assert [i["id"] for i in named] == [a["id"]]
    until_workflow(client, b["id"], "succeeded")
    (listed,) = client.get("/api/v1/workflows", params={"name": "list-b"}).json()["items"]
    assert listed["state"] == "succeeded" and listed["progress"] == 1.0
    assert listed["counts"] == {"succeeded": 1} and listed["finished_at"] is not None
    page = client.get("/api/v1/workflows", params={"source": "spec", "limit": 1}).json()
    after = client.get(
        "/api/v1/workflows", params={"source": "spec", "cursor": page["next_cursor"]}
    )
    assert after.json()["items"][0]["id"] == a["id"]


def test_jobs_are_filtered_by_workflow(client: Any) -> None:
    wf = post_spec(client, diamond())
    done = until_workflow(client, wf["id"], "succeeded", "failed")
    page = client.get("/api/v1/jobs", params={"workflow": wf["id"]}).json()["items"]
    assert {j["id"] for j in page} == {n["job_id"] for n in done["nodes"]}
    assert {j["workflow_id"] for j in page} == {wf["id"]}
    other = client.get("/api/v1/jobs", params={"workflow": str(uuid.uuid4())}).json()["items"]
    assert other == []


# --- cancel and retry ------------------------------------------------------------------------


def test_cancel_mid_run_stops_running_and_never_runs_the_rest(client: Any, ledger: Any) -> None:
    wf = post_spec(
        client,
        [
            {"name": "long", "task": "demo.sleep", "args": [30]},
            {"name": "next", "task": "demo.add", "args": [1, 1], "after": ["long"]},
        ],
    )
    wait_for(
        lambda: (
            client.get(f"/api/v1/workflows/{wf['id']}").json()["nodes"][0]["state"] == "running"
        ),
        timeout=30,
        message="the long step to start",
    )
    r = client.post(f"/api/v1/workflows/{wf['id']}/cancel")
    assert r.status_code == 200, r.text
    out = until_workflow(client, wf["id"], "cancelled", timeout=30)
    nodes = {n["step"]: n for n in out["nodes"]}
    assert nodes["long"]["state"] == "cancelled"
    assert nodes["next"]["job_id"] is None and nodes["next"]["state"] == "cancelled"
    # Cancelling again: it has ended.
    assert client.post(f"/api/v1/workflows/{wf['id']}/cancel").status_code == 409
    with ledger.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM conveyor_jobs WHERE workflow_id = :w"), {"w": wf["id"]}
        ).scalar_one()
    assert n == 1  # the never-run step never became a job


def test_cancel_a_canvas_mid_run(client: Any, services: ServiceSet) -> None:
    code = (
        "from celery import chain\n"
        "from conveyor.demo import add, sleep\n"
        "r = chain(sleep.si(30), add.si(1, 1)).apply_async()\n"
        "print(r.parent.id)\n"
    )
    first = python_last_line(code, services.env())
    wf_id = workflow_of(client, first)
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{first}").json()["state"] == "running",
        timeout=30,
        message="the first step to start",
    )
    assert client.post(f"/api/v1/workflows/{wf_id}/cancel").status_code == 200
    out = until_workflow(client, wf_id, "cancelled", timeout=30)
    assert [n["state"] for n in out["nodes"] if n["job_id"] == first] == ["cancelled"]
    # The chain's second step is known (pending) but never ran: no job of it succeeded.
    assert all(n["state"] != "succeeded" for n in out["nodes"])


def test_retry_reuses_succeeded_results(client: Any, ledger: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    wf = post_spec(
        client,
        [
            {"name": "a", "task": "demo.add", "args": [1, 2]},
            {
                "name": "b",
                "task": "testing.needs_file",
                "args": [str(marker)],
                "after": ["a"],
                "pass_result": True,
            },
            {"name": "c", "task": "demo.add", "args": [100], "after": ["b"], "pass_result": True},
            {"name": "side", "task": "demo.add", "args": [5, 5]},
        ],
    )
    failed = until_workflow(client, wf["id"], "failed")
    first = {n["step"]: n for n in failed["nodes"]}
    assert first["b"]["state"] == "failed"
    assert first["c"]["state"] == "pending"
    # Retrying before the cause is fixed is allowed, but first: a running one cannot be.
    marker.write_text("ok")
    r = client.post(f"/api/v1/workflows/{wf['id']}/retry")
    assert r.status_code == 202, r.text
    done = until_workflow(client, wf["id"], "succeeded", "failed")
    assert done["state"] == "succeeded"
    again = {n["step"]: n for n in done["nodes"]}
    assert again["a"]["job_id"] == first["a"]["job_id"]  # not run again
    assert again["side"]["job_id"] == first["side"]["job_id"]
    assert again["b"]["job_id"] != first["b"]["job_id"]
    got = results(ledger, [n["job_id"] for n in done["nodes"]])
    assert got[again["b"]["job_id"]] == 3  # a's recorded result, reused
    assert got[again["c"]["job_id"]] == 103
    with ledger.connect() as conn:
        attempts = conn.execute(
            text("SELECT attempt FROM conveyor_jobs WHERE id = :a"), {"a": first["a"]["job_id"]}
        ).scalar_one()
    assert attempts == 1
    assert client.post(f"/api/v1/workflows/{wf['id']}/retry").status_code == 409


def send_failing_canvas(
    client: Any, services: ServiceSet, ledger: Any, canvas: str, tmp: Path, nodes: int
) -> dict[str, Any]:
    """Send ``canvas`` (over the demo tasks and ``needs_file``, which fails until the file
    ``M`` exists: ``retry_until_done`` writes it) and wait for its workflow to fail with
    ``nodes`` nodes known."""
    marker = tmp / "ready"
    code = (
        "from celery import chain, chord, group\n"
        "from conveyor.demo import add, merge, sleep\n"
        "from conveyor.testing.app import needs_file\n"
        f"M = {str(marker)!r}\n"
        f"print(({canvas}).apply_async().id)\n"
    )
    last = python_last_line(code, services.env())  # never sent: known as a carried id

    def workflow() -> str | None:
        with ledger.connect() as conn:
            found = conn.execute(
                text("SELECT workflow_id::text FROM conveyor_workflow_keys WHERE key = :k"),
                {"k": last},
            ).scalar()
        return str(found) if found else None

    wf_id = str(wait_for(workflow, timeout=30, message=f"a workflow knowing {last}"))
    return until_workflow(client, wf_id, "failed", nodes=nodes)


def retry_until_done(client: Any, workflow_id: str, tmp: Path | None = None) -> dict[str, Any]:
    if tmp is not None:
        (tmp / "ready").write_text("ok")
    r = client.post(f"/api/v1/workflows/{workflow_id}/retry")
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "running"
    done = until_workflow(client, workflow_id, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert client.post(f"/api/v1/workflows/{workflow_id}/retry").status_code == 409
    return done


def jobs_of(ledger: Any, workflow_id: str) -> list[dict[str, Any]]:
    with ledger.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id::text, task, args, state, attempt, result FROM conveyor_jobs "
                "WHERE workflow_id = :w"
            ),
            {"w": workflow_id},
        ).mappings()
        return [dict(r) for r in rows]


def test_retry_a_canvas_chain_reuses_the_first_result(
    client: Any, services: ServiceSet, ledger: Any, tmp_path: Path
) -> None:
    failed = send_failing_canvas(
        client,
        services,
        ledger,
        "chain(add.s(1, 2), needs_file.s(M), add.s(100))",
        tmp_path,
        nodes=3,
    )
    assert failed["source"] == "canvas"
    assert sorted(n["state"] for n in failed["nodes"]) == ["failed", "pending", "succeeded"]
    first = {n["state"]: n for n in failed["nodes"]}
    done = retry_until_done(client, failed["id"], tmp_path)
    again = {n["step"]: n for n in done["nodes"]}
    assert again[first["succeeded"]["step"]]["job_id"] == first["succeeded"]["job_id"]
    assert again[first["failed"]["step"]]["job_id"] != first["failed"]["job_id"]
    assert len(done["nodes"]) == 3  # the retry's jobs are the nodes' jobs, not new nodes
    got = results(ledger, [n["job_id"] for n in done["nodes"]])
    assert got[again[first["failed"]["step"]]["job_id"]] == 3  # recorded args: add's result
    assert got[again[first["pending"]["step"]]["job_id"]] == 103  # the chain's passing kept
    with ledger.connect() as conn:  # a resend of the new job (lost worker) carries no chain
        carried = conn.execute(
            text("SELECT message FROM conveyor_workflow_nodes WHERE step = :s"),
            {"s": first["failed"]["step"]},
        ).scalar_one()
    assert carried is None
    ran = jobs_of(ledger, failed["id"])
    adds = [j for j in ran if j["task"] == "demo.add" and j["args"] == [1, 2]]
    assert [(j["attempt"], j["state"]) for j in adds] == [(1, "succeeded")]  # ran once
    edges = {(e["parent"], e["child"]) for e in done["edges"]}
    assert edges == {
        (first["succeeded"]["step"], first["failed"]["step"]),
        (first["failed"]["step"], first["pending"]["step"]),
    }


def test_retry_a_chord_runs_only_the_failed_members(
    client: Any, services: ServiceSet, ledger: Any, tmp_path: Path
) -> None:
    failed = send_failing_canvas(
        client,
        services,
        ledger,
        "chord([needs_file.si(i * 10, M) if i in (3, 7) else add.si(i, i) for i in range(10)],"
        " merge.s(seconds=0))",
        tmp_path,
        nodes=11,
    )
    assert failed["counts"] == {"succeeded": 8, "failed": 2, "pending": 1}
    before = {n["step"]: n["job_id"] for n in failed["nodes"] if n["state"] == "succeeded"}
    done = retry_until_done(client, failed["id"], tmp_path)
    assert done["counts"] == {"succeeded": 11}
    after = {n["step"]: n["job_id"] for n in done["nodes"]}
    assert all(after[step] == job for step, job in before.items())  # kept, not run again
    ran = jobs_of(ledger, failed["id"])
    assert len(ran) == 10 + 2 + 1  # the first run, the two again, the callback
    callback = next(n for n in done["nodes"] if n["task"] == "demo.merge")
    # All ten results, in header order: 0, 2, 4, 30, 8, 10, 12, 70, 16, 18.
    assert results(ledger, [callback["job_id"]])[callback["job_id"]] == 170
    with ledger.connect() as conn:
        args = conn.execute(
            text("SELECT args FROM conveyor_jobs WHERE id = :id"), {"id": callback["job_id"]}
        ).scalar_one()
    assert args == [[0, 2, 4, 30, 8, 10, 12, 70, 16, 18]]
    assert len([e for e in done["edges"] if e["child"] == callback["step"]]) == 10


def test_retry_a_nested_canvas(
    client: Any, services: ServiceSet, ledger: Any, tmp_path: Path
) -> None:
    # a → (b, c fails) → d → chord(e, f) → g: c again, then d, e, f and g never sent before.
    failed = send_failing_canvas(
        client,
        services,
        ledger,
        "chain(add.s(1, 1), group(add.s(10), needs_file.s(M)), merge.s(seconds=0),"
        " chord([add.s(1), add.s(2)], merge.s(seconds=0)))",
        tmp_path,
        nodes=7,
    )
    assert failed["counts"] == {"succeeded": 2, "failed": 1, "pending": 4}
    done = retry_until_done(client, failed["id"], tmp_path)
    got = results(ledger, [n["job_id"] for n in done["nodes"]])
    label = {n["step"]: got[n["job_id"]] for n in done["nodes"]}
    # c returns its recorded first argument (a's result, 2): d = 12 + 2, then (14+1)+(14+2).
    assert sorted(label.values()) == [2, 2, 12, 14, 15, 16, 31]
    assert labelled_edges(done, label) == {
        (2, 12),
        (2, 2),
        (12, 14),
        (2, 14),
        (14, 15),
        (14, 16),
        (15, 31),
        (16, 31),
    }


def test_retry_a_chord_whose_header_member_is_a_chain(
    client: Any, services: ServiceSet, ledger: Any, tmp_path: Path
) -> None:
    failed = send_failing_canvas(
        client,
        services,
        ledger,
        "chord([chain(add.s(1, 1), needs_file.s(M), add.s(3)), add.si(5, 5)], merge.s(seconds=0))",
        tmp_path,
        nodes=5,
    )
    assert failed["counts"] == {"succeeded": 2, "failed": 1, "pending": 2}
    done = retry_until_done(client, failed["id"], tmp_path)
    callback = next(n for n in done["nodes"] if n["task"] == "demo.merge")
    # The chain's result (2 + 3) and the other member's, in header order.
    assert results(ledger, [callback["job_id"]])[callback["job_id"]] == 15


def test_retry_a_chord_whose_callback_failed(
    client: Any, services: ServiceSet, ledger: Any, tmp_path: Path
) -> None:
    failed = send_failing_canvas(
        client,
        services,
        ledger,
        "chord([add.si(1, 1), add.si(2, 2)], chain(needs_file.s(M), merge.s(seconds=0)))",
        tmp_path,
        nodes=4,
    )
    assert failed["counts"] == {"succeeded": 2, "failed": 1, "pending": 1}
    done = retry_until_done(client, failed["id"], tmp_path)
    got = results(ledger, [n["job_id"] for n in done["nodes"]])
    # The callback again with the header's results it was given ([2, 4]), then the chain on.
    assert sorted(got.values(), key=str) == [2, 4, 6, [2, 4]]
    assert len(jobs_of(ledger, failed["id"])) == 2 + 1 + 1 + 1


def test_retry_a_cancelled_canvas_and_cancel_it_again(
    client: Any, services: ServiceSet, ledger: Any, tmp_path: Path
) -> None:
    code = (
        "from celery import chain\n"
        "from conveyor.demo import add, sleep\n"
        "r = chain(sleep.si(30), add.si(1, 1), add.s(5)).apply_async()\n"
        "print(r.parent.parent.id)\n"
    )
    first = python_last_line(code, services.env())
    wf_id = workflow_of(client, first)
    wait_for(
        lambda: client.get(f"/api/v1/jobs/{first}").json()["state"] == "running",
        timeout=30,
        message="the first step to start",
    )
    assert client.post(f"/api/v1/workflows/{wf_id}/cancel").status_code == 200
    cancelled = until_workflow(client, wf_id, "cancelled", nodes=3, timeout=30)
    assert cancelled["counts"] == {"cancelled": 3}
    # Retried: it runs again (the sleep too, cancelled mid-run), and can be cancelled again.
    r = client.post(f"/api/v1/workflows/{wf_id}/retry")
    assert r.status_code == 202, r.text
    again = r.json()
    sleeper = next(n for n in again["nodes"] if n["step"] == first)
    assert sleeper["job_id"] != first and sleeper["state"] in ("queued", "running")
    assert client.post(f"/api/v1/workflows/{wf_id}/cancel").status_code == 200
    until_workflow(client, wf_id, "cancelled", timeout=30)
    # And retried once more, it ends, the chain's passing kept after the immutable step.
    with ledger.begin() as conn:  # a shorter sleep this time: the same node, other arguments
        conn.execute(
            text(
                "UPDATE conveyor_workflow_nodes SET args = '[0.1]' "
                "WHERE workflow_id = :w AND step = :s"
            ),
            {"w": wf_id, "s": first},
        )
    done = retry_until_done(client, wf_id)
    label = results(ledger, [n["job_id"] for n in done["nodes"]])
    assert sorted(label.values(), key=float) == [0.1, 2, 7]


def test_two_retries_at_once_run_each_step_once(client: Any, ledger: Any, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from conveyor.errors import InvalidTransition
    from conveyor.workflows import Workflows

    steps = [
        {"name": "a", "task": "demo.add", "args": [1, 2]},
        {"name": "b", "task": "testing.needs_file", "args": [str(tmp_path / "ready")],
         "after": ["a"], "pass_result": True},
    ]  # fmt: skip
    wf = post_spec(client, steps)
    until_workflow(client, wf["id"], "failed")
    flows = Workflows(client.app.state.services.control)

    def retry() -> str:
        try:
            return flows.retry(wf["id"]).state
        except InvalidTransition as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: retry(), range(4)))
    assert answers.count("running") == 1, answers
    assert all("is running; only a failed" in a for a in answers if a != "running")
    with ledger.connect() as conn:
        runs = conn.execute(
            text("SELECT count(*) FROM conveyor_jobs WHERE workflow_id = :w AND task = :t"),
            {"w": wf["id"], "t": "testing.needs_file"},
        ).scalar_one()
    assert runs == 2  # the first run and one retry


# --- the demo, retention -----------------------------------------------------------------------


def test_the_demo_diamond_runs(client: Any, ledger: Any) -> None:
    from conveyor.workflows import Workflows

    workflow_id = Workflows(client.app.state.services.control).start_demo()
    done = until_workflow(client, workflow_id, "succeeded", "failed")
    assert done["state"] == "succeeded"
    assert done["name"] == "demo diamond"
    last = next(n for n in done["nodes"] if n["step"] == "D")
    assert results(ledger, [last["job_id"]])[last["job_id"]] == 34


def test_workflows_without_jobs_leave_with_retention(ledger: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from conveyor.ledger.workflows import prune_workflows

    old = datetime.now(UTC) - timedelta(days=400)
    gone, kept, job = (str(uuid.uuid4()) for _ in range(3))
    with ledger.begin() as conn:
        for wf in (gone, kept):
            conn.execute(
                text(
                    "INSERT INTO conveyor_workflows (id, source, created_at) "
                    "VALUES (:id, 'canvas', :at)"
                ),
                {"id": wf, "at": old},
            )
            conn.execute(
                text("INSERT INTO conveyor_workflow_keys (key, workflow_id) VALUES (:k, :w)"),
                {"k": f"key-{wf}", "w": wf},
            )
        conn.execute(
            text(
                "INSERT INTO conveyor_jobs (id, task, state, workflow_id) "
                "VALUES (:id, 'demo.noop', 'succeeded', :w)"
            ),
            {"id": job, "w": kept},
        )
        assert prune_workflows(conn, datetime.now(UTC) - timedelta(days=30), 1000) >= 1
        left = conn.execute(
            text("SELECT id::text FROM conveyor_workflows WHERE id IN (:a, :b)"),
            {"a": gone, "b": kept},
        ).all()
        keys = conn.execute(
            text("SELECT workflow_id::text FROM conveyor_workflow_keys WHERE key IN (:a, :b)"),
            {"a": f"key-{gone}", "b": f"key-{kept}"},
        ).all()
    assert [r[0] for r in left] == [kept]
    assert [r[0] for r in keys] == [kept]
