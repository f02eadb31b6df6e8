"""What the agri pages draw, computed in Python: a plot's polygon as SVG path data, and its
weather, stress and NDVI series as the dashboard's bar charts (``charts.html``), so the pages
need no chart library and no script."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from conveyor.packs.kit import Bar, Chart

WIDTH = 720
HEIGHT = 160
POLYGON_BOX = 240


def polygon_path(geometry: dict[str, Any], box: int = POLYGON_BOX) -> str:
    """SVG path data drawing a GeoJSON (Multi)Polygon in a ``box``-unit square, north up,
    keeping its proportions (longitude scaled by the cosine of the latitude)."""
    return _drawing(geometry, box)[0]


def polygon_extent(geometry: dict[str, Any], box: int = POLYGON_BOX) -> tuple[float, ...]:
    """(x, y, width, height) of the polygon's bounding box in :func:`polygon_path`'s units:
    where the NDVI raster of the plot's window is laid under the outline."""
    return _drawing(geometry, box)[1]


def _drawing(geometry: dict[str, Any], box: int) -> tuple[str, tuple[float, ...]]:
    polygons = (
        geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    )
    points = [pt for poly in polygons for ring in poly for pt in ring]
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    mid = math.cos(math.radians((min(lats) + max(lats)) / 2))
    span = max((max(lons) - min(lons)) * mid, max(lats) - min(lats)) or 1.0
    scale = (box - 20) / span

    def xy(lon: float, lat: float) -> str:
        x = 10 + (lon - min(lons)) * mid * scale
        y = 10 + (max(lats) - lat) * scale
        return f"{x:.1f},{y:.1f}"

    parts = []
    for poly in polygons:
        for ring in poly:
            parts.append("M" + " L".join(xy(lon, lat) for lon, lat in ring) + " Z")
    width = (max(lons) - min(lons)) * mid * scale
    height = (max(lats) - min(lats)) * scale
    return " ".join(parts), (10.0, 10.0, width, height)


def ndvi_png(cog: bytes) -> bytes:
    """An NDVI GeoTIFF as a PNG for the page: brown (bare, NDVI ≤ 0) to green (dense, 0.9),
    transparent where no valid pixel."""
    import numpy as np
    from rasterio.io import MemoryFile

    with MemoryFile(cog) as src_file, src_file.open() as src:
        ndvi = src.read(1).astype("float32")
    valid = np.isfinite(ndvi)
    t = np.clip(np.nan_to_num(ndvi, nan=0.0) / 0.9, 0.0, 1.0)
    rgba = np.zeros((4, *ndvi.shape), dtype="uint8")
    rgba[0] = (166 * (1 - t) + 22 * t).astype("uint8")
    rgba[1] = (124 * (1 - t) + 163 * t).astype("uint8")
    rgba[2] = (82 * (1 - t) + 74 * t).astype("uint8")
    rgba[3] = np.where(valid, 255, 0).astype("uint8")
    profile = {"driver": "PNG", "width": ndvi.shape[1], "height": ndvi.shape[0], "count": 4,
               "dtype": "uint8"}  # fmt: skip
    with MemoryFile() as out_file:
        with out_file.open(**profile) as dst:
            dst.write(rgba)
        return bytes(out_file.read())


def series_chart(
    title: str,
    rows: Sequence[dict[str, Any]],
    key: str,
    unit: str,
    css: str,
    *,
    marker: tuple[str, str] | None = None,
) -> Chart:
    """One bar per row (oldest first) of ``row[key]``; ``marker`` (row key, css) draws a thin
    bar of a second series at each slot (the NDVI baseline)."""
    chart = Chart(title=title, legend=((title, css),), width=WIDTH, height=HEIGHT)
    values = [r.get(key) for r in rows]
    present = [v for v in values if v is not None]
    if marker is not None:
        present += [r[marker[0]] for r in rows if r.get(marker[0]) is not None]
        chart.legend = ((title, css), (marker[0], marker[1]))
    if not present:
        return chart
    top = max(max(present), 1e-9)
    slot = WIDTH / len(rows)
    for i, (row, value) in enumerate(zip(rows, values, strict=True)):
        if value is not None and value > 0:
            h = HEIGHT * value / top
            tip = f"{row['day']}: {value:.2f} {unit}"
            chart.bars.append(Bar(i * slot, HEIGHT - h, max(slot - 1, 0.5), h, css, tip))
        if marker is not None and row.get(marker[0]) is not None:
            y = HEIGHT - HEIGHT * row[marker[0]] / top
            tip = f"{row['day']}: {marker[0]} {row[marker[0]]:.2f}"
            chart.bars.append(Bar(i * slot, y, max(slot - 1, 0.5), 2, marker[1], tip))
    chart.y_max = f"{top:.2f} {unit}"
    every = max(1, len(rows) // 6)
    chart.x_labels = [(i * slot, str(r["day"])[5:]) for i, r in enumerate(rows) if i % every == 0]
    chart.empty = False
    return chart
