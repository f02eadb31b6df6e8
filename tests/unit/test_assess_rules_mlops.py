"""The MLOps questionnaire's scoring, checked by hand on one set of answers."""

from __future__ import annotations

from typing import Any

from conveyor.packs.assess.analyzers import no_progress
from conveyor.packs.assess.analyzers.mlops import analyze, area_levels, question_score
from conveyor.packs.assess.inventory import MLOPS_QUESTIONS, Inventory

ANSWERS = {
    "model_versioning": "registry",  # 2/3
    "data_versioning": "none",  # 0            versioning: mean 1/3 → 4 * 1/3 = 1.33 → level 1
    "model_testing": "automated_with_quality_gates",  # 1
    "deployment": "pipeline_with_canary",  # 1  ci_cd: 1 → level 4
    "performance_monitoring": "infrastructure_only",  # 1/3
    "drift_detection": "none",  # 0            monitoring: 1/6 → 0.67 → level 1
    # feature_management unanswered → 0      feature_store: level 0
    "reproducibility": "with_effort",  # 2/3
    "experiment_tracking": "tracking_tool",  # 2/3  reproducibility: 2.67 → level 3
    "incident_response": "runbooks",  # 2/3
    "rollback": "minutes_manual",  # 2/3      incident_response: level 3
}


def inventory(mlops: dict[str, str], serving: bool = True) -> Inventory:
    data: dict[str, Any] = {
        "organisation": {"name": "x"},
        "compute": {"instances": []},
        "budget": {"monthly_usd": 1},
        "mlops": mlops,
        "workloads": [
            {"id": "w", "type": "inference" if serving else "training",
             "kind": "chat" if serving else "fine_tuning",
             "model": {"name": "m", "parameters_b": 1, "precision": "bf16"}}
        ],
    }  # fmt: skip
    return Inventory.model_validate(data)


def test_levels_per_area_and_overall() -> None:
    inv = inventory(ANSWERS)
    levels = {area: v["level"] for area, v in area_levels(inv).items()}
    assert levels == {
        "versioning": 1,
        "ci_cd": 4,
        "monitoring": 1,
        "feature_store": 0,
        "reproducibility": 3,
        "incident_response": 3,
    }
    metrics = analyze(inv, no_progress).metrics
    assert metrics["overall_level"] == 2.0  # (1 + 4 + 1 + 0 + 3 + 3) / 6
    assert metrics["level_name"] == "defined"
    assert metrics["unanswered"] == ["feature_management"]


def test_gaps_and_their_severity() -> None:
    output = analyze(inventory(ANSWERS), no_progress)
    found = {f.code: f for f in output.findings}
    assert set(found) == {
        "mlops.gap.data_versioning",
        "mlops.gap.performance_monitoring",
        "mlops.gap.drift_detection",
        "mlops.unanswered",
    }
    # a production-safety question at its second answer, with inference served: high
    assert found["mlops.gap.performance_monitoring"].severity == "high"
    assert found["mlops.gap.performance_monitoring"].evidence == ["mlops.performance_monitoring"]
    assert "model metrics" in found["mlops.gap.performance_monitoring"].recommendation
    assert found["mlops.gap.data_versioning"].severity == "medium"
    assert found["mlops.unanswered"].evidence == ["mlops"]
    assert "Unanswered: feature_management." in found["mlops.unanswered"].recommendation
    assert "weakest area: feature store" in output.summary


def test_without_serving_safety_gaps_are_not_high() -> None:
    found = {f.code: f for f in analyze(inventory(ANSWERS, serving=False), no_progress).findings}
    assert found["mlops.gap.performance_monitoring"].severity == "low"


def test_all_best_answers_is_level_four_without_gaps() -> None:
    best = {q.id: q.answers[-1] for q in MLOPS_QUESTIONS}
    output = analyze(inventory(best), no_progress)
    assert output.findings == []
    assert output.metrics["overall_level"] == 4.0
    assert output.metrics["level_name"] == "optimising"


def test_nothing_answered_is_level_zero() -> None:
    output = analyze(inventory({}), no_progress)
    assert output.metrics["overall_level"] == 0.0
    [finding] = output.findings
    assert finding.code == "mlops.unanswered" and finding.severity == "medium"
    assert finding.evidence == ["mlops"]


def test_question_score_runs_zero_to_one() -> None:
    q = MLOPS_QUESTIONS[0]
    assert [question_score(q, a) for a in q.answers] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert question_score(q, None) == 0.0
