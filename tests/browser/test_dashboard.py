"""What an operator does on the dashboard, in Chromium: log in, watch a job's progress bar run
to done, cancel a running job (as the operator role); and what nobody may do: run script
through a job's arguments, post an action from another site, or cancel as a viewer."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    # Only for the annotations: a conftest is not importable as a module at run time.
    from conftest import Dashboard


def shot(page: Any, dashboard: Dashboard, name: str) -> None:
    page.screenshot(path=str(dashboard.screenshots / f"{name}.png"), full_page=True)


def test_progress_bar_moves_to_done(admin_page: Any, dashboard: Dashboard) -> None:
    job_id = dashboard.submit("demo.crunch", steps=10, delay=0.3)
    page = admin_page
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    bar = page.locator("#progress-bar")
    seen: list[float] = []

    def moving() -> bool:
        try:
            value = bar.evaluate("b => b.hasAttribute('value') ? b.value : -1", timeout=2000)
        except Exception:  # the page may be between two renders
            return False
        if value >= 0 and (not seen or value != seen[-1]):
            seen.append(value)
        return len([v for v in seen if 0 < v < 100]) >= 2

    wait_for(moving, timeout=30, interval=0.1, message="the bar to show two partial values")
    shot(page, dashboard, "job-progress")
    page.wait_for_selector(".job[data-state=succeeded]", timeout=30_000)
    assert bar.evaluate("b => b.value") == 100
    assert seen == sorted(seen)  # never went backwards
    assert page.locator(".job-head [data-field=state]").inner_text() == "succeeded"
    shot(page, dashboard, "job-succeeded")
    page.goto(f"{dashboard.url}/jobs")
    assert page.locator(f"tr[data-job-id='{job_id}']").count() == 1
    shot(page, dashboard, "jobs")


def test_an_operator_cancels_a_running_job(operator_page: Any, dashboard: Dashboard) -> None:
    job_id = dashboard.submit("demo.sleep", 30)
    wait_for(lambda: dashboard.job(job_id)["state"] == "running", timeout=30, message="running")
    page = operator_page
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    page.click("form[action$='/cancel'] button")
    page.wait_for_selector(".job[data-state=cancelled]", timeout=30_000)
    shot(page, dashboard, "job-cancelled")
    assert dashboard.job(job_id)["state"] == "cancelled"


def test_hostile_arguments_render_inert(admin_page: Any, dashboard: Dashboard) -> None:
    hostile = [
        "<script>window.__pwned = 'script'</script>",
        "<img src=x onerror=\"window.__pwned = 'img'\">",
    ]
    job_id = dashboard.submit("demo.echo", *hostile, note="<b onmouseover=alert(1)>x</b>")
    wait_for(lambda: dashboard.job(job_id)["state"] == "succeeded", message="echo to finish")
    page = admin_page
    for path in (f"/jobs/{job_id}", "/jobs", f"/jobs?q={hostile[0]}"):
        page.goto(dashboard.url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img[src=x]").count() == 0
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    text = page.locator("body").inner_text()
    assert hostile[0] in text and "onerror" in text  # shown as text, not run
    shot(page, dashboard, "job-hostile-arguments")


def test_action_posted_from_another_site_is_refused(admin_page: Any, dashboard: Dashboard) -> None:
    """A page elsewhere that auto-submits a cancel form: the browser sends it with the
    operator's cookies if it can, and the dashboard must refuse it anyway."""
    job_id = dashboard.submit("demo.sleep", 20)
    wait_for(lambda: dashboard.job(job_id)["state"] == "running", timeout=30, message="running")
    form = (
        f'<form id="f" method="post" action="{dashboard.url}/jobs/{job_id}/cancel"></form>'
        '<script>document.getElementById("f").submit()</script>'
    ).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(form)))
            self.end_headers()
            self.wfile.write(form)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = admin_page
        page.goto(f"http://127.0.0.2:{server.server_address[1]}/")
        page.wait_for_load_state("load")
        page.wait_for_timeout(500)
        shot(page, dashboard, "cross-site-post")
        # The session cookie is SameSite=strict, so the post arrives without a session and
        # lands on the login page; had it carried one, the Sec-Fetch-Site check refuses it.
        assert "/login" in page.url or "Cross-site request refused" in page.content()
    finally:
        server.shutdown()
    job = dashboard.job(job_id)
    assert job["state"] == "running" and not job["cancel_requested"]
    with dashboard.api() as client:
        client.post(f"/api/v1/jobs/{job_id}/cancel")


