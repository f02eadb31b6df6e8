"""The assess pack's own analyzers (cloud_engineer, infrastructure, simulation, cto,
ai_consultant) as plain functions: expected values are written as the arithmetic in the test,
from the inventory and the shipped data tables, not copied from the code's output."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.packs.assess.analyzers import (
    ANALYZERS,
    HARD_LIMIT_MARGIN,
    UnknownAnalyzer,
    get,
    no_progress,
)
from conveyor.packs.assess.capacity import serving
from conveyor.packs.assess.examples import EXAMPLES, example_text
from conveyor.packs.assess.findings import AnalyzerOutput, AnalyzerResult, Finding
from conveyor.packs.assess.inventory import MLOPS_QUESTIONS, Inventory, Workload, load_inventory
from conveyor.packs.assess.reference import gpu_specs

OURS = ("cloud_engineer", "infrastructure", "simulation", "cto", "ai_consultant")


def example(name: str) -> Inventory:
    return load_inventory(example_text(name), EXAMPLES[name])


def run(name: str, inventory: Inventory) -> AnalyzerOutput:
    return get(name).run(inventory, no_progress)


def by_code(output: AnalyzerOutput, code: str) -> list[Finding]:
    return [f for f in output.findings if f.code == code]


def inventory_with(**changes: Any) -> Inventory:
    """The startup example with top-level sections replaced."""
    doc = example("startup").model_dump(mode="json")
    doc.update(changes)
    return load_inventory(json.dumps(doc))


# --- the registry -------------------------------------------------------------------------


def test_registry_has_the_ten_roles_with_the_seed_limits() -> None:
    assert {name: a.soft_limit for name, a in ANALYZERS.items()} == {
        "cto": 300,
        "cloud_engineer": 300,
        "research": 180,
        "mlops": 240,
        "infrastructure": 240,
        "compliance": 200,
        "ai_consultant": 240,
        "web_research": 180,
        "simulation": 300,
        "chatbot": 120,
    }
    assert list(ANALYZERS)[:3] == ["cto", "cloud_engineer", "research"]
    for a in ANALYZERS.values():
        assert a.hard_limit == a.soft_limit + HARD_LIMIT_MARGIN == a.soft_limit + 30
        assert a.weight == pytest.approx(a.soft_limit / 2300)  # 2300 s: the sum of soft limits
    assert sum(a.weight for a in ANALYZERS.values()) == pytest.approx(1.0)


def test_unknown_analyzer() -> None:
    with pytest.raises(UnknownAnalyzer, match="no analyzer named 'ceo'; known: cto, "):
        get("ceo")


def test_result_wraps_an_output() -> None:
    output = AnalyzerOutput(findings=[], metrics={"a": 1}, summary="fine")
    ok = AnalyzerResult.of("cto", output, 1.5)
    assert (ok.status, ok.metrics, ok.summary, ok.error) == ("ok", {"a": 1}, "fine", None)
    failed = AnalyzerResult.failure("cto", "timeout", "soft time limit", 300.0)
    assert (failed.status, failed.findings, failed.error) == ("timeout", [], "soft time limit")


# --- capacity arithmetic ------------------------------------------------------------------


def chat_workload(**model: Any) -> Workload:
    spec = {"name": "llama-70b", "parameters_b": 70, "precision": "fp16", "context_length": 8192}
    spec.update(model)
    return Workload.model_validate(
        {
            "id": "chat",
            "type": "inference",
            "kind": "chat",
            "model": spec,
            "requests_per_s": 4,
            "peak_requests_per_s": 8,
            "slo": {"p50_ms": 4000},
            "tokens": {"input": 1500, "output": 300},
        }
    )


def test_70b_fp16_on_8_h100() -> None:
    s = serving(chat_workload(), gpu_specs()["H100-SXM"], gpus=8, replicas=1)
    # weights: 70e9 parameters x 2 bytes (fp16) = 140 GB
    assert s.weights_gb == 70 * 2
    # Llama-3.1-70B shape: 80 layers, 8 KV heads (GQA), head_dim 128; K and V; 2 bytes each
    per_token = 2 * 80 * 8 * 128 * 2
    assert s.kv_bytes_per_token == per_token == 327_680
    # Little's law: ceil(8 req/s x 4 s p50 SLO) = 32 sequences of 1500 + 300 tokens
    assert (s.concurrent, s.context_tokens) == (32, 1800)
    kv_gb = per_token * 1800 * 32 / 1e9
    assert s.kv_gb == pytest.approx(kv_gb) and kv_gb == pytest.approx(18.87, abs=0.01)
    # usable: 90 % of 8 x 80 GB = 576 GB; 140 + 18.9 GB fits
    assert s.usable_gb == pytest.approx(0.9 * 8 * 80)
    assert s.fits and s.weights_fit
    # decode step reads weights + KV once at 8 x 3.35 TB/s
    step_s = (140 + kv_gb) / (8 * 3.35e3)
    assert s.decode_step_ms == pytest.approx(step_s * 1000)
    assert s.decode_step_ms == pytest.approx(5.93, abs=0.01)
    assert s.decode_tokens_s == pytest.approx(32 / step_s)
    # prefill: 8 GPUs x 989 TFLOPS x 50 % / (2 x 70e9 FLOP per token)
    prefill = 8 * 989e12 * 0.5 / (2 * 70e9)
    assert s.prefill_tokens_s == pytest.approx(prefill)
    assert s.latency_ms == pytest.approx((1500 / prefill + 300 * step_s) * 1000)
    assert s.load == pytest.approx(8 * (1500 / prefill + 300 / (32 / step_s)))
    assert 0.8 < s.load < 0.9  # 87 %: under capacity, but less than 1.3x headroom


def test_405b_fp16_does_not_fit_on_8_h100_and_fp8_on_h200_does() -> None:
    big = chat_workload(parameters_b=405)
    s = serving(big, gpu_specs()["H100-SXM"], gpus=8, replicas=1)
    assert s.weights_gb == 405 * 2 > 0.9 * 8 * 80  # 810 GB > 576 GB
    assert not s.weights_fit and not s.fits
    s8 = serving(chat_workload(parameters_b=405, precision="fp8"), gpu_specs()["H200"], 8, 1)
    # 405 GB of weights + KV: 126 layers x 8 KV heads x 128 x 2 (K, V) x 1 byte (fp8 KV)
    kv_gb = 2 * 126 * 8 * 128 * 1 * 1800 * 32 / 1e9
    assert s8.weights_gb + s8.kv_gb == pytest.approx(405 + kv_gb)
    assert s8.fits and 405 + kv_gb <= 0.9 * 8 * 141


def test_long_context_kv_cache_does_not_fit_next_to_the_weights() -> None:
    long = chat_workload(context_length=131072)
    long = long.model_copy(update={"tokens": long.tokens.model_copy(update={"input": 100_000})})  # type: ignore[union-attr]
    s = serving(long, gpu_specs()["A100-80GB"], gpus=4, replicas=1)
    kv_gb = 327_680 * 100_300 * 32 / 1e9  # about 1,052 GB
    assert s.kv_gb == pytest.approx(kv_gb)
    assert s.weights_fit and not s.fits  # 140 GB fit in 288 GB, the KV cache does not


# --- the analyzers on the startup example ---------------------------------------------------


def test_infrastructure_on_startup() -> None:
    out = run("infrastructure", example("startup"))
    chat = next(r for r in out.metrics["capacity"] if r["workload"] == "chat")
    assert (chat["weights_gb"], chat["gpus"], chat["fits"]) == (140.0, 8, True)
    [headroom] = by_code(out, "capacity.headroom")
    assert headroom.severity == "medium" and "87%" in headroom.title
    assert "compute.instances[0].gpu" in headroom.evidence
    single = {f.title.split()[0]: f.severity for f in by_code(out, "reliability.single-instance")}
    assert single == {"chat": "high", "embed": "medium", "database": "high"}
    [zone] = by_code(out, "reliability.single-zone")
    assert zone.evidence == ["compute.instances[4].zone", "compute.instances[5].zone"]
    [no_backup] = by_code(out, "reliability.no-backup")
    assert no_backup.severity == "high"  # the conversations feed the critical API
    assert no_backup.evidence == ["storage.datasets[0].backup.enabled"]
    assert by_code(out, "reliability.short-retention")[0].evidence == [
        "storage.datasets[1].backup.retention_days"
    ]


def test_infrastructure_flags_critical_services_on_spot_only() -> None:
    doc = example("startup").model_dump(mode="json")
    for i in (4, 5):  # the API's two instances
        doc["compute"]["instances"][i]["pricing"] = "spot"
    out = run("infrastructure", load_inventory(json.dumps(doc)))
    [spot] = by_code(out, "reliability.spot-only")
    assert spot.evidence == ["compute.instances[4].pricing", "compute.instances[5].pricing"]
    assert not by_code(run("infrastructure", example("startup")), "reliability.spot-only")


def test_infrastructure_flags_models_that_do_not_fit() -> None:
    doc = example("startup").model_dump(mode="json")
    doc["workloads"][0]["model"]["parameters_b"] = 405
    out = run("infrastructure", load_inventory(json.dumps(doc)))
    [fit] = by_code(out, "capacity.does-not-fit")
    assert fit.severity == "critical" and "810 GB" in fit.title and "576 GB" in fit.title


def test_cloud_engineer_on_startup() -> None:
    out = run("cloud_engineer", example("startup"))
    # price table (us-east-1, on-demand) x 730 h, except the training box (160 h)
    total = (
        55.04 * 730  # p5.48xlarge
        + 1.006 * 730  # g5.xlarge
        + 21.96 * 160  # p4d.24xlarge, 160 h
        + 5.672 * 730  # g5.12xlarge
        + 2 * 0.384 * 730  # 2 x m5.2xlarge
        + 0.252 * 730  # r6i.xlarge
    )
    assert out.metrics["total_monthly_usd"] == pytest.approx(total, abs=0.01)
    saving = {f.code: f.monthly_saving_usd for f in out.findings if f.code != "cost.reserved"}
    assert saving["cost.idle-gpu"] == pytest.approx(5.672 * 730)  # the idle dev box, stopped
    assert saving["cost.spot"] == pytest.approx((21.96 - 8.80) * 160)  # fine-tuning on spot
    # m5.2xlarge at CPU p95 18 %: ceil(8 x 18/70) = 3 vCPU, 32 GiB x 35/80 = 14 GiB ->
    # the cheapest AWS type with that is m6i.xlarge (4 vCPU, 16 GiB, $0.192)
    assert saving["cost.rightsize"] == pytest.approx(2 * (0.384 - 0.192) * 730)
    reserved = {f.evidence[0]: f.monthly_saving_usd for f in by_code(out, "cost.reserved")}
    assert reserved["compute.instances[0].pricing"] == pytest.approx((55.04 - 38.50) * 730)
    assert reserved["compute.instances[6].pricing"] == pytest.approx((0.252 - 0.165) * 730)
    [idle] = by_code(out, "cost.idle-gpu")
    assert idle.evidence == ["compute.instances[3].utilisation.gpu_p95"]
    assert idle.severity == "high"
    assert out.metrics["by_service"]["chat"] == pytest.approx(55.04 * 730)
    assert out.metrics["price_table_date"] == "2026-10-01"


def test_cloud_engineer_uses_the_inventorys_price_and_region_factor() -> None:
    doc = example("startup").model_dump(mode="json")
    doc["compute"]["instances"][6]["hourly_usd"] = 1.0
    doc["compute"]["instances"][1]["region"] = "eu-central-1"  # factor 1.15
    out = run("cloud_engineer", load_inventory(json.dumps(doc)))
    assert out.metrics["by_service"]["database"] == pytest.approx(730.0)
    assert out.metrics["by_service"]["embed"] == pytest.approx(1.006 * 1.15 * 730, abs=0.01)


def test_simulation_without_volatility_is_compound_growth() -> None:
    inventory = inventory_with(
        growth={"load_mean_pct": 10, "load_sd_pct": 0, "price_mean_pct": 0, "price_sd_pct": 0},
        budget={"monthly_usd": 100_000},
    )
    out = run("simulation", inventory)
    base = out.metrics["baseline_usd"]
    # compute (as above) + storage: 250 GB + 1,200 GB hot at $0.023
    assert base == pytest.approx(49312.34 + 1450 * 0.023, abs=0.01)
    p50 = out.metrics["cost_percentiles"]["p50"]
    assert p50[-1] == pytest.approx(base * 1.1**12, rel=1e-6)
    assert out.metrics["cost_percentiles"]["p5"] == out.metrics["cost_percentiles"]["p95"]
    # over budget from the first month where base x 1.1^t > 100,000: t = 8
    first = math.ceil(math.log(100_000 / base) / math.log(1.1))
    assert first == 8
    expected = [1.0 if t >= first else 0.0 for t in range(1, 13)]
    assert out.metrics["breach_probability"] == expected
    assert out.metrics["first_likely_breach_month"] == 8
    [breach] = by_code(out, "forecast.budget-breach")
    assert breach.severity == "high" and "from month 8" in breach.title


def test_simulation_is_deterministic_and_its_fan_is_ordered() -> None:
    inventory = example("saas")
    a, b = run("simulation", inventory), run("simulation", inventory)
    assert a == b
    pct = a.metrics["cost_percentiles"]
    for month in range(12):
        values = [pct[p][month] for p in ("p5", "p25", "p50", "p75", "p95")]
        assert values == sorted(values)
    assert len(pct["p50"]) == 12 and a.metrics["paths"] == 10_000


def test_cto_on_startup() -> None:
    out = run("cto", example("startup"))
    card = out.metrics["scorecard"]
    # answers' levels: 1+0+1+1+1+0+0+1+2+1+1 = 9 of 11 x 3
    assert card["mlops"] == pytest.approx(round(100 * 9 / 33, 1))
    # controls answered yes: mfa only, of the 11
    assert card["governance"] == pytest.approx(round(100 / 11, 1))
    # spend / budget = 49,345.69 / 60,000 = 0.822 -> 100 x (1.5 - 0.822) / 0.7
    assert card["budget"] == pytest.approx(round(100 * (1.5 - 49345.69 / 60000) / 0.7, 1), abs=0.1)
    # GPUs from 2022 on: 8 H100 of 8 + 1 + 8 + 4 = 21 GPUs
    assert card["modernity"] == pytest.approx(round(100 * 8 / 21, 1))
    assert card["resilience"] == 0.0  # no critical service is in two zones on two instances
    assert by_code(out, "strategy.region-concentration")
    assert not by_code(out, "budget.over")


def test_cto_over_budget_is_critical() -> None:
    out = run("cto", inventory_with(budget={"monthly_usd": 20_000}))
    [over] = by_code(out, "budget.over")
    assert over.severity == "critical"  # 49,346 / 20,000 = 247 %
    assert out.metrics["scorecard"]["budget"] == 0.0


def test_ai_consultant_on_startup() -> None:
    out = run("ai_consultant", example("startup"))
    quantise = {f.title.split()[1]: f for f in by_code(out, "serving.quantise")}
    chat_cost = 55.04 * 730
    # fp16 -> fp8 halves weights and KV: bytes per decode step 158.87 GB -> 79.44 GB;
    # half of the gain is taken as fewer GPUs
    before = 140 + 327_680 * 1800 * 32 / 1e9
    after = 70 + 163_840 * 1800 * 32 / 1e9
    assert quantise["llama-3.1-70b-instruct"].monthly_saving_usd == pytest.approx(
        chat_cost * (1 - after / before) * 0.5, abs=0.01
    )
    assert "140 GB -> 70 GB" in quantise["llama-3.1-70b-instruct"].title
    [smaller] = by_code(out, "serving.smaller-model")
    assert smaller.monthly_saving_usd == pytest.approx(chat_cost * (1 - 8 / 70) * 0.5, abs=0.01)
    [batching] = by_code(out, "serving.batching")
    assert batching.monthly_saving_usd is None  # one replica: headroom, not fewer GPUs
    row = next(r for r in out.metrics["workloads"] if r["workload"] == "chat")
    assert row["suggested_precision"] == "fp8"  # H100 has FP8 units
    # quantising and a smaller model are alternatives: only the larger counts
    assert row["saving_usd"] == pytest.approx(
        sum(row["savings"].values()) - row["savings"]["serving.quantise"], abs=0.02
    )


def test_ai_consultant_quantises_to_int8_without_fp8_units() -> None:
    out = run("ai_consultant", example("saas"))
    row = next(r for r in out.metrics["workloads"] if r["workload"] == "writer")
    assert row["suggested_precision"] == "int8"  # A100 has no FP8
    [embed] = by_code(out, "serving.embedding-gpu")
    # a3-highgpu-8g on GCP ($88.49/h) -> one g6.xlarge ($0.805/h), 730 h each
    assert embed.monthly_saving_usd == pytest.approx((88.49 - 0.805) * 730, abs=0.01)


# --- every analyzer on every example --------------------------------------------------------

PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def resolves(document: Any, path: str) -> bool:
    node = document
    for key, index in PATH_PART.findall(path):
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                return False
            node = node[int(index)]
        else:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
    return True


@pytest.mark.parametrize("example_name", list(EXAMPLES))
@pytest.mark.parametrize("analyzer", OURS)
def test_every_analyzer_on_every_example(analyzer: str, example_name: str) -> None:
    inventory = example(example_name)
    reported: list[float] = []

    def progress(fraction: float, note: str = "") -> None:
        reported.append(fraction)

    out = get(analyzer).run(inventory, progress)
    assert out.findings, f"{analyzer} finds something in {example_name}"
    assert out.summary
    json.dumps(out.metrics, allow_nan=False)  # JSON-able, finite
    document = inventory.model_dump(mode="json")
    for finding in out.findings:
        assert finding.analyzer == analyzer
        assert finding.evidence
        for path in finding.evidence:
            assert resolves(document, path), f"{finding.code}: {path}"
        assert finding.monthly_saving_usd is None or finding.monthly_saving_usd >= 0
        assert finding.monthly_saving_usd is not None or finding.risk, finding.code
    assert reported and all(0 <= f <= 1 for f in reported)
    assert reported == sorted(reported)


def test_a_progress_that_raises_stops_the_analyzer() -> None:
    class Cancelled(Exception):
        pass

    def cancel(fraction: float, note: str = "") -> None:
        raise Cancelled

    for name in OURS:
        with pytest.raises(Cancelled):
            get(name).run(example("startup"), cancel)


def test_example_findings_cover_the_brief() -> None:
    """Each example shows the analyzers' headline findings."""
    for name in EXAMPLES:
        inventory = example(name)
        codes = {f.code for a in OURS for f in run(a, inventory).findings}
        assert {"cost.idle-gpu", "serving.quantise", "forecast.cost-growth"} <= codes, name
        assert codes & {"reliability.single-zone", "reliability.single-instance"}, name


