"""Infrastructure: capacity of every model on its GPUs, and reliability of what runs it.

Capacity (formulas in :mod:`conveyor.packs.assess.capacity`): for each inference workload and
each group of instances serving it with the same GPUs, whether weights + KV cache fit, the
decode and prefill rates, the latency estimate against the SLO, and the headroom against the
peak load; for each training workload, the training state against the GPU memory it has.
Reliability: inference workloads and critical services on a single instance (high when
critical, else medium), in a single zone, or critical on spot capacity only,
datasets without backups (or with short retention), and GPU models the pack does not know.

Metrics: ``capacity`` (one row per workload and GPU group, see ``Serving.as_metrics``),
``training`` (rows), ``zones`` (service or workload → zones), ``unknown_gpus``.
"""

from __future__ import annotations

import math
from typing import Any

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.capacity import (
    TRAINING_BYTES_PER_PARAM,
    Serving,
    placements,
    replica_groups,
    serving,
)
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import Inventory, Workload, unknown_gpus
from conveyor.packs.assess.reference import gpu_specs

NAME = "infrastructure"
HEADROOM_MIN = 1.3  # below: a peak 30 % above the stated one saturates the replicas
RETENTION_MIN_DAYS = 7


def _finding(code: str, title: str, severity: Severity, evidence: list[str], **kw: Any) -> Finding:
    return Finding(
        analyzer=NAME, code=code, title=title, severity=severity, evidence=evidence, **kw
    )


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    findings: list[Finding] = []
    progress(0.0, "capacity")
    capacity, training = _capacity(inventory, findings, progress)
    progress(0.6, "reliability")
    zones = _reliability(inventory, findings)
    progress(0.9, "GPU models")
    unknown = unknown_gpus(inventory, gpu_specs())
    for path, model in unknown:
        findings.append(
            _finding(
                "data.unknown-gpu",
                f"GPU model {model!r} is not in the pack's GPU table",
                "info",
                [path],
                recommendation="Name the GPU as the table does (see data/gpus.json) so its "
                "capacity can be checked; it was left out of the capacity figures.",
                risk="Capacity problems on these instances go unseen.",
            )
        )
    progress(1.0, "done")
    blocking = sum(1 for f in findings if f.severity in ("critical", "high"))
    summary = (
        f"Checked {len(capacity)} serving configurations and {len(training)} training jobs; "
        f"{blocking} critical or high capacity/reliability findings."
    )
    metrics = {
        "capacity": capacity,
        "training": training,
        "zones": zones,
        "unknown_gpus": [m for _, m in unknown],
    }
    return AnalyzerOutput(findings=findings, metrics=metrics, summary=summary)


