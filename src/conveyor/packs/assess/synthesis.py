"""Synthesis: the analyzers' findings as one ranked, de-duplicated list of recommendations.

Three steps, each a plain function of the stored :class:`AnalyzerResult` rows:

1. **De-duplicate.** Two findings are the same issue when they have the same ``code`` and
   their evidence paths overlap (share at least one path; two findings with no evidence at all
   count as overlapping). Overlap is transitive: A~B and B~C put A, B and C in one item, which
   names every analyzer that raised it, the union of the evidence, the highest severity, every
   cited rule, and the *largest* single saving — never the sum, since two analyzers pricing
   the same idle GPU found one saving, not two.
2. **Rank** by :func:`score` (see there): risk points from the severity plus saving points
   from the monthly saving, on a log scale so a large saving outranks a small one without
   swamping a critical risk; ties broken by saving, then by code and first evidence path, so
   the order is deterministic.
3. **Total the saving without counting a resource twice.** Savings of different kinds on the
   same resource are alternatives or overlap (spot *or* reserved for one instance; quantising
   *and* a smaller model for one workload; the AI consultant's and the chatbot specialist's
   prefix cache), so they do not add up. The total walks the recommendations from the largest
   saving down and counts one only if none of its *resources* — each evidence path up to its
   first index (``compute.instances[12]``, ``workloads[0]``), else its first segment — is
   claimed by a larger one already counted (``counted`` says which). ``gross`` is the plain sum,
   an upper bound. Both are estimates: a workload-level saving and an instance-level one on the
   hardware that serves it are not recognised as overlapping.
4. **Account for what is missing.** An expected analyzer without an ``ok`` result (failed,
   timed out, cancelled, or with no result at all — ``"absent"``) is named in ``missing``;
   any missing analyzer makes the synthesis ``partial``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from conveyor.packs.assess.findings import SEVERITIES, AnalyzerResult, Finding, Severity

__all__ = [
    "RISK_POINTS",
    "SAVING_POINTS_PER_DECADE",
    "MissingStatus",
    "Recommendation",
    "Synthesis",
    "deduplicate",
    "resource",
    "score",
    "synthesize",
]

RISK_POINTS: dict[Severity, float] = {
    "info": 0.0,
    "low": 1.0,
    "medium": 3.0,
    "high": 6.0,
    "critical": 10.0,
}
"""Points for the risk a finding names, by severity."""

SAVING_POINTS_PER_DECADE = 2.0
"""Points per tenfold monthly saving above 100 USD: 1,000 USD/month → 2, 10,000 → 4,
100,000 → 6 (a high risk)."""

CORROBORATION_POINTS = 0.5
"""Points for each further analyzer that raised the same issue (independent agreement)."""

MissingStatus = Literal["failed", "timeout", "cancelled", "absent"]


class Recommendation(BaseModel):
    """One issue after de-duplication, with its place in the ranking."""

    model_config = ConfigDict(frozen=True)

    rank: int  # 1 is the first thing to do
    score: float
    code: str
    title: str
    severity: Severity
    analyzers: list[str]  # every analyzer that raised it, in the order first seen
    evidence: list[str]  # union of the findings' paths, first-seen order
    recommendation: str
    monthly_saving_usd: float | None = None
    risks: list[str] = []
    rules: list[str] = []
    findings: int = 1  # how many findings were merged into this one
    counted: bool = False  # its saving is in the total (no larger saving on its resources)


class Synthesis(BaseModel):
    """What the report shows first: ranked recommendations, totals, and what is missing."""

    model_config = ConfigDict(frozen=True)

    recommendations: list[Recommendation]
    total_monthly_saving_usd: float  # without counting a resource twice (see the module)
    gross_monthly_saving_usd: float = 0.0  # every saving added up: an upper bound
    findings_total: int  # before de-duplication
    by_severity: dict[Severity, int]  # recommendations (after de-duplication) per severity
    by_analyzer: dict[str, int]  # findings per analyzer (before de-duplication)
    partial: bool
    missing: list[str]  # expected analyzers without an ok result, in the expected order
    missing_status: dict[str, MissingStatus]
    errors: dict[str, str]  # analyzer → its error, for the missing that reported one
    completed: list[str]  # analyzers with an ok result


def score(severity: Severity, monthly_saving_usd: float | None, analyzers: int = 1) -> float:
    """Rank score: risk points + saving points + corroboration points.

    ``RISK_POINTS[severity] + SAVING_POINTS_PER_DECADE * log10(1 + saving / 100)
    + CORROBORATION_POINTS * (analyzers - 1)``. A critical risk with no saving (10) outranks a
    100,000 USD/month saving at info severity (≈6), while a high risk with 10,000 USD/month
    (≈10) ties with it.
    """
    saving = max(monthly_saving_usd or 0.0, 0.0)
    points = RISK_POINTS[severity] + SAVING_POINTS_PER_DECADE * math.log10(1.0 + saving / 100.0)
    return round(points + CORROBORATION_POINTS * max(analyzers - 1, 0), 4)


def resource(path: str) -> str:
    """What an evidence path is about: up to its first index, else its first segment
    (``compute.instances[3].gpu.count`` → ``compute.instances[3]``, ``budget.monthly_usd`` →
    ``budget``)."""
    end = path.find("]")
    return path[: end + 1] if end >= 0 else path.split(".", 1)[0]


def _counted(ranked: Sequence[Recommendation]) -> set[int]:
    """Ranks of the savings the total counts: largest first, none on a claimed resource."""
    claimed: set[str] = set()
    counted: set[int] = set()
    with_saving = [r for r in ranked if (r.monthly_saving_usd or 0.0) > 0]
    for rec in sorted(with_saving, key=lambda r: (-(r.monthly_saving_usd or 0.0), r.rank)):
        roots = {resource(p) for p in rec.evidence}
        if roots & claimed:
            continue
        claimed |= roots
        counted.add(rec.rank)
    return counted


def _first_seen(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def deduplicate(findings: Sequence[Finding]) -> list[list[Finding]]:
    """Group findings that are the same issue (same code, overlapping evidence).

    Groups and the findings inside them keep the order in which they were first seen.
    """
    parent = list(range(len(findings)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Index (code, path) → first finding seen with it; a finding joins every group it shares a
    # path with. Findings without evidence share the sentinel path "".
    owner: dict[tuple[str, str], int] = {}
    for i, finding in enumerate(findings):
        for path in finding.evidence or [""]:
            j = owner.setdefault((finding.code, path), i)
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[Finding]] = {}
    for i, finding in enumerate(findings):
        groups.setdefault(root(i), []).append(finding)
    return list(groups.values())


def _merge(group: list[Finding]) -> Recommendation:
    worst = max(group, key=lambda f: SEVERITIES.index(f.severity))
    savings = [f.monthly_saving_usd for f in group if f.monthly_saving_usd is not None]
    saving = max(savings) if savings else None
    analyzers = _first_seen(f.analyzer for f in group)
    return Recommendation(
        rank=0,
        score=score(worst.severity, saving, len(analyzers)),
        code=worst.code,
        title=worst.title,
        severity=worst.severity,
        analyzers=analyzers,
        evidence=_first_seen(p for f in group for p in f.evidence),
        recommendation=worst.recommendation,
        monthly_saving_usd=saving,
        risks=_first_seen(f.risk for f in group if f.risk),
        rules=_first_seen(f.rule for f in group if f.rule),
        findings=len(group),
    )


def synthesize(results: Sequence[AnalyzerResult], expected: Sequence[str]) -> Synthesis:
    """Rank and de-duplicate the findings of ``results``; name the ``expected`` analyzers
    without an ok result. Only ok results contribute findings. When an analyzer has several
    results (a retry), the last one counts."""
    latest: dict[str, AnalyzerResult] = {}
    for result in results:
        latest[result.analyzer] = result
    ok = [r for r in latest.values() if r.status == "ok"]
    findings = [f for r in ok for f in r.findings]
    merged = [_merge(group) for group in deduplicate(findings)]
    merged.sort(key=lambda r: (-r.score, -(r.monthly_saving_usd or 0.0), r.code, r.evidence[:1]))
    ranked = [r.model_copy(update={"rank": i}) for i, r in enumerate(merged, start=1)]
    counted = _counted(ranked)
    ranked = [r.model_copy(update={"counted": r.rank in counted}) for r in ranked]

    missing: dict[str, MissingStatus] = {}
    errors: dict[str, str] = {}
    for name in _first_seen(expected):
        got = latest.get(name)
        if got is None:
            missing[name] = "absent"
        elif got.status != "ok":
            missing[name] = got.status
            if got.error:
                errors[name] = got.error
    by_severity: dict[Severity, int] = dict.fromkeys(SEVERITIES, 0)
    for rec in ranked:
        by_severity[rec.severity] += 1
    return Synthesis(
        recommendations=ranked,
        total_monthly_saving_usd=round(
            sum(r.monthly_saving_usd or 0.0 for r in ranked if r.counted), 2
        ),
        gross_monthly_saving_usd=round(sum(r.monthly_saving_usd or 0.0 for r in ranked), 2),
        findings_total=len(findings),
        by_severity=by_severity,
        by_analyzer={r.analyzer: len(r.findings) for r in ok},
        partial=bool(missing),
        missing=list(missing),
        missing_status=missing,
        errors=errors,
        completed=[r.analyzer for r in ok],
    )
