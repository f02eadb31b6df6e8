"""Dashboard pages of the agri pack: the plots (with their latest stress, assessment and
payout), one plot (its polygon, weather, stress and NDVI against the baseline, assessments and
payouts with proof links and transaction hashes) and the payouts queue. The public proof page
is in ``web_proofs.py``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import text

from conveyor.errors import ConveyorError
from conveyor.packs.agri import store, views
from conveyor.packs.kit import PageError, PagesDep, ServicesDep, page_errors

router = APIRouter(include_in_schema=False)
PAYOUT_STATUSES = ("approved", "submitted", "confirmed", "failed")
SERIES_DAYS = 90

PLOTS_SQL = text(
    """
    SELECT p.id, p.name, p.area_ha, p.lon, p.lat, po.policy_number, po.crop, po.sum_insured,
           po.currency,
           (SELECT stress FROM agri_indices i WHERE i.plot_id = p.id
             ORDER BY day DESC LIMIT 1) AS stress,
           (SELECT status || CASE WHEN triggered THEN ' · triggered' ELSE '' END
              FROM agri_assessments a WHERE a.plot_id = p.id
             ORDER BY created_at DESC LIMIT 1) AS assessment,
           (SELECT status FROM agri_payouts y WHERE y.plot_id = p.id
             ORDER BY created_at DESC LIMIT 1) AS payout
    FROM agri_plots p JOIN agri_policies po ON po.id = p.policy_id
    ORDER BY po.policy_number, p.name
    LIMIT 500
    """
)


@router.get("/agri/plots", name="agri_plots", response_class=HTMLResponse)
def plots_page(request: Request, services: ServicesDep, pages: PagesDep) -> HTMLResponse:
    """Every plot with its policy, area, latest stress, assessment and payout."""
    with page_errors(), services.engine.connect() as conn:
        rows = conn.execute(PLOTS_SQL).all()
    return pages.render(request, "agri_plots.html", {"plots": rows}, active="agri-plots")


def _plot_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise PageError(404, "Plot not found", f"No plot with id {value!r}.") from None


@router.get("/agri/plots/{plot_id}", name="agri_plot", response_class=HTMLResponse)
def plot_page(
    plot_id: str, request: Request, services: ServicesDep, pages: PagesDep
) -> HTMLResponse:
    """One plot: polygon, weather and index charts, NDVI against its baseline, assessments and
    payouts."""
    key = _plot_id(plot_id)
    with page_errors(), services.engine.connect() as conn:
        try:
            plot = store.public(store.get_plot(conn, key))
        except ConveyorError:
            raise PageError(404, "Plot not found", f"No plot with id {key}.") from None
        policy = store.public(store.get_policy(conn, uuid.UUID(plot["policy_id"])))
        weather = store.weather_series(conn, key)[-SERIES_DAYS:]
        indices = list(reversed(store.list_indices(conn, key, SERIES_DAYS)))
        ndvi = store.ndvi_timeline(conn, key)
        images = store.list_images(conn, key, 5)
        assessments = store.list_assessments(conn, key, 50)
        payouts = store.list_payouts(conn, None, key, 50)
    charts = [
        views.series_chart("Rain", weather, "precipitation_mm", "mm", "bar-succeeded"),
        views.series_chart("Tmax", weather, "tmax_c", "°C", "bar-failed"),
        views.series_chart("Stress", indices, "stress", "(0..1)", "bar-dead"),
    ]
    ndvi_chart = views.series_chart(
        "NDVI", ndvi, "mean", "", "bar-succeeded", marker=("baseline", "bar-dead")
    )
    latest_image = next((i for i in images if i["status"] == "completed"), None)
    context: dict[str, Any] = {
        "plot": plot,
        "policy": policy,
        "path": views.polygon_path(plot["geometry"]),
        "extent": views.polygon_extent(plot["geometry"]),
        "box": views.POLYGON_BOX,
        "charts": charts,
        "ndvi_chart": ndvi_chart,
        "latest_image": latest_image,
        "images": images,
        "assessments": assessments,
        "payouts": payouts,
        "weather_days": len(weather),
    }
    return pages.render(request, "agri_plot.html", context, active="agri-plots")


@router.get("/agri/payouts", name="agri_payouts", response_class=HTMLResponse)
def payouts_page(
    request: Request,
    services: ServicesDep,
    pages: PagesDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> HTMLResponse:
    """The payouts queue: approved, submitted (sent, waiting for a receipt), confirmed, failed."""
    status = status if status in PAYOUT_STATUSES else None
    with page_errors(), services.engine.connect() as conn:
        rows = store.list_payouts(conn, status, None, 200)
        counts: dict[str, int] = dict(
            conn.execute(text("SELECT status, count(*) FROM agri_payouts GROUP BY 1")).all()
        )
    context = {
        "payouts": rows,
        "status": status,
        "statuses": PAYOUT_STATUSES,
        "counts": counts,
        "total": sum(counts.values()),
    }
    return pages.render(request, "agri_payouts.html", context, active="agri-payouts")


@router.get("/agri/plots/{plot_id}/ndvi.png", name="agri_plot_ndvi")
def ndvi_image(plot_id: str, services: ServicesDep) -> Response:
    """The plot's latest NDVI raster (from the object store) as a PNG, for the plot page."""
    from conveyor.packs.agri.config import AgriSettings
    from conveyor.packs.agri.objectstore import FileStore

    key = _plot_id(plot_id)
    latest = next((i for i in store.list_images(services.engine, key, 20) if i["ndvi_key"]), None)
    if latest is None:
        raise PageError(404, "No NDVI image", "No processed satellite image for this plot yet.")
    data = AgriSettings().data_dir or Path(services.settings.home) / "agri"
    try:
        cog = FileStore(data / "objects").get(latest["ndvi_key"])
    except ConveyorError:
        raise PageError(404, "No NDVI image", "The image is not in the object store.") from None
    return Response(
        views.ndvi_png(cog), media_type="image/png", headers={"Cache-Control": "max-age=300"}
    )
