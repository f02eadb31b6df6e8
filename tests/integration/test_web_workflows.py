"""The workflow pages against a real worker and ledger: the demo started from its button and
drawn, the list and its state filter, the jobs list filtered by workflow and the job page's
link, cancel and retry from the page, roles, and 404s."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from conveyor.api import create_app
from conveyor.config import Settings
from conveyor.ledger import users
from conveyor.testing.dashboard import csrf_token, log_in
from conveyor.testing.services import python_last_line, wait_for

pytestmark = pytest.mark.broker

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
HTML = {"Accept": "text/html"}
PASSWORD = "workflow pages password"


def workflow(client: Any, workflow_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/workflows/{workflow_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def until_workflow(client: Any, workflow_id: str, *states: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = workflow(client, workflow_id)
        return body if body["state"] in states else None

    found: dict[str, Any] = wait_for(check, timeout=60, message=f"workflow to reach {states}")
    return found


def post_spec(client: Any, spec: dict[str, Any]) -> str:
    r = client.post("/api/v1/workflows", json=spec)
    assert r.status_code in (201, 202), r.text
    return str(r.json()["id"])


def start_demo(client: Any) -> str:
    """Press "Run demo workflow" on the list page; the id of the page it leads to."""
    page = client.get("/workflows")
    assert page.status_code == 200 and '/workflows/demo"' in page.text
    r = client.post("/workflows/demo", headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303, r.text
    found = re.fullmatch(r".*/workflows/([0-9a-f-]{36})\?notice=started", r.headers["location"])
    assert found, r.headers["location"]
    return found.group(1)


def test_the_demo_runs_from_its_button_and_its_page_draws_the_graph(client: Any) -> None:
    workflow_id = start_demo(client)
    shown = client.get(f"/workflows/{workflow_id}?notice=started")
    assert shown.status_code == 200
    assert "Demo workflow started" in shown.text
    assert '<svg class="dag"' in shown.text
    done = until_workflow(client, workflow_id, "succeeded")
    assert len(done["nodes"]) == 4 and len(done["edges"]) == 4

    html = client.get(f"/workflows/{workflow_id}").text
    # Each node a box coloured by its state, linking to its job, with a tooltip.
    nodes = re.findall(r'<a class="dag-node state-(\w+)" href="[^"]*/jobs/([0-9a-f-]{36})"', html)
    assert sorted(job for _, job in nodes) == sorted(n["job_id"] for n in done["nodes"])
    assert {state for state, _ in nodes} == {"succeeded"}
    svg = html.split('<svg class="dag"', 1)[1]
    assert svg.count("<title>") == 4 and "task demo.step" in svg
    assert len(re.findall(r'<path class="dag-edge done"', html)) == 4
    assert 'value="100.0"' in html  # aggregate progress
    assert f"/workflows/{workflow_id}/cancel" not in html  # over: nothing to cancel
    assert f"/workflows/{workflow_id}/retry" not in html  # succeeded: nothing to retry
    assert " style=" not in html  # the CSP allows no inline style

    # The live fragment: the same parts, marked terminal so the page stops polling.
    live = client.get(f"/live/workflows/{workflow_id}")
    assert live.status_code == 200 and live.headers["cache-control"] == "no-store"
    assert 'data-terminal="true"' in live.text and 'data-live-region="graph"' in live.text
    # Asked again with what it has: nothing changed, so nothing is sent.
    same = client.get(
        f"/live/workflows/{workflow_id}", headers={"If-None-Match": live.headers["etag"]}
    )
    assert same.status_code == 304 and not same.content
    stale = client.get(f"/live/workflows/{workflow_id}", headers={"If-None-Match": '"old"'})
    assert stale.status_code == 200 and stale.headers["etag"] == live.headers["etag"]

    # The list shows it, and its state filter keeps it or leaves it out.
    listed = client.get("/workflows").text
    assert f'data-workflow-id="{workflow_id}"' in listed and "4 / 4" in listed
    assert f'data-workflow-id="{workflow_id}"' in client.get("/workflows?state=succeeded").text
    assert f'data-workflow-id="{workflow_id}"' not in client.get("/workflows?state=failed").text
    bad = client.get("/workflows?state=nope")
    assert bad.status_code == 400 and "unknown state" in bad.text
    stale = client.get("/workflows?cursor=garbage")
    assert stale.status_code == 400 and "not valid any more" in stale.text
    assert f'data-workflow-id="{workflow_id}"' in stale.text  # the newest, instead

    # The list's live rows: the same filters, the first page followed, 304 when unchanged.
    first = listed.split('class="table-wrap workflows-list"', 1)[1].split(">", 1)[0]
    assert 'data-terminal="false"' in first and '/live/workflows"' in first
    rows = client.get("/live/workflows", params={"state": "succeeded"})
    assert rows.status_code == 200 and rows.headers["cache-control"] == "no-store"
    assert f'data-workflow-id="{workflow_id}"' in rows.text
    assert 'data-live-region="rows"' in rows.text and 'data-terminal="false"' in rows.text
    same = client.get(
        "/live/workflows",
        params={"state": "succeeded"},
        headers={"If-None-Match": rows.headers["etag"]},
    )
    assert same.status_code in (200, 304)  # 200 only if a workflow ended meanwhile
    failed_rows = client.get("/live/workflows", params={"state": "failed"}).text
    assert f'data-workflow-id="{workflow_id}"' not in failed_rows
    for bad_params in ({"state": "nope"}, {"cursor": "garbage"}):
        assert client.get("/live/workflows", params=bad_params).status_code == 400

    # The jobs list filtered by the workflow: its four jobs, each linking back to it.
    jobs = client.get("/jobs", params={"workflow": workflow_id}).text
    rows = re.findall(r'<tr data-job-id="([0-9a-f-]{36})"', jobs)
    assert sorted(rows) == sorted(n["job_id"] for n in done["nodes"])
    assert jobs.count(f'/workflows/{workflow_id}"') >= 4
    chip = jobs.split('id="workflow-filter"', 1)[1].split("</p>", 1)[0]
    assert "demo diamond" in chip and 'class="chip-clear"' in chip
    assert f'name="workflow" value="{workflow_id}"' in jobs  # kept by the filter form
    bad = client.get("/jobs", params={"workflow": "not-an-id"})
    assert bad.status_code == 400 and "not a workflow id" in bad.text
    # The job page links to its workflow.
    job_page = client.get(f"/jobs/{rows[0]}").text
    link = job_page.split('id="job-workflow">', 1)[1].split("</a>", 1)[0]
    assert link == "demo diamond" and f'/workflows/{workflow_id}"' in job_page


def test_cancel_from_the_page_stops_the_workflow(client: Any) -> None:
    workflow_id = post_spec(
        client,
        {
            "name": "web-cancel",
            "steps": [
                {"name": "wait", "task": "demo.sleep", "kwargs": {"seconds": 30}},
                {"name": "after", "task": "demo.add", "args": [1, 2], "after": ["wait"]},
            ],
        },
    )
    page = client.get(f"/workflows/{workflow_id}").text
    assert f'/workflows/{workflow_id}/cancel"' in page
    # Counts link to the workflow's jobs in a state; the step not yet run, to the graph.
    assert re.search(f'\\?workflow={workflow_id}&amp;state=(queued|running)"', page)
    assert 'href="#graph"' in page and 'id="graph"' in page
    assert 'data-terminal="false"' in page
    assert f"/workflows/{workflow_id}/retry" not in page
    # Retrying a running workflow is refused with the reason, on its page.
    early = client.post(f"/workflows/{workflow_id}/retry", headers=SAME_ORIGIN)
    assert early.status_code == 409 and "only a failed or cancelled workflow" in early.text
    r = client.post(f"/workflows/{workflow_id}/cancel", headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?notice=cancelled")
    done = until_workflow(client, workflow_id, "cancelled")
    after = next(n for n in done["nodes"] if n["step"] == "after")
    assert after["job_id"] is None  # never submitted
    # Cancelling again says why it cannot, on the workflow's page.
    again = client.post(f"/workflows/{workflow_id}/cancel", headers=SAME_ORIGIN)
    assert again.status_code == 409 and "nothing to cancel" in again.text


def test_retry_from_the_page_reruns_the_failed_step_only(client: Any) -> None:
    workflow_id = post_spec(
        client,
        {
            "name": "web-retry",
            "steps": [
                {"name": "ok", "task": "demo.add", "args": [1, 1]},
                {"name": "broken", "task": "demo.fail", "args": ["on purpose"], "after": ["ok"]},
            ],
        },
    )
    failed = until_workflow(client, workflow_id, "failed")
    jobs = {n["step"]: n["job_id"] for n in failed["nodes"]}
    page = client.get(f"/workflows/{workflow_id}").text
    assert f'/workflows/{workflow_id}/retry"' in page
    assert "state-failed" in page
    r = client.post(f"/workflows/{workflow_id}/retry", headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?notice=retried")

    def rerun() -> dict[str, Any] | None:
        body = workflow(client, workflow_id)
        nodes = {n["step"]: n for n in body["nodes"]}
        new = nodes["broken"]["job_id"]
        return body if new and new != jobs["broken"] and body["state"] == "failed" else None

    again = wait_for(rerun, timeout=60, message="the failed step to run again")
    assert {n["step"]: n["job_id"] for n in again["nodes"]}["ok"] == jobs["ok"]


def canvas_workflow(client: Any, services: Any, canvas: str) -> str:
    """Send ``canvas`` over the demo tasks from another process, as an app's code does; the
    id of the workflow it was recorded as, once that succeeded."""
    code = (
        "from celery import chain, chord, group\n"
        "from conveyor.demo import add, merge\n"
        f"print(({canvas}).apply_async().id)\n"
    )
    last = python_last_line(code, services.env())

    def recorded() -> str | None:
        r = client.get(f"/api/v1/jobs/{last}")
        return r.json().get("workflow_id") if r.status_code == 200 else None

    workflow_id = str(wait_for(recorded, timeout=60, message="the canvas to be recorded"))
    until_workflow(client, workflow_id, "succeeded")
    return workflow_id


def test_a_canvas_is_drawn_and_a_retry_once_succeeded_is_refused_with_the_reason(
    client: Any, services: Any
) -> None:
    workflow_id = canvas_workflow(
        client, services, "chain(add.s(1, 1), group(add.s(10), add.s(20)), merge.s(seconds=0))"
    )
    html = client.get(f"/workflows/{workflow_id}").text
    svg = html.split('<svg class="dag"', 1)[1]
    # A canvas node is named after its task.
    assert re.findall(r'<text class="dag-label"[^>]*>([^<]+)</text>', svg).count("demo.add") == 3
    assert svg.count('class="dag-edge done"') == 4
    assert f"/workflows/{workflow_id}/retry" not in html  # it succeeded
    r = client.post(f"/workflows/{workflow_id}/retry", headers=SAME_ORIGIN)
    assert r.status_code == 409 and "is succeeded; only a failed or cancelled" in r.text


def test_a_failed_canvas_is_retried_from_its_page(client: Any, services: Any) -> None:
    # chain(add, fail, add): the failing step runs again (and fails again: demo.fail always
    # does), the first is kept, and the graph keeps every edge, the never-run step's too.
    code = (
        "from celery import chain\n"
        "from conveyor.demo import add, fail\n"
        "r = chain(add.s(1, 1), fail.si('on purpose'), add.s(1)).apply_async()\n"
        "print(r.parent.parent.id)\n"
    )
    first = python_last_line(code, services.env())

    def failed() -> str | None:
        r = client.get(f"/api/v1/jobs/{first}")
        found = r.json().get("workflow_id") if r.status_code == 200 else None
        return found if found and workflow(client, found)["state"] == "failed" else None

    workflow_id = str(wait_for(failed, timeout=60, message="the canvas to fail"))
    before = workflow(client, workflow_id)
    page = client.get(f"/workflows/{workflow_id}").text
    assert f'/workflows/{workflow_id}/retry"' in page
    r = client.post(f"/workflows/{workflow_id}/retry", headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?notice=retried")

    def failed_again() -> dict[str, Any] | None:
        body = workflow(client, workflow_id)
        ran = [n for n in body["nodes"] if n["task"] == "demo.fail"]
        moved = ran and ran[0]["job_id"] not in {n["job_id"] for n in before["nodes"]}
        return body if moved and body["state"] == "failed" else None

    again = wait_for(failed_again, timeout=60, message="the failed step to run again")
    kept = next(n for n in again["nodes"] if n["step"] == first)
    assert kept["job_id"] == first and kept["state"] == "succeeded"
    assert len(again["edges"]) == 2 and len(again["nodes"]) == 3
    svg = client.get(f"/workflows/{workflow_id}").text.split('<svg class="dag"', 1)[1]
    assert svg.count('<a class="dag-node') == 2  # the never-run step has no job to link to
    assert svg.count('<g class="dag-node state-pending"') == 1
    assert svg.count('class="dag-edge') == 2


def test_a_hundred_wide_chord_is_drawn_as_a_framed_grid(client: Any, services: Any) -> None:
    workflow_id = canvas_workflow(
        client, services, "chord([add.s(i, i) for i in range(100)], merge.s(seconds=0))"
    )
    html = client.get(f"/workflows/{workflow_id}").text
    svg = html.split('<svg class="dag"', 1)[1]
    assert svg.count('<a class="dag-node state-succeeded"') == 101
    assert svg.count('<rect class="dag-frame"') == 1
    assert svg.count('class="dag-edge done"') == 1  # the header's 100 edges, as one
    width = float(re.search(r'width="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    assert width <= 1000


def test_unknown_and_malformed_workflows_are_404_pages(client: Any) -> None:
    unknown = str(uuid.uuid4())
    for path in (f"/workflows/{unknown}", "/workflows/not-a-uuid", f"/live/workflows/{unknown}"):
        r = client.get(path, headers=HTML)
        assert r.status_code == 404, path
        assert "text/html" in r.headers["content-type"]
    for action in ("cancel", "retry"):
        r = client.post(f"/workflows/{unknown}/{action}", headers=SAME_ORIGIN)
        assert r.status_code == 404
        # A GET of an action's URL (a bookmark) leads to the page and does nothing.
        r = client.get(f"/workflows/{unknown}/{action}", headers=HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].endswith(f"/workflows/{unknown}")
    r = client.get(f"/workflows/{unknown}/nodes", headers=HTML)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]


# ---------------------------------------------------------------------------------- roles


@pytest.fixture(scope="module")
def auth_app(settings: Settings) -> Any:
    update = {
        "auth": "required",
        "secret_key": SecretStr(secrets.token_urlsafe(48)),
        "auth_cache_seconds": 0.0,
    }
    return create_app(settings.model_copy(update=update))


@pytest.fixture
def as_role(auth_app: Any, ledger: Any) -> Iterator[Any]:
    clients: list[TestClient] = []

    def login(role: str) -> TestClient:
        name = f"wf-{role}-{secrets.token_hex(4)}"
        with ledger.begin() as conn:
            users.create_user(conn, name, PASSWORD, role)
        c = TestClient(auth_app).__enter__()
        clients.append(c)
        assert log_in(c, name, PASSWORD).status_code == 303
        return c

    yield login
    for c in clients:
        c.__exit__(None, None, None)


def test_a_viewer_sees_no_buttons_and_is_refused_an_operator_may(client: Any, as_role: Any) -> None:
    workflow_id = post_spec(
        client,
        {"name": "web-roles", "steps": [{"name": "wait", "task": "demo.sleep", "args": [30]}]},
    )
    page = f"/workflows/{workflow_id}"
    viewer = as_role("viewer")
    assert "Run demo workflow" not in viewer.get("/workflows", headers=HTML).text
    shown = viewer.get(page, headers=HTML)
    assert shown.status_code == 200 and f"{page}/cancel" not in shown.text
    token = {"csrf_token": csrf_token(viewer, page)}
    for path in ("/workflows/demo", f"{page}/cancel"):
        r = viewer.post(path, data=token, headers=HTML)
        assert r.status_code == 403 and "jobs:write" in r.text, path
    assert workflow(client, workflow_id)["state"] == "running"

    operator = as_role("operator")
    shown = operator.get(page, headers=HTML)
    assert f"{page}/cancel" in shown.text
    r = operator.post(
        f"{page}/cancel",
        data={"csrf_token": csrf_token(operator, page)},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    until_workflow(client, workflow_id, "cancelled")
