"""Capacity arithmetic of serving and training a model on GPUs (docs/assess.md, "the formulas").

Units: GB are 10^9 bytes, TB/s 10^12 bytes/s, TFLOPS 10^12 FLOP/s, parameters in billions.

- weights (GB) = parameters_b * bytes per parameter (fp32 4, bf16/fp16 2, fp8/int8 1, int4 0.5)
- KV cache per token (bytes) = 2 (K and V) * layers * kv_heads * head_dim * KV bytes
  (the KV cache stays in 16 bits for weight-only int8/int4 quantisation, 1 byte for fp8)
- KV cache (GB) = per token * C context tokens * N concurrent sequences / 10^9
- it fits when weights + KV <= 90 % of the replica's GPU memory (the rest: runtime, activations)
- a decode step reads the weights and the batch's KV cache once:
  step (s) = (weights + KV) / (GPUs * bandwidth); per replica decode tokens/s = N / step
- prefill is compute-bound at 2 * parameters FLOPs per token and 50 % of peak tensor FLOPS:
  prefill tokens/s = GPUs * TFLOPS * 0.5 * 10^12 / (2 * parameters_b * 10^9)
- N = ceil(requests/s per replica * the p50 latency SLO (s)) (Little's law; 1 s without an SLO)
- time to first token = input tokens / prefill tokens/s; request latency = TTFT + output * step
- load = requests/s per replica * (input / prefill rate + output / decode rate); headroom = 1/load
- training state (GB) = parameters_b * 16 (fp16 weights and gradients, fp32 master weights,
  two Adam moments), against the GPU memory of every instance that runs the training
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from conveyor.packs.assess.inventory import Inventory, ModelSpec, Workload
from conveyor.packs.assess.reference import GpuSpec, ModelShape, shape_for

__all__ = [
    "BYTES_PER_PARAM",
    "COMPUTE_EFFICIENCY",
    "KV_BYTES",
    "TRAINING_BYTES_PER_PARAM",
    "USABLE_MEMORY",
    "Serving",
    "concurrent_sequences",
    "context_tokens",
    "kv_bytes_per_token",
    "peak_rps",
    "placements",
    "replica_groups",
    "serving",
    "shape_of",
    "tensor_tflops",
    "weights_gb",
]

BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}
KV_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 2, "int4": 2}
USABLE_MEMORY = 0.9
COMPUTE_EFFICIENCY = 0.5
TRAINING_BYTES_PER_PARAM = 16
DEFAULT_LATENCY_S = 1.0


def shape_of(model: ModelSpec) -> ModelShape:
    """The model's transformer shape: its own ``architecture`` or the nearest reference."""
    if model.architecture is not None:
        a = model.architecture
        return ModelShape(model.name, model.parameters_b, a.layers, a.kv_heads, a.head_dim)
    return shape_for(model.parameters_b)


def weights_gb(parameters_b: float, precision: str) -> float:
    return parameters_b * BYTES_PER_PARAM[precision]


def kv_bytes_per_token(shape: ModelShape, precision: str) -> float:
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * KV_BYTES[precision]


def tensor_tflops(gpu: GpuSpec, precision: str) -> float:
    """Dense tensor TFLOPS of one GPU at the precision the model computes in."""
    if precision == "fp32":
        return gpu.tflops_fp16 / 2  # TF32 runs at half the FP16 rate
    if precision == "fp8" and not gpu.fp8:
        return gpu.tflops_fp16  # no FP8 units: runs as FP16
    if precision in ("fp8", "int8"):
        return gpu.tflops_fp8
    return gpu.tflops_fp16  # bf16, fp16; int4 is weight-only, computes in 16 bits


def context_tokens(workload: Workload) -> int:
    """Tokens a sequence holds in the KV cache: input + output, at most the context length."""
    if workload.tokens is None:
        return workload.model.context_length
    used = workload.tokens.input + workload.tokens.output
    return max(1, min(workload.model.context_length, used))


def peak_rps(workload: Workload) -> float:
    """Requests/s to size for: the peak if given, else the mean, else 0."""
    if workload.peak_requests_per_s is not None:
        return workload.peak_requests_per_s
    return workload.requests_per_s or 0.0


