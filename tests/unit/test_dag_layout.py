"""The workflow page's DAG layout: layers, order, no overlaps, edges from bottom to top and
never across a node, and a 100-wide chord that stays within the page's width."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from conveyor.web.dag_layout import (
    Box,
    CycleError,
    Geometry,
    Layout,
    Route,
    count_crossings,
    layers_by_longest_path,
    layout,
)


def overlaps(a: Box, b: Box) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def path_points(route: Route, steps: int = 24) -> list[tuple[float, float]]:
    """Points along the SVG path as drawn (lines and cubic curves), parsed from its data."""
    commands = re.findall(r"([MLC])([^MLC]*)", route.path)
    out: list[tuple[float, float]] = []
    here = (0.0, 0.0)
    for command, args in commands:
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", args)]
        pts = list(zip(numbers[::2], numbers[1::2], strict=True))
        if command == "M":
            here = pts[0]
            out.append(here)
        elif command == "L":
            end = pts[0]
            out += [
                (here[0] + (end[0] - here[0]) * t / steps, here[1] + (end[1] - here[1]) * t / steps)
                for t in range(1, steps + 1)
            ]
            here = end
        else:
            (c1, c2, end), p0 = pts, here
            for i in range(1, steps + 1):
                t = i / steps
                u = 1 - t
                out.append(
                    (
                        u**3 * p0[0]
                        + 3 * u * u * t * c1[0]
                        + 3 * u * t * t * c2[0]
                        + t**3 * end[0],
                        u**3 * p0[1]
                        + 3 * u * u * t * c1[1]
                        + 3 * u * t * t * c2[1]
                        + t**3 * end[1],
                    )
                )
            here = end
    return out


def check_drawing(drawn: Layout, edges: list[tuple[str, str]], geometry: Geometry) -> None:
    """What every drawing must hold: inside its size, no two boxes overlapping, each edge from
    the middle of its source's bottom to the middle of its target's top, going down only, and
    never through a box."""
    boxes = list(drawn.boxes.values())
    for box in boxes:
        assert box.x >= 0 and box.y >= 0
        assert box.x + box.width <= drawn.width and box.y + box.height <= drawn.height
    for a, b in itertools.combinations(boxes, 2):
        assert not overlaps(a, b), (a, b)
    assert drawn.width <= geometry.max_width
    # Every edge drawn once, on its own or in a bundle.
    assert sorted(e for r in drawn.routes for e in r.edges) == sorted(set(edges))
    frame_tops = {f.top for f in drawn.frames}
    frame_bottoms = {f.bottom for f in drawn.frames}
    for route in drawn.routes:
        sources = {drawn.boxes[s] for s, _ in route.edges}
        targets = {drawn.boxes[t] for _, t in route.edges}
        assert all(s.layer < t.layer for s in sources for t in targets)
        if len(sources) == 1:
            assert route.points[0] == next(iter(sources)).bottom
        else:  # from the frame around the sources' grid
            assert route.points[0] in frame_bottoms
        if len(targets) == 1:
            assert route.points[-1] == next(iter(targets)).top
        else:
            assert route.points[-1] in frame_tops
        ys = [y for _, y in route.points]
        assert ys == sorted(ys), route.points  # never back up
        for x, y in path_points(route):
            assert -0.1 <= x <= drawn.width + 0.1  # the path is written to 0.1 px
            for box in boxes:  # strictly inside a box (its edges are where routes touch)
                inside = box.x + 0.5 < x < box.x + box.width - 0.5
                assert not (inside and box.y + 0.5 < y < box.y + box.height - 0.5), (route, box)


def test_a_diamond_is_three_layers_and_the_join_sits_below_both_branches() -> None:
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    drawn = layout(["a", "b", "c", "d"], edges)
    assert drawn.layers == (("a",), ("b", "c"), ("d",))
    check_drawing(drawn, edges, Geometry())
    a, b, c, d = (drawn.boxes[n] for n in "abcd")
    assert b.y == c.y > a.y and d.y > b.y
    assert b.x < c.x
    # Centred: the root and the join sit midway between the branches.
    assert a.top[0] == pytest.approx((b.top[0] + c.top[0]) / 2)
    assert d.top[0] == pytest.approx(a.top[0])
    assert all(r.path.startswith("M") and "C" in r.path for r in drawn.routes)
    assert drawn.frames == ()


def test_layers_follow_the_longest_path() -> None:
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "e"), ("d", "e")]
    assert layers_by_longest_path(list("abcde"), edges) == {"a": 0, "b": 1, "c": 2, "d": 0, "e": 3}


def test_a_chain_is_one_straight_column() -> None:
    nodes = [f"s{i}" for i in range(6)]
    edges = list(itertools.pairwise(nodes))
    drawn = layout(nodes, edges)
    check_drawing(drawn, edges, Geometry())
    assert len({drawn.boxes[n].x for n in nodes}) == 1
    assert all(len(r.points) == 2 for r in drawn.routes)


def test_a_long_edge_passes_the_layers_it_skips_beside_their_nodes() -> None:
    # a → d directly and through b, c: the long edge gets a lane in the layers of b and c.
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")]
    drawn = layout(list("abcd"), edges)
    check_drawing(drawn, edges, Geometry())
    long = next(r for r in drawn.routes if r.edges == (("a", "d"),))
    assert len(long.points) == 2 + 2 * 2  # down through a lane in each skipped layer
    lane = long.points[1][0]
    assert lane != drawn.boxes["b"].top[0]


def test_a_branch_hangs_under_the_node_it_comes_from() -> None:
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("d", "e")]
    drawn = layout(list("abcde"), edges)
    check_drawing(drawn, edges, Geometry())
    b, d, e = (drawn.boxes[n] for n in "bde")
    assert d.top[0] == b.top[0] == e.top[0]  # straight down from b, not centred on the page


@pytest.mark.parametrize("seed", range(30))
def test_random_dags_are_drawn_without_overlaps_or_edges_across_nodes(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(2, 60)
    nodes = [f"n{i}" for i in range(count)]
    # Edges only from an earlier node to a later one: a DAG; some dense, some sparse.
    density = rng.choice([0.05, 0.15, 0.4])
    edges = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :] if rng.random() < density]
    geometry = Geometry(max_width=rng.choice([500, 1000]))
    check_drawing(layout(nodes, edges, geometry), edges, geometry)


def test_the_barycenter_pass_uncrosses_edges() -> None:
    # Given in an order that crosses (a → d, b → c with c before d), drawn without crossings.
    edges = [("a", "d"), ("b", "c")]
    drawn = layout(["a", "b", "c", "d"], edges)
    check_drawing(drawn, edges, Geometry())
    assert drawn.boxes["a"].x < drawn.boxes["b"].x
    assert drawn.boxes["d"].x < drawn.boxes["c"].x


def test_count_crossings() -> None:
    down: dict[object, list[object]] = {"a": ["y"], "b": ["x"], "c": ["x", "y"]}
    assert count_crossings(["a", "b"], ["x", "y"], down) == 1  # type: ignore[arg-type]
    assert count_crossings(["b", "a"], ["x", "y"], down) == 0  # type: ignore[arg-type]
    assert count_crossings(["a", "b", "c"], ["x", "y"], down) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize("width", [100, 250])
def test_a_wide_chord_wraps_into_a_grid_within_the_width(width: int) -> None:
    header = [f"h{i:03d}" for i in range(width)]
    nodes = ["start", *header, "callback"]
    edges = [("start", h) for h in header] + [(h, "callback") for h in header]
    geometry = Geometry()
    drawn = layout(nodes, edges, geometry)
    check_drawing(drawn, edges, geometry)
    grid = [drawn.boxes[h] for h in header]
    columns = {b.column for b in grid}
    rows = {b.row for b in grid}
    assert len(columns) * len(rows) >= width and len(rows) > 1
    assert len(columns) * (geometry.node_width + geometry.column_gap) <= geometry.max_width
    # Row-major: each row full but the last.
    assert [b.row for b in grid] == sorted(b.row for b in grid)
    assert drawn.boxes["callback"].y > max(b.y for b in grid)
    # Readable: nodes keep their size, however many there are.
    assert {(b.width, b.height) for b in grid} == {(geometry.node_width, geometry.node_height)}
    # The grid in a frame, its edges in two bundles: start → the frame → callback.
    (frame,) = drawn.frames
    assert frame.x <= min(b.x for b in grid) and frame.y <= min(b.y for b in grid)
    assert frame.x + frame.width >= max(b.x + b.width for b in grid)
    assert frame.y + frame.height >= max(b.y + b.height for b in grid)
    assert sorted(len(r.edges) for r in drawn.routes) == [width, width]


def test_every_member_of_a_grid_feeding_every_member_of_the_next_is_one_bundle() -> None:
    upper = [f"u{i}" for i in range(12)]
    lower = [f"l{i}" for i in range(12)]
    edges = [(u, low) for u in upper for low in lower]
    drawn = layout(["root", *upper, *lower], [("root", u) for u in upper] + edges)
    check_drawing(drawn, [("root", u) for u in upper] + edges, Geometry())
    assert len(drawn.frames) == 2 and len(drawn.routes) == 2


def test_two_wide_layers_in_a_row_and_a_long_edge_past_a_grid() -> None:
    first = [f"f{i}" for i in range(30)]
    second = [f"g{i}" for i in range(30)]
    nodes = ["root", *first, *second, "end"]
    edges = (
        [("root", f) for f in first]
        + list(zip(first, second, strict=True))
        + [(g, "end") for g in second]
        + [("root", "g0"), ("root", "end")]  # skip one grid, skip both
    )
    geometry = Geometry(max_width=700)
    drawn = layout(nodes, edges, geometry)
    check_drawing(drawn, edges, geometry)
    # Member to member between the grids: each edge on its own, along the gutters; root → all
    # of the first grid and all of the second → end: two bundles.
    assert len(drawn.frames) == 2
    assert sorted(len(r.edges) for r in drawn.routes) == [1] * 32 + [30, 30]


def test_the_same_graph_is_drawn_the_same_way() -> None:
    edges = [("a", "c"), ("b", "c"), ("c", "d"), ("c", "e"), ("a", "e")]
    assert layout(list("abcde"), edges) == layout(list("abcde"), edges)


def test_a_cycle_is_refused_naming_its_nodes() -> None:
    with pytest.raises(CycleError, match="b, c"):
        layout(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])


def test_an_edge_to_an_unknown_node_is_refused() -> None:
    with pytest.raises(ValueError, match="'zz'"):
        layout(["a"], [("a", "zz")])


def test_empty_and_single_node() -> None:
    assert layout([], []).boxes == {}
    drawn = layout(["only"], [])
    assert list(drawn.boxes) == ["only"] and drawn.routes == ()
