"""The catalog in Chromium, as the sales team uses it: upload a CSV and watch the bar reach
done, filter the products, edit one, delete all after the confirmation, add a webhook and
press test."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.packs.catalog.sample import write_sample
from conveyor.testing.receiver import Receiver
from conveyor.testing.services import wait_for

if TYPE_CHECKING:
    from conftest import Dashboard


def shot(page: Any, dashboard: Dashboard, name: str) -> None:
    page.screenshot(path=str(dashboard.screenshots / f"catalog-{name}.png"), full_page=True)


def test_import_filter_edit_delete_all_and_webhook(
    admin_page: Any, dashboard: Dashboard, tmp_path: Path, receiver: Receiver
) -> None:
    page = admin_page
    with dashboard.api() as api:
        api.delete("/api/v1/catalog/products", params={"confirm": "all"})
    path = write_sample(tmp_path / "products.csv", 200_000, dirty=True)

    # Upload: the bar runs through the phases to done, and the summary appears.
    page.goto(f"{dashboard.url}/catalog/imports")
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-button")
    page.wait_for_url("**/catalog/imports/*", timeout=60_000)
    phases: set[str] = set()

    def done() -> bool:
        try:
            phases.add(page.locator("#progress-step").inner_text(timeout=1000))
            return page.locator("#import-summary").count() == 1
        except Exception:  # the page reloads itself when the import ends
            return False

    try:
        wait_for(done, timeout=120, interval=0.1, message="the import summary")
    finally:
        shot(page, dashboard, "import-page")
    shot(page, dashboard, "import-done")
    assert page.locator("#progress-bar").evaluate("b => b.value") == 100
    assert phases & {"parsing", "loading", "merging", "done"}, phases
    inserted = int(page.locator("#summary-inserted").inner_text().replace(",", ""))
    skipped = int(page.locator("#summary-skipped").inner_text().replace(",", ""))
    assert inserted > 190_000 and skipped > 100
    assert page.locator("#error-report").count() == 1

    # Filter the products by name.
    page.goto(f"{dashboard.url}/catalog/products")
    page.fill("#product-filters input[name=name]", "Lamp 1234")
    page.click("#product-filters button[type=submit]")
    page.wait_for_url("**name=Lamp+1234**")
    rows = page.locator("table.products tbody tr[data-sku]")
    assert rows.count() >= 1
    for name in rows.locator("td:nth-child(3)").all_inner_texts():
        assert "lamp 1234" in name.lower()
    shot(page, dashboard, "products-filtered")

    # Edit the first one inline.
    first = rows.first
    sku = first.get_attribute("data-sku")
    first.locator("summary", has_text="Edit").click()
    first.locator("input[name=name]").fill("Renamed in the browser")
    first.locator("button", has_text="Save").click()
    page.wait_for_selector(".flash-ok")
    assert f"Saved {sku}." in page.locator(".flash-ok").inner_text()
    row = page.locator(f"tr[data-sku='{sku}']")
    assert row.locator("td:nth-child(3)").inner_text() == "Renamed in the browser"

    # Delete all, after the confirmation that names the count.
    page.click("#delete-all")
    warning = page.locator("#delete-all-warning").inner_text()
    assert f"This deletes {inserted:,} products and cannot be undone." == warning
    shot(page, dashboard, "delete-all-confirm")
    page.click("#confirm-delete-all")
    page.wait_for_selector(".flash-ok")
    assert f"Deleted all {inserted:,} products." in page.locator(".flash-ok").inner_text()
    assert page.locator("table.products tr.empty").count() == 1

    # A webhook, and its test button.
    # The session's receiver: the one internal address the API may send to.
    url = receiver.url + "/browser-hook"
    page.goto(f"{dashboard.url}/catalog/webhooks")
    form = page.locator("details.add-webhook form")
    if not form.is_visible():
        page.click("details.add-webhook summary")
    form.locator("input[name=url]").fill(url)
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-ok")
    assert "signing secret, shown only now: whsec_" in page.locator(".flash-ok").inner_text()
    page.locator(f"tr:has(a:text('{url}')) button.test-webhook").click()
    page.wait_for_selector(".flash-ok")
    notice = page.locator(".flash-ok").inner_text()
    assert "HTTP 200 in" in notice and notice.endswith("ms."), notice
    assert len(receiver.on("/browser-hook")) == 1
    shot(page, dashboard, "webhook-tested")