def concurrent_sequences(workload: Workload, replicas: int) -> int:
    rps = peak_rps(workload)
    slo = workload.slo.p50_ms if workload.slo and workload.slo.p50_ms else None
    latency_s = slo / 1000 if slo else DEFAULT_LATENCY_S
    return max(1, math.ceil(rps / max(1, replicas) * latency_s))


@dataclass(frozen=True)
class Serving:
    """One replica (one instance's GPUs) serving a workload; see the module docstring."""

    gpu: str
    gpus: int
    replicas: int
    weights_gb: float
    kv_bytes_per_token: float
    context_tokens: int
    concurrent: int
    kv_gb: float
    usable_gb: float
    fits: bool
    weights_fit: bool
    decode_step_ms: float
    decode_tokens_s: float
    prefill_tokens_s: float
    ttft_ms: float
    latency_ms: float
    load: float  # share of one replica's time the demand needs (> 1: over capacity)

    @property
    def headroom(self) -> float:
        return math.inf if self.load < 1e-12 else 1 / self.load

    def as_metrics(self) -> dict[str, Any]:
        out = asdict(self)
        out["headroom"] = self.headroom
        # JSON has no infinity: a headroom without load (or a vanishing one) is "none needed"
        return {
            k: (round(v, 3) if math.isfinite(v) else None) if isinstance(v, float) else v
            for k, v in out.items()
        }


def serving(workload: Workload, gpu: GpuSpec, gpus: int, replicas: int) -> Serving:
    """Capacity of ``replicas`` replicas of ``gpus`` * ``gpu`` serving ``workload``."""
    model = workload.model
    shape = shape_of(model)
    weights = weights_gb(model.parameters_b, model.precision)
    per_token = kv_bytes_per_token(shape, model.precision)
    ctx = context_tokens(workload)
    n = concurrent_sequences(workload, replicas)
    kv = per_token * ctx * n / 1e9
    usable = USABLE_MEMORY * gpu.memory_gb * gpus
    step_s = (weights + kv) / (gpus * gpu.bandwidth_tbs * 1000)  # GB / (GB/s)
    decode_rate = n / step_s
    flops = gpus * tensor_tflops(gpu, model.precision) * 1e12 * COMPUTE_EFFICIENCY
    prefill_rate = flops / (2 * model.parameters_b * 1e9)
    tokens_in = workload.tokens.input if workload.tokens else 0
    tokens_out = workload.tokens.output if workload.tokens else 0
    ttft_s = tokens_in / prefill_rate
    rps = peak_rps(workload) / max(1, replicas)
    load = rps * (tokens_in / prefill_rate + tokens_out / decode_rate)
    return Serving(
        gpu=gpu.model,
        gpus=gpus,
        replicas=replicas,
        weights_gb=weights,
        kv_bytes_per_token=per_token,
        context_tokens=ctx,
        concurrent=n,
        kv_gb=kv,
        usable_gb=usable,
        fits=weights + kv <= usable,
        weights_fit=weights <= usable,
        decode_step_ms=step_s * 1000,
        decode_tokens_s=decode_rate,
        prefill_tokens_s=prefill_rate,
        ttft_ms=ttft_s * 1000,
        latency_ms=(ttft_s + tokens_out * step_s) * 1000,
        load=load,
    )


def placements(inventory: Inventory) -> dict[str, list[int]]:
    """Workload id → indexes of the instances that run it (in inventory order)."""
    out: dict[str, list[int]] = {w.id: [] for w in inventory.workloads}
    for i, inst in enumerate(inventory.compute.instances):
        for wid in inst.workloads:
            out.setdefault(wid, []).append(i)
    return out


def replica_groups(inventory: Inventory, indexes: list[int]) -> dict[tuple[str, int], list[int]]:
    """The GPU instances among ``indexes`` grouped by (GPU model, GPUs per instance)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i in indexes:
        gpu = inventory.compute.instances[i].gpu
        if gpu is not None:
            groups.setdefault((gpu.model, gpu.count), []).append(i)
    return groups