EDGE_CASES: dict[str, dict[str, Any]] = {
    "nothing": {"organisation": {"name": "Empty"}, "compute": {"instances": []},
                "budget": {"monthly_usd": 0}},
    "cpu only, zero budget": {
        "organisation": {"name": "Tiny"},
        "compute": {"instances": [{"id": "a", "type": "unknown.type", "vcpu": 1,
                                   "memory_gib": 1, "region": "mars-1", "zone": "a"}]},
        "budget": {"monthly_usd": 0},
    },
    "workloads without figures": {
        "organisation": {"name": "Sparse"},
        "workloads": [
            {"id": "w", "type": "inference", "kind": "chat",
             "model": {"name": "m", "parameters_b": 0.001, "precision": "int4"}},
            {"id": "t", "type": "training", "kind": "pretraining",
             "model": {"name": "big", "parameters_b": 20000, "precision": "fp32"}},
        ],
        "compute": {"instances": [
            {"id": "g", "type": "x", "vcpu": 1, "memory_gib": 1, "region": "r", "zone": "z",
             "gpu": {"model": "T4", "count": 1}, "hours_per_month": 0, "workloads": ["w", "t"]},
            {"id": "h", "type": "y", "vcpu": 1, "memory_gib": 1, "region": "r", "zone": "z",
             "gpu": {"model": "Unknown", "count": 1}, "workloads": ["w"]},
        ]},
        "budget": {"monthly_usd": 1},
        "growth": {"load_mean_pct": -50, "load_sd_pct": 100, "price_mean_pct": 100,
                   "price_sd_pct": 100},
    },
}  # fmt: skip


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("analyzer", OURS)
def test_edge_inventories_do_not_crash(analyzer: str, case: str) -> None:
    out = get(analyzer).run(load_inventory(json.dumps(EDGE_CASES[case])), no_progress)
    json.dumps(out.metrics, allow_nan=False)
    assert out.summary


