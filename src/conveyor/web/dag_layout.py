"""A layered drawing of a workflow's DAG, computed in Python and drawn as inline SVG.

The classic Sugiyama steps, kept as small as a workflow page needs:

1. **Layers** by longest path from the roots: every edge points down, a node sits one layer
   below its deepest parent.
2. **Virtual nodes** on edges that skip layers, so a long edge is routed around the nodes of
   the layers it passes instead of through them.
3. **Order** within each layer by barycenter sweeps (down, up, …), keeping the order with the
   fewest crossings.
4. **Coordinates**: each layer is a centred row. A layer too wide for ``max_width`` (a chord's
   100-task header) wraps into a grid of rows; edges into and out of a grid run along the
   gutters between its rows and columns, and long edges pass it in lanes at its right, so no
   edge is drawn across a node and the drawing never grows wider than ``max_width``.

Plain functions and frozen dataclasses, no web imports: the unit tests exercise it directly.
No layout library is used: the well-known ones (grandalf, graphviz bindings) are unmaintained
or need a system binary, and these steps take a couple of hundred lines.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]


@dataclass(frozen=True)
class Geometry:
    """Sizes, in SVG user units (pixels at 1:1)."""

    node_width: float = 140
    node_height: float = 40
    column_gap: float = 18  # between two nodes side by side
    row_gap: float = 22  # between two rows of a wrapped layer
    layer_gap: float = 48  # between two layers
    lane_width: float = 12  # a long edge's slot when it passes a layer
    margin: float = 12
    max_width: float = 1000


@dataclass(frozen=True)
class _Rect:
    """A rectangle by its top-left corner and size; edges meet it in the middle of its top
    and of its bottom."""

    x: float
    y: float
    width: float
    height: float

    @property
    def top(self) -> Point:
        return (self.x + self.width / 2, self.y)

    @property
    def bottom(self) -> Point:
        return (self.x + self.width / 2, self.y + self.height)


@dataclass(frozen=True)
class Box(_Rect):
    """Where one node is drawn, and its layer, row and column."""

    node: str
    layer: int
    row: int
    column: int


@dataclass(frozen=True)
class Route:
    """One edge's path, from the middle of its source's bottom to the middle of its target's
    top; or one path for a bundle of edges between a node and a whole grid (a group's members
    with their common parent or child), from or to the grid's frame."""

    edges: tuple[tuple[str, str], ...]
    points: tuple[Point, ...]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(source for source, _ in self.edges))

    @property
    def path(self) -> str:
        """SVG path data: straight along gutters and lanes (axis-aligned legs), an S-curve
        with vertical ends between layers."""
        (x0, y0), rest = self.points[0], self.points[1:]
        out = [f"M{x0:.1f},{y0:.1f}"]
        for x1, y1 in rest:
            if x1 == x0 or y1 == y0:
                out.append(f"L{x1:.1f},{y1:.1f}")
            else:
                mid = (y0 + y1) / 2
                out.append(f"C{x0:.1f},{mid:.1f} {x1:.1f},{mid:.1f} {x1:.1f},{y1:.1f}")
            x0, y0 = x1, y1
        return " ".join(out)


@dataclass(frozen=True)
class Frame(_Rect):
    """The outline around a layer wrapped into a grid."""

    layer: int


@dataclass(frozen=True)
class Layout:
    """A whole drawing: its size, a box per node, the routes drawing every edge once, the
    nodes per layer, and a frame around each layer wrapped into a grid."""

    width: float
    height: float
    boxes: dict[str, Box]
    routes: tuple[Route, ...]
    layers: tuple[tuple[str, ...], ...]
    frames: tuple[Frame, ...] = ()


class CycleError(ValueError):
    """The graph has a cycle, so it has no layered drawing; names the nodes on it."""


