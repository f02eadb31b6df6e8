"""What analyzers produce: findings, an analyzer's output, and a stored result.

An analyzer function returns an :class:`AnalyzerOutput`; the task that ran it wraps it in an
:class:`AnalyzerResult` (how it ran: status, error, duration). Synthesis de-duplicates findings
across analyzers on ``code`` + ``evidence``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SEVERITIES",
    "AnalyzerOutput",
    "AnalyzerResult",
    "AnalyzerStatus",
    "Finding",
    "Severity",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")  # ascending
AnalyzerStatus = Literal["ok", "failed", "timeout", "cancelled"]


class Finding(BaseModel):
    """One observation with its evidence (inventory paths) and what to do about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    analyzer: str  # registry name, e.g. "cloud_engineer"
    code: str  # stable kind, e.g. "cost.idle-gpu"
    title: str
    severity: Severity
    evidence: list[str]  # inventory paths, e.g. "compute.instances[12].gpu.count"
    recommendation: str
    monthly_saving_usd: float | None = None
    risk: str | None = None  # what can go wrong if ignored
    rule: str | None = None  # a cited rule, e.g. "GDPR Art. 32(1)(a)"


class AnalyzerOutput(BaseModel):
    """What an analyzer function returns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    findings: list[Finding]
    metrics: dict[str, Any] = Field(default_factory=dict)  # JSON-able figures, per analyzer
    summary: str  # 1 to 3 sentences


class AnalyzerResult(AnalyzerOutput):
    """What a task stores: the analyzer's output plus how it ran."""

    analyzer: str
    status: AnalyzerStatus
    error: str | None = None
    duration_s: float

    @classmethod
    def of(cls, analyzer: str, output: AnalyzerOutput, duration_s: float) -> AnalyzerResult:
        """A successful run's result."""
        return cls(
            analyzer=analyzer,
            status="ok",
            duration_s=duration_s,
            findings=output.findings,
            metrics=output.metrics,
            summary=output.summary,
        )

    @classmethod
    def failure(
        cls, analyzer: str, status: AnalyzerStatus, error: str, duration_s: float
    ) -> AnalyzerResult:
        """A run that did not finish (failed, timeout, cancelled): no findings, the error."""
        return cls(
            analyzer=analyzer,
            status=status,
            error=error,
            duration_s=duration_s,
            findings=[],
            metrics={},
            summary=f"{analyzer} did not complete: {status}.",
        )
