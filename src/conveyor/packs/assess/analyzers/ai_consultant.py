"""AI consultant: serving optimisations per inference workload, with estimated savings.

A workload's serving cost is its share of the instances it runs on (costs.workload_costs).
Decode is memory-bandwidth bound, so its throughput scales with 1 / (bytes read per step =
weights + KV cache, see capacity). Half of a throughput gain is taken as convertible into fewer
GPUs (``CONVERTIBLE``), the other half kept as headroom:

- quantisation (fp32/fp16/bf16 models of >= 1B parameters -> fp8 where every GPU serving it has
  FP8 units, else int8; fp32 models under 1B -> bf16): saving = cost * (1 - bytes_after /
  bytes_before) * CONVERTIBLE; weights memory = parameters * bytes/parameter before and after;
- continuous batching (off, chat/completion/batch, >= 1 request/s): throughput at least 2x, so
  ceil(replicas / 2) replicas do: saving = cost * (1 - ceil(r/2)/r) (none with one replica);
- a smaller or distilled model (>= 30B, chat/completion): an 8B model at the same precision reads
  8/parameters of the bytes: saving = cost * (1 - 8/parameters) * CONVERTIBLE, quality to be
  evaluated first;
- prefix caching (off, chat/completion, >= 500 input tokens): ``CACHED_PREFIX`` (30 %) of input
  tokens assumed shared (system prompt, history): saving = cost * prefill share of replica time
  * 0.3;
- embeddings on a >= 40 GB GPU: an L4 instance (g6.xlarge) per replica instead:
  saving = cost - replicas * g6.xlarge price * hours.

Metrics: ``workloads`` (one row per inference workload: cost, precision now and suggested,
weights GB before and after, savings by code, ``saving_usd``: their sum, counting only the
larger of quantisation and a smaller model, which are alternatives), ``total_saving_usd``.
"""

from __future__ import annotations

import math
from typing import Any

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.capacity import (
    Serving,
    kv_bytes_per_token,
    peak_rps,
    placements,
    replica_groups,
    serving,
    shape_of,
    weights_gb,
)
from conveyor.packs.assess.costs import instance_costs, workload_costs
from conveyor.packs.assess.findings import AnalyzerOutput, Finding
from conveyor.packs.assess.inventory import Inventory, Workload
from conveyor.packs.assess.reference import gpu_specs, price_table

NAME = "ai_consultant"
CONVERTIBLE = 0.5
CACHED_PREFIX = 0.3
SMALL_MODEL_B = 8.0
LARGE_MODEL_B = 30.0
GENERATIVE = ("chat", "completion", "batch")


def step_bytes(workload: Workload, precision: str, parameters_b: float, s: Serving) -> float:
    """GB read per decode step of a replica: weights + the batch's KV cache at ``precision``."""
    shape = shape_of(workload.model)
    kv = kv_bytes_per_token(shape, precision) * s.context_tokens * s.concurrent / 1e9
    return weights_gb(parameters_b, precision) + kv


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    costs = instance_costs(inventory)
    cost_of = workload_costs(costs)
    where = placements(inventory)
    specs = gpu_specs()
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    inference = [(i, w) for i, w in enumerate(inventory.workloads) if w.type == "inference"]
    for n, (wi, w) in enumerate(inference):
        progress(n / max(1, len(inference)), f"workload {w.id}")
        groups = replica_groups(inventory, where.get(w.id, []))
        known = {k: v for k, v in groups.items() if k[0] in specs}
        if known:
            rows.append(_advise(inventory, wi, w, known, cost_of.get(w.id, 0.0), findings))
    total = sum(r["saving_usd"] for r in rows)
    progress(1.0, "done")
    summary = (
        f"Reviewed {len(rows)} inference workloads; serving optimisations could save about "
        f"${total:,.0f} per month."
    )
    metrics = {"workloads": rows, "total_saving_usd": round(total, 2)}
    return AnalyzerOutput(findings=findings, metrics=metrics, summary=summary)


