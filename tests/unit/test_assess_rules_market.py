"""The offline market scan: families and GPU generations against the bundled snapshot, with
the savings worked out by hand."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from conveyor.packs.assess.analyzers import no_progress
from conveyor.packs.assess.analyzers.web_research import analyze, gpu_generation, snapshot
from conveyor.packs.assess.inventory import Inventory


def instance(
    i: int, type_: str, gpu: str | None, provider: str = "aws", count: int = 1, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f"i{i}", "type": type_, "provider": provider, "vcpu": 8}
    out |= {"memory_gib": 61, "region": "us-east-1", "zone": "us-east-1a", **extra}
    if gpu:
        out["gpu"] = {"model": gpu, "count": count}
    return out


FLEET = [
    instance(0, "p3.2xlarge", "V100", hourly_usd=3.06),
    instance(1, "Standard_NC6", "K80", provider="azure"),
    instance(2, "n1-standard-8", "T4", provider="gcp"),
    instance(3, "p5.48xlarge", "H100-SXM", count=8),
    instance(4, "ct5lp-hightpu-1t", "TPU-v5e", provider="gcp"),
    instance(5, "m5.large", None),
]


def run() -> Any:
    inv = Inventory.model_validate(
        {
            "organisation": {"name": "x"},
            "compute": {"instances": FLEET},
            "budget": {"monthly_usd": 1},
        }
    )
    return analyze(inv, no_progress)


def test_families_and_generations_hand_checked() -> None:
    output = run()
    found = {f.code: f for f in output.findings}
    assert set(found) == {
        "market.family-previous-generation",  # p3
        "market.family-retired",  # Azure NC (K80)
        "market.gpu-legacy.v100",  # V100
        "market.gpu-end-of-life.k80",  # K80
        "market.gpu-previous.t4",  # T4 (n1 with a T4 is not the K80 notice)
        "market.gpu-unknown",  # TPU-v5e
    }
    assert found["market.family-retired"].evidence == ["compute.instances[1].type"]
    assert found["market.family-retired"].severity == "high"
    assert "31 August 2023" in found["market.family-retired"].recommendation
    assert found["market.family-previous-generation"].evidence == ["compute.instances[0].type"]
    # V100 at its own price, 3.06 $/h x 730 h = 2,233.80 $, moved to L40S:
    # (1.86 / 362) / (3.06 / 125) of the price for the same fp16 throughput
    v100 = found["market.gpu-legacy.v100"]
    assert v100.monthly_saving_usd == pytest.approx(
        2233.8 * (1 - (1.86 / 362) / (3.06 / 125)), abs=0.01
    )
    assert v100.monthly_saving_usd == pytest.approx(1764.95, abs=0.1)
    # K80 without a price: the snapshot's 0.90 $/h x 730 h = 657 $, moved to L4
    k80 = found["market.gpu-end-of-life.k80"]
    assert k80.monthly_saving_usd == pytest.approx(
        657 * (1 - (0.80 / 121) / (0.90 / 4.4)), abs=0.01
    )
    assert k80.evidence == ["compute.instances[1].gpu.model"]
    assert found["market.gpu-previous.t4"].monthly_saving_usd == pytest.approx(
        0.53 * 730 * (1 - (0.80 / 121) / (0.53 / 65)), abs=0.01
    )
    assert found["market.gpu-unknown"].evidence == ["compute.instances[4].gpu.model"]


def test_every_finding_names_the_snapshot_date() -> None:
    date = snapshot().date
    output = run()
    assert output.metrics["snapshot_date"] == date
    assert date in output.summary
    for finding in output.findings:
        assert date in finding.title or date in finding.recommendation, finding.code


def test_metrics_for_the_report() -> None:
    metrics = run().metrics
    table = {row["model"]: row for row in metrics["price_performance"]}
    assert table["H100-SXM"]["in_fleet"] == 8
    assert table["K80"]["in_fleet"] == 1
    ranks = [row["tflops_per_usd_hour"] for row in metrics["price_performance"]]
    assert ranks == sorted(ranks, reverse=True)
    assert metrics["fleet_by_generation"] == {"Volta": 1, "Kepler": 1, "Turing": 1, "Hopper": 8}
    assert metrics["unknown_gpus"] == ["TPU-v5e"]


@pytest.mark.parametrize(
    ("name", "model"),
    [("H100", "H100-SXM"), ("NVIDIA A100-SXM4-80GB", "A100-80GB"), ("tesla v100", "V100"),
     ("l4", "L4"), ("H100_80GB", "H100-SXM"), ("RTX-9999", None)],
)  # fmt: skip
def test_gpu_names_are_normalised(name: str, model: str | None) -> None:
    gen = gpu_generation(name)
    assert (gen.model if gen else None) == model


def test_the_scan_never_opens_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("web_research must stay offline")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert run().findings
