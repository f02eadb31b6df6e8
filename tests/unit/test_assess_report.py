"""The assess pack's report: standalone HTML with SVG charts, the PDF of it, and the JSON."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conveyor.packs.assess import report
from conveyor.packs.assess.analyzers import ANALYZERS, no_progress
from conveyor.packs.assess.findings import AnalyzerResult, Finding
from conveyor.packs.assess.inventory import load_inventory
from conveyor.packs.assess.report import (
    AssessmentView,
    charts,
    pdf_text,
    render_html,
    render_json,
    render_pdf,
)
from conveyor.packs.assess.synthesis import synthesize

EXAMPLES = Path(report.__file__).parent / "data" / "examples"
VIEW = AssessmentView(
    id="0190-assessment",
    name="Lumen → EU",
    created=datetime(2026, 12, 5, 11, 0, tzinfo=UTC),
    organisation="Lumen Labs",
    instances=3,
    gpus=16,
    workloads=2,
    datasets=1,
    monthly_budget_usd=50_000,
    frameworks=["GDPR"],
    regions=["eu-west-1"],
)
MONTHS = list(range(1, 13))


def result(analyzer: str, metrics: dict[str, Any], *findings: Finding) -> AnalyzerResult:
    return AnalyzerResult(
        analyzer=analyzer,
        status="ok",
        duration_s=1.5,
        findings=list(findings),
        metrics=metrics,
        summary=f"{analyzer} looked at everything.",
    )


def finding(analyzer: str, code: str, severity: Any, saving: float | None = None) -> Finding:
    return Finding(
        analyzer=analyzer,
        code=code,
        title=f"Título ≥ {code}",  # non-Latin-1 text must survive the PDF
        severity=severity,
        evidence=["compute.instances[0]"],
        recommendation="Do the thing → save money.",
        monthly_saving_usd=saving,
        rule="GDPR Art. 32(1)(a)" if code.startswith("gdpr") else None,
    )


def full_results() -> list[AnalyzerResult]:
    fan = {f"p{p}": [40_000 + p * 100 + m * 1_000 for m in MONTHS] for p in (5, 25, 50, 75, 95)}
    return [
        result(
            "cloud_engineer",
            {
                "by_service": {"chat": 30_000.0, "embed": 5_000.0, "(unassigned)": 700.0},
                "by_type": {"p5.48xlarge": 30_000.0, "g5.xlarge": 5_700.0},
                "gpu_utilisation": [
                    {"id": "a", "gpu": "H100-SXM", "count": 8, "p50": 40.0, "p95": 80.0},
                    {"id": "b", "gpu": "H100-SXM", "count": 8, "p50": 20.0, "p95": 60.0},
                    {"id": "c", "gpu": "A10G", "count": 1, "p50": None, "p95": None},
                ],
                "total_monthly_usd": 35_700.0,
                "price_table_date": "2026-10-01",
            },
            finding("cloud_engineer", "cost.idle-gpu", "high", 4_000),
        ),
        result(
            "simulation",
            {"months": MONTHS, "cost_percentiles": fan, "budget_usd": 50_000},
            finding("simulation", "forecast.budget-breach", "medium"),
        ),
        result("compliance", {}, finding("compliance", "gdpr.encryption", "critical")),
    ]


class Tags(HTMLParser):
    """Counts start tags and checks every opened element (but void ones) is closed."""

    VOID = {"meta", "br", "rect", "line", "polyline", "polygon", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.count: dict[str, int] = {}
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.count[tag] = self.count.get(tag, 0) + 1
        self.ids.update(v for k, v in attrs if k == "id" and v)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.count[tag] = self.count.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    tags.close()
    assert tags.stack == [], f"unclosed: {tags.stack}"
    return tags


def test_html_is_a_standalone_document_with_every_chart() -> None:
    results = full_results()
    synthesis = synthesize(results, ["cloud_engineer", "simulation", "compliance"])
    html = render_html(VIEW, synthesis, results)
    assert html.startswith("<!doctype html>")
    tags = parse(html)
    assert tags.count["svg"] == 5
    assert tags.count.get("script", 0) == 0 and tags.count.get("link", 0) == 0  # nothing fetched
    assert {"chart-cost", "chart-cost-type", "chart-gpu", "chart-fan", "chart-severity"} <= tags.ids
    assert "partial-banner" not in tags.ids
    assert "Not available" not in html
    assert 'data-available="no"' not in html
    # Figures: the service bars, the grouped GPU row (16 GPUs, p50 (40*8+20*8)/16 = 30 %),
    # the budget line, the ranked recommendations with their rule, the escaped name.
    assert "$30,000/mo" in html
    assert "H100-SXM (2 inst., 16 GPUs)" in html and "30 / 70 %" in html
    assert "budget $50k" in html
    assert "GDPR Art. 32(1)(a)" in html
    assert "Lumen → EU" in html
    assert html.index("gdpr.encryption") < html.index("cost.idle-gpu")  # critical first
    assert "$4,000 / month" in html  # the total saving


def test_each_chart_is_well_formed_svg() -> None:
    results = full_results()
    synthesis = synthesize(results, ["cloud_engineer", "simulation", "compliance"])
    for chart in charts(VIEW, synthesis, results):
        root = ET.fromstring(str(chart.svg))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert chart.available, chart.key


@pytest.mark.parametrize(
    "metrics",
    [
        {},
        {"by_service": "lots", "by_type": [1, 2], "gpu_utilisation": {"x": 1}},
        {"by_service": {"a": float("nan"), "b": "12"}, "gpu_utilisation": [{"gpu": 3}]},
        {"by_service": {"a": -5.0}, "gpu_utilisation": [None, "x", {"gpu": "H100", "p50": 1}]},
    ],
)
def test_missing_or_malformed_metrics_say_not_available(metrics: dict[str, Any]) -> None:
    results = [
        result("cloud_engineer", metrics),
        result("simulation", {"cost_percentiles": {"p5": [1, 2], "p50": [1]}, "months": "x"}),
    ]
    synthesis = synthesize(results, ["cloud_engineer", "simulation"])
    shown = {c.key: c for c in charts(VIEW, synthesis, results)}
    for key in ("cost", "cost-type", "gpu", "fan", "severity"):
        assert not shown[key].available, key
        assert "Not available" in str(shown[key].svg)
    html = render_html(VIEW, synthesis, results)
    parse(html)
    assert html.count('data-available="no"') == 5
    assert render_pdf(VIEW, synthesis, results).startswith(b"%PDF")


def test_partial_banner_names_the_missing_analyzers() -> None:
    results = [
        *full_results(),
        AnalyzerResult.failure("mlops", "failed", "RuntimeError: questionnaire <broken>", 0.3),
        AnalyzerResult.failure("chatbot", "timeout", "soft time limit exceeded", 120.0),
    ]
    expected = ["cloud_engineer", "simulation", "compliance", "mlops", "chatbot", "cto"]
    synthesis = synthesize(results, expected)
    html = render_html(VIEW, synthesis, results)
    tags = parse(html)
    assert "partial-banner" in tags.ids
    banner = html[html.index('id="partial-banner"') : html.index("</div>", html.index("partial"))]
    for role, status in (
        (ANALYZERS["mlops"].role, "failed"),
        (ANALYZERS["chatbot"].role, "timeout"),
        (ANALYZERS["cto"].role, "absent"),
    ):
        assert f"{role} ({status})" in banner
    assert "questionnaire &lt;broken&gt;" in html  # the error, escaped, in its section
    assert {"analyzer-mlops", "analyzer-chatbot", "analyzer-cto"} <= tags.ids
    pdf = render_pdf(VIEW, synthesis, results)
    assert pdf.startswith(b"%PDF")


def pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b", pdf))


def test_pdf_has_pages_and_survives_any_text() -> None:
    results = full_results()
    synthesis = synthesize(results, ["cloud_engineer", "simulation", "compliance"])
    pdf = render_pdf(VIEW, synthesis, results)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert pages(pdf) >= 2
    # Many findings wrap onto more pages; exotic text never raises.
    many = [finding("cloud_engineer", f"cost.n{i}", "low", i * 10.0) for i in range(120)]
    weird = finding("compliance", "x", "info").model_copy(
        update={"title": "漢字 \u200b emoji 🚀 " + "long" * 200, "recommendation": "\x00\x07"}
    )
    results = [result("cloud_engineer", {}, *many), result("compliance", {}, weird)]
    synthesis = synthesize(results, ["cloud_engineer", "compliance"])
    bigger = render_pdf(VIEW, synthesis, results)
    assert pages(bigger) > pages(pdf)


def test_pdf_text_transliterates_to_windows_1252() -> None:
    assert pdf_text("a → b ≥ c \u00d7 d") == "a -> b >= c x d"
    in_1252 = "caf\u00e9 \u2013 \u201cok\u201d \u2026"
    assert pdf_text(in_1252) == in_1252
    assert pdf_text("Łódź") == "Lódz"  # ó is in Windows-1252, ź is not
    assert pdf_text("漢") == "?"
    assert pdf_text("🚀\u200b\x00ok\n") == "?ok\n"


def test_json_holds_assessment_synthesis_and_results() -> None:
    results = full_results()
    synthesis = synthesize(results, ["cloud_engineer", "simulation", "compliance"])
    doc = json.loads(render_json(VIEW, synthesis, results))
    assert doc["assessment"]["id"] == VIEW.id
    assert doc["synthesis"]["recommendations"][0]["code"] == "gdpr.encryption"
    assert [r["analyzer"] for r in doc["results"]] == ["cloud_engineer", "simulation", "compliance"]


def test_startup_example_end_to_end_through_the_real_analyzers() -> None:
    """Whatever the analyzers find on the example, the report renders (the ones not written
    yet fail and make it partial)."""
    inventory = load_inventory((EXAMPLES / "startup.yaml").read_bytes(), "startup.yaml")
    created = datetime(2026, 12, 5, tzinfo=UTC)
    view = AssessmentView.from_inventory("a1", "startup", created, inventory)
    assert view.instances == len(inventory.compute.instances) and view.organisation
    row = {
        "id": "a1",
        "name": "startup",
        "created_at": created,
        "inventory": inventory.model_dump(mode="json"),
    }
    assert AssessmentView.of(row) == view
    garbage = AssessmentView.of({**row, "inventory": {"compute": 3}})
    assert garbage.id == "a1" and garbage.instances == 0
    results = []
    for name, analyzer in ANALYZERS.items():
        started = time.perf_counter()
        try:
            output = analyzer.run(inventory, no_progress)
        except Exception as exc:  # an analyzer of another slice not merged yet
            results.append(AnalyzerResult.failure(name, "failed", repr(exc), 0.0))
        else:
            results.append(AnalyzerResult.of(name, output, time.perf_counter() - started))
    synthesis = synthesize(results, list(ANALYZERS))
    html = render_html(view, synthesis, results)
    parse(html)
    ok = {r.analyzer for r in results if r.status == "ok"}
    if "cloud_engineer" in ok:
        assert 'id="chart-cost" data-available="yes"' in html
    if "simulation" in ok:
        assert 'id="chart-fan" data-available="yes"' in html
    assert render_pdf(view, synthesis, results).startswith(b"%PDF")


def test_pdf_lines_are_wrapped_between_words_and_fit_the_page() -> None:
    from conveyor.packs.assess.report_pdf import ReportPdf

    pdf = ReportPdf(pdf_text)
    pdf.add_page()
    pdf.set_font("helvetica", size=10)
    width = 100.0
    text = "word " * 60 + "x" * 400 + " tail\nnext paragraph"
    lines = pdf._wrap(text, width)
    assert all(pdf.get_string_width(line) <= width + 0.01 for line in lines)
    assert " ".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")
    assert lines[0].startswith("word word") and lines[-1] == "next paragraph"
