"""The agri pages in Chromium at 1280 px: the plots list, a drought plot's page (its polygon,
weather and stress charts, the assessment with its proof link), the payouts queue, and the
public proof page as someone who never logged in opens it from a payout's CID."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine
from test_layout import CHECK

from conveyor.packs.agri import assessment, imagery, pipeline, store
from conveyor.packs.agri.objectstore import FileStore
from conveyor.packs.agri.samples import DEMO_WALLET, drought_history, square
from conveyor.packs.agri.satellite import LocalSatellite

if TYPE_CHECKING:
    from conftest import Dashboard


def shot(page: Any, dashboard: Dashboard, name: str) -> None:
    page.screenshot(path=str(dashboard.screenshots / f"agri-{name}.png"), full_page=True)


def drought_plot(dashboard: Dashboard) -> dict[str, Any]:
    number = f"BROWSER-{uuid.uuid4().hex[:6]}"
    planting = date.today() - timedelta(days=60)
    with dashboard.api() as api:
        r = api.post(
            "/api/v1/agri/policies",
            json={
                "policy_number": number,
                "farmer_wallet": DEMO_WALLET,
                "crop": "maize",
                "planting_date": planting.isoformat(),
                "sum_insured": "1200.00",
            },
        )
        assert r.status_code == 201, r.text
        body = {
            "name": "Browser dry field",
            "policy_number": number,
            "geometry": square(36.8, -1.3),
        }
        plot: dict[str, Any] = api.post("/api/v1/agri/plots", json=body).json()
    engine = create_engine(dashboard.env["CONVEYOR_DATABASE_URL"])
    try:
        plot_id = uuid.UUID(plot["id"])
        end = date.today() - timedelta(days=1)
        store.store_weather(engine, plot_id, drought_history(end), "test")
        assessment.store_daily_indices(engine, plot_id, end, 30)
        plot["assessment"] = assessment.assess(engine, plot_id, end - timedelta(days=29), end)
        pipeline.approve_payouts(engine)
        # A processed satellite image, where the API looks for it (CONVEYOR_HOME/agri).
        data = Path(dashboard.env["CONVEYOR_HOME"]) / "agri"
        now = datetime.now(UTC)
        provider = LocalSatellite(data / "satellite", ready_after=timedelta(0))
        imagery.order_images(engine, provider, now - imagery.PROCESS_DELAY)
        imagery.check_pending(engine, provider, FileStore(data / "objects"), now)
    finally:
        engine.dispose()
    return plot


def test_agri_pages_fit_and_link_to_a_proof_that_verifies(
    admin_page: Any, anonymous_page: Any, dashboard: Dashboard
) -> None:
    plot = drought_plot(dashboard)
    cid = plot["assessment"]["proof_cid"]
    page = admin_page
    failures: dict[str, list[str]] = {}
    for name, path in [
        ("plots", "/agri/plots"),
        ("plot", f"/agri/plots/{plot['id']}"),
        ("payouts", "/agri/payouts"),
        ("payouts-approved", "/agri/payouts?status=approved"),
    ]:
        page.goto(dashboard.url + path)
        page.wait_for_load_state("load")
        shot(page, dashboard, name)
        problems = page.evaluate(CHECK)
        if problems:
            failures[path] = problems
    assert not failures, failures

    page.goto(f"{dashboard.url}/agri/plots/{plot['id']}")
    assert page.locator("#plot-polygon path").count() == 1
    overlay = page.locator("#plot-ndvi-overlay").get_attribute("href")
    assert overlay and page.request.get(overlay).headers["content-type"] == ("image/png")
    assert page.locator("#plot-charts figure.chart").count() == 3
    assert page.locator("#plot-charts rect").count() > 30
    page.locator(f"#plot-assessments a[href*='{cid}']").click()
    page.wait_for_url(f"**/proofs/{cid}")

    anonymous_page.goto(f"{dashboard.url}/proofs/{cid}")
    shot(anonymous_page, dashboard, "proof")
    assert anonymous_page.locator("#verdict").get_attribute("data-valid") == "true"
    assert anonymous_page.locator("#proof-computed").inner_text() == cid
    anonymous_page.goto(f"{dashboard.url}/proofs")
    anonymous_page.fill("#proof-cid", cid[:-1] + ("a" if cid[-1] != "a" else "b"))
    anonymous_page.click("#proof-form button")
    anonymous_page.wait_for_load_state("load")
    shot(anonymous_page, dashboard, "proof-unknown")
    assert anonymous_page.locator("#verdict").get_attribute("data-valid") == "false"
