"""Vegetation indices of a plot from a Sentinel-2 L2A-shaped scene, read with rasterio.

Only the window of the plot's bounding box is read from each band (bounded memory: a plot of
:data:`MAX_WINDOW_PIXELS` pixels at most, whatever the tile's size), and within it only the
pixels whose centre lies inside the plot's polygon count (``rasterio.features.geometry_mask``).
The polygon is GeoJSON in WGS 84 longitude/latitude; it is projected to the raster's CRS first.
GDAL's block cache is held to :data:`GDAL_CACHE_MB` while a scene is read.

Reflectance r = (DN + BOA_ADD_OFFSET) / 10,000, the offset read from the band's tags (-1000 for
processing baseline 04.00 and later, 0 before). A pixel is valid when it is inside the polygon,
no band is nodata (DN 0), its SCL class is not one of :data:`MASKED_SCL` (no data, saturated,
cloud shadow, cloud medium/high probability, thin cirrus, snow) and the index's denominator is
positive. The indices, with B = r(B02), R = r(B04), N = r(B08):

- NDVI = (N - R) / (N + R)                                   (Rouse et al. 1974), -1..1
- EVI  = 2.5 · (N - R) / (N + 6·R - 7.5·B + 1)                (Huete et al. 2002)
- SAVI = 1.5 · (N - R) / (N + R + 0.5)                        (Huete 1988, L = 0.5)
- LAI  = max(0, 3.618 · EVI - 0.118)  m²/m²                   (Boegh et al. 2002)

Per index: the mean, the 10th and 90th percentiles over valid pixels; ``valid_fraction`` =
valid pixels / pixels inside the polygon. No valid pixel (a fully clouded plot) gives
``None`` statistics and ``valid_fraction`` 0, never a zero NDVI.

Errors (:class:`RasterError`): a file that is not a readable GeoTIFF, a band missing, bands on
different grids, a raster that does not cover the whole plot (how much it covers is said), a
plot smaller than one pixel or larger than the bound.

:func:`write_cog` writes an index array as a Cloud-Optimised GeoTIFF (float32, NaN nodata,
deflate, internal overviews) — what the object store keeps of each processed plot.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from rasterio.warp import transform_geom
from rasterio.windows import Window, from_bounds

from conveyor.packs.agri.errors import RasterError

__all__ = [
    "INDICES",
    "MASKED_SCL",
    "MAX_WINDOW_PIXELS",
    "IndexStats",
    "PlotRaster",
    "PlotStats",
    "indices_of",
    "plot_stats",
    "plots_stats",
    "read_plot",
    "stats_of",
    "write_cog",
]

MASKED_SCL = frozenset({0, 1, 3, 8, 9, 10, 11})
INDICES = ("ndvi", "evi", "savi", "lai")
MAX_WINDOW_PIXELS = 25_000_000
"""The largest plot window read (2,500 ha at 10 m): about 300 MB for the four bands."""
BASE_BANDS = ("B04", "B08", "SCL")
GDAL_CACHE_MB = 64
"""GDAL's block cache while a scene is read (its default, 5 % of RAM, grows with the tile)."""

Float = NDArray[np.float32]


@dataclass(frozen=True)
class IndexStats:
    mean: float
    p10: float
    p90: float


@dataclass(frozen=True)
class PlotStats:
    """Each index's statistics over the plot's valid pixels (None when no pixel is valid, or
    the index was not asked for)."""

    pixels: int
    valid: int
    ndvi: IndexStats | None
    evi: IndexStats | None
    savi: IndexStats | None
    lai: IndexStats | None

    @property
    def valid_fraction(self) -> float:
        return self.valid / self.pixels if self.pixels else 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pixels": self.pixels, "valid": self.valid,
                               "valid_fraction": round(self.valid_fraction, 6)}  # fmt: skip
        for name in INDICES:
            stats: IndexStats | None = getattr(self, name)
            out[name] = None if stats is None else {
                "mean": round(stats.mean, 6), "p10": round(stats.p10, 6),
                "p90": round(stats.p90, 6)}  # fmt: skip
        return out


@dataclass(frozen=True)
class PlotRaster:
    """The plot's window: the indices (NaN where not valid), its transform and CRS."""

    indices: dict[str, Float]
    inside: NDArray[np.bool_]
    valid: NDArray[np.bool_]
    transform: Affine
    crs: Any


@contextmanager
def _open_bands(
    bands: Mapping[str, str], needed: Sequence[str]
) -> Iterator[dict[str, DatasetReader]]:
    with ExitStack() as stack:
        # GDAL's block cache defaults to 5 % of RAM: bounded here, as the windows are.
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        opened: dict[str, DatasetReader] = {}
        for name in needed:
            path = bands.get(name)
            if path is None:
                raise RasterError(f"the scene has no {name} band")
            try:
                opened[name] = stack.enter_context(rasterio.open(path))
            except rasterio.errors.RasterioError as exc:
                raise RasterError(f"band {name} is not a readable GeoTIFF") from exc
            if opened[name].count < 1 or opened[name].crs is None:
                raise RasterError(f"band {name} has no georeferenced data")
        reference = opened["B04"]
        for name in [n for n in ("B02", "B08") if n in opened]:
            if (opened[name].crs != reference.crs or opened[name].transform != reference.transform
                    or opened[name].shape != reference.shape):  # fmt: skip
                raise RasterError(f"band {name} is not on the grid of B04")
        if opened["SCL"].crs != reference.crs:
            raise RasterError("the SCL band is in another CRS than B04")
        yield opened


