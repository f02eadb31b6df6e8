"""The chatbot analyzer: conversations turn by turn, checked against arithmetic written here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import conveyor.packs.assess as assess_pkg
from conveyor.packs.assess.analyzers import no_progress
from conveyor.packs.assess.analyzers.chatbot import analyze, conversation_tokens
from conveyor.packs.assess.inventory import Inventory, load_inventory

EXAMPLES = Path(assess_pkg.__file__).parent / "data" / "examples"


def test_history_grows_each_turn() -> None:
    # turn t resends t inputs and t - 1 answers
    assert conversation_tokens(1500, 300, 6) == [1500, 3300, 5100, 6900, 8700, 10500]
    assert conversation_tokens(10, 0, 1) == [10]


def test_the_startup_assistant_by_hand() -> None:
    inv = load_inventory((EXAMPLES / "startup.yaml").read_bytes(), "startup.yaml")
    output = analyze(inv, no_progress)
    [m] = output.metrics["workloads"]
    # 70B fp16 on one p5.48xlarge (8 x H100-SXM: 989 TFLOPS fp16, 3.35 TB/s), 50 % of peak:
    prefill = 8 * 989e12 * 0.5 / (2 * 70e9)  # 28,257 tokens/s
    assert m["ttft_ms_first"] == pytest.approx(1500 / prefill * 1000, abs=0.05)  # 53.1 ms
    # turn 6 would prefill 10,500 tokens; the 8,192 context holds 8,192 - 300 of prompt
    assert m["ttft_ms_last"] == pytest.approx(7892 / prefill * 1000, abs=0.05)  # 279.3 ms
    # KV: 2 x 80 layers x 8 KV heads x 128 x 2 bytes per token, 8,192 tokens, and
    # ceil(8 req/s peak x 4 s p50 SLO) = 32 sequences in flight
    kv_gb = 2 * 80 * 8 * 128 * 2 * 8192 * 32 / 1e9
    assert m["concurrent"] == 32
    assert m["kv_gb_last"] == pytest.approx(kv_gb, abs=0.05)  # 85.9 GB
    step = (140 + kv_gb) / (8 * 3.35 * 1000)  # weights 70 x 2 GB, read once per step
    assert m["per_token_ms"] == pytest.approx(step * 1000, abs=0.005)  # 8.43 ms
    assert m["latency_ms_last"] == pytest.approx((7892 / prefill + 300 * step) * 1000, abs=0.1)
    assert m["slo_met"] is True  # 800 ms TTFT and 9 s p95 hold
    # cost: the instance's month / conversations (4 req/s x 3,600 x 730 / 6 turns)
    assert m["conversations_per_month"] == 1_752_000
    assert m["cost_per_1k_conversations_usd"] == pytest.approx(
        m["monthly_cost_usd"] / 1752, abs=1e-3
    )
    found = {f.code: f for f in output.findings}
    assert set(found) == {"chat.context-overflow", "chat.no-batching", "chat.no-prefix-caching"}
    # 1,500 + 3,300 + 5,100 + 6,900 = 16,800 tokens, then 9,000 > 8,192 at turn 5
    assert "turn 5 of 6" in found["chat.context-overflow"].title
    # prefix caching: mean prompt over the six turns, capped at 7,892
    mean_prompt = (1500 + 3300 + 5100 + 6900 + 7892 + 7892) / 6
    first_step = (140 + 2 * 80 * 8 * 128 * 2 * 1800 * 32 / 1e9) / (8 * 3.35 * 1000)
    share = (mean_prompt - 1500) / prefill / (mean_prompt / prefill + 300 * first_step)
    caching = found["chat.no-prefix-caching"]
    assert caching.monthly_saving_usd == pytest.approx(m["monthly_cost_usd"] * share, abs=0.01)
    assert f"{share:.0%}" in caching.title


def small_chat(**workload: Any) -> Inventory:
    chat: dict[str, Any] = {
        "id": "bot", "type": "inference", "kind": "chat",
        "model": {"name": "m8", "parameters_b": 8, "precision": "fp16", "context_length": 8192},
        "requests_per_s": 2, "peak_requests_per_s": 2,
        "slo": {"p50_ms": 2000, "p95_ms": 5000, "ttft_ms": 200},
        "tokens": {"input": 2000, "output": 200}, "turns_per_conversation": 3,
        "batching": True, "caching": True,
    }  # fmt: skip
    chat.update(workload)
    return Inventory.model_validate(
        {
            "organisation": {"name": "x"},
            "workloads": [chat],
            "compute": {
                "instances": [
                    {
                        "id": "g",
                        "type": "g6.xlarge",
                        "vcpu": 4,
                        "memory_gib": 16,
                        "gpu": {"model": "L4", "count": 1},
                        "region": "us-east-1",
                        "zone": "us-east-1a",
                        "hourly_usd": 1.0,
                        "workloads": ["bot"],
                    }
                ]
            },
            "budget": {"monthly_usd": 1000},
        }
    )


def test_slo_misses_and_kv_pressure_on_one_l4() -> None:
    output = analyze(small_chat(), no_progress)
    found = {f.code: f for f in output.findings}
    assert set(found) == {"chat.ttft-over-slo", "chat.latency-over-slo", "chat.kv-cache-pressure"}
    # L4: 121 TFLOPS x 0.5 / (2 x 8e9) = 3,781 tokens/s; turn 1 already 529 ms > 200 ms
    assert found["chat.ttft-over-slo"].severity == "high"
    [m] = output.metrics["workloads"]
    assert m["ttft_ms_first"] == pytest.approx(2000 / 3781.25 * 1000, abs=0.05)
    # turn 3: 6,400 prompt + 200 = 6,600 tokens x 131,072 B x ceil(2 x 2) = 4 sequences
    kv = 131072 * 6600 * 4 / 1e9
    assert m["kv_gb_last"] == pytest.approx(kv, abs=0.05)
    # 16 GB of weights + 3.46 GB over 0.9 x 24 GB: 90 % used, still fits → medium
    assert found["chat.kv-cache-pressure"].severity == "medium"
    step = (16 + kv) / 300
    assert m["latency_ms_last"] == pytest.approx((6400 / 3781.25 + 200 * step) * 1000, abs=0.5)
    assert m["slo_met"] is False
    assert "bot" in output.summary
    # $1/h x 730 h over 2 x 3,600 x 730 / 3 conversations
    assert m["cost_per_1k_conversations_usd"] == pytest.approx(
        730 / (2 * 3600 * 730 / 3) * 1000, abs=1e-4
    )


def test_a_model_too_large_for_its_gpu() -> None:
    inv = small_chat(model={"name": "big", "parameters_b": 70, "precision": "fp16"})
    found = {f.code: f for f in analyze(inv, no_progress).findings}
    assert found["chat.model-does-not-fit"].severity == "critical"
    assert "chat.kv-cache-pressure" not in found


def test_missing_tokens_and_no_chat() -> None:
    found = {f.code for f in analyze(small_chat(tokens=None), no_progress).findings}
    assert found == {"chat.tokens-unknown"}
    inv = small_chat(kind="completion")
    output = analyze(inv, no_progress)
    assert output.findings == [] and output.metrics == {"workloads": []}


def test_default_turns_are_stated() -> None:
    [m] = analyze(small_chat(turns_per_conversation=None), no_progress).metrics["workloads"]
    assert m["turns"] == 4 and m["turns_assumed"] is True
    assert math.isfinite(m["latency_ms_last"])