def test_infrastructure_flags_kv_cache_pressure_and_slo() -> None:
    doc = example("startup").model_dump(mode="json")
    chat = doc["workloads"][0]
    chat["model"]["context_length"] = 131072
    chat["tokens"] = {"input": 60_000, "output": 300}
    out = run("infrastructure", load_inventory(json.dumps(doc)))
    [kv] = by_code(out, "capacity.kv-cache")
    # 32 sequences x 60,300 tokens x 327,680 B = 632 GB > 576 GB - 140 GB
    assert kv.severity == "high" and "632 GB" in kv.title
    saas = run("infrastructure", example("saas"))
    slo = {f.title.split()[0] for f in by_code(saas, "capacity.slo")}
    assert slo == {"llama-3.1-8b-instruct"}  # 8B on 4xL4: about 22 ms per token x 250 tokens


@settings(max_examples=60, deadline=None)
@given(
    parameters=st.floats(0.1, 500),
    gpus=st.integers(1, 8),
    gpu=st.sampled_from(sorted(gpu_specs())),
    # none, or a real rate: a subnormal one (1e-300 req/s, hypothesis found it) underflows the
    # load to 0.0
    rps=st.just(0.0) | st.floats(0.01, 100),
)
def test_capacity_scales_the_right_way(parameters: float, gpus: int, gpu: str, rps: float) -> None:
    def at(precision: str, n: int) -> Any:
        w = chat_workload(parameters_b=parameters, precision=precision)
        w = w.model_copy(update={"peak_requests_per_s": rps})
        return serving(w, gpu_specs()[gpu], n, 1)

    fp16, fp8, more = at("fp16", gpus), at("fp8", gpus), at("fp16", gpus * 2)
    assert fp8.weights_gb == pytest.approx(fp16.weights_gb / 2)
    assert fp8.decode_step_ms < fp16.decode_step_ms  # fewer bytes per step
    assert more.decode_step_ms == pytest.approx(fp16.decode_step_ms / 2)  # twice the bandwidth
    assert more.usable_gb == pytest.approx(2 * fp16.usable_gb)
    assert fp16.load >= 0 and (rps > 0) == (fp16.load > 0)