def _offset(src: DatasetReader) -> float:
    tags = src.tags()
    if "BOA_ADD_OFFSET" in tags:
        try:
            return float(tags["BOA_ADD_OFFSET"])
        except ValueError:
            raise RasterError("the band's BOA_ADD_OFFSET tag is not a number") from None
    baseline = tags.get("PROCESSING_BASELINE", "")
    try:
        return -1000.0 if float(baseline) >= 4.0 else 0.0
    except ValueError:
        return -1000.0  # L2A products since January 2022 all carry the offset


def _window(src: DatasetReader, geometry: dict[str, Any]) -> Window:
    """The window of the polygon's bounds, rounded outwards; refuses one outside the raster."""
    xs, ys = _coordinates(geometry)
    west, east, south, north = min(xs), max(xs), min(ys), max(ys)
    left, bottom, right, top = src.bounds
    if west < left or east > right or south < bottom or north > top:
        overlap = max(0.0, min(east, right) - max(west, left)) * max(
            0.0, min(north, top) - max(south, bottom)
        )
        area = (east - west) * (north - south)
        share = 100.0 * overlap / area if area > 0 else 0.0
        raise RasterError(
            f"the raster does not cover the plot: it covers {share:.1f} % of the plot's extent"
        )
    window = from_bounds(west, south, east, north, transform=src.transform)
    col, row = max(0, math.floor(window.col_off)), max(0, math.floor(window.row_off))
    width = min(math.ceil(window.col_off + window.width) - col, src.width - col)
    height = min(math.ceil(window.row_off + window.height) - row, src.height - row)
    if width * height > MAX_WINDOW_PIXELS:
        raise RasterError(
            f"the plot spans {width * height:,} pixels; at most {MAX_WINDOW_PIXELS:,} are read"
        )
    return Window(col, row, width, height)


def _coordinates(geometry: dict[str, Any]) -> tuple[list[float], list[float]]:
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [
        geometry["coordinates"]]  # fmt: skip
    xs = [float(p[0]) for polygon in polygons for ring in polygon for p in ring]
    ys = [float(p[1]) for polygon in polygons for ring in polygon for p in ring]
    if not xs:
        raise RasterError("the plot's polygon has no coordinates")
    return xs, ys


def _projected(polygon: Mapping[str, Any], crs: Any) -> dict[str, Any]:
    if not isinstance(polygon, Mapping) or polygon.get("type") not in ("Polygon", "MultiPolygon"):
        raise RasterError("the plot is not a GeoJSON Polygon or MultiPolygon")
    try:
        return dict(transform_geom("EPSG:4326", crs, dict(polygon)))
    except (ValueError, KeyError, TypeError, rasterio.errors.RasterioError) as exc:
        raise RasterError(f"the plot's polygon cannot be projected: {exc}") from exc


def _plot_window(
    src: Mapping[str, DatasetReader], polygon: Mapping[str, Any], indices: Sequence[str]
) -> PlotRaster:
    red = src["B04"]
    projected = _projected(polygon, red.crs)
    window = _window(red, projected)
    transform = red.window_transform(window)
    shape = (int(window.height), int(window.width))
    names = [n for n in ("B02", "B04", "B08") if n in src]
    try:
        inside = geometry_mask([projected], out_shape=shape, transform=transform, invert=True)
        dn = {name: src[name].read(1, window=window) for name in names}
        scl = _read_scl(src["SCL"], red, window, shape)
    except rasterio.errors.RasterioError as exc:
        raise RasterError("the scene's data cannot be read (a corrupt GeoTIFF)") from exc
    if not inside.any():
        raise RasterError("the plot is smaller than one 10 m pixel of the raster")
    usable = inside & ~np.isin(scl, list(MASKED_SCL))
    for name in names:
        usable &= dn[name] != 0
    reflectance = {n: (dn[n].astype(np.float32) + np.float32(_offset(src[n]))) / np.float32(10000)
                   for n in names}  # fmt: skip
    values = indices_of(reflectance.get("B02"), reflectance["B04"], reflectance["B08"], usable)
    valid = usable & np.isfinite(values["ndvi"])
    chosen = {name: values[name] for name in indices}
    for array in chosen.values():
        array[~valid] = np.nan
    return PlotRaster(chosen, inside, valid, transform, red.crs)


def _needs(indices: Sequence[str]) -> tuple[str, ...]:
    unknown = [i for i in indices if i not in INDICES]
    if unknown or not indices:
        raise ValueError(f"indices are some of {', '.join(INDICES)}; not {unknown or 'none'}")
    blue = any(i in ("evi", "lai") for i in indices)
    return ("B02", *BASE_BANDS) if blue else BASE_BANDS


