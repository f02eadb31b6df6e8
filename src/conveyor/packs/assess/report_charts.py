"""The report's charts as standalone SVG, drawn in Python.

The same SVG text goes into the HTML report (inline) and into the PDF (fpdf2 draws SVG
itself), so the charts use only what both understand: ``rect``, ``line``, ``polyline``,
``polygon`` and ``text`` with presentation attributes (no CSS classes, no scripts), left-aligned
labels, and a ``<title>`` per bar for the browser's tooltip. A chart without data says so
(:attr:`SvgChart.available` is False and the SVG holds the sentence) instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from markupsafe import Markup

__all__ = [
    "SEVERITY_COLOURS",
    "SvgChart",
    "bar_chart",
    "fan_chart",
    "gpu_chart",
    "money",
    "unavailable",
]

WIDTH = 720
LABEL_W = 200  # the label column; bars start after it
VALUE_W = 110  # room for the figure after the longest bar
ROW_H = 22
BAR_H = 14
FONT = 'font-family="Helvetica, Arial, sans-serif"'
TEXT = "#1f2933"
MUTED = "#616e7c"
AXIS = "#dfe3e8"
ACCENT = "#2563eb"
ACCENT_LIGHT = "#bfdbfe"
MAX_ROWS = 14

SEVERITY_COLOURS: dict[str, str] = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#f59e0b",
    "low": "#2563eb",
    "info": "#9ca3af",
}


@dataclass(frozen=True)
class SvgChart:
    """One chart: its title, the SVG document, whether it has data, and a one-line note."""

    key: str
    title: str
    svg: Markup
    available: bool
    note: str = ""


def _text(x: float, y: float, text: str, size: int = 12, fill: str = TEXT) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" {FONT} fill="{fill}">'
        f"{escape(text)}</text>"
    )


def _hline(x1: float, x2: float, y: float, stroke: str = AXIS, extra: str = "") -> str:
    return f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{stroke}"{extra}/>'


def _svg(height: float, body: Sequence[str], label: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{escape(label)}">'
        + "".join(body)
        + "</svg>"
    )


def _clip(label: str, limit: int = 30) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def unavailable(key: str, title: str, why: str) -> SvgChart:
    """A placeholder chart: the title and the sentence saying why there is no data."""
    body = [
        f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="59" fill="#f9fafb" stroke="{AXIS}"/>',
        _text(16, 35, f"Not available: {why}", 13, MUTED),
    ]
    return SvgChart(key, title, _svg(60, body, f"{title}: not available"), False, why)


@dataclass(frozen=True)
class Row:
    """One bar: its label, length (value), the figure printed after it, and its colour."""

    label: str
    value: float
    figure: str
    colour: str = ACCENT


def bar_chart(
    key: str,
    title: str,
    rows: Sequence[Row],
    empty: str,
    note: str = "",
    figure: Callable[[float], str] = lambda v: f"{v:,.0f}",
) -> SvgChart:
    """Horizontal bars, in the order given; past :data:`MAX_ROWS` the rest are one row, its
    figure written by ``figure``."""
    rows = [r for r in rows if r.value >= 0]
    if not rows or max(r.value for r in rows) <= 0:
        return unavailable(key, title, empty)
    if len(rows) > MAX_ROWS:
        rest = rows[MAX_ROWS - 1 :]
        total = sum(r.value for r in rest)
        rows = [*rows[: MAX_ROWS - 1], Row(f"{len(rest)} others", total, figure(total), MUTED)]
    top = max(r.value for r in rows)
    span = WIDTH - LABEL_W - VALUE_W
    body: list[str] = []
    for i, row in enumerate(rows):
        y = i * ROW_H + 4
        w = max(span * row.value / top, 1.0 if row.value else 0.0)
        tip = f"{row.label}: {row.figure}"
        body.append(_text(0, y + 11, _clip(row.label)))
        body.append(
            f'<rect x="{LABEL_W}" y="{y:.1f}" width="{w:.1f}" height="{BAR_H}" '
            f'fill="{row.colour}"><title>{escape(tip)}</title></rect>'
        )
        body.append(_text(LABEL_W + w + 6, y + 11, row.figure, 11, MUTED))
    height = len(rows) * ROW_H + 8
    body.append(f'<line x1="{LABEL_W}" y1="0" x2="{LABEL_W}" y2="{height - 4}" stroke="{AXIS}"/>')
    return SvgChart(key, title, _svg(height, body, title), True, note)


@dataclass(frozen=True)
class GpuGroup:
    """Utilisation of one group of GPU instances, in percent."""

    label: str
    p50: float
    p95: float
    instances: int


def gpu_chart(groups: Sequence[GpuGroup], note: str = "") -> SvgChart:
    """p95 (light) with p50 (dark) inside it, per GPU group, on a 0 to 100 % scale."""
    key, title = "gpu", "GPU utilisation (p50 / p95)"
    if not groups:
        return unavailable(key, title, "no GPU instances with utilisation figures")
    groups = list(groups)[:MAX_ROWS]
    span = WIDTH - LABEL_W - VALUE_W
    body: list[str] = []
    for i, g in enumerate(groups):
        y = i * ROW_H + 4
        p50, p95 = (min(max(v, 0.0), 100.0) for v in (g.p50, g.p95))
        tip = f"{g.label}: p50 {p50:.0f} %, p95 {p95:.0f} % ({g.instances} instances)"
        body.append(_text(0, y + 11, _clip(g.label)))
        body.append(
            f'<rect x="{LABEL_W}" y="{y:.1f}" width="{span * p95 / 100:.1f}" height="{BAR_H}" '
            f'fill="{ACCENT_LIGHT}"><title>{escape(tip)}</title></rect>'
        )
        body.append(
            f'<rect x="{LABEL_W}" y="{y + 3:.1f}" width="{span * p50 / 100:.1f}" '
            f'height="{BAR_H - 6}" fill="{ACCENT}"><title>{escape(tip)}</title></rect>'
        )
        body.append(_text(LABEL_W + span + 6, y + 11, f"{p50:.0f} / {p95:.0f} %", 11, MUTED))
    height = len(groups) * ROW_H + 8
    for pct in (0, 50, 100):
        x = LABEL_W + span * pct / 100
        body.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 4}" stroke="{AXIS}"/>')
    return SvgChart(key, title, _svg(height, body, title), True, note)


FAN_H = 220
FAN_TOP = 16
FAN_LEFT = 70
FAN_BOTTOM = 28
FAN_RIGHT = 24  # room for the last month's label


def fan_chart(
    months: Sequence[str],
    bands: Mapping[str, Sequence[float]],
    budget: float | None = None,
    note: str = "",
) -> SvgChart:
    """The simulation's fan: p5 to p95 (light) and p25 to p75 (darker) bands, the median line, and
    the monthly budget as a dashed line. ``bands`` maps ``p5``…``p95`` to one value a month."""
    key, title = "fan", "Projected monthly cost (p5 to p95 band, 12 months)"
    names = ("p5", "p25", "p50", "p75", "p95")
    n = len(months)
    if n < 2 or any(len(bands.get(p, ())) != n for p in names):
        return unavailable(key, title, "no simulation percentiles per month")
    top = max(max(bands["p95"]), budget or 0.0) * 1.08 or 1.0
    # The scale starts at zero unless everything sits high above it (a flat-looking fan).
    low = min(min(bands["p5"]), budget if budget else float("inf"))
    bottom = low * 0.85 if low > 0.4 * top else 0.0
    plot_w = WIDTH - FAN_LEFT - FAN_RIGHT
    plot_h = FAN_H - FAN_TOP - FAN_BOTTOM

    def x(i: int) -> float:
        return FAN_LEFT + plot_w * i / (n - 1)

    def y(v: float) -> float:
        return FAN_TOP + plot_h * (1 - (max(v, bottom) - bottom) / (top - bottom))

    def band(lo: str, hi: str, fill: str) -> str:
        upper = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(bands[hi])]
        lower = [f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(bands[lo])))]
        return f'<polygon points="{" ".join(upper + lower)}" fill="{fill}" stroke="none"/>'

    body: list[str] = []
    for frac in (0.0, 0.5, 1.0):
        v = bottom + (top - bottom) * frac
        body.append(_hline(FAN_LEFT, WIDTH - FAN_RIGHT, y(v)))
        body.append(_text(0, y(v) + 4, _money(v), 11, MUTED))
    body.append(band("p5", "p95", "#dbeafe"))
    body.append(band("p25", "p75", "#93c5fd"))
    median = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(bands["p50"]))
    body.append(f'<polyline points="{median}" fill="none" stroke="#1d4ed8" stroke-width="2"/>')
    if budget:
        dashed = ' stroke-width="1.5" stroke-dasharray="6 4"'
        body.append(_hline(FAN_LEFT, WIDTH - FAN_RIGHT, y(budget), "#b91c1c", dashed))
        body.append(_text(FAN_LEFT + 4, y(budget) - 4, f"budget {_money(budget)}", 11, "#b91c1c"))
    every = max(1, n // 12)
    for i, label in enumerate(months):
        if i % every == 0:
            body.append(_text(x(i) - 8, FAN_H - 8, label, 11, MUTED))
    for i in range(n):
        tip = ", ".join(f"{p} {_money(bands[p][i])}" for p in names)
        body.append(
            f'<rect x="{x(i) - 3:.1f}" y="{y(bands["p95"][i]):.1f}" width="6" '
            f'height="{max(y(bands["p5"][i]) - y(bands["p95"][i]), 1):.1f}" fill="#1d4ed8" '
            f'fill-opacity="0"><title>{escape(months[i])}: {escape(tip)}</title></rect>'
        )
    return SvgChart(key, title, _svg(FAN_H, body, title), True, note)


def money(value: float | None) -> str:
    """``12345.6`` → ``$12,346``; None → an em dash (the report's one way to write USD)."""
    return "—" if value is None else f"${value:,.0f}"


def _money(v: float) -> str:
    """Short USD for an axis: ``$950``, ``$12k``, ``$1.2M``."""
    if abs(v) >= 1_000_000:
        return f"${v / 1_000_000:,.1f}M"
    if abs(v) >= 10_000:
        return f"${v / 1_000:,.0f}k"
    return f"${v:,.0f}"
