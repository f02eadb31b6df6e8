"""MLOps maturity: the questionnaire of :data:`~conveyor.packs.assess.inventory.MLOPS_QUESTIONS`
scored per area and overall, and its gaps as findings.

Scoring. A question's answers run from least to most mature; answer ``k`` of ``n`` scores
``k / (n - 1)`` (0..1), an unanswered question scores 0 and is listed as unanswered. An area's
level is ``round(4 * mean score of its questions)``, 0..4:

    0 ad hoc · 1 repeatable · 2 defined · 3 managed · 4 optimising

The overall level is the mean of the area levels (one decimal), so each area counts the same
whatever its number of questions.

Gaps. A question answered below the third answer (score under 2/3) is a gap: one finding naming
the answer that would be the next step. Severity: ``high`` for the two lowest answers of the
questions that keep production safe (monitoring, rollback, incident response, testing) when the
inventory serves inference; ``medium`` for any other lowest answer; ``low`` otherwise.

Metrics: ``areas`` (``{area: {"level": 0..4, "score": 0..1, "questions": n}}``), ``overall_level``,
``level_name``, ``answered`` and ``unanswered`` (question ids).
"""

from __future__ import annotations

from conveyor.packs.assess.analyzers import Progress
from conveyor.packs.assess.findings import AnalyzerOutput, Finding, Severity
from conveyor.packs.assess.inventory import MLOPS_QUESTIONS, Inventory, MlopsQuestion

__all__ = ["LEVELS", "analyze", "area_levels", "question_score"]

NAME = "mlops"
LEVELS = ("ad hoc", "repeatable", "defined", "managed", "optimising")
GAP_BELOW = 2 / 3  # a score under this is a gap: below the third answer of four
SAFETY = frozenset(
    {"performance_monitoring", "rollback", "incident_response", "model_testing", "deployment"}
)

# What to do next, per question (the step to the next answer); a question without an entry
# gets the generic "move from A to B".
ADVICE: dict[str, str] = {
    "model_versioning": "Register every trained model in a model registry (MLflow, SageMaker,"
    " Vertex) with the data and code versions that produced it.",
    "data_versioning": "Version training data (DVC, lakeFS, Delta/Iceberg time travel) and record"
    " which version each model was trained on.",
    "model_testing": "Gate releases on automated evaluation: a fixed test set, thresholds per"
    " metric, and a comparison against the model in production.",
    "deployment": "Deploy models through a pipeline (build, evaluate, stage, release) and add a"
    " canary or shadow step before full traffic.",
    "performance_monitoring": "Monitor model metrics in production (quality on sampled, labelled"
    " traffic; output distributions) and alert on them, not only on uptime.",
    "drift_detection": "Compare live input and prediction distributions with the training data"
    " on a schedule and alert when they drift past a threshold.",
    "feature_management": "Define features once and serve the same definitions to training and"
    " serving (a feature store, or at least shared, versioned feature code).",
    "reproducibility": "Pin code, data, dependencies, seeds and hardware type per training run so"
    " a past model can be rebuilt.",
    "experiment_tracking": "Track experiments in a tool (MLflow, Weights & Biases) and link the"
    " chosen run to the registered model.",
    "incident_response": "Write runbooks for model failures (bad outputs, drift, latency), put"
    " models on the on-call rota and hold blameless post-mortems.",
    "rollback": "Keep the previous model deployable and make rollback one command, then automatic"
    " on failed health or quality checks.",
}


def question_score(question: MlopsQuestion, answer: str | None) -> float:
    """0..1: the answer's rank among the question's answers (0 when unanswered)."""
    if answer is None or answer not in question.answers:
        return 0.0
    return question.answers.index(answer) / (len(question.answers) - 1)


def area_levels(inventory: Inventory) -> dict[str, dict[str, float | int]]:
    """Per area: level 0..4, mean score 0..1 and the number of questions."""
    scores: dict[str, list[float]] = {}
    for q in MLOPS_QUESTIONS:
        scores.setdefault(q.area, []).append(question_score(q, inventory.mlops.get(q.id)))
    out: dict[str, dict[str, float | int]] = {}
    for area, values in scores.items():
        mean = sum(values) / len(values)
        out[area] = {"level": _level(mean), "score": round(mean, 3), "questions": len(values)}
    return out


def _level(score: float) -> int:
    # round half up: 0.5 of the way between two levels counts as the upper one
    return min(4, int(4 * score + 0.5 + 1e-9))


def analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """Score the questionnaire; a finding per gap, and one listing unanswered questions."""
    serves = any(w.type == "inference" for w in inventory.workloads)
    findings: list[Finding] = []
    for n, q in enumerate(MLOPS_QUESTIONS):
        progress(n / len(MLOPS_QUESTIONS), q.id)
        answer = inventory.mlops.get(q.id)
        if answer is None:
            continue
        score = question_score(q, answer)
        if score < GAP_BELOW:
            findings.append(_gap(q, answer, score, serves))
    unanswered = [q.id for q in MLOPS_QUESTIONS if q.id not in inventory.mlops]
    if unanswered:
        findings.append(
            Finding(
                analyzer=NAME,
                code="mlops.unanswered",
                title=f"{len(unanswered)} of {len(MLOPS_QUESTIONS)} MLOps questions unanswered",
                severity="low" if len(unanswered) < len(MLOPS_QUESTIONS) else "medium",
                evidence=["mlops"],  # the answers it lacks are not in the inventory to point at
                recommendation="Answer the questionnaire fully; unanswered questions score 0."
                f" Unanswered: {', '.join(unanswered)}.",
                risk="The maturity score understates or hides real gaps.",
            )
        )
    areas = area_levels(inventory)
    overall = round(sum(int(a["level"]) for a in areas.values()) / len(areas), 1)
    name = LEVELS[int(overall + 0.5 + 1e-9)]
    weakest = min(areas, key=lambda a: (areas[a]["score"], a))
    progress(1.0, "done")
    gaps = len([f for f in findings if f.code != "mlops.unanswered"])
    summary = (
        f"MLOps maturity {overall:g} of 4 ({name}); weakest area: {weakest.replace('_', ' ')}"
        f" (level {areas[weakest]['level']}). {gaps} gap{'s' if gaps != 1 else ''} found"
        + (f", {len(unanswered)} questions unanswered." if unanswered else ".")
    )
    return AnalyzerOutput(
        findings=findings,
        metrics={
            "areas": areas,
            "overall_level": overall,
            "level_name": name,
            "answered": [q.id for q in MLOPS_QUESTIONS if q.id in inventory.mlops],
            "unanswered": unanswered,
        },
        summary=summary,
    )


def _gap(q: MlopsQuestion, answer: str, score: float, serves: bool) -> Finding:
    rank = q.answers.index(answer)
    step = q.answers[rank + 1]
    severity: Severity
    if q.id in SAFETY and serves and rank <= 1:
        severity = "high"
    elif rank == 0:
        severity = "medium"
    else:
        severity = "low"
    advice = ADVICE.get(q.id, f"Move from {answer!r} to {step!r}.")
    return Finding(
        analyzer=NAME,
        code=f"mlops.gap.{q.id}",
        title=f"{q.text} — {_words(answer)} (level {_level(score)} of 4)",
        severity=severity,
        evidence=[f"mlops.{q.id}"],
        recommendation=f"Next step: {_words(step)}. {advice}",
        risk=f"The {q.area.replace('_', ' ')} area stays at {LEVELS[_level(score)]} maturity.",
    )


def _words(answer: str) -> str:
    return answer.replace("_", " ")
