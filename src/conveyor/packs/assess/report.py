"""The assessment report: one standalone HTML document, a PDF of it, and the JSON.

:func:`render_html` writes a self-contained page (inline CSS in the dashboard's look, inline
SVG charts, printable); :func:`render_pdf` lays the same content out with fpdf2, embedding the
same SVG charts; :func:`render_json` is the machine-readable form. All three take an
:class:`AssessmentView` (what the report says about the assessment itself), the
:class:`~conveyor.packs.assess.synthesis.Synthesis` and the analyzers' results.

The charts read the analyzers' ``metrics`` (see :func:`charts`); a metric that is missing or
malformed gives a chart that says "not available", never an error.

The PDF uses fpdf2's core fonts (Helvetica), which cover Windows-1252 only: text outside it is
transliterated (``→`` becomes ``->``, accents are dropped, anything else becomes ``?``), so no
font file is bundled.
"""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict

from conveyor.errors import ConveyorError
from conveyor.packs.assess.analyzers import ANALYZERS, Analyzer
from conveyor.packs.assess.errors import InventoryError
from conveyor.packs.assess.findings import SEVERITIES, AnalyzerResult
from conveyor.packs.assess.inventory import Inventory, load_inventory
from conveyor.packs.assess.report_charts import (
    SEVERITY_COLOURS,
    GpuGroup,
    Row,
    SvgChart,
    bar_chart,
    fan_chart,
    gpu_chart,
    money,
)
from conveyor.packs.assess.synthesis import Synthesis

__all__ = [
    "AssessmentView",
    "charts",
    "render_html",
    "render_json",
    "render_pdf",
    "report_context",
]

TEMPLATES = Path(__file__).parent / "templates"


class AssessmentView(BaseModel):
    """What the report says about the assessment: who, when, and the inventory in figures."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created: datetime
    organisation: str = ""
    instances: int = 0
    gpus: int = 0
    workloads: int = 0
    datasets: int = 0
    monthly_budget_usd: float | None = None
    frameworks: list[str] = []
    regions: list[str] = []

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AssessmentView:
        """The view of an assessment row (``id``, ``name``, ``created_at``, ``inventory`` as
        stored JSON). An inventory that no longer validates gives a view without figures."""
        created = row["created_at"]
        try:
            inventory = load_inventory(json.dumps(row["inventory"]), "inventory.json")
        except (InventoryError, TypeError, ValueError):
            return cls(id=str(row["id"]), name=str(row["name"]), created=created)
        return cls.from_inventory(str(row["id"]), str(row["name"]), created, inventory)

    @classmethod
    def from_inventory(
        cls, id: str, name: str, created: datetime, inventory: Inventory
    ) -> AssessmentView:
        """The view of an assessment of ``inventory``."""
        instances = inventory.compute.instances
        return cls(
            id=id,
            name=name,
            created=created,
            organisation=inventory.organisation.name,
            instances=len(instances),
            gpus=sum(i.gpu.count for i in instances if i.gpu),
            workloads=len(inventory.workloads),
            datasets=len(inventory.storage.datasets),
            monthly_budget_usd=inventory.budget.monthly_usd,
            frameworks=list(inventory.compliance.frameworks),
            regions=sorted({i.region for i in instances}),
        )


# --- figures from the analyzers' metrics ------------------------------------------------------


def _metric(results: Sequence[AnalyzerResult], sources: Sequence[tuple[str, str]]) -> Any:
    """The first present ``metrics[key]`` of an ok result, trying ``(analyzer, key)`` in order."""
    ok = {r.analyzer: r for r in results if r.status == "ok"}
    for analyzer, key in sources:
        result = ok.get(analyzer)
        if result is not None and result.metrics.get(key) is not None:
            return result.metrics[key]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def _named_amounts(value: Any, name_keys: Sequence[str], amount_keys: Sequence[str]) -> list[Row]:
    """``{name: amount}`` or ``[{name…: , amount…: }]`` as rows, largest first."""
    pairs: list[tuple[str, float]] = []
    if isinstance(value, Mapping):
        items = [(str(k), _number(v)) for k, v in value.items()]
        pairs = [(k, v) for k, v in items if v is not None]
    elif isinstance(value, list):
        for item in value:
            if not isinstance(item, Mapping):
                continue
            name = next((str(item[k]) for k in name_keys if item.get(k) is not None), None)
            amount = next((_number(item[k]) for k in amount_keys if k in item), None)
            if name is not None and amount is not None:
                pairs.append((name, amount))
    pairs.sort(key=lambda p: (-p[1], p[0]))
    return [Row(name, amount, per_month(amount)) for name, amount in pairs]


def per_month(amount: float) -> str:
    """``12345.6`` → ``$12,346/mo``."""
    return f"${amount:,.0f}/mo"


SERVICE_COST = (("cloud_engineer", "by_service"), ("cto", "by_service"))
TYPE_COST = (("cloud_engineer", "by_type"),)
GPU_SOURCES = (("cloud_engineer", "gpu_utilisation"), ("infrastructure", "gpu_utilisation"))
FAN_SOURCES = (("simulation", "cost_percentiles"),)


def _gpu_groups(value: Any) -> list[GpuGroup]:
    """Per-instance rows ``{"gpu", "count", "p50", "p95"}`` grouped by GPU model: p50 and p95
    averaged over the group's GPUs (weighted by count); rows without figures are left out."""
    if not isinstance(value, list):
        return []
    sums: dict[str, list[float]] = {}  # model → [gpus, sum p50*gpus, sum p95*gpus, instances]
    for item in value:
        if not isinstance(item, Mapping):
            continue
        model = item.get("gpu") or item.get("group")
        p50, p95 = _number(item.get("p50")), _number(item.get("p95"))
        count = _number(item.get("count")) or 1.0
        if not isinstance(model, str) or p50 is None or p95 is None or count <= 0:
            continue
        acc = sums.setdefault(model, [0.0, 0.0, 0.0, 0.0])
        acc[0] += count
        acc[1] += p50 * count
        acc[2] += p95 * count
        acc[3] += 1
    groups = [
        GpuGroup(f"{model} ({int(n)} inst., {int(gpus)} GPUs)", p50 / gpus, p95 / gpus, int(n))
        for model, (gpus, p50, p95, n) in sums.items()
    ]
    groups.sort(key=lambda g: (-g.instances, g.label))
    return groups