def test_viewer_cannot_cancel(viewer_page: Any, dashboard: Dashboard) -> None:
    job_id = dashboard.submit("demo.sleep", 20)
    wait_for(lambda: dashboard.job(job_id)["state"] == "running", timeout=30, message="running")
    page = viewer_page
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    shot(page, dashboard, "job-as-viewer")
    # No button, and the action itself refused when crafted on the dashboard's own origin
    # with a valid CSRF token (the logout form's): the role is what stops it.
    assert page.locator("form[action$='/cancel'] button").count() == 0
    status, text = page.evaluate(
        """async (url) => {
            const token = document.querySelector("input[name=csrf_token]").value;
            const r = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": token}});
            return [r.status, await r.text()];
        }""",
        f"/jobs/{job_id}/cancel",
    )
    assert status == 403 and "role viewer" in text and "jobs:write" in text
    job = dashboard.job(job_id)
    assert job["state"] == "running" and not job["cancel_requested"]
    with dashboard.api() as client:
        client.post(f"/api/v1/jobs/{job_id}/cancel")


def test_replay_a_dead_job_with_edited_arguments(admin_page: Any, dashboard: Dashboard) -> None:
    dead = dashboard.submit("testing.doomed", -1)
    wait_for(lambda: dashboard.job(dead)["state"] == "dead", timeout=30, message="a dead job")
    page = admin_page
    page.goto(f"{dashboard.url}/dlq")
    page.click(f"tr[data-job-id='{dead}'] a")
    page.wait_for_selector("#replay textarea[name=args]")
    page.fill("#replay textarea[name=args]", "[21]")
    shot(page, dashboard, "dlq-replay-edited")
    page.click("#replay button[type=submit]")
    page.wait_for_selector(".job[data-state=succeeded]", timeout=30_000)
    replay_id = page.locator(".job").get_attribute("data-job-id")
    assert replay_id and replay_id != dead
    job = dashboard.job(replay_id)
    assert job["retry_of"] == dead and job["args"] == [21]
    shot(page, dashboard, "dlq-replayed")
    page.goto(f"{dashboard.url}/dlq")
    shot(page, dashboard, "dlq")


def test_every_page_renders_for_an_admin(admin_page: Any, dashboard: Dashboard) -> None:
    page = admin_page
    for path, marker in (
        ("/workers", "table.workers tr[data-alive=true]"),
        ("/queues", "table.queues tr[data-queue=default]"),
        ("/dlq", "table.dead"),
        ("/tasks", "table.tasks tr[data-task='demo.add']"),
        ("/tasks/demo.crunch", "form.submit-form input[name=steps]"),
        ("/jobs", "table.jobs"),
    ):
        page.goto(dashboard.url + path)
        page.wait_for_selector(marker)
        assert page.evaluate("window.__pwned") is None
        shot(page, dashboard, path.strip("/").replace("/", "-"))
    # Admin-only controls are there for an admin.
    page.goto(dashboard.url + "/workers")
    assert page.locator("form[action$='/shutdown'] button").count() >= 1


