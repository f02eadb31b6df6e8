"""Plot statistics from Sentinel-2 L2A-shaped GeoTIFFs with real rasterio: hand-computed
indices, SCL and nodata masking, the -1000 BOA offset, a 20 m SCL, rasters that do not cover the
plot, corrupt files, the Cloud-Optimised GeoTIFF, and the synthetic scenes' drought NDVI drop."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from rasterio.transform import from_origin

from conveyor.packs.agri.errors import RasterError
from conveyor.packs.agri.raster import (
    PlotStats,
    indices_of,
    plot_stats,
    plots_stats,
    read_plot,
    write_cog,
)
from conveyor.packs.agri.satellite import write_scene

EPSG = 32737  # UTM 37S (Nairobi)
X0, Y0 = 255_000.0, 9_857_000.0  # top-left corner
TO_LONLAT = Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True)


def polygon_of(x_left: float, y_top: float, x_right: float, y_bottom: float) -> dict[str, Any]:
    corners = [(x_left, y_top), (x_right, y_top), (x_right, y_bottom), (x_left, y_bottom)]
    ring = [list(TO_LONLAT.transform(x, y)) for x, y in corners]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def write_band(
    path: Path, data: np.ndarray, *, resolution: float = 10.0, tags: dict[str, str] | None = None
) -> str:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
        dtype=data.dtype, crs=f"EPSG:{EPSG}", transform=from_origin(X0, Y0, resolution, resolution),
        nodata=0,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
        dst.update_tags(**(tags or {"PROCESSING_BASELINE": "05.10", "BOA_ADD_OFFSET": "-1000"}))
    return str(path)


def scene(tmp_path: Path, blue: int, red: int, nir: int, scl: np.ndarray, **options: Any) -> dict[
    str, str
]:  # fmt: skip
    shape = scl.shape
    return {
        "B02": write_band(tmp_path / "B02.tif", np.full(shape, blue, np.uint16), **options),
        "B04": write_band(tmp_path / "B04.tif", np.full(shape, red, np.uint16), **options),
        "B08": write_band(tmp_path / "B08.tif", np.full(shape, nir, np.uint16), **options),
        "SCL": write_band(tmp_path / "SCL.tif", scl.astype(np.uint8)),
    }


def box(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


# The whole 4x4 raster, inset 1 m so every pixel's centre is inside.
WHOLE = polygon_of(X0 + 1, Y0 - 1, X0 + 39, Y0 - 39)


def test_indices_by_hand() -> None:
    # B = 0.05, R = 0.10, N = 0.50
    b, r, n = (np.array([v], np.float32) for v in (0.05, 0.10, 0.50))
    found = indices_of(b, r, n, np.array([True]))
    assert found["ndvi"][0] == pytest.approx(0.4 / 0.6, abs=1e-6)  # 0.666667
    assert found["evi"][0] == pytest.approx(2.5 * 0.4 / 1.725, abs=1e-6)  # 0.579710
    assert found["savi"][0] == pytest.approx(1.5 * 0.4 / 1.1, abs=1e-6)  # 0.545455
    assert found["lai"][0] == pytest.approx(3.618 * (1.0 / 1.725) - 0.118, abs=1e-5)  # 1.979
    assert np.isnan(indices_of(b, r, n, np.array([False]))["ndvi"][0])


def test_offset_and_masks_by_hand(tmp_path: Path) -> None:
    # DN 1500 → r 0.05, 2000 → 0.10, 6000 → 0.50 (the -1000 offset of baseline ≥ 04.00)
    scl = np.full((4, 4), 4)
    scl[0, :] = [9, 8, 3, 10]  # cloud high, cloud medium, shadow, cirrus: masked
    scl[1, 0] = 0  # no data
    scl[1, 1] = 6  # water: kept (its NDVI is what it is)
    stats = plot_stats(scene(tmp_path, 1500, 2000, 6000, scl), WHOLE)
    assert (stats.pixels, stats.valid) == (16, 11)
    assert stats.valid_fraction == pytest.approx(11 / 16)
    assert stats.ndvi is not None and stats.ndvi.mean == pytest.approx(0.4 / 0.6, abs=1e-5)
    assert stats.ndvi.p10 == pytest.approx(stats.ndvi.p90, abs=1e-5)
    assert stats.lai is not None and stats.lai.mean == pytest.approx(1.979377, abs=1e-4)


def test_an_old_baseline_has_no_offset(tmp_path: Path) -> None:
    tags = {"PROCESSING_BASELINE": "03.01"}
    bands = scene(tmp_path, 500, 1000, 5000, np.full((4, 4), 4), tags=tags)
    stats = plot_stats(bands, WHOLE)
    assert stats.ndvi is not None and stats.ndvi.mean == pytest.approx(0.4 / 0.6, abs=1e-5)


def test_a_fully_clouded_plot_has_no_statistics_not_zero(tmp_path: Path) -> None:
    stats = plot_stats(scene(tmp_path, 1500, 2000, 6000, np.full((4, 4), 9)), WHOLE)
    assert (stats.pixels, stats.valid, stats.ndvi) == (16, 0, None)
    assert stats.as_dict()["ndvi"] is None


def test_only_pixels_inside_the_polygon_count(tmp_path: Path) -> None:
    half = polygon_of(X0 + 1, Y0 - 1, X0 + 19, Y0 - 39)  # the western two columns
    stats = plot_stats(scene(tmp_path, 1500, 2000, 6000, np.full((4, 4), 4)), half)
    assert stats.pixels == 8


def test_a_20m_scl_is_resampled_to_the_10m_grid(tmp_path: Path) -> None:
    bands = scene(tmp_path, 1500, 2000, 6000, np.full((4, 4), 4))
    scl20 = np.array([[9, 4], [4, 4]], np.uint8)  # the north-west 20 m pixel is cloud
    bands["SCL"] = write_band(tmp_path / "SCL20.tif", scl20, resolution=20.0)
    assert plot_stats(bands, WHOLE).valid == 12


def test_a_raster_that_does_not_cover_the_plot(tmp_path: Path) -> None:
    bands = scene(tmp_path, 1500, 2000, 6000, np.full((4, 4), 4))
    beyond = polygon_of(X0 + 20, Y0 - 20, X0 + 60, Y0 - 60)
    with pytest.raises(RasterError, match=r"does not cover the plot: it covers 25\.0 %"):
        plot_stats(bands, beyond)
    far = polygon_of(X0 + 5000, Y0 - 5000, X0 + 5100, Y0 - 5100)
    with pytest.raises(RasterError, match=r"covers 0\.0 %"):
        plot_stats(bands, far)


def test_corrupt_and_missing_bands(tmp_path: Path) -> None:
    bands = scene(tmp_path, 1500, 2000, 6000, np.full((4, 4), 4))
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + b"\xff" * 100)
    with pytest.raises(RasterError, match="B08 is not a readable GeoTIFF"):
        plot_stats(bands | {"B08": str(garbage)}, WHOLE)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(Path(bands["B04"]).read_bytes()[:300])
    with pytest.raises(RasterError, match="B04"):
        plot_stats(bands | {"B04": str(truncated)}, WHOLE)
    with pytest.raises(RasterError, match="no SCL band"):
        plot_stats({k: v for k, v in bands.items() if k != "SCL"}, WHOLE)
    with pytest.raises(RasterError, match="not a readable"):
        plot_stats(bands | {"B02": str(tmp_path / "absent.tif")}, WHOLE)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.recursive(st.none() | st.floats() | st.text(max_size=5) | st.integers(),
                    lambda inner: st.lists(inner, max_size=4), max_leaves=12))  # fmt: skip
def test_garbage_polygons_are_refused_clearly(tmp_path: Path, coordinates: Any) -> None:
    bands_dir = tmp_path / "garbage-polygons"
    if not (bands_dir / "SCL.tif").exists():
        bands_dir.mkdir(exist_ok=True)
        scene(bands_dir, 1500, 2000, 6000, np.full((4, 4), 4))
    bands = {b: str(bands_dir / f"{b}.tif") for b in ("B02", "B04", "B08", "SCL")}
    try:
        stats = plot_stats(bands, {"type": "Polygon", "coordinates": coordinates})
    except RasterError:
        return
    assert stats.pixels > 0  # whatever is accepted was a usable polygon


def test_ndvi_is_written_as_a_cloud_optimised_geotiff(tmp_path: Path) -> None:
    bands = write_scene(tmp_path / "scene", (36.80, -1.30, 36.83, -1.27), date(2026, 6, 1)).bands
    plot = read_plot(bands, box(36.80, -1.30, 36.83, -1.27))
    path = write_cog(plot.indices["ndvi"], plot.transform, plot.crs, tmp_path / "ndvi.tif")
    with rasterio.open(path) as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert cog.overviews(1)  # a plot of 330 x 330 px gets an overview
        assert math.isnan(cog.nodata)
        back = cog.read(1)
    assert np.array_equal(np.isnan(back), np.isnan(plot.indices["ndvi"]))
    assert np.allclose(back, plot.indices["ndvi"], equal_nan=True)


def test_a_drought_scene_shows_an_ndvi_drop(tmp_path: Path) -> None:
    bounds = (36.80, -1.30, 36.81, -1.29)
    polygon = box(*bounds)
    before = plot_stats(write_scene(tmp_path / "a", bounds, date(2026, 4, 1), vigour=0.9).bands,
                        polygon)  # fmt: skip
    after = plot_stats(write_scene(tmp_path / "b", bounds, date(2026, 6, 1), vigour=0.3).bands,
                       polygon)  # fmt: skip
    assert before.ndvi is not None and after.ndvi is not None
    assert before.ndvi.mean > 0.75 and after.ndvi.mean < 0.45
    assert 0.5 < before.valid_fraction < 1.0  # clouds, shadows and the swath edge are masked
    again = plot_stats(write_scene(tmp_path / "c", bounds, date(2026, 4, 1), vigour=0.9).bands,
                       polygon)  # fmt: skip
    assert again == before  # deterministic


def test_many_plots_from_one_scene_each_fail_alone(tmp_path: Path) -> None:
    bands = scene(tmp_path, 1500, 2000, 6000, np.full((4, 4), 4))
    no_blue = {k: v for k, v in bands.items() if k != "B02"}  # NDVI alone needs no B02
    beyond = polygon_of(X0 + 20, Y0 - 20, X0 + 60, Y0 - 60)
    first, second, third = plots_stats(no_blue, [WHOLE, beyond, {"type": "Point"}], ["ndvi"])
    assert isinstance(first, PlotStats) and first.valid == 16
    assert first.ndvi is not None and first.evi is None
    assert isinstance(second, RasterError) and "does not cover" in str(second)
    assert isinstance(third, RasterError) and "not a GeoJSON Polygon" in str(third)
    with pytest.raises(RasterError, match="no B02 band"):
        plots_stats(no_blue, [WHOLE])
    with pytest.raises(ValueError, match="indices are some of"):
        plots_stats(bands, [WHOLE], ["ndwi"])
