"""Schedules in Chromium, as an operator whose browser runs on Tokyo time: create a schedule
from the form generated from the task's signature, watch the preview of its next fires follow
the trigger as it is typed (in UTC, the schedule's zone and the viewer's), pause it with a
note, trigger it, and watch the run appear and finish on the schedule's page (a real worker).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only for the annotations: a conftest is not importable as a module at run time.
    from conftest import Dashboard

VIEWER_ZONE = "Asia/Tokyo"


def shot(page: Any, dashboard: Dashboard, name: str) -> None:
    page.screenshot(path=str(dashboard.screenshots / f"{name}.png"), full_page=True)


def test_create_preview_pause_trigger_and_watch_the_run(
    operator_page: Any, dashboard: Dashboard
) -> None:
    page = operator_page
    # The viewer's own timezone, as the browser reports it to the page's script.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setTimezoneOverride", {"timezoneId": VIEWER_ZONE})
    name = f"browser-{uuid.uuid4().hex[:8]}"

    page.goto(f"{dashboard.url}/schedules")
    page.click("text=New schedule")
    page.select_option("#choose-task select", "demo.add")  # the page reloads with its form
    page.wait_for_selector("#schedule-form input[name=x]")
    page.fill("#schedule-form input[name=name]", name)
    page.fill("#schedule-form input[name=x]", "40")
    page.fill("#schedule-form input[name=y]", "2")
    # Only the chosen kind's input shows.
    assert page.locator("label[data-kind=every]").is_hidden()
    page.fill("input[name=timezone]", "Europe/Berlin")
    page.fill("input[name=cron]", "61 * * * *")
    problem = page.wait_for_selector("#preview-problem", timeout=10_000)
    assert "minute field" in problem.inner_text()
    page.fill("input[name=cron]", "30 9 * * 1-5")
    page.wait_for_selector("#preview-fires li", timeout=10_000)
    fires = page.locator("#preview-fires li").all_inner_texts()
    assert len(fires) == 5
    for fire in fires:
        assert "09:30 Europe/Berlin" in fire and " UTC · " in fire and VIEWER_ZONE in fire
    shot(page, dashboard, "schedule-form")

    page.click("#save")
    page.wait_for_selector(".flash-ok")
    assert "Created" in page.locator(".flash-ok").inner_text()
    assert page.locator("h1").inner_text().startswith(name)
    next_fires = page.locator("#next-fires li").all_inner_texts()
    assert len(next_fires) == 5 and all(VIEWER_ZONE in f for f in next_fires)
    shot(page, dashboard, "schedule-created")

    page.fill("#pause-form input[name=note]", "waiting for the supplier")
    page.click("#pause")
    page.wait_for_selector("[data-badge=paused]")
    assert "waiting for the supplier" in page.locator(".pause-note").first.inner_text()
    assert "None while paused." in page.locator("#next-fires").inner_text()

    page.click("#trigger-now")
    page.wait_for_selector("#runs tr[data-job-id]")
    row = page.locator("#runs tr[data-job-id]").first
    job_id = row.get_attribute("data-job-id")
    # The row follows the job live, without a reload, to its end.
    page.wait_for_selector(f"#runs tr[data-job-id='{job_id}'] .state-succeeded", timeout=30_000)
    job = dashboard.job(str(job_id))
    assert job["state"] == "succeeded" and page.url.split("?")[0].endswith(job["schedule_id"])
    shot(page, dashboard, "schedule-triggered")

    # The run's job page links back to the schedule.
    row.locator("a").first.click()
    page.wait_for_selector("#job-schedule")
    assert page.locator("#job-schedule").inner_text() == name
    with dashboard.api() as api:
        assert api.delete(f"/api/v1/schedules/{name}").status_code == 204


def test_a_viewer_sees_schedules_but_no_actions(viewer_page: Any, dashboard: Dashboard) -> None:
    with dashboard.api() as api:
        r = api.post(
            "/api/v1/schedules",
            json={"name": f"viewed-{uuid.uuid4().hex[:8]}", "task": "demo.add", "args": [1, 2],
                  "every": "5m"},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        schedule = r.json()
    page = viewer_page
    page.goto(f"{dashboard.url}/schedules/{schedule['id']}")
    assert "every 5 minutes" in page.locator("header.job-head").inner_text()
    assert page.locator("#trigger-now, #pause, #delete").count() == 0
    page.goto(f"{dashboard.url}/schedules")
    assert page.locator("text=New schedule").count() == 0
    with dashboard.api() as api:
        api.delete(f"/api/v1/schedules/{schedule['id']}")
