"""Web research, offline: the fleet against a bundled, dated market snapshot.

The snapshot (``data/market/snapshot.toml``) records GPU generations (dense fp16 throughput,
memory, bandwidth, an indicative on-demand price per GPU-hour, status and successor) and the
retirement notices of instance families, as of its ``snapshot_date``. Nothing is fetched: the
analyzer never opens a connection, and every finding names the snapshot's date.

Findings:

- ``market.family-<status>``: instances of a family that is retired, retiring or previous
  generation (one finding per family; evidence: the instances' ``type`` paths);
- ``market.gpu-<status>.<model>``: GPUs of an old generation, with the saving of moving the same
  fp16 throughput to the successor: ``cost * (1 - (p_s / t_s) / (p_c / t_c))`` where ``p`` is
  the price per GPU-hour and ``t`` the throughput of the current (c) and successor (s) GPU,
  and ``cost`` the instances' monthly price (their ``hourly_usd`` or the pack's price
  table, see :mod:`conveyor.packs.assess.costs`; else the snapshot's price * GPU count *
  hours per month);
- ``market.gpu-unknown``: GPU models the snapshot does not know (info).

Metrics: ``snapshot_date``, ``price_performance`` (per GPU model: TFLOPS per $/hour, price,
status, GPUs of it in the fleet), ``fleet_by_generation`` (GPU count), ``unknown_gpus``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.costs import instance_cost
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import Instance, Inventory

__all__ = ["GpuGeneration", "Snapshot", "analyze", "gpu_generation", "snapshot"]

NAME = "web_research"
OLD = ("end-of-life", "legacy", "previous")
_GPU_SEVERITY: dict[str, Severity] = {"end-of-life": "high", "legacy": "medium", "previous": "low"}
_FAMILY_SEVERITY: dict[str, Severity] = {
    "retired": "high",
    "retiring": "medium",
    "previous-generation": "low",
}


@dataclass(frozen=True)
class GpuGeneration:
    model: str
    aliases: tuple[str, ...]
    generation: str
    year: int
    fp16_tflops: float
    memory_gb: float
    bandwidth_gbs: float
    usd_per_gpu_hour: float
    status: str
    successor: str

    @property
    def tflops_per_usd_hour(self) -> float:
        return self.fp16_tflops / self.usd_per_gpu_hour


@dataclass(frozen=True)
class FamilyNotice:
    provider: str
    family: str
    pattern: re.Pattern[str]
    gpu: str
    status: str
    notice: str
    retired_on: str | None = None


@dataclass(frozen=True)
class Snapshot:
    date: str
    source: str
    gpus: tuple[GpuGeneration, ...]
    families: tuple[FamilyNotice, ...]


@cache
def snapshot() -> Snapshot:
    """The bundled market snapshot (read once per process)."""
    text = resources.files("conveyor.packs.assess").joinpath("data/market/snapshot.toml")
    data = tomllib.loads(text.read_text(encoding="utf-8"))
    gpus = tuple(
        GpuGeneration(**{**g, "aliases": tuple(g.get("aliases", ()))}) for g in data["gpu"]
    )
    families = tuple(
        FamilyNotice(**{**f, "pattern": re.compile(f["pattern"], re.IGNORECASE)})
        for f in data["family"]
    )
    return Snapshot(str(data["snapshot_date"]), str(data["source"]), gpus, families)


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().upper().removeprefix("NVIDIA").strip())


@cache
def _by_name() -> dict[str, GpuGeneration]:
    out: dict[str, GpuGeneration] = {}
    for gpu in snapshot().gpus:
        for name in (gpu.model, *gpu.aliases):
            out[_key(name)] = gpu
    return out


def gpu_generation(model: str) -> GpuGeneration | None:
    """The snapshot's record of a GPU model (``"H100"``, ``"NVIDIA A100-SXM4-80GB"``), or None."""
    return _by_name().get(_key(model))


def family_notice(instance: Instance) -> FamilyNotice | None:
    """The retirement notice that covers this instance's type, if any."""
    for notice in snapshot().families:
        if notice.provider != instance.provider or not notice.pattern.match(instance.type):
            continue
        if notice.gpu:
            gen = gpu_generation(instance.gpu.model) if instance.gpu else None
            if gen is None or gen.model != notice.gpu:
                continue
        return notice
    return None


