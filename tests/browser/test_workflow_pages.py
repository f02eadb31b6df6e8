"""The workflow pages in Chromium: the demo started from its button, its graph filling in
live (no reload) until every node succeeded, and a node clicked through to its job."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Dashboard

NODE_STATES = """
() => Array.from(document.querySelectorAll('svg.dag .dag-node')).map(
  (n) => [n.querySelector('.dag-label').textContent, n.getAttribute('class')])
"""


def test_the_demo_workflow_fills_in_live_and_nodes_lead_to_their_jobs(
    operator_page: Any, dashboard: Dashboard
) -> None:
    page = operator_page
    page.goto(dashboard.url + "/workflows")
    page.click("button:text('Run demo workflow')")
    page.wait_for_url("**/workflows/*?notice=started")
    workflow_id = page.url.split("/workflows/", 1)[1].split("?", 1)[0]
    page.wait_for_selector("svg.dag .dag-node")
    page.evaluate("document.body.dataset.marker = 'no reload'")
    page.screenshot(path=str(dashboard.screenshots / "workflow-started.png"), full_page=True)

    # Watch the graph: each node's state as drawn, until all four succeeded.
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            drawn = {label: css for label, css in page.evaluate(NODE_STATES)}
        except Exception:  # the graph is being swapped
            continue
        if not seen or drawn != seen[-1]:
            seen.append(drawn)
        if len(drawn) == 4 and all("state-succeeded" in css for css in drawn.values()):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the graph did not fill in: {seen[-3:]}")
    assert sorted(seen[-1]) == ["A", "B", "C", "D"]
    # It changed while we watched (a node running or waiting before it succeeded), without a
    # reload of the page.
    assert len(seen) >= 2 and any("state-succeeded" not in c for c in seen[0].values()), seen
    assert page.evaluate("document.body.dataset.marker") == "no reload"
    page.wait_for_selector("#live-status:text('The workflow ended.')")
    assert page.locator(".workflow .badge.state-succeeded").count() >= 1
    assert page.locator("progress.workflow-progress").get_attribute("value") == "100.0"
    page.screenshot(path=str(dashboard.screenshots / "workflow-done.png"), full_page=True)

    # A node is a link to its job; the job page links back to the workflow.
    page.click("svg.dag a.dag-node:has(text.dag-label:text-is('D'))")
    page.wait_for_url("**/jobs/*")
    assert page.locator("h1 .task").inner_text() == "demo.merge"
    page.click(f".facts a[href$='/workflows/{workflow_id}']")
    page.wait_for_url(f"**/workflows/{workflow_id}")
    page.wait_for_selector("svg.dag")


def test_a_failing_workflow_offers_retry_live_and_retries_from_the_page(
    operator_page: Any, dashboard: Dashboard
) -> None:
    spec = {
        "name": "browser retry",
        "steps": [
            {"name": "wait", "task": "demo.sleep", "args": [2]},
            {"name": "broken", "task": "demo.fail", "args": ["on purpose"], "after": ["wait"]},
        ],
    }
    with dashboard.api() as api:
        r = api.post("/api/v1/workflows", json=spec)
    assert r.status_code == 202, r.text
    workflow_id = r.json()["id"]
    page = operator_page
    page.goto(f"{dashboard.url}/workflows/{workflow_id}")
    page.evaluate("document.body.dataset.marker = 'no reload'")
    assert page.locator("button:text('Cancel')").count() == 1  # running: it may be cancelled
    # The workflow fails while the page is open: its buttons follow without a reload.
    page.wait_for_selector(".workflow .actions button:text('Retry')", timeout=60_000)
    assert page.locator("button:text('Cancel')").count() == 0
    assert page.locator("svg.dag a.dag-node.state-failed").count() == 1
    tooltip = page.locator("svg.dag a.dag-node.state-failed title").text_content() or ""
    assert "on purpose" in tooltip
    assert page.evaluate("document.body.dataset.marker") == "no reload"
    page.click(".workflow .actions button:text('Retry')")
    page.wait_for_url("**?notice=retried")
    assert "failed and never-run steps run again" in page.locator(".flash-ok").inner_text()
    page.screenshot(path=str(dashboard.screenshots / "workflow-retried.png"), full_page=True)


LIST_ROW = """
(id) => {
  const row = document.querySelector(`tr[data-workflow-id="${id}"]`);
  if (!row) return null;
  const bar = row.querySelector('progress');
  return [row.querySelector('.badge').textContent.trim(), bar ? bar.getAttribute('value') : null];
}
"""


def test_the_workflows_list_follows_states_and_progress_live(
    operator_page: Any, dashboard: Dashboard
) -> None:
    page = operator_page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(dashboard.url + "/workflows")
    page.evaluate("document.body.dataset.marker = 'no reload'")
    spec = {
        "name": "browser list",
        "steps": [
            {"name": "one", "task": "demo.sleep", "args": [1.5]},
            {"name": "two", "task": "demo.sleep", "args": [1.5], "after": ["one"]},
        ],
    }
    with dashboard.api() as api:
        r = api.post("/api/v1/workflows", json=spec)
    assert r.status_code == 202, r.text
    workflow_id = r.json()["id"]
    # It appears on the open first page, running, then ends succeeded at 100 %: no reload.
    seen: list[Any] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            row = page.evaluate(LIST_ROW, workflow_id)
        except Exception:  # the rows are being swapped
            continue
        if row and (not seen or row != seen[-1]):
            seen.append(row)
            if row[0] == "running" and len(seen) == 1:
                page.screenshot(
                    path=str(dashboard.screenshots / "workflows-list-live.png"), full_page=True
                )
        if row and row[0] == "succeeded":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the list did not follow the workflow: {seen}")
    assert seen[0][0] == "running", seen
    assert seen[-1] == ["succeeded", "100.0"], seen
    assert page.evaluate("document.body.dataset.marker") == "no reload"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280
    page.screenshot(path=str(dashboard.screenshots / "workflows-list-done.png"), full_page=True)
