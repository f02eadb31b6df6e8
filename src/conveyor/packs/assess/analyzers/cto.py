"""CTO: the strategic view — spend against budget, concentration, GPU generations, a scorecard.

- budget: today's monthly cost (compute + storage, as the simulation's baseline) over the
  budget: > 110 % critical, > 100 % high, > 90 % medium; the month-12 median of the
  simulation (2,000 paths, same seed) goes into the metrics;
- vendor / region concentration: one provider with >= 90 % of compute spend (low), one region
  with >= 80 % of it while critical services run there (medium);
- GPU generations: GPUs released in 2018 or before (medium): older memory bandwidth per dollar;
- scorecard, each area 0..100: budget (100 up to 80 % of budget, linear to 0 at 150 %),
  GPU efficiency (GPU-count-weighted mean p50 utilisation / 60 %, capped), resilience (share of
  critical services and inference workloads on >= 2 instances in >= 2 zones), modernity
  (share of GPUs from 2022 on), MLOps (mean answer level / top level, unanswered 0),
  governance (share of compliance controls answered yes), data protection (share of PII/PHI
  datasets encrypted at rest and in transit and backed up); overall = mean of the areas that
  apply; grade A >= 85, B >= 70, C >= 55, D >= 40, else E.

Metrics: ``monthly_cost_usd``, ``budget_usd``, ``budget_ratio``, ``projected_p50_usd``,
``spend_by_provider``, ``spend_by_region``, ``gpus_by_generation``, ``scorecard`` (area →
score or None), ``overall``, ``grade``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.analyzers.simulation import baseline_cost, forecast
from conveyor.packs.assess.costs import instance_costs
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import MLOPS_QUESTIONS, Inventory
from conveyor.packs.assess.reference import gpu_specs

NAME = "cto"
LEGACY_YEAR = 2018
MODERN_YEAR = 2022


def grade(score: float) -> str:
    for letter, floor in (("A", 85), ("B", 70), ("C", 55), ("D", 40)):
        if score >= floor:
            return letter
    return "E"


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    findings: list[Finding] = []
    progress(0.0, "spend")
    costs = instance_costs(inventory)
    spend = baseline_cost(inventory)
    budget = inventory.budget.monthly_usd
    ratio = spend / budget if budget > 0 else float("inf") if spend > 0 else 0.0
    progress(0.1, "projection")
    projected = forecast(inventory, paths=2000)["cost_percentiles"]["p50"][-1]
    progress(0.6, "concentration")
    if ratio > 0.9:
        severity: Severity = "critical" if ratio > 1.1 else "high" if ratio > 1 else "medium"
        findings.append(
            Finding(
                analyzer=NAME,
                code="budget.over" if ratio > 1 else "budget.near",
                title=f"Monthly spend ${spend:,.0f} is {ratio:.0%} of the ${budget:,.0f} budget"
                if budget > 0
                else f"Monthly spend ${spend:,.0f} against a budget of $0",
                severity=severity,
                evidence=["budget.monthly_usd", "compute.instances"],
                recommendation="Take the largest cost savings first (idle GPUs, right-sizing, "
                "commitments) and agree the budget with finance against the 12-month forecast "
                f"(median ${projected:,.0f} in month 12).",
                risk="Overspend discovered at the invoice, not before.",
            )
        )
    total_compute = sum(c.monthly_usd for c in costs) or 1.0
    by_provider: dict[str, float] = defaultdict(float)
    by_region: dict[str, float] = defaultdict(float)
    for c in costs:
        by_provider[c.instance.provider] += c.monthly_usd
        by_region[c.instance.region] += c.monthly_usd
    top_provider, top_provider_usd = max(by_provider.items(), key=lambda kv: kv[1], default=("", 0))
    if len(costs) >= 5 and top_provider_usd / total_compute >= 0.9:
        findings.append(
            Finding(
                analyzer=NAME,
                code="strategy.vendor-concentration",
                title=f"{top_provider_usd / total_compute:.0%} of compute spend is with "
                f"{top_provider}",
                severity="low",
                evidence=["compute.instances"],
                recommendation="Keep serving portable (containers, open model formats, an "
                "OpenAI-compatible gateway) so a second provider is an option for GPU supply "
                "and price negotiations.",
                risk="GPU shortages or price rises at one provider hit everything.",
            )
        )
    top_region, top_region_usd = max(by_region.items(), key=lambda kv: kv[1], default=("", 0))
    has_critical = any(s.critical for s in inventory.services) or any(
        w.critical for w in inventory.workloads
    )
    if has_critical and top_region_usd > 0 and top_region_usd / total_compute >= 0.8:
        regions = {c.instance.region for c in costs}
        findings.append(
            Finding(
                analyzer=NAME,
                code="strategy.region-concentration",
                title=f"{top_region_usd / total_compute:.0%} of compute spend runs in "
                f"{top_region}" + (" (the only region)" if len(regions) == 1 else ""),
                severity="medium",
                evidence=[
                    f"compute.instances[{c.index}].region"
                    for c in costs
                    if c.instance.region == top_region
                ][:20],
                recommendation="Have a tested plan to serve critical workloads from a second "
                "region (warm standby for the models, replicated data).",
                risk="A regional outage stops the business.",
            )
        )
    progress(0.8, "GPU generations")
    specs = gpu_specs()
    generations: Counter[str] = Counter()
    legacy: list[str] = []
    modern = known = 0
    for i, inst in enumerate(inventory.compute.instances):
        if inst.gpu is None or inst.gpu.model not in specs:
            continue
        spec = specs[inst.gpu.model]
        generations[f"{spec.generation} ({spec.year})"] += inst.gpu.count
        known += inst.gpu.count
        if spec.year >= MODERN_YEAR:
            modern += inst.gpu.count
        if spec.year <= LEGACY_YEAR:
            legacy.append(f"compute.instances[{i}].gpu.model")
    if legacy:
        findings.append(
            Finding(
                analyzer=NAME,
                code="strategy.legacy-gpus",
                title=f"{len(legacy)} instances run GPUs from {LEGACY_YEAR} or before",
                severity="medium",
                evidence=legacy,
                recommendation="Plan their replacement with current inference GPUs (L4, L40S) "
                "which give several times the memory bandwidth and FP8 support per dollar.",
                risk="Older GPUs lose framework support (FP8, FlashAttention) and cost more per "
                "token served.",
            )
        )
    scorecard = _scorecard(inventory, ratio, modern, known)
    present = [v for v in scorecard.values() if v is not None]
    overall = round(sum(present) / len(present), 1) if present else 0.0
    weakest = sorted((v, k) for k, v in scorecard.items() if v is not None)[:2]
    findings.append(
        Finding(
            analyzer=NAME,
            code="strategy.scorecard",
            title=f"Scorecard: {overall:.0f}/100, grade {grade(overall)}",
            severity="info",
            evidence=["compute", "compliance.controls", "mlops"],
            recommendation="Start with the weakest areas: "
            + ", ".join(f"{k} ({v:.0f})" for v, k in weakest)
            + ".",
            risk="The weakest areas are where incidents, overspend or audit findings come from.",
        )
    )
    metrics: dict[str, Any] = {
        "monthly_cost_usd": round(spend, 2),
        "budget_usd": budget,
        "budget_ratio": round(ratio, 4) if ratio != float("inf") else None,
        "projected_p50_usd": projected,
        "spend_by_provider": {k: round(v, 2) for k, v in by_provider.items()},
        "spend_by_region": {k: round(v, 2) for k, v in by_region.items()},
        "gpus_by_generation": dict(generations),
        "scorecard": scorecard,
        "overall": overall,
        "grade": grade(overall),
    }
    summary = (
        f"Spend is ${spend:,.0f} a month against a ${budget:,.0f} budget "
        f"(median ${projected:,.0f} in 12 months); "
        f"overall grade {grade(overall)} ({overall:.0f}/100)."
    )
    progress(1.0, "done")
    return AnalyzerOutput(findings=findings, metrics=metrics, summary=summary)


def _scorecard(
    inventory: Inventory, ratio: float, modern_gpus: int, known_gpus: int
) -> dict[str, float | None]:
    specs_weighted = [
        (inst.gpu.count, inst.utilisation.gpu_p50)
        for inst in inventory.compute.instances
        if inst.gpu is not None and inst.utilisation.gpu_p50 is not None
    ]
    efficiency = None
    if specs_weighted:
        count = sum(n for n, _ in specs_weighted)
        mean = sum(n * (u or 0) for n, u in specs_weighted) / count
        efficiency = min(100.0, mean / 60 * 100)
    targets: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for inst in inventory.compute.instances:
        for t in {*inst.workloads, *inst.services}:
            targets[t].append((inst.id, f"{inst.region}/{inst.zone}"))
    critical = {s.id for s in inventory.services if s.critical}
    critical |= {w.id for w in inventory.workloads if w.type == "inference"}
    placed = [t for t in critical if targets.get(t)]
    resilient = [t for t in placed if len(targets[t]) >= 2 and len({z for _, z in targets[t]}) >= 2]
    answered = 0.0
    for q in MLOPS_QUESTIONS:
        answer = inventory.mlops.get(q.id)
        if answer is not None:
            answered += q.answers.index(answer) / (len(q.answers) - 1)
    controls = inventory.compliance.controls.model_dump().values()
    sensitive = [d for d in inventory.storage.datasets if d.pii or d.phi]
    protected = [
        d
        for d in sensitive
        if d.encryption.at_rest and d.encryption.in_transit and d.backup.enabled
    ]
    budget = 100.0 if ratio <= 0.8 else max(0.0, 100 * (1.5 - ratio) / 0.7)
    scores: dict[str, float | None] = {
        "budget": budget,
        "gpu_efficiency": efficiency,
        "resilience": 100 * len(resilient) / len(placed) if placed else None,
        "modernity": 100 * modern_gpus / known_gpus if known_gpus else None,
        "mlops": 100 * answered / len(MLOPS_QUESTIONS),
        "governance": 100 * sum(1 for c in controls if c is True) / len(controls),
        "data_protection": 100 * len(protected) / len(sensitive) if sensitive else None,
    }
    return {k: None if v is None else round(v, 1) for k, v in scores.items()}