def test_viewer_sees_no_admin_controls(viewer_page: Any, dashboard: Dashboard) -> None:
    page = viewer_page
    page.goto(dashboard.url + "/workers")
    page.wait_for_selector("table.workers")
    assert page.locator("form[action$='/shutdown']").count() == 0
    page.goto(dashboard.url + "/queues")
    assert page.locator("form[action$='/purge']").count() == 0
    page.goto(dashboard.url + "/dlq")
    assert page.locator("button[value=delete-matching]").count() == 0
    page.goto(dashboard.url + "/tasks/demo.add")
    assert page.locator("form.submit-form").count() == 0


def test_submit_a_task_from_its_form(admin_page: Any, dashboard: Dashboard) -> None:
    page = admin_page
    page.goto(dashboard.url + "/tasks/demo.add")
    page.fill("input[name=x]", "40")
    page.fill("input[name=y]", "2")
    page.click("form.submit-form button[type=submit]")
    page.wait_for_selector(".job[data-state=succeeded]", timeout=30_000)
    job_id = page.locator(".job").get_attribute("data-job-id")
    assert job_id and dashboard.job(job_id)["kwargs"] == {"x": 40, "y": 2}
    shot(page, dashboard, "task-submitted")


def test_job_page_follows_the_job_to_its_outcome_without_reloading(
    admin_page: Any, dashboard: Dashboard
) -> None:
    with dashboard.api() as api:
        r = api.post("/api/v1/jobs", json={"task": "demo.sleep", "args": [2], "countdown": 2})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    page = admin_page
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    facts = page.locator("[data-live-region=facts]")
    attempts = page.locator("[data-live-region=attempts]")
    assert facts.locator("[data-field=worker]").inner_text() == "—"
    assert facts.locator("[data-field=started] time").count() == 0
    assert "No attempt yet" in attempts.inner_text()
    # A reload would forget this.
    page.evaluate("window.__sameDocument = true")

    # Running: the worker, the start time, attempt 1 and a row in the attempts table appear.
    row = attempts.locator("tr[data-attempt='1']")
    row.wait_for(timeout=30_000)
    assert "in progress" in row.inner_text()
    assert facts.locator("[data-field=worker]").inner_text().startswith("testworker-")
    assert facts.locator("[data-field=started] time").count() == 1
    assert facts.locator("[data-field=attempt]").inner_text() == "1"
    assert page.locator("form[action$='/cancel']").count() == 1
    shot(page, dashboard, "job-live-running")

    # Done: the final state, finish time, the attempt's outcome, the result and a Retry button.
    page.wait_for_selector(".job[data-state=succeeded]", timeout=30_000)
    row.locator(".badge.state-succeeded").wait_for(timeout=10_000)
    assert page.locator(".job-head [data-field=state]").inner_text() == "succeeded"
    assert facts.locator("[data-field=finished] time").count() == 1
    assert page.locator("form[action$='/retry']").count() == 1
    assert page.locator("form[action$='/cancel']").count() == 0
    assert page.locator("[data-live-region=outcome] pre.json").inner_text() == "2"
    # The ledger's final word closes the stream; the status says so (no script eval: the CSP).
    status = page.locator("#live-status")
    wait_for(lambda: status.inner_text() == "The job ended.", timeout=10, message="the end")
    assert page.evaluate("window.__sameDocument") is True
    shot(page, dashboard, "job-live-succeeded")


def test_job_page_shows_a_failing_jobs_attempts_without_reloading(
    admin_page: Any, dashboard: Dashboard
) -> None:
    job_id = dashboard.submit("testing.doomed", -1)
    page = admin_page
    page.goto(f"{dashboard.url}/jobs/{job_id}")
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector(".job[data-state=dead]", timeout=30_000)
    attempts = page.locator("[data-live-region=attempts]")
    attempts.locator("tr[data-attempt='2'] .badge.state-dead").wait_for(timeout=10_000)
    first = attempts.locator("tr[data-attempt='1']")
    assert "ValueError" in first.inner_text()
    assert "x must not be negative" in page.locator("[data-live-region=outcome]").inner_text()
    assert page.evaluate("window.__sameDocument") is True