def _fan(percentiles: Any, months_raw: Any, budget_metric: Any, budget: float | None) -> SvgChart:
    if not isinstance(percentiles, Mapping):
        return fan_chart([], {})
    n = len(percentiles.get("p50") or [])
    months = [f"M{m}" for m in months_raw] if isinstance(months_raw, list) else []
    if len(months) != n:
        months = [f"M{i + 1}" for i in range(n)]
    bands: dict[str, list[float]] = {}
    for p in ("p5", "p25", "p50", "p75", "p95"):
        seq = percentiles.get(p)
        numbers = [_number(v) for v in seq] if isinstance(seq, list) else []
        if len(numbers) != n or any(v is None for v in numbers):
            return fan_chart([], {})
        bands[p] = [v for v in numbers if v is not None]
    stated = _number(budget_metric)
    return fan_chart(months, bands, stated if stated is not None else budget)


def _cost_chart(key: str, title: str, value: Any, empty: str) -> SvgChart:
    rows = _named_amounts(value, ("name", "service", "type"), ("monthly_usd",))
    note = f"${sum(r.value for r in rows):,.0f} a month in total" if rows else ""
    return bar_chart(key, title, rows, empty, note, per_month)


def charts(
    assessment: AssessmentView, synthesis: Synthesis, results: Sequence[AnalyzerResult]
) -> list[SvgChart]:
    """The report's charts, from these metrics (the first analyzer that has them wins):

    - cost by service and by instance type: ``cloud_engineer`` ``metrics["by_service"]`` and
      ``["by_type"]``, ``{name: monthly USD}`` (a list of ``{"name", "monthly_usd"}`` works too);
    - GPU utilisation: ``cloud_engineer`` (else ``infrastructure``) ``metrics["gpu_utilisation"]``,
      one row per instance ``{"gpu": model, "count": GPUs, "p50": %, "p95": %}``, grouped here
      by GPU model;
    - the fan: ``simulation`` ``metrics["cost_percentiles"]`` (``{"p5": [one value a month],
      …, "p95": […]}``) with ``["months"]`` and the budget line from ``["budget_usd"]`` (else the
      inventory's budget);
    - recommendations by severity: the synthesis.
    """
    by_service = _cost_chart(
        "cost",
        "Monthly cost by service",
        _metric(results, SERVICE_COST),
        "the cloud engineer reported no cost by service",
    )
    by_type = _cost_chart(
        "cost-type",
        "Monthly cost by instance type",
        _metric(results, TYPE_COST),
        "the cloud engineer reported no cost by instance type",
    )
    gpu = gpu_chart(_gpu_groups(_metric(results, GPU_SOURCES)))
    fan = _fan(
        _metric(results, FAN_SOURCES),
        _metric(results, (("simulation", "months"),)),
        _metric(results, (("simulation", "budget_usd"),)),
        assessment.monthly_budget_usd,
    )
    severity_rows = [
        Row(s, float(synthesis.by_severity.get(s, 0)), str(synthesis.by_severity.get(s, 0)), c)
        for s in reversed(SEVERITIES)
        for c in (SEVERITY_COLOURS[s],)
    ]
    severity = bar_chart(
        "severity",
        "Recommendations by severity",
        severity_rows,
        "no findings",
        f"{len(synthesis.recommendations)} recommendations from "
        f"{synthesis.findings_total} findings",
    )
    return [by_service, by_type, gpu, fan, severity]


