"""The factory in Chromium: an operator creates a batch from the dashboard and watches it
complete; someone who never logged in opens a product's verification page from its label."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from conveyor.testing.forgery import altered_token
from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    from conftest import Dashboard


def shot(page: Any, dashboard: Dashboard, name: str) -> None:
    page.screenshot(path=str(dashboard.screenshots / f"factory-{name}.png"), full_page=True)


def test_create_a_batch_watch_it_complete_and_verify_a_product(
    operator_page: Any, anonymous_page: Any, dashboard: Dashboard
) -> None:
    page = operator_page
    page.goto(f"{dashboard.url}/factory/batches")
    page.fill("#batch-count", "300000")
    page.fill("#batch-name", "Browser widget")
    page.fill("#batch-category", "tools")
    page.fill("#batch-factory", "plant-b")
    shot(page, dashboard, "new-batch")
    page.click("#create-batch")
    page.wait_for_url("**/factory/batches/*", timeout=30_000)
    steps: set[str] = set()

    def completed() -> bool:
        # No panel once it ended, or the page is reloading.
        with contextlib.suppress(Exception):
            steps.add(page.locator("#progress-step").inner_text(timeout=500))
        try:
            return page.locator("#batch-status").inner_text(timeout=1000) == "completed"
        except Exception:
            return False

    try:
        wait_for(completed, timeout=120, interval=0.1, message="the batch to complete")
    finally:
        shot(page, dashboard, "batch-page")
    assert steps & {"products", "root", "anchor", "queued"}, steps
    assert page.locator("#batch-written").inner_text() == "300,000 / 300,000"
    root = page.locator("#batch-root").inner_text()
    assert len(root) == 64
    assert page.locator("#batch-anchor").inner_text().startswith("local")
    assert page.locator("#download-csv").count() == 1
    assert [s.inner_text() for s in page.locator("#timeline .step-state").all()] == ["done"] * 3
    href = page.locator("a.verify-link").nth(3).get_attribute("href")
    assert href and "/verify/" in href

    # The batch is listed as completed.
    page.goto(f"{dashboard.url}/factory/batches?status=completed")
    assert page.locator("table.factory-batches", has_text="Browser widget").count() == 1

    # A consumer, never logged in, scans the label.
    consumer = anonymous_page
    consumer.goto(href if href.startswith("http") else dashboard.url + href)
    shot(consumer, dashboard, "verify-authentic")
    assert consumer.locator("#verdict").get_attribute("data-authentic") == "true"
    assert consumer.locator("#verify-product").inner_text() == "Browser widget"
    assert consumer.locator("#verify-serial").inner_text() == "4"
    assert consumer.locator("#proof-root").inner_text() == root
    assert consumer.locator("#proof-path li").count() >= 18  # 300,000 leaves: 19 levels
    assert "/login" not in consumer.url

    # A forged token typed into the form.
    token = href.rsplit("/", 1)[1]
    consumer.fill("#verify-token", altered_token(token))
    consumer.click("#verify-form button[type=submit]")
    consumer.wait_for_selector("#verdict[data-authentic=false]")
    shot(consumer, dashboard, "verify-forged")
    assert consumer.locator("#verify-reason").inner_text()
