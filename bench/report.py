"""Figures and how they are printed: an aligned text table, or Markdown for docs/benchmarks.md."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    section: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """Median, with the range when there are several measurements."""
    mid = fmt.format(median(values))
    if len(values) < 2:
        return mid
    return f"{mid} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render(figures: Sequence[Figure], machine: Sequence[tuple[str, str]], markdown: bool) -> str:
    header = ("benchmark", "figure", "measured", "target", "")
    rows = [(f.section, f.name, f.value, f.target, verdict(f.met)) for f in figures]
    if markdown:
        env = markdown_table(("machine", ""), machine)
        return f"{env}\n\n{markdown_table(header, rows)}\n"
    env = "\n".join(f"{k:>10}: {v}" for k, v in machine)
    return f"{env}\n\n{text_table(header, rows)}\n"
