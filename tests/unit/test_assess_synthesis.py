"""Synthesis of the assess pack: de-duplication, ranking by saving and risk, partial results."""

from __future__ import annotations

import math

import pytest

from conveyor.packs.assess.findings import AnalyzerResult, Finding, Severity
from conveyor.packs.assess.synthesis import (
    RISK_POINTS,
    SAVING_POINTS_PER_DECADE,
    deduplicate,
    resource,
    score,
    synthesize,
)

DS = "storage.datasets[0]"


def finding(
    analyzer: str,
    code: str,
    evidence: list[str],
    severity: Severity = "medium",
    saving: float | None = None,
    rule: str | None = None,
    risk: str | None = None,
) -> Finding:
    return Finding(
        analyzer=analyzer,
        code=code,
        title=f"{code} ({analyzer})",
        severity=severity,
        evidence=evidence,
        recommendation=f"fix {code}",
        monthly_saving_usd=saving,
        rule=rule,
        risk=risk,
    )


def ok(analyzer: str, *findings: Finding) -> AnalyzerResult:
    return AnalyzerResult(
        analyzer=analyzer,
        status="ok",
        duration_s=0.1,
        findings=list(findings),
        metrics={},
        summary="done",
    )


def test_score_is_risk_plus_saving_points() -> None:
    assert score("high", None) == RISK_POINTS["high"]
    # 9,900 USD/month: log10(1 + 99) = 2 decades.
    assert score("low", 9_900) == pytest.approx(RISK_POINTS["low"] + 2 * SAVING_POINTS_PER_DECADE)
    assert score("info", -50) == 0.0  # a negative "saving" (a cost) earns no points
    # Two analyzers agreeing add half a point.
    assert score("medium", None, analyzers=2) == RISK_POINTS["medium"] + 0.5
    # A critical risk with no saving outranks 100k USD/month at info severity.
    assert score("critical", None) > score("info", 100_000)
    assert math.isclose(score("info", 100), SAVING_POINTS_PER_DECADE * math.log10(2), rel_tol=1e-3)


def test_same_code_and_overlapping_evidence_merge_transitively() -> None:
    a = finding("cloud_engineer", "cost.idle-gpu", ["compute.instances[1]"])
    b = finding("cto", "cost.idle-gpu", ["compute.instances[1]", "compute.instances[2]"])
    c = finding("ai_consultant", "cost.idle-gpu", ["compute.instances[2]"])
    other_path = finding("cloud_engineer", "cost.idle-gpu", ["compute.instances[9]"])
    other_code = finding("infrastructure", "rel.single-zone", ["compute.instances[1]"])
    groups = deduplicate([a, other_path, b, other_code, c])
    assert groups == [[a, b, c], [other_path], [other_code]]


def test_findings_without_evidence_merge_only_with_each_other() -> None:
    a = finding("cto", "budget.over", [])
    b = finding("simulation", "budget.over", [])
    c = finding("simulation", "budget.over", ["budget.monthly_usd"])
    assert deduplicate([a, b, c]) == [[a, b], [c]]


def test_merged_item_names_every_analyzer_and_keeps_the_largest_saving() -> None:
    results = [
        ok(
            "cloud_engineer",
            finding("cloud_engineer", "cost.idle-gpu", ["compute.instances[1]"], "medium", 3_000),
        ),
        ok(
            "cto",
            finding("cto", "cost.idle-gpu", ["compute.instances[1]"], "high", 2_500, risk="budget"),
        ),
        ok(
            "compliance",
            finding("compliance", "gdpr.encryption", [DS], "critical", rule="GDPR Art. 32(1)(a)"),
            finding("compliance", "gdpr.encryption", [DS], "high", rule="SOC 2 CC6.1"),
        ),
    ]
    synthesis = synthesize(results, ["cloud_engineer", "cto", "compliance"])
    assert not synthesis.partial and synthesis.missing == []
    assert synthesis.findings_total == 4
    assert [r.code for r in synthesis.recommendations] == ["gdpr.encryption", "cost.idle-gpu"]
    gdpr, idle = synthesis.recommendations
    assert gdpr.rank == 1 and gdpr.severity == "critical"
    assert gdpr.rules == ["GDPR Art. 32(1)(a)", "SOC 2 CC6.1"]
    assert gdpr.analyzers == ["compliance"] and gdpr.findings == 2
    assert idle.rank == 2
    assert idle.analyzers == ["cloud_engineer", "cto"]
    assert idle.severity == "high"  # the worse of the two
    assert idle.monthly_saving_usd == 3_000  # one idle GPU saved once, not 5,500
    assert idle.risks == ["budget"]
    assert idle.score == score("high", 3_000, analyzers=2)
    assert synthesis.total_monthly_saving_usd == 3_000
    assert synthesis.by_severity == {"info": 0, "low": 0, "medium": 0, "high": 1, "critical": 1}
    assert synthesis.by_analyzer == {"cloud_engineer": 1, "cto": 1, "compliance": 2}


