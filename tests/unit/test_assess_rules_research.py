"""Research: BM25 checked by hand on a tiny corpus, the inventory profile, and the ranked
knowledge-base findings."""

from __future__ import annotations

import math

import pytest

from conveyor.packs.assess.analyzers import no_progress
from conveyor.packs.assess.analyzers.research import (
    _QUERY_WORDS,
    BM25,
    analyze,
    knowledge_base,
    profile,
    tokenize,
)
from conveyor.packs.assess.inventory import Inventory

CORPUS = [["gpu", "idle", "gpu"], ["cost", "reserved"], ["gpu", "cost", "spot", "checkpoint"]]
# N = 3, avgdl = (3 + 2 + 4) / 3 = 3, k1 = 1.2, b = 0.75


def test_bm25_by_hand_one_term() -> None:
    bm25 = BM25(CORPUS)
    idf_gpu = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # in 2 of 3 documents: ln 1.6
    assert idf_gpu == pytest.approx(0.470004, abs=1e-6)
    # D0: f = 2, |D| / avgdl = 1, so the length factor is 1: idf * 2 * 2.2 / (2 + 1.2)
    assert bm25.score(["gpu"], 0) == pytest.approx(idf_gpu * 4.4 / 3.2)
    assert bm25.score(["gpu"], 0) == pytest.approx(0.646255, abs=1e-6)
    # D2: f = 1, |D| / avgdl = 4/3, length factor 0.25 + 0.75 * 4/3 = 1.25: idf * 2.2 / 2.5
    assert bm25.score(["gpu"], 2) == pytest.approx(0.413603, abs=1e-6)
    assert bm25.score(["gpu"], 1) == 0.0


def test_bm25_by_hand_two_terms() -> None:
    bm25 = BM25(CORPUS)
    idf_idle = math.log(1 + 2.5 / 1.5)  # in 1 of 3: ln 2.667 = 0.980829
    idf_cost = math.log(1.6)
    assert bm25.score(["idle", "cost"], 0) == pytest.approx(idf_idle * 2.2 / 2.2)
    # D1: |D| / avgdl = 2/3, length factor 0.25 + 0.5 = 0.75: idf * 2.2 / (1 + 0.9)
    assert bm25.score(["idle", "cost"], 1) == pytest.approx(idf_cost * 2.2 / 1.9)
    assert bm25.score(["idle", "cost"], 1) == pytest.approx(0.544215, abs=1e-6)
    assert bm25.score(["idle", "cost"], 2) == pytest.approx(0.413603, abs=1e-6)
    # the rarer term weighs more
    assert bm25.score(["idle", "cost"], 0) > bm25.score(["idle", "cost"], 1)


def test_tokenize_drops_stop_words_and_punctuation() -> None:
    assert tokenize("Quantise the weights to FP8, or int8!") == [
        "quantise",
        "weights",
        "fp8",
        "int8",
    ]


def chat_inventory() -> Inventory:
    return Inventory.model_validate(
        {
            "organisation": {"name": "x"},
            "workloads": [
                {
                    "id": "chat",
                    "type": "inference",
                    "kind": "chat",
                    "model": {
                        "name": "llama",
                        "parameters_b": 70,
                        "precision": "fp16",
                        "context_length": 32768,
                    },
                },
            ],
            "compute": {
                "instances": [
                    {
                        "id": "a",
                        "type": "p4d.24xlarge",
                        "vcpu": 96,
                        "memory_gib": 1152,
                        "region": "us-east-1",
                        "zone": "us-east-1a",
                        "gpu": {"model": "A100-40GB", "count": 8},
                        "workloads": ["chat"],
                        "utilisation": {"gpu_p95": 5},
                    },
                ]
            },
            "budget": {"monthly_usd": 10000},
        }
    )


def test_profile_of_a_chat_fleet() -> None:
    found = profile(chat_inventory())
    assert set(found) == {
        "workload:inference",
        "workload:chat",
        "precision:fp16",
        "problem:kv-pressure",  # a 32k context
        "problem:large-model",  # 70B
        "problem:idle-gpu",  # gpu p95 5 %
        "problem:on-demand-only",
        "problem:spof",  # one instance serves the chat
        "problem:mlops-gaps",  # nothing answered
        "problem:over-budget",  # a p4d.24xlarge for 730 h at the price table's price > $10,000
    }
    assert found["problem:idle-gpu"] == ["compute.instances[0].utilisation.gpu_p95"]


def test_findings_cite_the_entries_problems_first() -> None:
    output = analyze(chat_inventory(), no_progress)
    codes = [f.code for f in output.findings]
    assert len(codes) == 8
    assert "research.cost-001" in codes  # reclaim idle GPUs
    assert "research.rel-002" in codes  # single points of failure
    ids = {e.id for e in knowledge_base()}
    for finding in output.findings:
        assert finding.rule is not None and finding.rule.removeprefix("KB:") in ids
        assert finding.evidence
        assert finding.severity == "low"  # each answers a problem of this inventory
    ranking = output.metrics["ranking"]
    # nothing about regulation: no framework is named
    assert not {r["id"] for r in ranking} & {"cmp-001", "cmp-002", "cmp-003", "cmp-004"}
    scores = [r["score"] for r in ranking if r["answers_problem"]]
    assert scores == sorted(scores, reverse=True)
    assert output.metrics["k1"] == 1.2 and output.metrics["b"] == 0.75


def test_ranking_is_deterministic() -> None:
    assert analyze(chat_inventory(), no_progress) == analyze(chat_inventory(), no_progress)


def test_the_knowledge_base_is_well_formed() -> None:
    entries = knowledge_base()
    assert len(entries) >= 40
    assert len({e.id for e in entries}) == len(entries)
    vocabulary = set(_QUERY_WORDS) | {
        "workload:training", "workload:inference", "precision:fp32", "precision:bf16",
        "precision:fp16", "precision:fp8", "precision:int8", "precision:int4",
        "framework:gdpr", "framework:hipaa",
    }  # fmt: skip
    for entry in entries:
        assert entry.title and entry.body and entry.tags
        assert set(entry.applies_when) <= vocabulary, entry.id
