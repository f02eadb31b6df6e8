"""Satellite imagery for plots, from stored rows and a :class:`~.satellite.SatelliteProvider`:
orders placed for plots without a recent image, checked 30 minutes after they were placed and
then every 15 minutes (the seed's schedule) until they complete, fail or expire (7 days), and a
completed scene turned into per-plot statistics (:mod:`.raster`: NDVI, EVI, SAVI, LAI mean,
p10, p90 and the valid fraction) with the plot's NDVI written as a Cloud-Optimised GeoTIFF to
the object store. A raster that does not cover the plot, or a corrupt one, is a ``failed``
image with the reason — never a silent zero.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Engine, insert, select, update

from conveyor.errors import ConveyorError
from conveyor.packs.agri import raster
from conveyor.packs.agri.objectstore import ObjectStore
from conveyor.packs.agri.satellite import SatelliteProvider
from conveyor.packs.agri.tables import images, plots, policies

PROCESS_DELAY = timedelta(minutes=30)
RECHECK = timedelta(minutes=15)
REVISIT = timedelta(days=5)
"""Sentinel-2's revisit: a plot with an image ordered more recently is not ordered again."""


def order_images(engine: Engine, provider: SatelliteProvider, now: datetime) -> list[UUID]:
    """Order yesterday's image of every active plot that has no order within :data:`REVISIT`;
    the new image rows."""
    with engine.connect() as conn:
        recent = select(images.c.plot_id).where(images.c.ordered_at > now - REVISIT)
        due = conn.execute(
            select(plots.c.id, plots.c.min_lon, plots.c.min_lat, plots.c.max_lon, plots.c.max_lat)
            .join(policies, policies.c.id == plots.c.policy_id)
            .where(policies.c.status == "active", plots.c.id.not_in(recent))
        ).all()
    made = []
    for row in due:
        bounds = (row.min_lon, row.min_lat, row.max_lon, row.max_lat)
        error: str | None = None
        try:
            order = provider.order(str(row.id), bounds, (now - timedelta(days=1)).date())
        except (ConveyorError, ValueError) as exc:
            status, ref, error = "failed", "", str(exc)
        else:
            status, ref = "pending", order.id
        image_id = uuid4()
        with engine.begin() as conn:
            conn.execute(
                insert(images).values(
                    id=image_id,
                    plot_id=row.id,
                    provider=provider.name,
                    order_ref=ref,
                    status=status,
                    ordered_at=now,
                    process_after=now + PROCESS_DELAY,
                    error=error,
                )
            )
        made.append(image_id)
    return made


def check_pending(
    engine: Engine, provider: SatelliteProvider, store: ObjectStore, now: datetime
) -> dict[str, int]:
    """Ask the provider about every pending image due a check; process the completed ones."""
    with engine.connect() as conn:
        due = conn.execute(
            select(images.c.id, images.c.order_ref, images.c.plot_id, plots.c.geometry)
            .join(plots, plots.c.id == images.c.plot_id)
            .where(images.c.status == "pending", images.c.process_after <= now)
        ).all()
    counts = {"completed": 0, "failed": 0, "expired": 0, "pending": 0}
    for row in due:
        values: dict[str, Any]
        try:
            order = provider.status(row.order_ref)
        except ConveyorError as exc:  # the provider is down: look again next time
            values = {"process_after": now + RECHECK, "error": str(exc)}
            counts["pending"] += 1
        else:
            if order.status == "completed" and order.scene is not None:
                values = _process(row.plot_id, row.geometry, order.scene, store, now)
            elif order.status == "pending":
                values = {"process_after": now + RECHECK}
            else:
                values = {"status": order.status, "error": order.reason or order.status}
            counts[str(values.get("status", "pending"))] += 1
        with engine.begin() as conn:
            conn.execute(update(images).where(images.c.id == row.id).values(**values))
    return counts


def _process(
    plot_id: UUID, geometry: dict[str, Any], scene: Any, store: ObjectStore, now: datetime
) -> dict[str, Any]:
    try:
        window = raster.read_plot(scene.bands, geometry)
        stats = raster.stats_of(window).as_dict()
        with tempfile.TemporaryDirectory(prefix="agri-ndvi-") as tmp:
            path = raster.write_cog(
                window.indices["ndvi"], window.transform, window.crs, Path(tmp) / "ndvi.tif"
            )
            key = f"ndvi/{plot_id}/{scene.day.isoformat()}.tif"
            store.put(key, path.read_bytes(), "image/tiff")
    except ConveyorError as exc:  # corrupt, or not covering the plot: visible, not a zero
        return {"status": "failed", "error": str(exc), "acquired_on": scene.day}
    ndvi = stats.get("ndvi") or {}
    flat = {**stats, "mean": ndvi.get("mean"), "p10": ndvi.get("p10"), "p90": ndvi.get("p90")}
    return {
        "status": "completed",
        "acquired_on": scene.day,
        "completed_at": now,
        "stats": flat,
        "ndvi_key": key,
        "error": None,
    }