def layers_by_longest_path(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Each node's layer: 0 for a root, else one more than its deepest parent's."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    indegree: dict[str, int] = dict.fromkeys(nodes, 0)
    for source, target in edges:
        children[source].append(target)
        indegree[target] += 1
    layer = dict.fromkeys(nodes, 0)
    ready = [n for n in nodes if indegree[n] == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for child in children[node]:
            layer[child] = max(layer[child], layer[node] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if seen < len(nodes):
        stuck = [n for n in nodes if indegree[n] > 0]
        raise CycleError(f"the graph has a cycle through {', '.join(map(str, stuck[:10]))}")
    return layer


@dataclass(frozen=True, eq=False)
class _Virtual:
    """A point of a long edge in a layer it passes (compared by identity)."""

    layer: int


_Slot = str | _Virtual  # a node or a virtual point, as ordered within a layer


def count_crossings(
    upper: Sequence[_Slot], lower: Sequence[_Slot], down: dict[_Slot, list[_Slot]]
) -> int:
    """Crossings between two adjacent layers: inversions among the edges' lower ends once the
    edges are sorted by their upper ends (O(E log E))."""
    where = {slot: i for i, slot in enumerate(lower)}
    ends = [(i, where[child]) for i, slot in enumerate(upper) for child in down.get(slot, ())]
    ends.sort()
    crossings = 0
    seen: list[int] = []
    for _, j in ends:
        # Edges already seen with a lower end strictly right of j cross this one.
        crossings += len(seen) - bisect.bisect_right(seen, j)
        bisect.insort(seen, j)
    return crossings


def _barycenter_sweep(
    order: list[list[_Slot]], links: dict[_Slot, list[_Slot]], reference: int, moving: int
) -> None:
    """Reorder layer ``moving`` by the mean position of each slot's neighbours in layer
    ``reference``; a slot with no neighbour there keeps its place (stable sort)."""
    where = {slot: i for i, slot in enumerate(order[reference])}

    def key(item: tuple[int, _Slot]) -> float:
        i, slot = item
        near = [where[n] for n in links.get(slot, ()) if n in where]
        return sum(near) / len(near) if near else float(i)

    ranked = sorted(enumerate(order[moving]), key=key)
    order[moving] = [slot for _, slot in ranked]


def order_layers(
    order: list[list[_Slot]],
    down: dict[_Slot, list[_Slot]],
    up: dict[_Slot, list[_Slot]],
    sweeps: int = 4,
) -> list[list[_Slot]]:
    """Barycenter sweeps down and up the layers; the order with the fewest crossings wins."""

    def total(candidate: list[list[_Slot]]) -> int:
        return sum(count_crossings(a, b, down) for a, b in itertools.pairwise(candidate))

    best = [list(layer) for layer in order]
    best_count = total(best)
    current = [list(layer) for layer in order]
    for sweep in range(sweeps):
        if best_count == 0:
            break
        if sweep % 2 == 0:
            for i in range(1, len(current)):
                _barycenter_sweep(current, up, i - 1, i)
        else:
            for i in range(len(current) - 2, -1, -1):
                _barycenter_sweep(current, down, i + 1, i)
        count = total(current)
        if count < best_count:
            best, best_count = [list(layer) for layer in current], count
    return best


@dataclass
class _Band:
    """One layer's place on the page: its top, height, and whether it wrapped into a grid."""

    top: float
    height: float
    columns: int  # nodes per row; 0 when the layer is one row with its lanes among the nodes
    rows: int
    lane_pitch: float  # from one lane to the next, for a grid's lanes at its right


@dataclass
class _Graph:
    """The graph as the steps below share it: layers, slots in order, links between slots."""

    layer_of: dict[str, int]
    order: list[list[_Slot]]
    down: dict[_Slot, list[_Slot]]
    up: dict[_Slot, list[_Slot]]
    chains: list[tuple[str, str, list[_Slot]]]  # per edge: source, virtual slots, target

    @property
    def members(self) -> list[set[_Slot]]:
        """The real nodes of each layer."""
        return [{s for s in slots if isinstance(s, str)} for slots in self.order]


def _graph(nodes: list[str], edges: list[tuple[str, str]]) -> _Graph:
    """Layers, a virtual slot per layer each edge skips, and the first order of each layer."""
    layer_of = layers_by_longest_path(nodes, edges)
    graph = _Graph(layer_of, [[] for _ in range(max(layer_of.values()) + 1)], {}, {}, [])
    for node in nodes:
        graph.order[layer_of[node]].append(node)
    for source, target in edges:
        chain: list[_Slot] = [source]
        for skipped in range(layer_of[source] + 1, layer_of[target]):
            virtual = _Virtual(skipped)
            graph.order[skipped].append(virtual)
            chain.append(virtual)
        chain.append(target)
        for a, b in itertools.pairwise(chain):
            graph.down.setdefault(a, []).append(b)
            graph.up.setdefault(b, []).append(a)
        graph.chains.append((source, target, chain))
    return graph


def layout(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]], geometry: Geometry | None = None
) -> Layout:
    """Lay out a DAG top to bottom. ``nodes`` in a stable order (it breaks ties, so the same
    graph is always drawn the same way); ``edges`` as (parent, child). Unknown nodes in an
    edge are a ``ValueError``, a cycle a :class:`CycleError`."""
    g = geometry or Geometry()
    nodes = list(dict.fromkeys(nodes))
    known = set(nodes)
    edges = list(dict.fromkeys(e for e in edges if e[0] != e[1]))
    for source, target in edges:
        if source not in known or target not in known:
            missing = source if source not in known else target
            raise ValueError(f"edge {source!r} → {target!r} names an unknown node {missing!r}")
    if not nodes:
        return Layout(g.margin * 2, g.margin * 2, {}, (), ())
    graph = _graph(nodes, edges)
    graph.order = order_layers(graph.order, graph.down, graph.up)
    bands, widths = _bands(graph.order, g)
    width = max(widths) + 2 * g.margin
    height = bands[-1].top + bands[-1].height + g.margin
    boxes, lane_x = _place(graph, bands, widths, width, g)
    # A frame around each grid of several nodes (a lone node wraps only to make room for
    # the lanes beside it).
    frames = {
        index: _frame(index, members, g)
        for index, slots in enumerate(graph.order)
        if bands[index].columns
        and len(members := [boxes[s] for s in slots if isinstance(s, str)]) > 1
    }
    routes = _routes(graph, boxes, lane_x, bands, frames, g)
    layers = tuple(tuple(s for s in slots if isinstance(s, str)) for slots in graph.order)
    return Layout(width, height, boxes, routes, layers, tuple(frames.values()))


def _bands(order: list[list[_Slot]], g: Geometry) -> tuple[list[_Band], list[float]]:
    """Each layer's band (a row, or a grid when one row would be wider than ``max_width``)
    and the width its content takes. A grid's lanes (long edges passing it) close up when
    there are so many that they would not fit beside one column."""
    usable = g.max_width - 2 * g.margin
    pitch = g.node_width + g.column_gap
    lane_pitch = g.lane_width + g.column_gap
    bands: list[_Band] = []
    widths: list[float] = []
    y = g.margin
    for slots in order:
        real = sum(1 for s in slots if isinstance(s, str))
        lanes = len(slots) - real
        one_row = real * pitch + lanes * lane_pitch - g.column_gap
        if one_row <= usable:
            bands.append(_Band(y, g.node_height, 0, 1, lane_pitch))
            widths.append(one_row)
        else:
            spacing = min(lane_pitch, (usable - pitch) / lanes) if lanes else lane_pitch
            room = usable - lanes * spacing
            columns = max(1, int((room + g.column_gap) // pitch))
            rows = -(-real // columns)
            height = rows * g.node_height + (rows - 1) * g.row_gap
            bands.append(_Band(y, height, columns, rows, spacing))
            widths.append(min(columns, real) * pitch - g.column_gap + lanes * spacing)
        y += bands[-1].height + g.layer_gap
    return bands, widths


def _place(
    graph: _Graph, bands: list[_Band], widths: list[float], width: float, g: Geometry
) -> tuple[dict[str, Box], dict[_Slot, float]]:
    """Boxes of the nodes and x of the lanes. A grid is centred in ``width``; a row's slots
    sit under the middle of their parents where the row leaves room (see :func:`_row_lefts`),
    so a branch hangs under the node it comes from."""
    pitch = g.node_width + g.column_gap
    boxes: dict[str, Box] = {}
    lane_x: dict[_Slot, float] = {}
    centre: dict[_Slot, float] = {}  # every slot placed so far: the x its edges meet
    for index, slots in enumerate(graph.order):
        band = bands[index]
        x = (width - widths[index]) / 2
        real = [s for s in slots if isinstance(s, str)]
        if band.columns == 0:  # one row, long edges' lanes among the nodes
            sizes = [g.node_width if isinstance(s, str) else g.lane_width for s in slots]
            lefts = _row_lefts(slots, sizes, graph.up, centre, x, width, g)
            column = 0
            for slot, left, size in zip(slots, lefts, sizes, strict=True):
                centre[slot] = left + size / 2
                if isinstance(slot, str):
                    boxes[slot] = Box(
                        left, band.top, g.node_width, g.node_height, slot, index, 0, column
                    )
                    column += 1
                else:
                    lane_x[slot] = centre[slot]
            continue
        for i, slot in enumerate(real):  # a grid, row by row, long edges' lanes at its right
            row, column = divmod(i, band.columns)
            top = band.top + row * (g.node_height + g.row_gap)
            boxes[slot] = Box(
                x + column * pitch, top, g.node_width, g.node_height, slot, index, row, column
            )
            centre[slot] = boxes[slot].top[0]
        lane = x + min(band.columns, len(real)) * pitch - g.column_gap  # the grid's right
        for slot in slots:
            if isinstance(slot, _Virtual):
                lane_x[slot] = centre[slot] = lane + band.lane_pitch / 2
                lane += band.lane_pitch
    return boxes, lane_x


def _row_lefts(
    slots: list[_Slot],
    sizes: list[float],
    up: dict[_Slot, list[_Slot]],
    centre: dict[_Slot, float],
    start: float,
    width: float,
    g: Geometry,
) -> list[float]:
    """Left edges of a row's slots, in order: each wants to be centred under the mean of its
    parents (a root keeps its place in the row packed from ``start``) and is pushed right past
    its left neighbour where they would overlap; the row is then moved inside the margins, or
    packed from ``start`` when the pushing made it too wide."""
    packed: list[float] = []
    lefts: list[float] = []
    for i, (slot, size) in enumerate(zip(slots, sizes, strict=True)):
        packed.append(packed[-1] + sizes[i - 1] + g.column_gap if packed else start)
        parents = [centre[p] for p in up.get(slot, ()) if p in centre]
        left = sum(parents) / len(parents) - size / 2 if parents else packed[-1]
        if lefts:
            left = max(left, lefts[-1] + sizes[i - 1] + g.column_gap)
        lefts.append(left)
    low, high = g.margin, width - g.margin
    if lefts[-1] + sizes[-1] - lefts[0] > high - low:
        return packed
    shift = min(0.0, high - (lefts[-1] + sizes[-1])) or max(0.0, low - lefts[0])
    return [x + shift for x in lefts]


def _routes(
    graph: _Graph,
    boxes: dict[str, Box],
    lane_x: dict[_Slot, float],
    bands: list[_Band],
    frames: dict[int, Frame],
    g: Geometry,
) -> tuple[Route, ...]:
    """A route per edge, except edges between a node and a whole grid, drawn as one bundle."""
    bundled: dict[tuple[int, str, str], list[tuple[str, str]]] = {}
    routes: list[Route] = []
    members = graph.members
    for source, target, chain in graph.chains:
        bundle = _bundle(source, target, graph, frames, members)
        if bundle is not None:
            bundled.setdefault(bundle, []).append((source, target))
        else:
            points = _route(chain, boxes, lane_x, bands, g)
            routes.append(Route(((source, target),), tuple(points)))
    for (layer, end, node), bundle_edges in bundled.items():
        if end == "in":  # from a node to every member of the grid below it
            ends = (boxes[node].bottom, frames[layer].top)
        elif end == "out":  # from every member of the grid to a node below it
            ends = (frames[layer].bottom, boxes[node].top)
        else:  # from every member of a grid to every member of the grid below it
            ends = (frames[layer].bottom, frames[layer + 1].top)
        routes.append(Route(tuple(bundle_edges), ends))
    return tuple(routes)


def _frame(layer: int, members: list[Box], g: Geometry) -> Frame:
    """The outline of a grid: its boxes' extent and a little room, inside the gutters."""
    pad = g.column_gap / 2 - 3
    left = min(b.x for b in members) - pad
    top = min(b.y for b in members) - pad
    right = max(b.x + b.width for b in members) + pad
    bottom = max(b.y + b.height for b in members) + pad
    return Frame(left, top, right - left, bottom - top, layer)


def _bundle(
    source: str, target: str, graph: _Graph, frames: dict[int, Frame], members: list[set[_Slot]]
) -> tuple[int, str, str] | None:
    """The bundle an edge is drawn in, between adjacent layers: a node to a grid whose every
    member is its child ("in"), a grid whose every member is the node's parent to the node
    ("out"), or a grid to a grid, every member of one the parent of every member of the other
    ("across"); None when it is drawn on its own."""
    above, below = graph.layer_of[source], graph.layer_of[target]
    if below != above + 1:
        return None
    into, out_of = below in frames, above in frames
    if into and members[below] <= set(graph.down[source]):
        if not out_of:
            return (below, "in", source)
        if all(members[below] <= set(graph.down.get(member, ())) for member in members[above]):
            return (above, "across", "")
    if out_of and not into and members[above] <= set(graph.up[target]):
        return (above, "out", target)
    return None


def _route(
    chain: list[_Slot],
    boxes: dict[str, Box],
    lane_x: dict[_Slot, float],
    bands: list[_Band],
    g: Geometry,
) -> list[Point]:
    """The points of one edge's path along its chain of slots."""
    points: list[Point] = []
    source, target = chain[0], chain[-1]
    assert isinstance(source, str) and isinstance(target, str)
    box = boxes[source]
    band = bands[box.layer]
    points.append(box.bottom)
    if band.columns and box.row < band.rows - 1:
        # Out of a grid from an upper row: down to the channel below, right to the gutter,
        # down the gutter to the grid's bottom.
        channel = box.y + g.node_height + g.row_gap / 2
        gutter = box.x + g.node_width + g.column_gap / 2
        points += [(box.bottom[0], channel), (gutter, channel), (gutter, band.top + band.height)]
    for virtual in chain[1:-1]:
        assert isinstance(virtual, _Virtual)
        passed = bands[virtual.layer]
        x = lane_x[virtual]
        points += [(x, passed.top), (x, passed.top + passed.height)]
    box = boxes[target]
    band = bands[box.layer]
    if band.columns and box.row > 0:
        # Into a grid's lower row: down the gutter left of the target to the channel above
        # its row, then across to it.
        channel = box.y - g.row_gap / 2
        gutter = box.x - g.column_gap / 2
        points += [(gutter, band.top), (gutter, channel), (box.top[0], channel)]
    points.append(box.top)
    return points