def _advise(
    inventory: Inventory,
    wi: int,
    w: Workload,
    known: dict[tuple[str, int], list[int]],
    cost: float,
    findings: list[Finding],
) -> dict[str, Any]:
    """The findings of one inference workload (appended to ``findings``) and its metrics row."""
    specs = gpu_specs()
    (gpu_model, gpu_count), members = max(known.items(), key=lambda kv: len(kv[1]))
    replicas = sum(len(m) for m in known.values())
    s = serving(w, specs[gpu_model], gpu_count, replicas)
    path = f"workloads[{wi}]"
    evidence_gpu = [f"compute.instances[{i}].gpu" for i in members]
    savings: dict[str, float] = {}
    row: dict[str, Any] = {
        "workload": w.id,
        "model": w.model.name,
        "monthly_cost_usd": round(cost, 2),
        "precision": w.model.precision,
        "suggested_precision": None,
        "weights_gb": round(s.weights_gb, 2),
        "weights_gb_after": None,
    }

    def add(code: str, title: str, saving: float | None, **kw: Any) -> None:
        if saving is not None:
            savings[code] = round(saving, 2)
        findings.append(
            Finding(
                analyzer=NAME,
                code=code,
                title=title,
                monthly_saving_usd=None if saving is None else round(saving, 2),
                **kw,
            )
        )

    target = _quantise_to(w, [specs[m].fp8 for m, _ in known])
    if target is not None:
        before = step_bytes(w, w.model.precision, w.model.parameters_b, s)
        after = step_bytes(w, target, w.model.parameters_b, s)
        after_weights = weights_gb(w.model.parameters_b, target)
        row["suggested_precision"] = target
        row["weights_gb_after"] = round(after_weights, 2)
        add(
            "serving.quantise",
            f"Quantise {w.model.name} from {w.model.precision} to {target}: weights "
            f"{s.weights_gb:.3g} GB -> {after_weights:.3g} GB",
            cost * (1 - after / before) * CONVERTIBLE,
            severity="medium",
            evidence=[f"{path}.model.precision", *evidence_gpu],
            recommendation=f"Serve an {target} checkpoint (e.g. FP8 with per-channel scales, "
            "or AWQ/GPTQ int8) after checking quality on your evaluation set; decode "
            f"throughput rises about {before / after:.1f}x.",
            risk="A measurable quality drop on some tasks if not evaluated.",
        )
    rps = peak_rps(w)
    if not w.batching and w.kind in GENERATIVE and rps >= 1:
        saving = cost * (1 - math.ceil(replicas / 2) / replicas) if replicas > 1 else None
        add(
            "serving.batching",
            f"Continuous batching is off for {w.id}",
            saving,
            severity="medium" if saving else "low",
            evidence=[f"{path}.batching"],
            recommendation="Serve with continuous batching and paged KV cache (vLLM, TGI, "
            "TensorRT-LLM): throughput per GPU typically rises 2x or more.",
            risk="Requests queue behind each other at peak; GPUs are paid for but half used.",
        )
    if w.model.parameters_b >= LARGE_MODEL_B and w.kind in ("chat", "completion"):
        ratio = SMALL_MODEL_B / w.model.parameters_b
        add(
            "serving.smaller-model",
            f"Try an {SMALL_MODEL_B:g}B or distilled model for {w.id} "
            f"(now {w.model.parameters_b:g}B)",
            cost * (1 - ratio) * CONVERTIBLE,
            severity="low",
            evidence=[f"{path}.model.parameters_b", f"{path}.slo"],
            recommendation="Route easy requests to a small model (or distil the large one) "
            "and keep the large model for the rest; measure quality per route.",
            risk="Lower answer quality if the small model is used where it is not good enough.",
        )
    tokens = w.tokens
    cacheable = not w.caching and w.kind in ("chat", "completion")
    if cacheable and tokens is not None and tokens.input >= 500 and s.load > 0:
        prefill_time = tokens.input / s.prefill_tokens_s
        decode_time = tokens.output / s.decode_tokens_s
        share = prefill_time / (prefill_time + decode_time)
        add(
            "serving.prefix-cache",
            f"Prefix caching is off for {w.id} ({tokens.input} input tokens a request)",
            cost * share * CACHED_PREFIX,
            severity="low",
            evidence=[f"{path}.caching", f"{path}.tokens.input"],
            recommendation="Enable prefix (KV) caching for shared system prompts and "
            "conversation history; put the stable part of the prompt first.",
        )
    if w.kind == "embedding" and specs[gpu_model].memory_gb >= 40:
        small = price_table().instances.get("g6.xlarge")
        if small is not None:
            hours = sum(inventory.compute.instances[i].hours_per_month for i in members)
            saving = cost - small.on_demand * hours
            if saving > 0:
                add(
                    "serving.embedding-gpu",
                    f"Embeddings of {w.id} run on {gpu_model} GPUs",
                    saving,
                    severity="medium",
                    evidence=[f"{path}.kind", *evidence_gpu],
                    recommendation="Serve embedding models on small inference GPUs "
                    "(L4, g6.xlarge) or CPUs; large GPUs are for large models.",
                )
    row["savings"] = savings
    # a smaller model and quantising the large one are alternatives: count the larger only
    overlap = min(savings.get("serving.quantise", 0.0), savings.get("serving.smaller-model", 0.0))
    row["saving_usd"] = round(sum(savings.values()) - overlap, 2)
    return row


def _quantise_to(w: Workload, fp8_support: list[bool]) -> str | None:
    precision = w.model.precision
    if w.model.parameters_b < 1:
        return "bf16" if precision == "fp32" else None
    if precision not in ("fp32", "fp16", "bf16"):
        return None
    return "fp8" if all(fp8_support) else "int8"
