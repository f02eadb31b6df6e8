"""Satellite imagery for plots with the local Sentinel-2 provider (real GeoTIFFs, real
rasterio): ordered, checked after the 30-minute delay, processed into NDVI statistics with the
NDVI raster in the object store, aggregated per day; failures recorded with their reason."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from conveyor.packs.agri import imagery, pipeline, store, views
from conveyor.packs.agri.objectstore import FileStore
from conveyor.packs.agri.policies import plot_from, policy_from
from conveyor.packs.agri.samples import DEMO_WALLET, square
from conveyor.packs.agri.satellite import LocalSatellite
from conveyor.packs.agri.tables import images, ndvi_daily


def a_plot(ledger: Engine, lon: float) -> uuid.UUID:
    number = f"IMG-{uuid.uuid4().hex[:8]}"
    planting = date.today() - timedelta(days=60)
    store.create_policy(
        ledger,
        policy_from(
            {
                "policy_number": number,
                "farmer_wallet": DEMO_WALLET,
                "crop": "maize",
                "planting_date": planting,
                "sum_insured": "100.00",
            }
        ),
    )
    field = {"name": "img", "policy_number": number, "geometry": square(lon, -1.0, 0.005)}
    (row,) = store.create_plots(ledger, [plot_from(field)])
    return uuid.UUID(row["id"])


def test_images_are_ordered_processed_and_aggregated(ledger: Engine, tmp_path: Path) -> None:
    ok, cloudy = a_plot(ledger, 35.0), a_plot(ledger, 35.2)
    now = datetime.now(UTC)
    provider = LocalSatellite(
        tmp_path / "sat",
        ready_after=timedelta(minutes=20),
        fails=lambda order: "fully clouded" if order.plot == str(cloudy) else None,
    )
    objects = FileStore(tmp_path / "objects")
    ordered = imagery.order_images(ledger, provider, now)
    assert len(ordered) >= 2
    assert imagery.order_images(ledger, provider, now) == []  # not twice within the revisit
    # Before the processing delay nothing is asked.
    assert imagery.check_pending(ledger, provider, objects, now)["completed"] == 0
    later = now + timedelta(minutes=31)
    provider.clock = lambda: later
    imagery.check_pending(ledger, provider, objects, later)
    with ledger.connect() as conn:
        rows = {
            r.plot_id: r
            for r in conn.execute(select(images).where(images.c.plot_id.in_([ok, cloudy])))
        }
    good, bad = rows[ok], rows[cloudy]
    assert good.status == "completed", good.error
    assert -1 <= good.stats["mean"] <= 1 and 0 < good.stats["valid_fraction"] <= 1
    assert good.stats["p10"] <= good.stats["mean"] <= good.stats["p90"]
    assert objects.exists(good.ndvi_key) and objects.get(good.ndvi_key)[:2] in (b"II", b"MM")
    assert bad.status == "failed" and bad.error == "fully clouded"
    png = views.ndvi_png(objects.get(good.ndvi_key))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")

    assert pipeline.daily_ndvi(ledger, good.acquired_on) >= 1
    with ledger.connect() as conn:
        daily = conn.execute(select(ndvi_daily).where(ndvi_daily.c.plot_id == ok)).one()
    assert abs(daily.mean - good.stats["mean"]) < 1e-9 and daily.day == good.acquired_on
    page = store.list_images(ledger, ok)
    assert page[0]["status"] == "completed"
