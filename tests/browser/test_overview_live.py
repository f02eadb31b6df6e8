"""The overview in Chromium: charts drawn, and figures that follow the ledger without a reload."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    from conftest import Dashboard


def _count(page: Any, state: str) -> int:
    text = page.locator(f".counts [data-count={state}]").inner_text(timeout=2000)
    return int(text.replace(",", ""))


def test_overview_refreshes_itself(admin_page: Any, dashboard: Dashboard) -> None:
    page = admin_page
    page.goto(dashboard.url + "/")
    page.wait_for_selector("figure.chart svg[aria-label='Finished jobs']")
    page.wait_for_selector("figure.chart svg[aria-label='Failure rate']")
    before = _count(page, "succeeded")
    page.evaluate("document.body.dataset.marker = 'no reload'")

    job_id = dashboard.submit("demo.add", 20, 22)
    wait_for(lambda: dashboard.job(job_id)["state"] == "succeeded", timeout=30, message="done")

    def counted() -> bool:
        try:
            return _count(page, "succeeded") > before
        except Exception:  # the region is being swapped
            return False

    wait_for(counted, timeout=20, interval=0.25, message="the succeeded count to go up")
    # Same document: the page updated itself rather than reloading.
    assert page.evaluate("document.body.dataset.marker") == "no reload"
    assert page.locator("section[aria-label='Tasks'] tr[data-task='demo.add']").count() == 1
    assert page.locator("figure.chart rect.bar-succeeded").count() >= 1
    page.screenshot(path=str(dashboard.screenshots / "overview.png"), full_page=True)
    page.goto(dashboard.url + "/?range=7d")
    page.wait_for_selector(".range a[aria-current=true]:text('7d')")
    page.screenshot(path=str(dashboard.screenshots / "overview-7d.png"), full_page=True)
