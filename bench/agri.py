"""The agri pack's NDVI statistics: 1,000 plots from one 10,980 x 10,980 Sentinel-2 tile.

A synthetic L2A tile (B04, B08 and SCL at 10 m, uint16 with the -1000 offset, tiled 512 px,
uncompressed, clouds and a nodata edge) is written once to a temporary directory, with 1,000
plots of 2-10 ha (quadrilaterals in WGS 84, one per cell of a 32 x 32 grid, so none overlap).
Then, each in its own child process so that each one's peak memory is its own:

- **pack**: ``raster.plots_stats(bands, polygons, ["ndvi"])`` — the pack's path: each plot's
  window read, clipped to its polygon, masked, mean/p10/p90/valid fraction;
- **floor**: numpy as fast as it goes — the three bands read whole, one label array rasterised
  from all polygons (``rasterio.features.rasterize``), NDVI where valid, then ``bincount`` for
  each plot's sum and count (means only: no percentiles); only labelled pixels are gathered
  past the rasterising, SCL masked through a lookup table.

Reported: seconds of each (median of ``--rounds`` runs, the tile in the page cache), the ratio
pack/floor (target ≤ 1.5), each child's peak RSS, and that the means agree.

``python -m bench.agri [--plots 1000] [--size 10980] [--rounds 3]``; or ``--only agri`` in
``python -m bench``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from rasterio.windows import Window

from bench.report import Figure, median, spread
from conveyor.packs.agri.raster import MASKED_SCL, PlotStats, plots_stats
from conveyor.packs.agri.satellite import BOA_ADD_OFFSET, synthetic_bands

EPSG = 32737
X0, Y0 = 199_980.0, 9_900_000.0  # a Sentinel-2 tile's corner (37MBU-like)
TILE = 10_980
BLOCK = 512


def write_tile(directory: Path, size: int) -> dict[str, str]:
    """B04, B08 and SCL of a synthetic tile, written strip by strip (bounded memory)."""
    rng = np.random.default_rng(42)
    paths = {b: str(directory / f"{b}.tif") for b in ("B04", "B08", "SCL")}
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": size, "height": size, "count": 1, "crs": f"EPSG:{EPSG}",
        "transform": from_origin(X0, Y0, 10.0, 10.0), "nodata": 0, "tiled": True,
        "blockxsize": BLOCK, "blockysize": BLOCK,
    }  # fmt: skip
    tags = {"PROCESSING_BASELINE": "05.10", "BOA_ADD_OFFSET": str(BOA_ADD_OFFSET)}
    files = {
        b: rasterio.open(paths[b], "w", dtype="uint8" if b == "SCL" else "uint16", **profile)
        for b in paths
    }
    try:
        for top in range(0, size, BLOCK * 2):
            rows = min(BLOCK * 2, size - top)
            vigour = 0.3 + 0.6 * (top / size)  # drier to the north
            bands, scl = synthetic_bands(rng, rows, size, vigour, 0.08)
            window = Window(0, top, size, rows)
            files["B04"].write(bands["B04"], 1, window=window)
            files["B08"].write(bands["B08"], 1, window=window)
            files["SCL"].write(scl, 1, window=window)
    finally:
        for f in files.values():
            f.update_tags(**tags)
            f.close()
    return paths


def make_plots(count: int, size: int) -> list[dict[str, Any]]:
    """``count`` plots of 2-10 ha, one per grid cell, as GeoJSON polygons in WGS 84."""
    rng = np.random.default_rng(7)
    grid = math.ceil(math.sqrt(count))
    cell = size * 10.0 / grid
    to_lonlat = Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True)
    plots = []
    for i in range(count):
        row, col = divmod(i, grid)
        side = math.sqrt(rng.uniform(2, 10) * 10_000)  # metres
        left = X0 + col * cell + rng.uniform(20, cell - side - 20)
        top = Y0 - row * cell - rng.uniform(20, cell - side - 20)
        skew = rng.uniform(-0.2, 0.2) * side
        corners = [(left, top), (left + side, top + skew), (left + side, top - side + skew),
                   (left, top - side)]  # fmt: skip
        ring = [list(to_lonlat.transform(x, y)) for x, y in corners]
        plots.append({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    return plots


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would carry the parent's peak
    across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pack(bands: dict[str, str], plots: list[dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    found = plots_stats(bands, plots, ["ndvi"])
    seconds = time.perf_counter() - started
    means = [s.ndvi.mean if isinstance(s, PlotStats) and s.ndvi else None for s in found]
    return {"seconds": seconds, "peak_mb": _peak_mb(), "means": means,
            "failed": sum(not isinstance(s, PlotStats) for s in found)}  # fmt: skip


def run_floor(bands: dict[str, str], plots: list[dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    with rasterio.open(bands["B04"]) as red_src:
        red_dn = red_src.read(1)
        transform, crs, shape = red_src.transform, red_src.crs, red_src.shape
    with rasterio.open(bands["B08"]) as nir_src:
        nir_dn = nir_src.read(1)
    with rasterio.open(bands["SCL"]) as scl_src:
        scl = scl_src.read(1)
    read = time.perf_counter() - started
    shapes = [(transform_geom("EPSG:4326", crs, p), i + 1) for i, p in enumerate(plots)]
    labels = rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint16")
    # Only labelled pixels go further (gathered by index), and SCL is masked by a lookup table:
    # the fastest honest numpy over whole bands.
    at = np.flatnonzero(labels)
    masked = np.zeros(256, bool)
    masked[list(MASKED_SCL)] = True
    red_dn, nir_dn = red_dn.ravel()[at], nir_dn.ravel()[at]
    keep = (red_dn != 0) & (nir_dn != 0) & ~masked[scl.ravel()[at]]
    lab = labels.ravel()[at][keep]
    red = (red_dn[keep].astype(np.float32) + BOA_ADD_OFFSET) / 10000
    nir = (nir_dn[keep].astype(np.float32) + BOA_ADD_OFFSET) / 10000
    den = nir + red
    ok = den > 0
    ndvi = (nir[ok] - red[ok]) / den[ok]
    sums = np.bincount(lab[ok], weights=ndvi, minlength=len(plots) + 1)
    counts = np.bincount(lab[ok], minlength=len(plots) + 1)
    seconds = time.perf_counter() - started
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums / counts)[1:]
    return {"seconds": seconds, "read_seconds": read, "peak_mb": _peak_mb(),
            "means": [None if not np.isfinite(m) else float(m) for m in means]}  # fmt: skip


def _child(kind: str, directory: Path) -> dict[str, Any]:
    answer = subprocess.run(
        [sys.executable, "-m", "bench.agri", "--child", kind, str(directory)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(answer.stdout)
    return result


def run(plots: int = 1000, size: int = TILE, rounds: int = 3) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="conveyor-bench-agri-"))
    try:
        started = time.perf_counter()
        write_tile(directory, size)
        (directory / "plots.json").write_text(json.dumps(make_plots(plots, size)))
        print(f"  tile {size:,}² written in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {"pack": [], "floor": []}
        for _ in range(rounds):
            for kind in ("floor", "pack"):
                runs[kind].append(_child(kind, directory))
                print(f"  {kind}: {runs[kind][-1]['seconds']:.2f} s,"
                      f" peak {runs[kind][-1]['peak_mb']:.0f} MB", file=sys.stderr)  # fmt: skip
        pack_means, floor_means = runs["pack"][0]["means"], runs["floor"][0]["means"]
        deltas = [abs(a - b) for a, b in zip(pack_means, floor_means, strict=True)
                  if a is not None and b is not None]  # fmt: skip
        return {"plots": plots, "size": size, "runs": runs,
                "max_mean_delta": max(deltas) if deltas else math.nan,
                "failed": runs["pack"][0]["failed"]}  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def figures(result: dict[str, Any]) -> list[Figure]:
    section = f"Agri NDVI: {result['plots']:,} plots, one {result['size']:,}² tile (B04, B08, SCL)"
    pack = [r["seconds"] for r in result["runs"]["pack"]]
    floor = [r["seconds"] for r in result["runs"]["floor"]]
    ratios = [p / f for p, f in zip(pack, floor, strict=True)]
    return [
        Figure(section, "a. numpy floor (whole bands, rasterised labels, bincount)",
               spread(floor, "{:.2f} s")),
        Figure(section, "a. of which reading the three bands whole",
               spread([r["read_seconds"] for r in result["runs"]["floor"]], "{:.2f} s")),
        Figure(section, "b. pack: windowed, clipped, mean/p10/p90", spread(pack, "{:.2f} s")),
        Figure(section, "b/a time", spread(ratios, "{:.2f}x"), "<= 1.5x",
               median(ratios) <= 1.5),
        Figure(section, "peak RSS floor / pack (above the loaded interpreter)",
               f"{_grown(result, 'floor'):,.0f} MB / {_grown(result, 'pack'):,.0f} MB"),
        Figure(section, "largest |mean NDVI pack - floor|", f"{result['max_mean_delta']:.2e}"),
    ]  # fmt: skip


def _grown(result: dict[str, Any], kind: str) -> float:
    return median([r["peak_mb"] - r["start_mb"] for r in result["runs"][kind]])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agri", description=__doc__.split("\n")[0])
    p.add_argument("--plots", type=int, default=1000)
    p.add_argument("--size", type=int, default=TILE, help="tile side in pixels")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, directory = args.child[0], Path(args.child[1])
        bands = {b: str(directory / f"{b}.tif") for b in ("B04", "B08", "SCL")}
        plots = json.loads((directory / "plots.json").read_text())
        before = _peak_mb()  # the interpreter with numpy, rasterio and pyproj loaded
        result = (run_pack if kind == "pack" else run_floor)(bands, plots)
        print(json.dumps(result | {"start_mb": before}))
        return 0
    from bench.report import render

    result = run(args.plots, args.size, args.rounds)
    print(render(figures(result), [("run", f"{date.today()}")], False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