def monthly_cost(instance: Instance) -> float | None:
    """The instance's monthly price: its own hourly price or the pack's price table (as every
    analyzer prices it), else the snapshot's price per GPU-hour."""
    priced = instance_cost(0, instance)
    if priced.priced_from != "unknown":
        return priced.monthly_usd
    gen = gpu_generation(instance.gpu.model) if instance.gpu else None
    if gen is None or instance.gpu is None:
        return None
    return gen.usd_per_gpu_hour * instance.gpu.count * instance.hours_per_month


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """Compare the fleet's instance families and GPU generations with the snapshot."""
    snap = snapshot()
    families: dict[str, tuple[FamilyNotice, list[str]]] = {}
    old_gpus: dict[str, list[int]] = {}
    unknown: dict[str, list[str]] = {}
    fleet: dict[str, int] = {}
    by_generation: dict[str, int] = {}
    instances = inventory.compute.instances
    for i, inst in enumerate(instances):
        if i % 200 == 0:
            progress(0.9 * i / max(1, len(instances)), "instances")
        notice = family_notice(inst)
        if notice is not None:
            families.setdefault(notice.family, (notice, []))[1].append(
                f"compute.instances[{i}].type"
            )
        if inst.gpu is None:
            continue
        gen = gpu_generation(inst.gpu.model)
        if gen is None:
            unknown.setdefault(inst.gpu.model, []).append(f"compute.instances[{i}].gpu.model")
            continue
        fleet[gen.model] = fleet.get(gen.model, 0) + inst.gpu.count
        by_generation[gen.generation] = by_generation.get(gen.generation, 0) + inst.gpu.count
        if gen.status in OLD:
            old_gpus.setdefault(gen.model, []).append(i)
    findings = [_family_finding(snap, notice, paths) for notice, paths in families.values()]
    for model, indexes in old_gpus.items():
        gen = gpu_generation(model)
        assert gen is not None
        findings.append(_gpu_finding(snap, gen, [instances[i] for i in indexes], indexes))
    if unknown:
        findings.append(
            Finding(
                analyzer=NAME,
                code="market.gpu-unknown",
                title=f"GPU models not in the market snapshot of {snap.date}: "
                + ", ".join(sorted(unknown)),
                severity="info",
                evidence=[p for paths in unknown.values() for p in paths][:100],
                recommendation="Check the model name (e.g. H100-SXM, A100-80GB, L4); unknown"
                " models are left out of the price-performance comparison.",
            )
        )
    progress(1.0, "done")
    table = [
        {
            "model": g.model,
            "generation": g.generation,
            "year": g.year,
            "status": g.status,
            "usd_per_gpu_hour": g.usd_per_gpu_hour,
            "tflops_per_usd_hour": round(g.tflops_per_usd_hour, 1),
            "in_fleet": fleet.get(g.model, 0),
        }
        for g in sorted(snap.gpus, key=lambda g: -g.tflops_per_usd_hour)
    ]
    saving = sum(f.monthly_saving_usd or 0.0 for f in findings)
    old_count = sum(fleet[m] for m in old_gpus)
    summary = (
        f"Market snapshot of {snap.date}: {old_count} of {sum(fleet.values())} GPUs are of an"
        f" older generation and {sum(len(p) for _, p in families.values())} instances belong to"
        f" retired or previous-generation families"
        + (f"; moving them saves about ${saving:,.0f} a month." if saving else ".")
    )
    metrics: dict[str, Any] = {
        "snapshot_date": snap.date,
        "price_performance": table,
        "fleet_by_generation": by_generation,
        "unknown_gpus": sorted(unknown),
    }
    return AnalyzerOutput(findings=findings, metrics=metrics, summary=summary)


def _family_finding(snap: Snapshot, notice: FamilyNotice, paths: list[str]) -> Finding:
    when = f" on {notice.retired_on}" if notice.retired_on else ""
    word = notice.status.replace("-", " ")
    return Finding(
        analyzer=NAME,
        code=f"market.family-{notice.status}",
        title=f"{len(paths)} instances of the {notice.provider} {notice.family} family"
        f" ({word}{when}; snapshot of {snap.date})",
        severity=_FAMILY_SEVERITY.get(notice.status, "low"),
        evidence=paths[:100],
        recommendation=f"{notice.notice} Move these instances to a current family before"
        f" capacity or support ends (market snapshot of {snap.date}).",
        risk="Instances that cannot be replaced or restarted when the family goes away.",
    )


def _gpu_finding(
    snap: Snapshot, gen: GpuGeneration, instances: list[Instance], indexes: list[int]
) -> Finding:
    successor = gpu_generation(gen.successor) if gen.successor else None
    costs = [monthly_cost(inst) for inst in instances]
    cost = sum(c for c in costs if c is not None)
    saving: float | None = None
    advice = f"Plan a move off {gen.model} ({gen.generation}, {gen.year})."
    if successor is not None:
        ratio = (successor.usd_per_gpu_hour / successor.fp16_tflops) / (
            gen.usd_per_gpu_hour / gen.fp16_tflops
        )
        if cost and ratio < 1:
            saving = round(cost * (1 - ratio), 2)
        advice = (
            f"Move to {successor.model} ({successor.generation}):"
            f" {successor.tflops_per_usd_hour:.0f} fp16 TFLOPS per $/hour against"
            f" {gen.tflops_per_usd_hour:.0f}, and"
            f" {successor.memory_gb:g} GB per GPU against {gen.memory_gb:g}. The saving assumes"
            " the same throughput is bought; memory-bound serving may need a different count."
        )
    gpus = sum(inst.gpu.count for inst in instances if inst.gpu)
    return Finding(
        analyzer=NAME,
        code=f"market.gpu-{gen.status}.{re.sub(r'[^a-z0-9]+', '-', gen.model.lower())}",
        title=f"{gpus} {gen.model} GPUs ({gen.generation}, {gen.status}; snapshot of {snap.date})",
        severity=_GPU_SEVERITY[gen.status],
        evidence=[f"compute.instances[{i}].gpu.model" for i in indexes][:100],
        recommendation=f"{advice} (Prices and status: market snapshot of {snap.date}.)",
        monthly_saving_usd=saving,
        risk="Paying more per unit of work each month; older GPUs lack bf16/fp8 and lose"
        " driver and framework support.",
    )
