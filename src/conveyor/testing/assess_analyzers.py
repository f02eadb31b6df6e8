"""Extra analyzers for the assess pack's tests, plugged in the way a deployment plugs its own
(``CONVEYOR_ASSESS_EXTRA_ANALYZERS``): real analyzers run by real workers, one that always
fails and one that works slowly (cooperatively: it reports progress, so it can be cancelled
and reaches a soft time limit set with ``CONVEYOR_ASSESS_LIMITS``)."""

from __future__ import annotations

import json
import time

from conveyor.packs.assess.analyzers import Analyzer, Progress
from conveyor.packs.assess.findings import AnalyzerOutput
from conveyor.packs.assess.inventory import Inventory

SLOW_SECONDS = 120.0
STEADY_SECONDS = 4.0
EXTRAS = json.dumps(
    [
        f"conveyor.testing.assess_analyzers:{name}"
        for name in ("BROKEN", "SLOW", "SLOW_TOO", "STEADY", "STUBBORN")
    ]
)
"""The value of CONVEYOR_ASSESS_EXTRA_ANALYZERS that plugs all three in."""


def broken(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    progress(0.5, "about to fail")
    raise RuntimeError(f"{inventory.organisation.name}: this analyzer always fails")


def _work(seconds: float, progress: Progress) -> AnalyzerOutput:
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        progress(elapsed / seconds, f"{elapsed:.0f} s")
        time.sleep(0.02)
    return AnalyzerOutput(findings=[], metrics={"seconds": seconds}, summary="Slow, but done.")


def slow(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    return _work(SLOW_SECONDS, progress)


def stubborn(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    """Ignores its soft time limit (as code stuck in a C extension would): only the hard
    limit, which kills its process, stops it."""
    from celery.exceptions import SoftTimeLimitExceeded

    began = time.monotonic()
    while time.monotonic() - began < SLOW_SECONDS:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue
    return AnalyzerOutput(findings=[], metrics={}, summary="Never gets here in the tests.")


def steady(inventory: Inventory, progress: Progress) -> AnalyzerOutput:
    return _work(STEADY_SECONDS, progress)


BROKEN = Analyzer("testing_broken", "Always fails", 60, 90, 0.05, broken)
SLOW = Analyzer("testing_slow", "Slow", 600, 630, 0.05, slow)
SLOW_TOO = Analyzer("testing_slow_too", "Slow too", 600, 630, 0.05, slow)
STUBBORN = Analyzer("testing_stubborn", "Stubborn", 600, 630, 0.05, stubborn)
STEADY = Analyzer("testing_steady", "Steady", 60, 90, 0.05, steady)
