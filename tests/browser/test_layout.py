"""Every dashboard page fits a 1280 px window and uses the dashboard's own controls.

With some data in the ledger and in both packs (jobs in each outcome, a dead job, a running
one, an import, a webhook, a batch), every page, core and pack, list and detail, is opened at
1280 px and fails the test when the page is wider than the window, when an element's content
overflows its box (a table wider than its panel), or when an input, select, textarea or button
is not styled by the dashboard's stylesheet. Each page's screenshot is saved under
``artifacts/screenshots/layout-*.png`` to look at.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    from conftest import Dashboard

# What the page check reports, each as a short description of the element at fault.
CHECK = """
() => {
  const problems = [];
  const width = window.innerWidth;
  const describe = (el) => {
    const id = el.id ? '#' + el.id : '';
    const cls = typeof el.className === 'string' && el.className.trim()
      ? '.' + el.className.trim().split(/\\s+/).join('.') : '';
    const text = (el.innerText || el.value || '').trim().replace(/\\s+/g, ' ').slice(0, 40);
    return `<${el.tagName.toLowerCase()}${id}${cls}> "${text}"`;
  };
  const page = document.documentElement.scrollWidth;
  if (page > width) problems.push(`page is ${page}px wide in a ${width}px window`);
  // Not rendered: display none, or inside a closed <details> (an edit form in a table row).
  const visible = (el) => el.checkVisibility() && el.getClientRects().length > 0;
  for (const el of document.body.querySelectorAll('*')) {
    // Preformatted text and text boxes scroll by design; controls measure their own text.
    if (el.closest('pre, textarea, svg, input, select, button, progress, option')) continue;
    if (!visible(el)) continue;
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${describe(el)} holds ${el.scrollWidth}px in ${el.clientWidth}px`);
    }
    const box = el.getBoundingClientRect();
    if (box.right > width + 1) {
      problems.push(`${describe(el)} ends at ${Math.round(box.right)}px`);
    }
  }
  const font = getComputedStyle(document.body).fontFamily;
  const skip = new Set(['hidden', 'checkbox', 'radio', 'file']);
  for (const el of document.querySelectorAll('input, select, textarea, button')) {
    if (skip.has(el.type) || !visible(el)) continue;
    const style = getComputedStyle(el);
    const styled = style.borderTopLeftRadius === '6px'
      && (el.tagName === 'TEXTAREA' || style.fontFamily === font);
    if (!styled) {
      problems.push(`${describe(el)} is unstyled (radius ${style.borderTopLeftRadius}, `
        + `font ${style.fontFamily})`);
    }
  }
  return problems;
}
"""


def shot(page: Any, dashboard: Dashboard, name: str) -> None:
    path = dashboard.screenshots / f"layout-{name}.png"
    page.screenshot(path=str(path), full_page=True)


# A chord-like workflow too wide for one row: a start step, 40 parallel steps, a join.
_WIDE_WORKFLOW = {
    "name": "layout wide workflow",
    "steps": [
        {"name": "start", "task": "demo.add", "args": [1, 1]},
        *(
            {"name": f"part-{i:02d}", "task": "demo.add", "args": [i, i], "after": ["start"]}
            for i in range(40)
        ),
        {
            "name": "join-with-a-rather-long-step-name",
            "task": "demo.echo",
            "after": [f"part-{i:02d}" for i in range(40)],
        },
    ],
}


def _data(dashboard: Dashboard) -> dict[str, str]:
    """Some of everything, through the API; the ids of what detail pages show."""
    ids: dict[str, str] = {}
    with dashboard.api() as api:
        ids["succeeded"] = dashboard.submit("demo.add", 40, 2)
        ids["failed"] = dashboard.submit("demo.fail", "a message long enough to wrap " * 4)
        ids["dead"] = dashboard.submit("testing.doomed", -1)
        ids["crunch"] = dashboard.submit("demo.crunch", steps=400, delay=0.25)
        csv = "sku,name,description\n" + "".join(
            f"SKU-{n},Product {n},A `described` product number {n}\n" for n in range(50)
        )
        r = api.post(
            "/api/v1/catalog/imports",
            params={"filename": "layout-products.csv"},
            content=csv.encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert r.status_code == 202, r.text
        ids["import"] = str(r.json()["id"])
        r = api.post(
            "/api/v1/catalog/webhooks",
            json={"url": "https://hooks.example.com/catalog", "events": ["product.created"]},
        )
        assert r.status_code == 201, r.text
        ids["webhook"] = str(r.json()["id"])
        r = api.post(
            "/api/v1/factory/batches",
            json={"product_count": 50, "product_name": "Layout widget", "category": "tools"},
        )
        assert r.status_code == 202, r.text
        ids["batch"] = r.json()["batch_id"]
        r = api.post(
            "/api/v1/schedules",
            json={
                "name": f"layout-schedule-{uuid.uuid4().hex[:8]}",
                "task": "demo.crunch",
                "kwargs": {"steps": 2, "delay": 0},
                "cron": "30 9 * * 1-5",
                "timezone": "America/New_York",
                "jitter": "30s",
                "end_at": "2031-01-01T00:00:00Z",
                "max_runs": 1000,
            },
        )
        assert r.status_code == 201, r.text
        ids["schedule"] = r.json()["id"]
        assert api.post(f"/api/v1/schedules/{ids['schedule']}/trigger").status_code == 202
        api.post(
            f"/api/v1/schedules/{ids['schedule']}/pause",
            json={"note": "a long note, to see that it wraps " * 3},
        )
        r = api.post("/api/v1/workflows", json=_WIDE_WORKFLOW)
        assert r.status_code in (201, 202), r.text
        ids["workflow"] = str(r.json()["id"])

        def settled() -> bool:
            states = {
                k: api.get(f"/api/v1/jobs/{ids[k]}").json()["state"]
                for k in ids
                if k in ("succeeded", "failed", "dead")
            }
            batch = api.get(f"/api/v1/factory/batches/{ids['batch']}").json()
            running = api.get(f"/api/v1/jobs/{ids['crunch']}").json()["state"]
            return (
                states == {"succeeded": "succeeded", "failed": "failed", "dead": "dead"}
                and batch["status"] == "completed"
                and running == "running"
            )

        wait_for(settled, timeout=120, interval=0.5, message="jobs and batch to settle")
        products = api.get(f"/api/v1/factory/batches/{ids['batch']}/products").json()
        ids["token"] = products["items"][0]["token"]
    return ids


@pytest.fixture(scope="module")
def data(dashboard: Dashboard) -> Any:
    ids = _data(dashboard)
    yield ids
    with dashboard.api() as api:
        api.post(f"/api/v1/jobs/{ids['crunch']}/cancel")
        api.delete(f"/api/v1/schedules/{ids['schedule']}")


def _pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("overview", "/"),
        ("jobs", "/jobs"),
        ("workflows", "/workflows"),
        ("workflow-wide", f"/workflows/{ids['workflow']}"),
        ("jobs-of-workflow", f"/jobs?workflow={ids['workflow']}"),
        ("job-succeeded", f"/jobs/{ids['succeeded']}"),
        ("job-failed", f"/jobs/{ids['failed']}"),
        ("job-dead", f"/jobs/{ids['dead']}"),
        ("job-running", f"/jobs/{ids['crunch']}"),
        ("dlq", "/dlq"),
        ("workers", "/workers"),
        ("queues", "/queues"),
        ("tasks", "/tasks"),
        ("task-crunch", "/tasks/demo.crunch"),
        ("task-fail", "/tasks/demo.fail"),
        ("not-found", "/jobs/00000000-0000-0000-0000-000000000000"),
        ("catalog-products", "/catalog/products"),
        ("catalog-imports", "/catalog/imports"),
        ("catalog-import", f"/catalog/imports/{ids['import']}"),
        ("catalog-webhooks", "/catalog/webhooks"),
        ("catalog-webhook", f"/catalog/webhooks/{ids['webhook']}"),
        ("factory-batches", "/factory/batches"),
        ("factory-batch", f"/factory/batches/{ids['batch']}"),
        ("factory-verify-form", "/verify"),
        ("factory-verify", f"/verify/{ids['token']}"),
        ("schedules", "/schedules"),
        ("schedule", f"/schedules/{ids['schedule']}"),
        ("schedule-new", "/schedules/new?task=demo.crunch"),
        ("schedule-edit", f"/schedules/{ids['schedule']}/edit"),
        ("jobs-of-schedule", f"/jobs?schedule={ids['schedule']}"),
    ]


# Two dozen pages, each measured element by element, on a shared machine.
@pytest.mark.timeout(900)
def test_every_page_fits_1280_px_and_uses_the_dashboards_controls(
    admin_page: Any, anonymous_page: Any, dashboard: Dashboard, data: dict[str, str]
) -> None:
    page = admin_page
    failures: dict[str, list[str]] = {}
    for name, path in _pages(data):
        page.goto(dashboard.url + path)
        page.wait_for_load_state("load")
        shot(page, dashboard, name)
        problems = page.evaluate(CHECK)
        if problems:
            failures[path] = problems
    # The login page, as someone who has not logged in sees it.
    shot(anonymous_page, dashboard, "login")
    problems = anonymous_page.evaluate(CHECK)
    if problems:
        failures["/login"] = problems
    report = "\n".join(
        f"{path}:\n  " + "\n  ".join(problems[:8]) for path, problems in failures.items()
    )
    assert not failures, report


@pytest.mark.timeout(600)
def test_pack_pages_are_grouped_under_their_pack(admin_page: Any, dashboard: Dashboard) -> None:
    page = admin_page
    page.goto(dashboard.url + "/catalog/imports")
    nav = page.locator("nav.sidebar")
    catalog = nav.locator("section[data-pack=catalog]")
    assert catalog.locator("h2").text_content() == "Catalog"
    assert catalog.locator("a").all_inner_texts() == ["Products", "Imports", "Webhooks"]
    assert catalog.locator("a[aria-current=page]").inner_text() == "Imports"
    factory = nav.locator("section[data-pack=factory]")
    assert factory.locator("h2").text_content() == "Factory"
    assert factory.locator("a").all_inner_texts() == ["Batches", "Verify"]
    core = nav.locator("section[data-pack='']").locator("a").all_inner_texts()
    assert core[:4] == ["Overview", "Jobs", "Workflows", "Dead letters"]
