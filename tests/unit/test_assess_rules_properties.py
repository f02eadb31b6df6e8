"""Properties of the rule analyzers over many variants of the startup example: every finding's
evidence names something that exists, no (code, evidence) twice, metrics are JSON, and the
compliance findings follow the controls they read."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conveyor.packs.assess as assess_pkg
from conveyor.packs.assess.analyzers import get, no_progress
from conveyor.packs.assess.analyzers.research import BM25
from conveyor.packs.assess.inventory import MLOPS_QUESTIONS, Controls, Inventory
from conveyor.packs.assess.llm import path_exists

MINE = ("compliance", "mlops", "research", "web_research", "chatbot")
FRAMEWORKS = ["GDPR", "HIPAA", "SOC2", "EU_AI_ACT"]


@cache
def startup() -> dict[str, Any]:
    path = Path(assess_pkg.__file__).parent / "data" / "examples" / "startup.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@st.composite
def variants(draw: st.DrawFn) -> Inventory:
    data = copy.deepcopy(startup())
    for ds in data["storage"]["datasets"]:
        ds["encryption"] = {"at_rest": draw(st.booleans()), "in_transit": draw(st.booleans())}
        ds["pii"], ds["phi"] = draw(st.booleans()), draw(st.booleans())
        ds["backup"] = {"enabled": draw(st.booleans())}
        ds["residency"] = draw(st.sampled_from([None, "EU", "US"]))
        ds["region"] = draw(st.sampled_from(["us-east-1", "eu-west-1", "dc-1"]))
    for ep in data["networking"]["endpoints"]:
        ep["tls"], ep["authentication"] = draw(st.booleans()), draw(st.booleans())
        ep["tls_min_version"] = draw(st.sampled_from([None, "1.0", "1.2"]))
    for inst in data["compute"]["instances"]:
        inst["region"] = draw(st.sampled_from(["us-east-1", "eu-central-1"]))
    data["compliance"] = {
        "frameworks": draw(st.lists(st.sampled_from(FRAMEWORKS), unique=True)),
        "eu_ai_act_risk": draw(st.sampled_from([None, "minimal", "limited", "high"])),
        "controls": {
            name: draw(st.sampled_from([None, True, False])) for name in Controls.model_fields
        },
    }
    data["mlops"] = {
        q.id: draw(st.sampled_from(q.answers)) for q in MLOPS_QUESTIONS if draw(st.booleans())
    }
    data["workloads"][0]["turns_per_conversation"] = draw(st.integers(1, 40))
    data["workloads"][0]["caching"] = draw(st.booleans())
    return Inventory.model_validate(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variants())
def test_findings_point_at_what_exists(inventory: Inventory) -> None:
    document = inventory.model_dump(mode="json")
    for name in MINE:
        out = get(name).run(inventory, no_progress)
        json.dumps(out.metrics, allow_nan=False)
        keys = [(f.code, tuple(f.evidence)) for f in out.findings]
        assert len(keys) == len(set(keys)), name
        for finding in out.findings:
            assert finding.evidence, finding.code
            for path in finding.evidence:
                assert path_exists(document, path), f"{finding.code}: {path}"


@settings(max_examples=60, deadline=None)
@given(variants())
def test_controls_in_place_raise_no_control_findings(inventory: Inventory) -> None:
    controls = inventory.compliance.controls
    out = get("compliance").run(inventory, no_progress)
    for finding in out.findings:
        for path in finding.evidence:
            if path.startswith("compliance.controls."):
                assert getattr(controls, path.rsplit(".", 1)[1]) is not True, finding.code
    # an organisation with no framework named nor AI Act class stated: the baseline only
    stated = inventory.compliance.eu_ai_act_risk or any(w.ai_act_risk for w in inventory.workloads)
    if not inventory.compliance.frameworks and not stated:
        assert all(f.code.startswith("compliance.baseline.") for f in out.findings)


@given(
    st.lists(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=12), min_size=1,
             max_size=8),
    st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=5),
)  # fmt: skip
def test_bm25_is_non_negative_and_rewards_a_matching_term(
    corpus: list[list[str]], query: list[str]
) -> None:
    bm25 = BM25(corpus)
    for i in range(len(corpus)):
        assert bm25.score(query, i) >= 0
        if not set(query) & set(corpus[i]):
            assert bm25.score(query, i) == 0
    # one more occurrence of a query term in a document never lowers its score
    richer = [*corpus[0], query[0]]
    again = BM25([richer, *corpus[1:]])
    if query[0] in corpus[0]:
        assert again.score([query[0]], 0) >= bm25.score([query[0]], 0) - 1e-12
