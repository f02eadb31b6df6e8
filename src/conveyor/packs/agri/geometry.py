"""Plot polygons: GeoJSON (RFC 7946) Polygon and MultiPolygon, checked, measured and normalised.

What is checked, each with a message that says where:

- the shape: ``{"type": "Polygon" | "MultiPolygon", "coordinates": …}`` (a Feature's geometry
  is taken), positions ``[longitude, latitude]`` (an altitude is allowed and dropped), finite
  numbers, longitude in [-180, 180] and latitude in [-90, 90];
- each ring: at least 4 positions, closed (the last equals the first);
- the polygon: valid as OGC simple features (shapely's ``is_valid``; the reason from
  ``explain_validity``, e.g. a self-intersection and where) — which also refuses holes outside
  their shell and overlapping parts of a MultiPolygon;
- a usable plot: a positive area, no wider than 180° of longitude (a ring across the
  antimeridian is ambiguous in GeoJSON), at most :data:`MAX_POSITIONS` positions and
  :data:`MAX_AREA_HA` hectares.

Winding is normalised rather than refused (RFC 7946 §3.1.6: parsers should not reject): shells
counter-clockwise, holes clockwise. The area is geodesic, on the WGS 84 ellipsoid (pyproj's
``Geod.geometry_area_perimeter``, Karney's algorithm), in hectares — not planar degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

from conveyor.packs.agri.errors import InvalidGeometry

MAX_POSITIONS = 10_000
MAX_AREA_HA = 100_000.0
"""1,000 km²: far past any one insured plot, short of a typo in degrees making a continent."""
M2_PER_HA = 10_000.0

_GEOD = Geod(ellps="WGS84")

Bbox = tuple[float, float, float, float]
"""(min longitude, min latitude, max longitude, max latitude), as GeoJSON's ``bbox``."""


@dataclass(frozen=True)
class PlotGeometry:
    """A checked plot polygon: the normalised GeoJSON, its geodesic area and its extent."""

    geojson: dict[str, Any]
    area_ha: float
    bbox: Bbox
    centroid: tuple[float, float]
    """(longitude, latitude) of the planar centroid: where weather is asked for the plot."""

    @property
    def shape(self) -> Polygon | MultiPolygon:
        """The polygon as a shapely geometry (for rasterising and clipping)."""
        return _shape(self.geojson)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidGeometry(f"{where}: {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidGeometry(f"{where}: {value!r} is not a finite number")
    return number


def _position(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise InvalidGeometry(f"{where}: a position is [longitude, latitude], got {value!r:.80}")
    lon = _number(value[0], f"{where} longitude")
    lat = _number(value[1], f"{where} latitude")
    if len(value) == 3:
        _number(value[2], f"{where} altitude")
    if not -180.0 <= lon <= 180.0:
        raise InvalidGeometry(f"{where}: longitude {lon} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise InvalidGeometry(
            f"{where}: latitude {lat} is outside [-90, 90] (are longitude and latitude swapped?)"
        )
    return lon, lat


def _ring(value: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(value, list | tuple):
        raise InvalidGeometry(f"{where}: a linear ring is a list of positions")
    if len(value) < 4:
        raise InvalidGeometry(
            f"{where}: a linear ring has at least 4 positions (a triangle and its closing "
            f"point), this has {len(value)}"
        )
    ring = [_position(p, f"{where} position {i}") for i, p in enumerate(value)]
    if ring[0] != ring[-1]:
        raise InvalidGeometry(
            f"{where}: the ring is not closed (the last position must equal the first, "
            f"{list(ring[0])})"
        )
    return ring


def _polygon(value: Any, where: str) -> list[list[tuple[float, float]]]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidGeometry(f"{where}: a polygon is a non-empty list of linear rings")
    rings = [
        _ring(r, f"{where} {'exterior ring' if i == 0 else f'hole {i}'}")
        for i, r in enumerate(value)
    ]
    return rings


def _geometry_object(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidGeometry("a plot geometry is a GeoJSON object")
    if obj.get("type") == "Feature":
        geometry = obj.get("geometry")
        if not isinstance(geometry, dict):
            raise InvalidGeometry("the Feature has no geometry")
        obj = geometry
    kind = obj.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        raise InvalidGeometry(f"a plot is a Polygon or a MultiPolygon, not {kind!r:.40}")
    if "coordinates" not in obj:
        raise InvalidGeometry(f"the {kind} has no coordinates")
    checked: dict[str, Any] = obj
    return checked


def _shape(obj: dict[str, Any]) -> Polygon | MultiPolygon:
    if obj["type"] == "Polygon":
        rings = obj["coordinates"]
        return Polygon(rings[0], rings[1:])
    return MultiPolygon([(p[0], p[1:]) for p in obj["coordinates"]])


def parse_geometry(obj: Any) -> PlotGeometry:
    """Check a GeoJSON Polygon/MultiPolygon (or a Feature holding one) as a plot boundary.

    Returns the geometry with RFC 7946 winding, its geodesic area in hectares, bbox and centroid;
    raises :class:`InvalidGeometry` saying what is wrong and where.
    """
    geometry = _geometry_object(obj)
    coordinates = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        polygons = [_polygon(coordinates, "polygon")]
    else:
        if not isinstance(coordinates, list | tuple) or not coordinates:
            raise InvalidGeometry("a MultiPolygon is a non-empty list of polygons")
        polygons = [_polygon(p, f"polygon {i}") for i, p in enumerate(coordinates)]
    positions = sum(len(ring) for rings in polygons for ring in rings)
    if positions > MAX_POSITIONS:
        raise InvalidGeometry(f"the plot has {positions} positions; at most {MAX_POSITIONS}")

    parts = [Polygon(rings[0], rings[1:]) for rings in polygons]
    shape: Polygon | MultiPolygon = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    if not shape.is_valid:
        raise InvalidGeometry(f"the polygon is not valid: {explain_validity(shape)}")
    min_lon, min_lat, max_lon, max_lat = shape.bounds
    if max_lon - min_lon > 180.0:
        raise InvalidGeometry(
            "the plot spans more than 180° of longitude; a plot across the antimeridian must be "
            "split into a MultiPolygon at ±180°"
        )
    oriented: Polygon | MultiPolygon
    if isinstance(shape, Polygon):
        oriented = orient(shape, sign=1.0)
    else:
        oriented = MultiPolygon([orient(p, sign=1.0) for p in shape.geoms])
    area_m2, _perimeter = _GEOD.geometry_area_perimeter(oriented)
    area_ha = abs(area_m2) / M2_PER_HA
    if not area_ha > 0.0:
        raise InvalidGeometry("the plot has no area (all its positions lie on a line)")
    if area_ha > MAX_AREA_HA:
        raise InvalidGeometry(
            f"the plot measures {area_ha:,.0f} ha; at most {MAX_AREA_HA:,.0f} ha "
            "(are the coordinates in degrees, longitude first?)"
        )
    normal = mapping(oriented)
    geojson = {"type": normal["type"], "coordinates": _lists(normal["coordinates"])}
    centroid = oriented.centroid
    return PlotGeometry(
        geojson=geojson,
        area_ha=area_ha,
        bbox=(min_lon, min_lat, max_lon, max_lat),
        centroid=(centroid.x, centroid.y),
    )


def _lists(value: Any) -> Any:
    """shapely's nested tuples as GeoJSON's nested lists (what JSON columns round-trip)."""
    if isinstance(value, tuple | list):
        return [_lists(item) for item in value]
    return value
