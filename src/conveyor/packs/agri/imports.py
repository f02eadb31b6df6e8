"""Plots from a file: a GeoJSON FeatureCollection or a CSV, checked whole before anything is kept.

GeoJSON: a ``FeatureCollection`` (or one ``Feature``) whose features carry a Polygon or
MultiPolygon and ``properties`` ``name`` and ``policy_number``. Errors say ``feature N`` (from 1).

CSV (UTF-8, a BOM allowed): a header with ``name``, ``policy_number`` and ``geometry``; the
geometry cell holds a GeoJSON geometry object or WKT (``POLYGON ((lon lat, …))``). Errors say
``row N``, the line of the file the record starts on (the header is row 1).

An import is all or nothing: :func:`parse_plots` returns every plot or raises
:class:`ImportRejected` listing every problem (up to :data:`MAX_PROBLEMS`), so a farmer
co-operative's file is fixed once, not once per error. A plot named twice for the same policy
is a problem too (the second would silently replace the first).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any, Literal

import shapely.wkt
from shapely.errors import ShapelyError
from shapely.geometry import mapping

from conveyor.documents import DocumentError, check_json_depth
from conveyor.packs.agri.errors import ImportRejected, InvalidPolicy
from conveyor.packs.agri.policies import Plot, plot_from

MAX_BYTES = 50 * 1024 * 1024
MAX_PLOTS = 100_000
MAX_PROBLEMS = 200
MAX_DEPTH = 32  # a FeatureCollection of MultiPolygons nests 8 levels
REQUIRED_COLUMNS = ("name", "policy_number", "geometry")
FIELD_LIMIT = 4 * 1024 * 1024

Format = Literal["geojson", "csv"]


def detect_format(data: bytes, filename: str | None = None) -> Format:
    """By the file name's extension, else by the first non-blank byte (``{`` is GeoJSON)."""
    name = (filename or "").lower()
    if name.endswith((".geojson", ".json")):
        return "geojson"
    if name.endswith(".csv"):
        return "csv"
    return "geojson" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else "csv"


def parse_plots(
    data: bytes, *, format: Format | None = None, filename: str | None = None
) -> list[Plot]:
    """Every plot in ``data``, or :class:`ImportRejected` with every problem, numbered."""
    if len(data) > MAX_BYTES:
        raise ImportRejected([f"the file is {len(data):,} bytes; at most {MAX_BYTES:,}"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRejected([f"the file is not UTF-8 (byte {exc.start})"]) from None
    if "\x00" in text:
        raise ImportRejected(["the file holds NUL bytes: not a text file"])
    chosen = format or detect_format(data, filename)
    rows = _geojson_rows(text) if chosen == "geojson" else _csv_rows(text)
    plots: list[Plot] = []
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for where, record in rows:
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"stopped after {MAX_PROBLEMS} problems")
            break
        if isinstance(record, str):
            problems.append(f"{where}: {record}")
            continue
        try:
            plot = plot_from(record)
        except InvalidPolicy as exc:
            problems.append(f"{where}: {exc}")
            continue
        key = (plot.policy_number, plot.name)
        if key in seen:
            problems.append(
                f"{where}: plot {plot.name!r} of policy {plot.policy_number} is already "
                f"at {seen[key]}"
            )
            continue
        seen[key] = where
        plots.append(plot)
        if len(plots) > MAX_PLOTS:
            problems.append(f"more than {MAX_PLOTS:,} plots in one file")
            break
    if problems:
        raise ImportRejected(problems)
    if not plots:
        raise ImportRejected(["the file holds no plots"])
    return plots


Row = tuple[str, dict[str, Any] | str]
"""Where in the file, and the plot's fields or the reason there are none."""


def _geojson_rows(text: str) -> Iterator[Row]:
    try:
        check_json_depth(text, MAX_DEPTH)
        document = json.loads(text)
    except DocumentError:
        raise ImportRejected(["not usable JSON: nested too deep"]) from None
    except json.JSONDecodeError as exc:
        raise ImportRejected(
            [f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    except RecursionError:
        raise ImportRejected(["not usable JSON: nested too deep"]) from None
    if not isinstance(document, dict):
        raise ImportRejected(["a plot file is a GeoJSON FeatureCollection"])
    if document.get("type") == "Feature":
        features: Any = [document]
    elif document.get("type") == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list):
            raise ImportRejected(["the FeatureCollection has no list of features"])
    else:
        raise ImportRejected(
            [f"a plot file is a FeatureCollection, not {str(document.get('type'))!r:.40}"]
        )
    for number, feature in enumerate(features, start=1):
        where = f"feature {number}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            yield where, "not a GeoJSON Feature"
            continue
        properties = feature.get("properties")
        if not isinstance(properties, dict):
            yield where, "no properties (name and policy_number are needed)"
            continue
        yield (
            where,
            {
                "name": _text(properties.get("name")),
                "policy_number": _text(properties.get("policy_number")),
                "geometry": feature.get("geometry"),
            },
        )


def _text(value: Any) -> Any:
    """Numbers as text (a policy number 1042 in JSON), anything else as it is for the model."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _csv_rows(text: str) -> Iterator[Row]:
    previous = csv.field_size_limit()
    csv.field_size_limit(FIELD_LIMIT)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ImportRejected(["the file is empty"]) from None
        except csv.Error as exc:
            raise ImportRejected([f"row 1: {exc}"]) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            needs = ", ".join(REQUIRED_COLUMNS)
            raise ImportRejected([f"row 1: the header lacks {', '.join(missing)} (needs {needs})"])
        index = {c: header.index(c) for c in REQUIRED_COLUMNS}
        while True:
            # The line a record starts on: a quoted cell may run over several lines.
            where = f"row {reader.line_num + 1}"
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield where, str(exc)
                return
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                yield where, f"{len(cells)} cells where the header has {len(header)}"
                continue
            geometry = _cell_geometry(cells[index["geometry"]])
            if isinstance(geometry, str):
                yield where, f"geometry: {geometry}"
                continue
            yield (
                where,
                {
                    "name": cells[index["name"]],
                    "policy_number": cells[index["policy_number"]].strip(),
                    "geometry": geometry,
                },
            )
    finally:
        csv.field_size_limit(previous)


def _cell_geometry(cell: str) -> dict[str, Any] | str:
    """A GeoJSON or WKT cell as a GeoJSON geometry, or why it is neither."""
    text = cell.strip()
    if not text:
        return "empty"
    if text.startswith("{"):
        try:
            check_json_depth(text, MAX_DEPTH)
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError, DocumentError) as exc:
            return f"not GeoJSON ({exc})"
        return value if isinstance(value, dict) else "not a GeoJSON object"
    try:
        shape = shapely.wkt.loads(text)
    except (ShapelyError, ValueError, TypeError) as exc:
        return f"neither GeoJSON nor WKT ({str(exc)[:120]})"
    geometry: dict[str, Any] = dict(mapping(shape))
    return geometry