def test_ranking_by_saving_within_a_severity_and_deterministic_ties() -> None:
    results = [
        ok(
            "cloud_engineer",
            finding("cloud_engineer", "cost.b", ["x[1]"], "low", 500),
            finding("cloud_engineer", "cost.a", ["x[2]"], "low", 50_000),
            finding("cloud_engineer", "cost.c", ["x[4]"], "low", None),
            finding("cloud_engineer", "cost.c", ["x[3]"], "low", None),
        )
    ]
    synthesis = synthesize(results, ["cloud_engineer"])
    order = [(r.code, r.evidence[0]) for r in synthesis.recommendations]
    assert order == [("cost.a", "x[2]"), ("cost.b", "x[1]"), ("cost.c", "x[3]"), ("cost.c", "x[4]")]
    assert [r.rank for r in synthesis.recommendations] == [1, 2, 3, 4]
    assert synthesis.total_monthly_saving_usd == 50_500


def test_partial_names_the_missing_with_their_status() -> None:
    results = [
        ok("cto", finding("cto", "budget.over", ["budget.monthly_usd"])),
        AnalyzerResult.failure("simulation", "timeout", "soft time limit (300 s) exceeded", 300.0),
        AnalyzerResult.failure("mlops", "failed", "ValueError: boom", 0.2),
    ]
    expected = ["cto", "mlops", "simulation", "chatbot"]
    synthesis = synthesize(results, expected)
    assert synthesis.partial
    assert synthesis.missing == ["mlops", "simulation", "chatbot"]
    assert synthesis.missing_status == {
        "mlops": "failed",
        "simulation": "timeout",
        "chatbot": "absent",
    }
    assert synthesis.errors == {
        "mlops": "ValueError: boom",
        "simulation": "soft time limit (300 s) exceeded",
    }
    assert synthesis.completed == ["cto"]
    assert len(synthesis.recommendations) == 1


def test_a_retry_replaces_the_earlier_result() -> None:
    results = [
        AnalyzerResult.failure("mlops", "failed", "boom", 0.1),
        ok("mlops", finding("mlops", "mlops.no-ci", ["team.mlops.ci_cd"])),
    ]
    synthesis = synthesize(results, ["mlops"])
    assert not synthesis.partial
    assert [r.code for r in synthesis.recommendations] == ["mlops.no-ci"]


def test_nothing_at_all_is_an_empty_partial_synthesis() -> None:
    synthesis = synthesize([], ["cto"])
    assert synthesis.partial and synthesis.missing == ["cto"]
    assert synthesis.recommendations == [] and synthesis.total_monthly_saving_usd == 0
    # It survives a JSON round trip (the run slice stores it as JSON).
    assert type(synthesis).model_validate_json(synthesis.model_dump_json()) == synthesis


def test_savings_on_the_same_resource_are_counted_once_in_the_total() -> None:
    i3 = "compute.instances[3]"
    results = [
        ok(
            "cloud_engineer",
            finding("cloud_engineer", "cost.spot", [f"{i3}.pricing"], "medium", 5_000),
            finding("cloud_engineer", "cost.reserved", [f"{i3}.pricing"], "low", 3_000),
            finding("cloud_engineer", "cost.rightsize", ["compute.instances[4].type"], "low", 700),
        ),
        ok(
            "ai_consultant",
            finding("ai_consultant", "serving.quantise", ["workloads[0].model"], "medium", 4_000),
            finding("ai_consultant", "serving.smaller", ["workloads[0].slo"], "low", 6_000),
        ),
        ok("chatbot", finding("chatbot", "chat.cache", ["workloads[0].tokens", i3], "low", 100)),
    ]
    synthesis = synthesize(results, ["cloud_engineer", "ai_consultant", "chatbot"])
    counted = {r.code for r in synthesis.recommendations if r.counted}
    # Largest first per resource: 6,000 claims workloads[0]; 5,000 claims instances[3]; the
    # 4,000, 3,000 and 100 overlap one of them; instances[4] is its own.
    assert counted == {"serving.smaller", "cost.spot", "cost.rightsize"}
    assert synthesis.total_monthly_saving_usd == 6_000 + 5_000 + 700
    assert synthesis.gross_monthly_saving_usd == 5_000 + 3_000 + 700 + 4_000 + 6_000 + 100
    assert resource("compute.instances[12].gpu.count") == "compute.instances[12]"
    assert resource("budget.monthly_usd") == "budget"
