"""Bar charts as SVG geometry, computed in Python and drawn by ``templates/charts.html``.

No chart library and no script: the overview's charts are server-rendered like the rest of the
dashboard, each bar carrying a ``<title>`` so hovering shows its figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from conveyor.ledger.stats import Bucket

WIDTH = 720
HEIGHT = 160
GAP = 1.0


@dataclass(frozen=True)
class Bar:
    """One rectangle: position, size, the CSS class that colours it, and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass
class Chart:
    """Everything a template needs to draw one chart."""

    title: str
    bars: list[Bar] = field(default_factory=list)
    y_max: str = "0"
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    legend: tuple[tuple[str, str], ...] = ()
    width: int = WIDTH
    height: int = HEIGHT
    empty: bool = True


def _label(start: datetime, width: timedelta) -> str:
    """A bar's start in UTC, as the rest of the dashboard writes times."""
    at = start.astimezone(UTC)
    return at.strftime("%a %H:%M" if width >= timedelta(hours=1) else "%H:%M")


def _x_labels(buckets: Sequence[Bucket], width: timedelta, slot: float) -> list[tuple[float, str]]:
    every = max(1, len(buckets) // 6)
    return [
        (i * slot, _label(b.start, width))
        for i, b in enumerate(buckets)
        if i % every == 0 and i + every // 2 < len(buckets)
    ]


THROUGHPUT_SERIES = (
    ("succeeded", "bar-succeeded"),
    ("failed", "bar-failed"),
    ("dead", "bar-dead"),
    ("cancelled", "bar-cancelled"),
)


def throughput_chart(buckets: Sequence[Bucket], width: timedelta) -> Chart:
    """Finished jobs per bucket, stacked by outcome."""
    chart = Chart(
        "Finished jobs",
        legend=tuple((name, css) for name, css in THROUGHPUT_SERIES),
    )
    if not buckets:
        return chart
    slot = WIDTH / len(buckets)
    peak = max(sum(b.counts.get(s, 0) for s, _ in THROUGHPUT_SERIES) for b in buckets)
    chart.y_max = f"{peak:,}"
    chart.x_labels = _x_labels(buckets, width, slot)
    chart.empty = peak == 0
    for i, b in enumerate(buckets):
        y = float(HEIGHT)
        tip = ", ".join(f"{b.counts.get(s, 0):,} {s}" for s, _ in THROUGHPUT_SERIES)
        tip = f"{_label(b.start, width)}: {tip}; {b.counts.get('submitted', 0):,} submitted"
        for series, css in THROUGHPUT_SERIES:
            n = b.counts.get(series, 0)
            if not n:
                continue
            h = HEIGHT * n / peak
            y -= h
            chart.bars.append(Bar(i * slot, y, max(slot - GAP, 0.5), h, css, tip))
    return chart


def failure_chart(buckets: Sequence[Bucket], width: timedelta) -> Chart:
    """Share of finished jobs that failed or went dead, per bucket."""
    chart = Chart("Failure rate", legend=(("failed or dead", "bar-failed"),))
    if not buckets:
        return chart
    slot = WIDTH / len(buckets)
    rates = [b.failure_rate for b in buckets]
    peak = max((r for r in rates if r is not None), default=0.0)
    top = max(peak, 0.05)  # a flat 0-5 % scale when nearly everything succeeds
    chart.y_max = f"{top:.0%}"
    chart.x_labels = _x_labels(buckets, width, slot)
    chart.empty = all(r is None for r in rates)
    for i, (b, rate) in enumerate(zip(buckets, rates, strict=True)):
        if rate is None:
            continue
        h = max(HEIGHT * rate / top, 1.0 if rate else 0.0)
        tip = f"{_label(b.start, width)}: {rate:.1%} of {b.finished:,} finished jobs failed"
        chart.bars.append(Bar(i * slot, HEIGHT - h, max(slot - GAP, 0.5), h, "bar-failed", tip))
    return chart
