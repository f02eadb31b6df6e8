"""Plot geometry: GeoJSON checks with messages that say where, geodesic area, winding."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.packs.agri.errors import InvalidGeometry
from conveyor.packs.agri.geometry import MAX_POSITIONS, parse_geometry

# A 0.01° square at the equator, clockwise (RFC 7946 wants shells counter-clockwise).
CLOCKWISE = [[0.0, 0.0], [0.0, 0.01], [0.01, 0.01], [0.01, 0.0], [0.0, 0.0]]


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def test_square_at_the_equator_by_hand() -> None:
    # On WGS 84 at the equator one degree of longitude is 2πa/360 = 111,319.49 m and one degree
    # of latitude (meridian arc, 0°..0.01°) is 110,574.4 m: 1,113.19 m x 1,105.74 m = 123.09 ha.
    g = parse_geometry(polygon(CLOCKWISE))
    assert g.area_ha == pytest.approx(1113.1949 * 1105.744 / 10_000, rel=1e-4)
    assert g.bbox == (0.0, 0.0, 0.01, 0.01)
    assert g.centroid == pytest.approx((0.005, 0.005))


def test_area_shrinks_with_latitude() -> None:
    # The same 0.01° square at 60° N. On the ellipsoid a small cell measures N·cosφ·Δλ by
    # M·Δφ with N = a/w, M = a(1-e²)/w³, w = sqrt(1-e²sin²φ); against the equator (N = a,
    # M = a(1-e²)) the ratio is cosφ / w⁴ = 0.49992 / 0.98998 = 0.50498 at φ = 60.005°.
    north = [[x, y + 60.0] for x, y in CLOCKWISE]
    g = parse_geometry(polygon(north))
    equator = parse_geometry(polygon(CLOCKWISE)).area_ha
    phi = math.radians(60.005)
    w2 = 1 - 0.00669438 * math.sin(phi) ** 2
    assert g.area_ha / equator == pytest.approx(math.cos(phi) / w2**2, rel=1e-4)


def test_winding_normalised_counter_clockwise_shell_clockwise_hole() -> None:
    hole = [[0.004, 0.004], [0.006, 0.004], [0.006, 0.006], [0.004, 0.006], [0.004, 0.004]]
    g = parse_geometry(polygon(CLOCKWISE, hole))
    shell, inner = g.geojson["coordinates"]

    def signed(ring: list[list[float]]) -> float:
        return sum(a[0] * b[1] - b[0] * a[1] for a, b in itertools.pairwise(ring)) / 2

    assert signed(shell) > 0 > signed(inner)
    # The hole is 0.002° square: 4 % of the shell's area.
    assert g.area_ha == pytest.approx(parse_geometry(polygon(CLOCKWISE)).area_ha * 0.96, rel=1e-4)


def test_multipolygon_adds_parts_and_feature_is_unwrapped() -> None:
    east = [[x + 0.02, y] for x, y in CLOCKWISE]
    multi = {"type": "MultiPolygon", "coordinates": [[CLOCKWISE], [east]]}
    feature = {"type": "Feature", "properties": {}, "geometry": multi}
    g = parse_geometry(feature)
    assert g.geojson["type"] == "MultiPolygon"
    assert g.area_ha == pytest.approx(2 * parse_geometry(polygon(CLOCKWISE)).area_ha, rel=1e-6)
    assert g.bbox == pytest.approx((0.0, 0.0, 0.03, 0.01))


def test_altitude_allowed_and_dropped() -> None:
    g = parse_geometry(polygon([[x, y, 1500] for x, y in CLOCKWISE]))
    assert all(len(p) == 2 for p in g.geojson["coordinates"][0])


@pytest.mark.parametrize(
    ("geometry", "why"),
    [
        ([1, 2], "GeoJSON object"),
        ({"type": "Point", "coordinates": [0, 0]}, "Polygon or a MultiPolygon"),
        ({"type": "Polygon"}, "no coordinates"),
        ({"type": "Feature", "geometry": None}, "no geometry"),
        (polygon(), "non-empty list"),
        ({"type": "MultiPolygon", "coordinates": []}, "non-empty list of polygons"),
        (polygon([[0, 0], [1, 0], [0, 0]]), "at least 4 positions"),
        (polygon([[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01]]), "not closed"),
        (polygon([[0, 0], [0.01, 0], [0.01, 0.01], [0, "a"], [0, 0]]), "position 3 latitude"),
        (polygon([[0, 0], [0.01, 0], [True, 0.01], [0, 0]]), "not a number"),
        (polygon([[0, 0], [0.01, 0], [0.01, float("nan")], [0, 0]]), "finite"),
        (polygon([[0, 0], [181, 0], [181, 1], [0, 0]]), "longitude 181.0"),
        (polygon([[0, 0], [1, 0], [1, 91], [0, 0]]), "swapped"),
        (polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]), r"Self-intersection\[0.5 0.5\]"),
        (polygon([[0, 0], [0.01, 0.01], [0.02, 0.02], [0, 0]]), "not valid|no area"),
        (polygon(CLOCKWISE, [[1, 1], [1.1, 1], [1.1, 1.1], [1, 1.1], [1, 1]]), "not valid"),
        (polygon([[-179, 0], [179, 0], [179, 0.01], [-179, 0.01], [-179, 0]]), "antimeridian"),
        (polygon([[0, 0], [5, 0], [5, 5], [0, 5], [0, 0]]), "at most 100,000 ha"),
        (polygon([[0, 0], [0.01], [0.01, 0.01], [0, 0]]), "position 1"),
        ({"type": "MultiPolygon", "coordinates": [[CLOCKWISE], [CLOCKWISE]]}, "not valid"),
    ],
)
def test_bad_geometry_says_what_and_where(geometry: Any, why: str) -> None:
    with pytest.raises(InvalidGeometry, match=why):
        parse_geometry(geometry)


def test_too_many_positions() -> None:
    n = MAX_POSITIONS + 10
    ring = [
        [0.01 * math.cos(2 * math.pi * i / n), 0.01 * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    ring.append(ring[0])
    with pytest.raises(InvalidGeometry, match="positions"):
        parse_geometry(polygon(ring))


positions = st.lists(
    st.floats(-200, 200) | st.integers(-200, 200) | st.text(max_size=2) | st.none(),
    min_size=0,
    max_size=4,
)


@given(st.lists(st.lists(positions, max_size=8), max_size=3))
def test_garbage_coordinates_refused_or_measured(rings: Any) -> None:
    try:
        g = parse_geometry({"type": "Polygon", "coordinates": rings})
    except InvalidGeometry:
        return
    assert 0 < g.area_ha <= 100_000


@given(
    st.lists(st.tuples(st.floats(-0.05, 0.05), st.floats(-0.05, 0.05)), min_size=3, max_size=30),
    st.floats(-170, 170),
    st.floats(-80, 80),
)
def test_valid_polygons_round_trip(
    points: list[tuple[float, float]], lon: float, lat: float
) -> None:
    # The convex hull of random points near (lon, lat) is a valid polygon (when it has an area);
    # its normalised GeoJSON parses again to the same area, bbox and coordinates.
    from shapely.geometry import MultiPoint

    hull = MultiPoint([(lon + x, lat + y) for x, y in points]).convex_hull
    if hull.geom_type != "Polygon" or hull.area < 1e-12:
        return
    ring = [list(p) for p in hull.exterior.coords]
    try:
        first = parse_geometry(polygon(ring))
    except InvalidGeometry as exc:
        assert "no area" in str(exc) or "not valid" in str(exc)
        return
    again = parse_geometry(first.geojson)
    assert again.geojson == first.geojson
    assert again.area_ha == pytest.approx(first.area_ha)
    assert again.bbox == first.bbox


def test_errors_are_input_rejected() -> None:
    # The API maps InputRejected to 422 in one place: every agri refusal is one.
    from conveyor.errors import InputRejected
    from conveyor.packs.agri import errors

    for name in (
        "InvalidGeometry",
        "InvalidPolicy",
        "InvalidWeather",
        "AssessmentError",
        "ProofError",
        "ImportRejected",
    ):
        kind = getattr(errors, name)
        assert issubclass(kind, InputRejected) and issubclass(kind, errors.AgriError)
