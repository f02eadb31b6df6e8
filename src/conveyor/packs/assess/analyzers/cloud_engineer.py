"""Cloud engineer: what the compute costs and what it could cost.

Per instance (prices from :mod:`conveyor.packs.assess.costs`; the price table is dated):

- idle GPU: GPU p95 utilisation below 10 % → stop or consolidate it; saving = its monthly cost;
- right-size: GPU p95 below 40 % (GPU instances) or CPU p95 below 40 % (CPU instances) →
  the cheapest instance of the price table, same provider, same GPU model, with at least
  ceil(GPUs * p95 / 70) GPUs / ceil(vCPU * p95 / 70) vCPUs and the memory the p95 memory
  use needs (all of it when unknown) at 80 % fill; saving = current - candidate (same pricing);
- spot: an on-demand instance running only training or batch workloads (interruptible) →
  saving = on-demand - spot price;
- reserved: an on-demand instance on all month (>= 700 h) with p50 utilisation >= 30 % →
  saving = on-demand - 1-year reserved price.

Savings of one instance do not overlap: idle excludes the rest; spot or reserved are priced on
the right-sized type. Findings group instances of the same kind, type and region, summing
their savings. Metrics: ``total_monthly_usd``, ``by_service`` (workload/service → USD, the
report's "cost by service"), ``by_type``, ``by_region``, ``by_pricing``, ``gpu_utilisation``
(one row per GPU instance), ``savings_usd`` by code, ``price_table_date``, ``unpriced``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.costs import InstanceCost, instance_costs, workload_costs
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import Instance, Inventory
from conveyor.packs.assess.reference import InstancePrice, price_table

NAME = "cloud_engineer"
IDLE_GPU_P95 = 10.0
UNDERUSED_P95 = 40.0
TARGET_P95 = 70.0
MEMORY_FILL = 80.0
STEADY_HOURS = 700.0
STEADY_P50 = 30.0
INTERRUPTIBLE = ("fine_tuning", "pretraining", "batch")


@dataclass
class _Group:
    code: str
    title: str
    severity: Severity
    recommendation: str
    risk: str | None
    evidence: list[str] = field(default_factory=list)
    saving: float = 0.0


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    table = price_table()
    costs = instance_costs(inventory)
    kinds: dict[str, str] = {w.id: w.kind for w in inventory.workloads}
    groups: dict[tuple[str, str, str], _Group] = {}
    unpriced: list[str] = []
    gpu_rows: list[dict[str, Any]] = []
    for n, cost in enumerate(costs):
        if n % 100 == 0:
            progress(n / max(1, len(costs)), f"instance {n + 1} of {len(costs)}")
        inst = cost.instance
        if cost.hourly_usd is None:
            unpriced.append(inst.id)
        if inst.gpu is not None:
            u = inst.utilisation
            gpu_rows.append(
                {
                    "id": inst.id,
                    "gpu": inst.gpu.model,
                    "count": inst.gpu.count,
                    "p50": u.gpu_p50,
                    "p95": u.gpu_p95,
                    "monthly_usd": round(cost.monthly_usd, 2),
                }
            )
        if cost.hourly_usd is None:
            continue
        for key, group, saving in _opportunities(cost, kinds, table.date):
            current = groups.setdefault(key, group)
            current.evidence.append(f"{cost.path}{_evidence_suffix(group.code)}")
            current.saving += saving
    progress(0.95, "summing up")
    findings = [
        Finding(
            analyzer=NAME,
            code=g.code,
            title=f"{g.title} ({len(g.evidence)} instance{'s' if len(g.evidence) > 1 else ''})",
            severity=g.severity,
            evidence=g.evidence,
            recommendation=g.recommendation,
            monthly_saving_usd=round(g.saving, 2),
            risk=g.risk,
        )
        for g in groups.values()
    ]
    if unpriced:
        findings.append(
            Finding(
                analyzer=NAME,
                code="data.unpriced",
                title=f"{len(unpriced)} instances have no price (type not in the price table "
                "and no hourly_usd)",
                severity="info",
                evidence=[
                    f"compute.instances[{c.index}].hourly_usd"
                    for c in costs
                    if c.hourly_usd is None
                ],
                recommendation="Give their hourly_usd so their cost is counted.",
            )
        )
    findings.sort(key=lambda f: -(f.monthly_saving_usd or 0))
    total = sum(c.monthly_usd for c in costs)
    savings: dict[str, float] = defaultdict(float)
    for f in findings:
        savings[f.code] += f.monthly_saving_usd or 0
    metrics = {
        "total_monthly_usd": round(total, 2),
        "by_service": _rounded(workload_costs(costs)),
        "by_type": _rounded(_sum_by(costs, lambda i: i.type)),
        "by_region": _rounded(_sum_by(costs, lambda i: i.region)),
        "by_pricing": _rounded(_sum_by(costs, lambda i: i.pricing)),
        "gpu_utilisation": gpu_rows,
        "savings_usd": _rounded(savings),
        "price_table_date": table.date,
        "unpriced": unpriced,
    }
    saving_total = sum(savings.values())
    summary = (
        f"Compute costs about ${total:,.0f} per month (prices of {table.date}); "
        f"{len(findings)} cost findings could save about ${saving_total:,.0f} per month."
    )
    progress(1.0, "done")
    return AnalyzerOutput(findings=findings, metrics=metrics, summary=summary)


def _opportunities(
    cost: InstanceCost, kinds: dict[str, str], table_date: str
) -> list[tuple[tuple[str, str, str], _Group, float]]:
    inst = cost.instance
    hourly = cost.hourly_usd or 0.0
    hours = inst.hours_per_month
    u = inst.utilisation
    key_tail = (inst.type, inst.region)
    out: list[tuple[tuple[str, str, str], _Group, float]] = []
    if inst.gpu is not None and u.gpu_p95 is not None and u.gpu_p95 < IDLE_GPU_P95:
        group = _Group(
            "cost.idle-gpu",
            f"Idle GPUs: {inst.type} in {inst.region} below {IDLE_GPU_P95:g} % GPU at p95",
            "high",
            "Stop these instances or move their work onto busy GPUs; schedule them only "
            "when there is work (scale to zero).",
            "Paying for GPUs that do nothing.",
        )
        return [(("cost.idle-gpu", *key_tail), group, cost.monthly_usd)]
    price_type = inst.type
    candidate = _rightsize(inst)
    if candidate is not None:
        factor = price_table().region_factor(inst.region)
        new_hourly = candidate.hourly(inst.pricing) * factor
        saving = (hourly - new_hourly) * hours
        if saving > 0:
            group = _Group(
                "cost.rightsize",
                f"Over-sized: {inst.type} in {inst.region} could be {candidate.type}",
                "medium",
                f"Move to {candidate.type} ({candidate.vcpu} vCPU, {candidate.memory_gib:g} GiB"
                + (f", {candidate.gpu_count}x{candidate.gpu_model}" if candidate.gpu_model else "")
                + f"): p95 utilisation would stay near {TARGET_P95:g} %. Check the model still "
                "fits (see the infrastructure analyzer).",
                None,
            )
            out.append((("cost.rightsize", *key_tail), group, saving))
            price_type = candidate.type
    table = price_table()
    price = table.instances.get(price_type)
    if inst.pricing != "on_demand" or price is None:
        return out
    factor = table.region_factor(inst.region)
    runs = [kinds.get(w) for w in inst.workloads]
    interruptible = bool(runs) and all(k in INTERRUPTIBLE for k in runs) and not inst.services
    steady_p50 = u.gpu_p50 if inst.gpu is not None else u.cpu_p50
    if interruptible:
        saving = (price.on_demand - price.spot) * factor * hours
        group = _Group(
            "cost.spot",
            f"Interruptible work on on-demand {inst.type} in {inst.region}",
            "medium",
            "Run training and batch work on spot capacity with checkpointing "
            f"(spot prices as of {table_date}).",
            "Spot capacity can be reclaimed: checkpoint at least every 30 minutes.",
        )
        out.append((("cost.spot", *key_tail), group, saving))
    elif hours >= STEADY_HOURS and steady_p50 is not None and steady_p50 >= STEADY_P50:
        saving = (price.on_demand - price.reserved) * factor * hours
        group = _Group(
            "cost.reserved",
            f"Steady on-demand {inst.type} in {inst.region}",
            "low",
            "Cover always-on instances with a 1-year commitment (reservation, savings plan "
            f"or committed-use discount; prices as of {table_date}).",
            "A commitment is paid even if the load moves away.",
        )
        out.append((("cost.reserved", *key_tail), group, saving))
    return out


def _rightsize(inst: Instance) -> InstancePrice | None:
    u = inst.utilisation
    if inst.gpu is not None:
        if u.gpu_p95 is None or u.gpu_p95 >= UNDERUSED_P95:
            return None
        gpus = math.ceil(inst.gpu.count * u.gpu_p95 / TARGET_P95)
        vcpus = 1
    else:
        if u.cpu_p95 is None or u.cpu_p95 >= UNDERUSED_P95:
            return None
        gpus = 0
        vcpus = math.ceil(inst.vcpu * u.cpu_p95 / TARGET_P95)
    mem_p95 = u.memory_p95 if u.memory_p95 is not None else MEMORY_FILL
    memory = inst.memory_gib * mem_p95 / MEMORY_FILL
    gpu_model = inst.gpu.model if inst.gpu else None
    candidates = [
        p
        for p in price_table().instances.values()
        if p.provider == inst.provider
        and p.gpu_model == gpu_model
        and p.gpu_count >= gpus
        and p.vcpu >= vcpus
        and p.memory_gib >= memory
        and p.type != inst.type
    ]
    best = min(candidates, key=lambda p: p.hourly(inst.pricing), default=None)
    current = price_table().instances.get(inst.type)
    if best is None or (current is not None and best.on_demand >= current.on_demand):
        return None
    return best


def _evidence_suffix(code: str) -> str:
    return {
        "cost.idle-gpu": ".utilisation.gpu_p95",
        "cost.rightsize": ".type",
        "cost.spot": ".pricing",
        "cost.reserved": ".pricing",
    }.get(code, "")


def _sum_by(costs: list[InstanceCost], key: Any) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for c in costs:
        out[key(c.instance)] += c.monthly_usd
    return dict(out)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in sorted(values.items(), key=lambda kv: -kv[1])}
