"""The analyzers' registry: the seed's ten roles, their time limits and progress weights.

Each analyzer is a module ``conveyor.packs.assess.analyzers.<name>`` with a plain function
``analyze(inventory: Inventory, progress: Progress) -> AnalyzerOutput``: pure, deterministic
(seeded RNG), no I/O but the pack's data files. It calls ``progress(fraction, note)`` between
units of work; the task's implementation of :class:`Progress` also checks cancellation there
and raises, so an analyzer stops at its next call.

The registry imports an analyzer's module only when it runs (:class:`Analyzer.run`), so a
worker imports the ten modules lazily and one broken module fails only its own analyzer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from conveyor.packs.assess.errors import AssessError
from conveyor.packs.assess.findings import AnalyzerOutput
from conveyor.packs.assess.inventory import Inventory

__all__ = ["ANALYZERS", "Analyzer", "Progress", "UnknownAnalyzer", "get", "no_progress"]

HARD_LIMIT_MARGIN = 30  # seconds between the soft limit (SoftTimeLimitExceeded) and the kill


class Progress(Protocol):
    """Reports how far an analyzer is (0..1 within it); may raise to cancel it."""

    def __call__(self, fraction: float, note: str = "") -> None: ...


def no_progress(fraction: float, note: str = "") -> None:
    """A :class:`Progress` that ignores reports (plain calls, tests)."""


Run = Callable[[Inventory, Progress], AnalyzerOutput]


class UnknownAnalyzer(AssessError, KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no analyzer named {name!r}; known: {', '.join(ANALYZERS)}")
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class _Lazy:
    """``analyze`` of an analyzer module, imported on the first call."""

    module: str

    def __call__(self, inventory: Inventory, progress: Progress) -> AnalyzerOutput:
        mod = importlib.import_module(self.module)
        output: AnalyzerOutput = mod.analyze(inventory, progress)
        return output


@dataclass(frozen=True)
class Analyzer:
    """One role of the assessment."""

    name: str  # registry name, e.g. "cloud_engineer"
    role: str  # e.g. "Cloud engineer"
    soft_limit: int  # seconds
    hard_limit: int  # soft + 30
    weight: float  # share of the analyzers' 70 % of progress
    run: Run = field(compare=False)


# The seed's table: role, soft time limit in seconds. Order is the registry's order.
_TABLE: tuple[tuple[str, str, int], ...] = (
    ("cto", "CTO", 300),
    ("cloud_engineer", "Cloud engineer", 300),
    ("research", "Research", 180),
    ("mlops", "MLOps engineer", 240),
    ("infrastructure", "Infrastructure engineer", 240),
    ("compliance", "Compliance officer", 200),
    ("ai_consultant", "AI consultant", 240),
    ("web_research", "Web research", 180),
    ("simulation", "Simulation", 300),
    ("chatbot", "Chatbot specialist", 120),
)
_TOTAL_SOFT = sum(soft for _, _, soft in _TABLE)

ANALYZERS: dict[str, Analyzer] = {
    name: Analyzer(
        name=name,
        role=role,
        soft_limit=soft,
        hard_limit=soft + HARD_LIMIT_MARGIN,
        weight=soft / _TOTAL_SOFT,
        run=_Lazy(f"{__name__}.{name}"),
    )
    for name, role, soft in _TABLE
}


def get(name: str) -> Analyzer:
    """The analyzer of that name; :class:`UnknownAnalyzer` if there is none."""
    try:
        return ANALYZERS[name]
    except KeyError:
        raise UnknownAnalyzer(name) from None
