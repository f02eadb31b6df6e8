"""Plot imports from GeoJSON and CSV: all or nothing, every problem numbered."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.packs.agri.errors import ImportRejected
from conveyor.packs.agri.imports import MAX_BYTES, detect_format, parse_plots

RING = [[36.8, -1.3], [36.801, -1.3], [36.801, -1.299], [36.8, -1.299], [36.8, -1.3]]
WKT = "POLYGON ((36.8 -1.3, 36.801 -1.3, 36.801 -1.299, 36.8 -1.299, 36.8 -1.3))"
BOWTIE = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]


def feature(name: Any, policy: Any = "KE-1", ring: Any = RING) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"name": name, "policy_number": policy},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def collection(*features: Any) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


def test_geojson_plots() -> None:
    plots = parse_plots(collection(feature("North"), feature("South", 1042)))
    assert [(p.name, p.policy_number) for p in plots] == [("North", "KE-1"), ("South", "1042")]
    assert plots[0].area_ha == pytest.approx(1.2309, rel=1e-3)
    single = json.dumps(feature("Only")).encode()
    assert parse_plots(single)[0].name == "Only"


def test_geojson_every_problem_numbered() -> None:
    data = collection(
        feature("ok"),
        "nonsense",
        feature("bowtie", ring=BOWTIE),
        {"type": "Feature", "geometry": None},
        feature("", ring=RING),
        feature("ok"),
    )
    with pytest.raises(ImportRejected) as caught:
        parse_plots(data)
    problems = caught.value.problems
    assert problems[0] == "feature 2: not a GeoJSON Feature"
    assert problems[1].startswith("feature 3: geometry: ") and "Self-intersection" in problems[1]
    assert problems[2].startswith("feature 4: no properties")
    assert problems[3].startswith("feature 5: name")
    assert problems[4] == "feature 6: plot 'ok' of policy KE-1 is already at feature 1"
    assert len(problems) == 5


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{", "not JSON: .* line 1 column 2"),
        (b"[1]", "FeatureCollection"),
        (b'{"type": "Polygon"}', "not 'Polygon'"),
        (b'{"type": "FeatureCollection", "features": 3}', "no list of features"),
        (b'{"type": "FeatureCollection", "features": []}', "no plots"),
        (b"\xff\xfe{", "not UTF-8"),
        (b"name\x00", "NUL"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep|not JSON"),
    ],
)
def test_geojson_file_level_problems(data: bytes, why: str) -> None:
    with pytest.raises(ImportRejected, match=why):
        parse_plots(data, format="geojson")


def test_csv_wkt_and_geojson_cells() -> None:
    geojson_cell = json.dumps({"type": "Polygon", "coordinates": [RING]}).replace('"', '""')
    data = (
        "\ufeffName,Policy_Number,geometry,notes\n"
        f'North,KE-1,"{WKT}",irrigated\n'
        "\n"
        f'South, KE-1 ,"{geojson_cell}",\n'
    ).encode()
    plots = parse_plots(data, filename="plots.csv")
    assert [(p.name, p.policy_number) for p in plots] == [("North", "KE-1"), ("South", "KE-1")]
    assert plots[0].area_ha == pytest.approx(plots[1].area_ha)


def test_csv_rows_numbered_as_in_the_file() -> None:
    data = (
        "name,policy_number,geometry\n"
        f'a,KE-1,"{WKT}"\n'
        '"b\nwith a line break",KE-1,"POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))"\n'
        "c,KE-1,POINT (1 2)\n"
        "d,KE-1\n"
        "e,KE-1,POLYGON ((0 0\n"
        "f,KE-1,\n"
        f'a,KE-1,"{WKT}"\n'
        'g,KE-1,"{""type"": 1"\n'
    ).encode()
    with pytest.raises(ImportRejected) as caught:
        parse_plots(data, format="csv")
    problems = caught.value.problems
    # b's record starts on line 3 and, through its quoted line break, ends on line 4
    assert problems[0].startswith("row 3: name: a plot name is printable text; geometry: ")
    assert problems[1].startswith("row 5: geometry: a plot is a Polygon or a MultiPolygon")
    assert problems[2] == "row 6: 2 cells where the header has 3"
    assert problems[3].startswith("row 7: geometry: neither GeoJSON nor WKT")
    assert problems[4] == "row 8: geometry: empty"
    assert problems[5] == "row 9: plot 'a' of policy KE-1 is already at row 2"
    assert problems[6].startswith("row 10: geometry: not GeoJSON")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"name,geometry\nx,y\n", "lacks policy_number"),
        (b"name,policy_number,geometry\n", "no plots"),
        (b'name,policy_number,geometry\n"unterminated', "no plots|row"),
    ],
)
def test_csv_file_level_problems(data: bytes, why: str) -> None:
    with pytest.raises(ImportRejected, match=why):
        parse_plots(data, format="csv")


def test_size_limit_and_problem_cap() -> None:
    with pytest.raises(ImportRejected, match="at most"):
        parse_plots(b" " * (MAX_BYTES + 1))
    data = b"name,policy_number,geometry\n" + b"x,P,\n" * 1000
    with pytest.raises(ImportRejected) as caught:
        parse_plots(data)
    assert caught.value.problems[-1] == "stopped after 200 problems"
    assert "(and 181 more)" in str(caught.value)


def test_detect_format() -> None:
    assert detect_format(b"{}", "a.csv") == "csv"
    assert detect_format(b"name", "a.geojson") == "geojson"
    assert detect_format(b"\xef\xbb\xbf  {") == "geojson"
    assert detect_format(b"name,policy_number") == "csv"


@given(st.binary(max_size=300))
def test_garbage_bytes_rejected_never_crash(data: bytes) -> None:
    with pytest.raises(ImportRejected):
        parse_plots(data)


@given(st.text(max_size=200))
def test_garbage_csv_text_rejected(text: str) -> None:
    with pytest.raises(ImportRejected):
        parse_plots(("name,policy_number,geometry\n" + text).encode(), format="csv")