def _percent() -> st.SearchStrategy[float | None]:
    return st.none() | st.floats(0, 100)


@st.composite
def inventories(draw: st.DrawFn) -> Inventory:
    """Valid inventories with odd corners: unknown types and GPUs, missing figures, zeros."""
    kinds = {"inference": ["chat", "completion", "embedding", "batch"],
             "training": ["fine_tuning", "pretraining", "batch"]}  # fmt: skip
    workloads = []
    for i in range(draw(st.integers(0, 4))):
        wtype = draw(st.sampled_from(sorted(kinds)))
        workloads.append(
            {
                "id": f"w{i}",
                "type": wtype,
                "kind": draw(st.sampled_from(kinds[wtype])),
                "model": {
                    "name": "m",
                    "parameters_b": draw(st.floats(0.001, 2000)),
                    "precision": draw(st.sampled_from(["fp32", "bf16", "fp16", "fp8", "int8",
                                                       "int4"])),
                    "context_length": draw(st.integers(1, 200_000)),
                },
                "requests_per_s": draw(st.none() | st.floats(0, 1000)),
                "peak_requests_per_s": draw(st.none() | st.floats(0, 1000)),
                "slo": draw(st.none() | st.builds(dict, p50_ms=st.floats(0.1, 1e5))),
                "tokens": draw(st.none() | st.builds(dict, input=st.integers(0, 100_000),
                                                     output=st.integers(0, 10_000))),
                "batching": draw(st.booleans()),
                "critical": draw(st.booleans()),
            }
        )  # fmt: skip
    types = [*sorted(reference_types()), "unknown.type"]
    instances = []
    for i in range(draw(st.integers(0, 6))):
        gpu = draw(st.none() | st.builds(dict, model=st.sampled_from([*sorted(gpu_specs()), "X"]),
                                         count=st.integers(1, 16)))  # fmt: skip
        instances.append(
            {
                "id": f"i{i}",
                "type": draw(st.sampled_from(types)),
                "provider": draw(st.sampled_from(["aws", "gcp", "azure", "on_prem"])),
                "vcpu": draw(st.integers(1, 256)),
                "memory_gib": draw(st.floats(0.5, 4096)),
                "gpu": gpu,
                "region": draw(st.sampled_from(["us-east-1", "eu-west-1", "nowhere"])),
                "zone": draw(st.sampled_from(["a", "b"])),
                "pricing": draw(st.sampled_from(["on_demand", "spot", "reserved"])),
                "hourly_usd": draw(st.none() | st.floats(0, 200)),
                "hours_per_month": draw(st.floats(0, 744)),
                "utilisation": {"cpu_p50": draw(_percent()), "cpu_p95": draw(_percent()),
                                "gpu_p50": draw(_percent()), "gpu_p95": draw(_percent()),
                                "memory_p95": draw(_percent())},
                "workloads": draw(st.lists(st.sampled_from([w["id"] for w in workloads]),
                                           unique=True)) if workloads else [],
            }
        )  # fmt: skip
    doc = {
        "organisation": {"name": "Fuzz"},
        "workloads": workloads,
        "compute": {"instances": instances},
        "budget": {"monthly_usd": draw(st.floats(0, 1e7))},
        "growth": {"load_mean_pct": draw(st.floats(-50, 100)),
                   "load_sd_pct": draw(st.floats(0, 100))},
        "mlops": {q.id: draw(st.sampled_from(q.answers))
                  for q in draw(st.lists(st.sampled_from(MLOPS_QUESTIONS), max_size=3))},
    }  # fmt: skip
    return load_inventory(json.dumps(doc))


def reference_types() -> list[str]:
    from conveyor.packs.assess.reference import price_table

    return list(price_table().instances)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(inventory=inventories())
def test_analyzers_never_crash_on_valid_inventories(inventory: Inventory) -> None:
    for name in OURS:
        out = get(name).run(inventory, no_progress)
        json.dumps(out.metrics, allow_nan=False)
        assert all(f.monthly_saving_usd is None or f.monthly_saving_usd >= 0 for f in out.findings)