def read_plot(
    bands: Mapping[str, str], polygon: Mapping[str, Any], indices: Sequence[str] = INDICES
) -> PlotRaster:
    """The plot's window of the scene with ``indices`` computed (see the module); B02 is
    needed only for EVI and LAI."""
    with _open_bands(bands, _needs(indices)) as src:
        return _plot_window(src, polygon, indices)


def _read_scl(
    scl: DatasetReader, red: DatasetReader, window: Window, shape: tuple[int, int]
) -> Any:
    """SCL on B04's window: read as is when on the same grid, else (20 m SCL of real products)
    resampled to the window by nearest neighbour."""
    if scl.transform == red.transform and scl.shape == red.shape:
        return scl.read(1, window=window)
    left, bottom, right, top = rasterio.windows.bounds(window, red.transform)
    source = from_bounds(left, bottom, right, top, transform=scl.transform)
    return scl.read(1, window=source, out_shape=shape, resampling=Resampling.nearest,
                    boundless=True, fill_value=0)  # fmt: skip


def indices_of(
    blue: Float | None, red: Float, nir: Float, usable: NDArray[np.bool_]
) -> dict[str, Float]:
    """NDVI, SAVI and (with ``blue``) EVI and LAI from reflectances (see the module); NaN where
    ``usable`` is False or a denominator is not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi_den = nir + red
        ndvi = np.where(usable & (ndvi_den > 0), (nir - red) / ndvi_den, np.nan)
        savi = np.where(usable, 1.5 * (nir - red) / (nir + red + 0.5), np.nan)
        found = {"ndvi": ndvi, "savi": savi}
        if blue is not None:
            evi_den = nir + 6 * red - 7.5 * blue + 1
            evi = np.where(usable & (evi_den > 0), 2.5 * (nir - red) / evi_den, np.nan)
            found["evi"] = evi
            found["lai"] = np.where(np.isfinite(evi), np.maximum(0.0, 3.618 * evi - 0.118), np.nan)
    return {name: np.asarray(a, np.float32) for name, a in found.items()}


def _stats(values: Float) -> IndexStats | None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    p10, p90 = np.percentile(finite, [10, 90])
    return IndexStats(float(finite.mean(dtype=np.float64)), float(p10), float(p90))


def plot_stats(
    bands: Mapping[str, str], polygon: Mapping[str, Any], indices: Sequence[str] = INDICES
) -> PlotStats:
    """Mean, p10, p90 of ``indices`` over the plot's valid pixels, and the valid fraction."""
    return stats_of(read_plot(bands, polygon, indices))


def plots_stats(
    bands: Mapping[str, str],
    polygons: Sequence[Mapping[str, Any]],
    indices: Sequence[str] = INDICES,
) -> list[PlotStats | RasterError]:
    """:func:`plot_stats` for many plots of one scene, opening its files once: one entry per
    polygon, in order — the statistics, or the :class:`RasterError` of that plot (a plot the
    scene does not cover fails alone). A scene that cannot be opened raises."""
    out: list[PlotStats | RasterError] = []
    with _open_bands(bands, _needs(indices)) as src:
        for polygon in polygons:
            try:
                out.append(stats_of(_plot_window(src, polygon, indices)))
            except RasterError as exc:
                out.append(exc)
    return out


def stats_of(plot: PlotRaster) -> PlotStats:
    """The statistics of a plot's window; an index not computed is None, as is every index
    when no pixel is valid."""
    valid = int(plot.valid.sum())
    found = {name: _stats(plot.indices[name]) if valid and name in plot.indices else None
             for name in INDICES}  # fmt: skip
    return PlotStats(int(plot.inside.sum()), valid, found["ndvi"], found["evi"], found["savi"],
                     found["lai"])  # fmt: skip


def write_cog(values: Float, transform: Affine, crs: Any, destination: Path) -> Path:
    """``values`` as a Cloud-Optimised GeoTIFF at ``destination`` (float32, NaN nodata,
    deflate, 256 px tiles, overviews): written as a GeoTIFF in memory, then copied by GDAL's
    COG driver."""
    data = np.asarray(values, np.float32)
    if data.ndim != 2 or data.size == 0:
        raise RasterError("an index raster is a non-empty two-dimensional array")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "index.tif"
        with rasterio.open(
            source, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
            dtype="float32", crs=crs, transform=transform, nodata=math.nan,
        ) as dst:  # fmt: skip
            dst.write(data, 1)
        with rasterio.open(source) as src:
            profile = src.profile | {"driver": "COG", "compress": "deflate", "blocksize": 256,
                                     "overview_resampling": "average"}  # fmt: skip
            for key in ("tiled", "blockxsize", "blockysize", "interleave"):
                profile.pop(key, None)
            with rasterio.open(destination, "w", **profile) as cog:
                cog.write(src.read())
    return destination
