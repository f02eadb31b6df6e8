"""Simulation: Monte Carlo of load and cost over the next 12 months.

Each of ``PATHS`` paths (numpy, seeded: the same inventory gives the same figures) draws, per
month t = 1..12, a load growth g_t ~ Normal(load_mean_pct, load_sd_pct) / 100 and a price change
p_t ~ Normal(price_mean_pct, price_sd_pct) / 100 (``inventory.growth``), and compounds them:
load_t = prod(1 + g_i), price_t = prod(1 + p_i), cost_t = cost_0 * load_t * price_t, where
cost_0 is today's monthly compute + storage cost (capacity is assumed to follow the load).
Per month: percentiles p5, p25, p50, p75, p95 of cost and load (the report's fan chart) and the
probability cost_t > budget; over the year: the probability of at least one month over budget,
and the first month where a breach is more likely than not.

Metrics: ``months`` (1..12), ``cost_percentiles`` / ``load_percentiles`` ({"p5": [12 values],
...}), ``breach_probability`` (12 values), ``breach_probability_year``,
``first_likely_breach_month`` (1..12 or None), ``baseline_usd``, ``budget_usd``, ``paths``,
``seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.costs import instance_costs, storage_cost
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import Inventory

NAME = "simulation"
PATHS = 10_000
MONTHS = 12
SEED = 14  # issue 14; fixed so a report is reproducible
PERCENTILES = (5, 25, 50, 75, 95)


def baseline_cost(inventory: Inventory) -> float:
    """Today's monthly cost: every instance plus storage, in USD."""
    return sum(c.monthly_usd for c in instance_costs(inventory)) + storage_cost(inventory)


def forecast(
    inventory: Inventory, progress: Progress | None = None, paths: int = PATHS
) -> dict[str, Any]:
    """The Monte Carlo figures (see the module docstring) as JSON-able metrics."""
    growth = inventory.growth
    rng = np.random.default_rng(SEED)
    base = baseline_cost(inventory)
    budget = inventory.budget.monthly_usd
    load = np.ones(paths)
    price = np.ones(paths)
    ever_over = np.zeros(paths, dtype=bool)
    cost_pct: dict[str, list[float]] = {f"p{p}": [] for p in PERCENTILES}
    load_pct: dict[str, list[float]] = {f"p{p}": [] for p in PERCENTILES}
    breach: list[float] = []
    for month in range(1, MONTHS + 1):
        load = load * (1 + rng.normal(growth.load_mean_pct, growth.load_sd_pct, paths) / 100)
        load = np.maximum(load, 0.0)
        price = price * (1 + rng.normal(growth.price_mean_pct, growth.price_sd_pct, paths) / 100)
        price = np.maximum(price, 0.0)
        cost = base * load * price
        over = cost > budget
        ever_over |= over
        breach.append(round(float(over.mean()), 4))
        for p, c, ld in zip(
            PERCENTILES,
            np.percentile(cost, PERCENTILES),
            np.percentile(load, PERCENTILES),
            strict=True,
        ):
            cost_pct[f"p{p}"].append(round(float(c), 2))
            load_pct[f"p{p}"].append(round(float(ld), 4))
        if progress is not None:
            progress(month / MONTHS, f"month {month}")
    likely = next((m for m, p in enumerate(breach, 1) if p >= 0.5), None)
    return {
        "months": list(range(1, MONTHS + 1)),
        "baseline_usd": round(base, 2),
        "budget_usd": budget,
        "cost_percentiles": cost_pct,
        "load_percentiles": load_pct,
        "breach_probability": breach,
        "breach_probability_year": round(float(ever_over.mean()), 4),
        "first_likely_breach_month": likely,
        "paths": paths,
        "seed": SEED,
    }


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    metrics = forecast(inventory, progress)
    base = metrics["baseline_usd"]
    budget = metrics["budget_usd"]
    year = metrics["breach_probability_year"]
    p50_end = metrics["cost_percentiles"]["p50"][-1]
    p95_end = metrics["cost_percentiles"]["p95"][-1]
    findings: list[Finding] = []
    if base <= budget and year >= 0.05:
        first = metrics["first_likely_breach_month"]
        severity: Severity = "high" if year >= 0.5 else "medium" if year >= 0.2 else "low"
        when = f"; more likely than not from month {first}" if first else ""
        findings.append(
            Finding(
                analyzer=NAME,
                code="forecast.budget-breach",
                title=f"{year:.0%} chance of exceeding the ${budget:,.0f} monthly budget "
                f"within 12 months{when}",
                severity=severity,
                evidence=["budget.monthly_usd", "growth"],
                recommendation="Act on the cost findings before the growth arrives, or plan "
                f"a budget near the month-12 p95 of ${p95_end:,.0f}.",
                risk="Spending above the budget without a plan for it.",
            )
        )
    findings.append(
        Finding(
            analyzer=NAME,
            code="forecast.cost-growth",
            title=f"Monthly cost grows from ${base:,.0f} to ${p50_end:,.0f} (median) in 12 "
            f"months, ${p95_end:,.0f} at p95",
            severity="info",
            evidence=["growth.load_mean_pct", "growth.price_mean_pct"],
            recommendation="Review the growth assumptions with the business each quarter.",
            risk=f"Planning on today's ${base:,.0f} when month 12 is likely ${p50_end:,.0f}.",
        )
    )
    summary = (
        f"Over {metrics['paths']:,} simulated years the month-12 cost has a median of "
        f"${p50_end:,.0f} (p95 ${p95_end:,.0f}); the chance of a month over budget is {year:.0%}."
    )
    return AnalyzerOutput(findings=findings, metrics=metrics, summary=summary)
