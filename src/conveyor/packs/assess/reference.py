"""The pack's reference data, shipped in ``data/``: GPU specs, model shapes, cloud prices.

Each file carries a ``_meta`` block with its date, sources and caveats; analyzers quote the
date in what they say. Loaded once per process and read-only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "GpuSpec",
    "InstancePrice",
    "ModelShape",
    "PriceTable",
    "data_text",
    "gpu_specs",
    "model_shapes",
    "price_table",
    "shape_for",
]


@dataclass(frozen=True)
class GpuSpec:
    model: str
    memory_gb: float  # 10^9 bytes
    bandwidth_tbs: float  # 10^12 bytes/s
    tflops_fp16: float  # dense FP16/BF16 tensor
    tflops_fp8: float  # dense FP8, or INT8 where the GPU has no FP8
    fp8: bool
    year: int
    generation: str


@dataclass(frozen=True)
class ModelShape:
    name: str
    parameters_b: float
    layers: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class InstancePrice:
    type: str
    provider: str
    vcpu: int
    memory_gib: float
    gpu_model: str | None
    gpu_count: int
    on_demand: float  # USD/hour in the provider's base region
    spot: float
    reserved: float

    def hourly(self, pricing: str) -> float:
        price: float = getattr(self, pricing)
        return price


@dataclass(frozen=True)
class PriceTable:
    date: str
    regions: dict[str, float]  # multiplier on the base region's price
    storage_gb_month: dict[str, float]
    instances: dict[str, InstancePrice]

    def region_factor(self, region: str) -> float:
        return self.regions.get(region, 1.0)


def data_text(name: str) -> str:
    """A file of ``data/`` as text."""
    return resources.files("conveyor.packs.assess").joinpath("data", name).read_text("utf-8")


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(data_text(name))
    return loaded


@cache
def gpu_specs() -> dict[str, GpuSpec]:
    """GPU model → spec (``data/gpus.json``)."""
    return {name: GpuSpec(model=name, **spec) for name, spec in _load("gpus.json")["gpus"].items()}


@cache
def model_shapes() -> tuple[ModelShape, ...]:
    """Reference transformer shapes by size (``data/models.json``), smallest first."""
    shapes = (ModelShape(**s) for s in _load("models.json")["shapes"])
    return tuple(sorted(shapes, key=lambda s: s.parameters_b))


def shape_for(parameters_b: float) -> ModelShape:
    """The reference shape nearest to ``parameters_b`` on a log scale."""
    return min(model_shapes(), key=lambda s: abs(math.log(s.parameters_b / parameters_b)))


@cache
def price_table() -> PriceTable:
    """The dated cloud price table (``data/prices.json``)."""
    raw = _load("prices.json")
    instances = {
        name: InstancePrice(
            type=name,
            provider=p["provider"],
            vcpu=p["vcpu"],
            memory_gib=p["memory_gib"],
            gpu_model=p["gpu"]["model"] if p["gpu"] else None,
            gpu_count=p["gpu"]["count"] if p["gpu"] else 0,
            on_demand=p["on_demand"],
            spot=p["spot"],
            reserved=p["reserved"],
        )
        for name, p in raw["instances"].items()
    }
    return PriceTable(
        date=raw["_meta"]["date"],
        regions=raw["regions"],
        storage_gb_month=raw["storage_gb_month"],
        instances=instances,
    )