# --- HTML -------------------------------------------------------------------------------------


def _scalar_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The metrics worth a line in the per-analyzer facts: scalars, in the analyzer's order."""
    out: list[tuple[str, str]] = []
    for key, value in metrics.items():
        if isinstance(value, bool | str):
            out.append((key.replace("_", " "), str(value)[:120]))
        elif (number := _number(value)) is not None:
            shown = f"{number:,.0f}" if number.is_integer() else f"{number:,.2f}"
            out.append((key.replace("_", " "), shown))
    return out[:16]


def _known() -> dict[str, Analyzer]:
    """The registry and the configured extra analyzers (``CONVEYOR_ASSESS_EXTRA_ANALYZERS``),
    for their roles; the registry alone when that setting is broken (the report still comes)."""
    from conveyor.packs.assess.config import analyzers

    try:
        return analyzers()
    except ConveyorError:
        return dict(ANALYZERS)


def _role(name: str) -> str:
    analyzer = _known().get(name)
    return analyzer.role if analyzer else name


def _sections(synthesis: Synthesis, results: Sequence[AnalyzerResult]) -> list[dict[str, Any]]:
    """One section per analyzer, in the registry's order, the missing ones too."""
    latest = {r.analyzer: r for r in results}
    names = [n for n in ANALYZERS if n in latest or n in synthesis.missing]
    names += [n for n in latest if n not in names]
    sections = []
    for name in names:
        result = latest.get(name)
        order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
        sections.append(
            {
                "name": name,
                "role": _role(name),
                "status": result.status if result else synthesis.missing_status.get(name, "absent"),
                "result": result,
                "findings": sorted(result.findings, key=lambda f: order[f.severity])
                if result
                else [],
                "facts": _scalar_metrics(result.metrics) if result else [],
            }
        )
    return sections


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def report_context(
    assessment: AssessmentView, synthesis: Synthesis, results: Sequence[AnalyzerResult]
) -> dict[str, Any]:
    """What ``assess_report_body.html`` reads (the dashboard's report page renders it too)."""
    return {
        "a": assessment,
        "s": synthesis,
        "charts": charts(assessment, synthesis, results),
        "sections": _sections(synthesis, results),
        "roles": {name: _role(name) for name in [*_known(), *synthesis.missing]},
        "colours": SEVERITY_COLOURS,
        "money": money,
        "created": assessment.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def render_html(
    assessment: AssessmentView, synthesis: Synthesis, results: list[AnalyzerResult]
) -> str:
    """The report as one standalone HTML document (inline CSS and SVG, nothing to fetch)."""
    template = _environment().get_template("assess_report_document.html")
    return template.render(**report_context(assessment, synthesis, results))


def render_json(
    assessment: AssessmentView, synthesis: Synthesis, results: list[AnalyzerResult]
) -> str:
    """The report's content as JSON: the assessment, the synthesis and every result."""
    doc = {
        "assessment": assessment.model_dump(mode="json"),
        "synthesis": synthesis.model_dump(mode="json"),
        "results": [r.model_dump(mode="json") for r in results],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


# --- PDF --------------------------------------------------------------------------------------

_ASCII = {
    "→": "->",
    "←": "<-",
    "≤": "<=",
    "≥": ">=",
    "≈": "~",
    "\u00d7": "x",  # multiplication sign
    "\u2212": "-",  # minus sign
    "✓": "v",
    "✗": "x",
    "\u00a0": " ",
    "\u0141": "L",  # L with stroke: no decomposition
    "\u0142": "l",
}


def pdf_text(text: str) -> str:
    """``text`` in the Windows-1252 range of the core fonts: known symbols spelled out,
    accents dropped, control and format characters removed, anything else as ``?``."""
    out = []
    for ch in text:
        if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf"):
            continue
        if ch in _ASCII:
            out.append(_ASCII[ch])
            continue
        try:
            ch.encode("cp1252")
            out.append(ch)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(base or "?")
    return "".join(out)


def render_pdf(
    assessment: AssessmentView, synthesis: Synthesis, results: list[AnalyzerResult]
) -> bytes:
    """The report as PDF (A4): the same sections and SVG charts as the HTML."""
    from conveyor.packs.assess.report_pdf import ReportPdf

    ctx = report_context(assessment, synthesis, results)
    pdf = ReportPdf(pdf_text)
    pdf.render(ctx)
    buffer = io.BytesIO()
    pdf.output(buffer)
    return buffer.getvalue()
