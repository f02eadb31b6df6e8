"""The compliance analyzer on small hand-made inventories: which rules break, what they cite,
and which paths they name."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conveyor.packs.assess.analyzers import no_progress
from conveyor.packs.assess.analyzers.compliance import RULES, analyze, jurisdiction
from conveyor.packs.assess.inventory import Inventory

BASE: dict[str, Any] = {
    "organisation": {"name": "Clinic"},
    "workloads": [
        {"id": "triage", "type": "inference", "kind": "chat", "datasets": ["records"],
         "model": {"name": "m", "parameters_b": 8, "precision": "fp16"}},
    ],
    "compute": {"instances": [
        {"id": "gpu-1", "type": "g5.xlarge", "vcpu": 4, "memory_gib": 16, "region": "us-east-1",
         "zone": "us-east-1a", "gpu": {"model": "A10G", "count": 1}, "workloads": ["triage"]},
    ]},
    "storage": {"datasets": [
        {"id": "records", "size_gb": 10, "region": "eu-west-1", "residency": "EU",
         "encryption": {"at_rest": False, "in_transit": True}, "pii": True, "phi": True},
        {"id": "logs", "size_gb": 1, "region": "eu-west-1",
         "encryption": {"at_rest": False, "in_transit": True},
         "backup": {"enabled": True}},
    ]},
    "networking": {"endpoints": [
        {"id": "api", "target": "triage", "public": True, "tls": False, "authentication": True},
    ]},
    "budget": {"monthly_usd": 1000},
    "compliance": {"frameworks": ["GDPR", "HIPAA"],
                   "controls": {"audit_logging": False, "baa_signed": True}},
}  # fmt: skip


def inventory(**changes: Any) -> Inventory:
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return Inventory.model_validate(data)


def by_code(inv: Inventory) -> dict[str, Any]:
    return {f.code: f for f in analyze(inv, no_progress).findings}


def test_hand_checked_findings_of_the_clinic() -> None:
    found = by_code(inventory())
    assert set(found) == {
        "compliance.baseline.public-endpoint-tls",
        "compliance.baseline.sensitive-unencrypted",
        "compliance.baseline.sensitive-no-backup",
        "compliance.baseline.access-logging",
        "compliance.gdpr.encryption-at-rest",
        "compliance.gdpr.residency",
        "compliance.gdpr.storage-limitation",
        "compliance.gdpr.availability",
        "compliance.gdpr.processor-agreements",
        "compliance.gdpr.access-logging",
        "compliance.hipaa.encryption-at-rest",
        "compliance.hipaa.transmission-security",
        "compliance.hipaa.audit-controls",
        "compliance.hipaa.backup-plan",
    }
    # the one with PII/PHI, not the logs (unencrypted too, but not sensitive)
    at_rest = found["compliance.hipaa.encryption-at-rest"]
    assert at_rest.evidence == ["storage.datasets[0].encryption.at_rest"]
    assert at_rest.rule == "HIPAA §164.312(a)(2)(iv)"
    assert at_rest.severity == "critical"
    assert found["compliance.gdpr.encryption-at-rest"].rule == "GDPR Art. 32(1)(a)"
    # EU data read by an instance in us-east-1
    assert found["compliance.gdpr.residency"].evidence == ["compute.instances[0].region"]
    assert found["compliance.gdpr.residency"].rule == "GDPR Art. 44"
    # the public endpoint of a workload reading PHI, without TLS
    assert found["compliance.hipaa.transmission-security"].evidence == [
        "networking.endpoints[0].tls"
    ]
    # answered false: full severity; dpa unanswered: one step lower, asked to confirm
    assert found["compliance.hipaa.audit-controls"].severity == "high"
    dpa = found["compliance.gdpr.processor-agreements"]
    assert dpa.severity == "low" and dpa.recommendation.startswith("Confirm")
    assert dpa.evidence == ["compliance.controls.dpa_signed"]


def test_fixing_the_data_clears_the_data_rules() -> None:
    inv = inventory(
        storage__datasets__0__encryption={"at_rest": True, "in_transit": True},
        storage__datasets__0__backup={"enabled": True, "retention_days": 30},
        storage__datasets__0__retention_days=365,
        compute__instances__0__region="eu-central-1",
        compute__instances__0__zone="eu-central-1a",
        networking__endpoints__0__tls=True,
        compliance__controls={"audit_logging": True, "baa_signed": True, "dpa_signed": True},
    )
    output = analyze(inv, no_progress)
    assert output.findings == []
    assert output.metrics["rules_failed"] == 0
    assert output.metrics["score_pct"] == 100.0


def test_only_named_frameworks_apply() -> None:
    inv = inventory(compliance={"frameworks": []})
    codes = set(by_code(inv))
    assert codes and all(code.startswith("compliance.baseline.") for code in codes)
    checked = analyze(inv, no_progress).metrics
    assert checked["rules_checked"] == len([r for r in RULES if r.framework == "baseline"])


def test_soc2_controls_cite_the_criteria() -> None:
    inv = inventory(compliance={"frameworks": ["SOC2"], "controls": {"mfa": False}})
    found = by_code(inv)
    assert found["compliance.soc2.mfa"].rule == "SOC 2 CC6.1"
    assert found["compliance.soc2.mfa"].severity == "medium"
    assert found["compliance.soc2.access-reviews"].rule == "SOC 2 CC6.2"
    assert found["compliance.soc2.transmission"].rule == "SOC 2 CC6.7"


def test_eu_ai_act_high_risk_articles() -> None:
    inv = inventory(
        compliance={"frameworks": ["EU_AI_ACT"], "eu_ai_act_risk": "high",
                    "controls": {"risk_management": True}},
        mlops={"data_versioning": "snapshots", "model_testing": "automated_tests"},
    )  # fmt: skip
    found = by_code(inv)
    cited = {f.rule for f in found.values() if f.code.startswith("compliance.euaiact.")}
    assert cited == {
        "EU AI Act Art. 10",  # snapshots only
        "EU AI Act Art. 11, 13",
        "EU AI Act Art. 12",
        "EU AI Act Art. 14",
        "EU AI Act Art. 15",  # tests automated, but the public endpoint has no TLS
        "EU AI Act Art. 50(1)",  # a chat
    }
    assert found["compliance.euaiact.data-governance"].evidence == [
        "mlops.data_versioning",
        "compliance.eu_ai_act_risk",
    ]
    assert found["compliance.euaiact.accuracy-robustness"].evidence == [
        "networking.endpoints[0].tls"
    ]


def test_a_stated_risk_class_brings_in_the_ai_act() -> None:
    inv = inventory(workloads__0__ai_act_risk="limited")  # frameworks: GDPR, HIPAA only
    assert by_code(inv)["compliance.euaiact.disclosure"].evidence == ["workloads[0].kind"]
    assert analyze(inv, no_progress).metrics["frameworks"] == ["GDPR", "HIPAA", "EU_AI_ACT"]


def test_minimal_risk_needs_no_high_risk_articles() -> None:
    inv = inventory(compliance={"frameworks": ["EU_AI_ACT"], "eu_ai_act_risk": "minimal"})
    assert not [c for c in by_code(inv) if c.startswith("compliance.euaiact.")]


def test_a_prohibited_workload_is_critical() -> None:
    inv = inventory(
        compliance={"frameworks": ["EU_AI_ACT"]}, workloads__0__ai_act_risk="unacceptable"
    )
    finding = by_code(inv)["compliance.euaiact.prohibited"]
    assert finding.severity == "critical"
    assert finding.evidence == ["workloads[0].ai_act_risk"]


@pytest.mark.parametrize(
    ("region", "expected"),
    [("eu-west-1", "EU"), ("europe-west4", "EU"), ("westeurope", "EU"), ("uksouth", "EU"),
     ("us-east-1", "US"), ("eastus2", "US"), ("us-central1", "US"), ("ap-south-1", None),
     ("on-prem-dc1", None)],
)  # fmt: skip
def test_jurisdiction_of_regions(region: str, expected: str | None) -> None:
    assert jurisdiction(region) == expected


def test_unknown_regions_are_never_a_breach() -> None:
    inv = inventory(compute__instances__0__region="dc-frankfurt")
    assert "compliance.gdpr.residency" not in by_code(inv)


def test_rules_are_well_formed() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert rule.id.split(".")[0] in ("baseline", "gdpr", "hipaa", "soc2", "euaiact")
        assert rule.citation and rule.looks_at and rule.recommendation and rule.risk


def test_progress_is_reported_and_can_cancel() -> None:
    seen: list[float] = []

    class Cancelled(Exception):
        pass

    def progress(fraction: float, note: str = "") -> None:
        seen.append(fraction)
        if len(seen) == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        analyze(inventory(), progress)
    assert seen == sorted(seen) and seen[0] == 0.0


def test_an_unanswered_question_points_at_the_questionnaire() -> None:
    inv = inventory(compliance={"frameworks": ["EU_AI_ACT"], "eu_ai_act_risk": "high"})
    finding = by_code(inv)["compliance.euaiact.data-governance"]
    assert finding.evidence == ["mlops", "compliance.eu_ai_act_risk"]