def _capacity(
    inventory: Inventory, findings: list[Finding], progress: Progress
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    specs = gpu_specs()
    where = placements(inventory)
    rows: list[dict[str, Any]] = []
    training: list[dict[str, Any]] = []
    total = max(1, len(inventory.workloads))
    for wi, workload in enumerate(inventory.workloads):
        if wi % 10 == 0:
            progress(0.6 * wi / total, f"capacity of {workload.id}")
        wpath = f"workloads[{wi}]"
        indexes = where.get(workload.id, [])
        if not indexes:
            findings.append(
                _finding(
                    "capacity.unplaced",
                    f"Workload {workload.id} runs on no listed instance",
                    "low",
                    [f"{wpath}.id"],
                    recommendation="List the instances that run it (compute.instances[].workloads)"
                    " so its capacity and cost can be assessed.",
                )
            )
            continue
        if workload.type == "training":
            training.append(_training(inventory, workload, wpath, indexes, findings))
            continue
        groups = replica_groups(inventory, indexes)
        if not groups and workload.model.parameters_b >= 1:
            findings.append(
                _finding(
                    "capacity.no-gpu",
                    f"{workload.model.name} ({workload.model.parameters_b:g}B) is served "
                    "without GPUs",
                    "high",
                    [f"{wpath}.model", *(f"compute.instances[{i}].gpu" for i in indexes)],
                    recommendation="Serve models of a billion parameters or more on GPUs.",
                    risk="CPU decoding of a model this size is orders of magnitude slower.",
                )
            )
        for (model, count), members in groups.items():
            spec = specs.get(model)
            if spec is None:
                continue
            s = serving(workload, spec, count, len(members))
            row = {"workload": workload.id, "model": workload.model.name, **s.as_metrics()}
            row["precision"] = workload.model.precision
            row["parameters_b"] = workload.model.parameters_b
            rows.append(row)
            _judge(workload, wpath, members, s, findings)
    return rows, training


def _judge(
    workload: Workload, wpath: str, members: list[int], s: Serving, out: list[Finding]
) -> None:
    gpu_paths = [f"compute.instances[{i}].gpu" for i in members]
    model = workload.model
    what = f"{model.name} ({model.parameters_b:g}B, {model.precision}) on {s.gpus}x{s.gpu}"
    if not s.weights_fit:
        out.append(
            _finding(
                "capacity.does-not-fit",
                f"{what}: the weights alone ({s.weights_gb:.0f} GB) exceed the usable "
                f"{s.usable_gb:.0f} GB",
                "critical",
                [f"{wpath}.model.parameters_b", f"{wpath}.model.precision", *gpu_paths],
                recommendation="Quantise the model or serve it on more or larger GPUs "
                "(tensor parallelism across an instance with enough memory).",
                risk="The model cannot be loaded as described.",
            )
        )
        return
    if not s.fits:
        out.append(
            _finding(
                "capacity.kv-cache",
                f"{what}: KV cache for {s.concurrent} sequences of {s.context_tokens} tokens "
                f"({s.kv_gb:.0f} GB) does not fit next to the weights",
                "high",
                [f"{wpath}.model.context_length", f"{wpath}.requests_per_s", *gpu_paths],
                recommendation="Add replicas, shorten the context, or use an fp8 KV cache; "
                "otherwise requests queue or are preempted at peak.",
                risk="Throughput collapses at peak as sequences are swapped or rejected.",
            )
        )
    if s.load > 0 and s.headroom < HEADROOM_MIN:
        severity: Severity = "high" if s.load > 1 else "medium"
        needed = math.ceil(s.replicas * s.load * HEADROOM_MIN)
        out.append(
            _finding(
                "capacity.headroom",
                f"{what}: peak load uses {s.load:.0%} of the serving capacity",
                severity,
                [f"{wpath}.peak_requests_per_s", f"{wpath}.tokens", *gpu_paths],
                recommendation=f"Run about {needed} replicas (now {s.replicas}) to keep "
                f"{HEADROOM_MIN:g}x headroom at peak, or enable batching/quantisation.",
                risk="Latency SLO breaches and queueing at peak traffic.",
            )
        )
    slo = workload.slo.p50_ms if workload.slo else None
    if slo is not None and s.latency_ms > slo:
        out.append(
            _finding(
                "capacity.slo",
                f"{what}: estimated latency {s.latency_ms:.0f} ms exceeds the p50 SLO "
                f"of {slo:g} ms",
                "high",
                [f"{wpath}.slo.p50_ms", f"{wpath}.tokens.output", *gpu_paths],
                recommendation="Use faster GPUs (memory bandwidth), fewer output tokens, "
                "a smaller or quantised model, or relax the SLO.",
                risk="Even an idle replica cannot meet the SLO.",
            )
        )


def _training(
    inventory: Inventory, workload: Workload, wpath: str, indexes: list[int], out: list[Finding]
) -> dict[str, Any]:
    specs = gpu_specs()
    need = workload.model.parameters_b * TRAINING_BYTES_PER_PARAM
    have = 0.0
    largest = 0.0
    for i in indexes:
        gpu = inventory.compute.instances[i].gpu
        if gpu is not None and gpu.model in specs:
            mem = specs[gpu.model].memory_gb * gpu.count
            have += mem
            largest = max(largest, mem)
    paths = [f"{wpath}.model.parameters_b", *(f"compute.instances[{i}].gpu" for i in indexes)]
    if have and need > have:
        out.append(
            _finding(
                "capacity.training-memory",
                f"Training {workload.model.name}: {need:.0f} GB of training state vs "
                f"{have:.0f} GB of GPU memory",
                "high",
                paths,
                recommendation="Use parameter-efficient fine-tuning (LoRA), CPU/NVMe offload, "
                "or more GPUs.",
                risk="Full training of this model does not fit in the listed GPUs.",
            )
        )
    elif have and need > largest:
        out.append(
            _finding(
                "capacity.training-sharding",
                f"Training {workload.model.name} needs its state sharded across instances",
                "info",
                paths,
                recommendation="Use fully sharded data parallelism (FSDP / ZeRO-3) with a fast "
                "interconnect between the instances.",
                risk="Without sharding the run does not start; on a slow network it crawls.",
            )
        )
    return {"workload": workload.id, "state_gb": need, "gpu_memory_gb": have}


def _reliability(inventory: Inventory, out: list[Finding]) -> dict[str, list[str]]:
    instances = inventory.compute.instances
    by_target: dict[str, list[int]] = {}
    for i, inst in enumerate(instances):
        for target in {*inst.workloads, *inst.services}:
            by_target.setdefault(target, []).append(i)
    critical = {s.id for s in inventory.services if s.critical}
    critical |= {w.id for w in inventory.workloads if w.critical}
    serving = {w.id for w in inventory.workloads if w.type == "inference"}
    zones: dict[str, list[str]] = {}
    for target, members in sorted(by_target.items()):
        zone_set = sorted({f"{instances[i].region}/{instances[i].zone}" for i in members})
        zones[target] = zone_set
        if target not in critical and target not in serving:
            continue
        evidence = [f"compute.instances[{i}].zone" for i in members]
        if target in critical and all(instances[i].pricing == "spot" for i in members):
            out.append(
                _finding(
                    "reliability.spot-only",
                    f"Critical {target} runs on spot capacity only",
                    "medium",
                    [f"compute.instances[{i}].pricing" for i in members],
                    recommendation="Keep a floor of on-demand or reserved instances for "
                    "critical services; use spot for the burst above it.",
                    risk="A spot reclaim wave takes the service down at once.",
                )
            )
        if len(members) == 1:
            out.append(
                _finding(
                    "reliability.single-instance",
                    f"{target} runs on a single instance"
                    + ("" if target in critical else " (not marked critical)"),
                    "high" if target in critical else "medium",
                    [f"compute.instances[{members[0]}].id"],
                    recommendation="Run at least two instances behind a load balancer, in "
                    "different zones.",
                    risk="One instance failure or maintenance takes it down.",
                )
            )
        elif len(zone_set) == 1:
            out.append(
                _finding(
                    "reliability.single-zone",
                    f"{target} runs in one zone only ({zone_set[0]})",
                    "medium",
                    evidence,
                    recommendation="Spread its instances over at least two availability zones.",
                    risk="A zone outage takes it down.",
                )
            )
    used_by_critical = {d for s in inventory.services if s.critical for d in s.datasets}
    used_by_critical |= {d for w in inventory.workloads if w.critical for d in w.datasets}
    for di, dataset in enumerate(inventory.storage.datasets):
        path = f"storage.datasets[{di}].backup"
        if not dataset.backup.enabled:
            severity: Severity = "high" if dataset.id in used_by_critical else "medium"
            out.append(
                _finding(
                    "reliability.no-backup",
                    f"Dataset {dataset.id} ({dataset.size_gb:g} GB) has no backup",
                    severity,
                    [f"{path}.enabled"],
                    recommendation="Back it up with versioned snapshots kept in another region.",
                    risk="Deletion, corruption or ransomware loses it for good.",
                )
            )
        elif (dataset.backup.retention_days or 0) < RETENTION_MIN_DAYS:
            out.append(
                _finding(
                    "reliability.short-retention",
                    f"Dataset {dataset.id} keeps backups under {RETENTION_MIN_DAYS} days",
                    "low",
                    [f"{path}.retention_days"],
                    recommendation="Keep backups for at least 30 days so late-detected "
                    "corruption can still be undone.",
                    risk="Corruption noticed after the retention window cannot be undone.",
                )
            )
    return zones
