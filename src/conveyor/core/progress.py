"""Progress of a running job: what a task reports and what the API derives from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ProgressEstimate:
    percent: float | None
    rate: float | None  # units of `current` per second
    eta_seconds: float | None


def estimate(
    current: float,
    total: float | None,
    first_current: float | None,
    first_at: datetime | None,
    updated_at: datetime | None,
) -> ProgressEstimate:
    """Rate over the whole reported span, and the ETA that rate implies.

    The rate is measured from the first progress report, not from the job's start, so setup
    time before the loop does not drag the estimate down.
    """
    percent = None
    if total is not None and total > 0:
        percent = max(0.0, min(100.0, 100.0 * current / total))
    rate = None
    if first_at is not None and updated_at is not None and first_current is not None:
        span = (updated_at - first_at).total_seconds()
        done = current - first_current
        if span > 0 and done > 0:
            rate = done / span
    eta = None
    if rate and total is not None and total >= current:
        eta = (total - current) / rate
    return ProgressEstimate(percent=percent, rate=rate, eta_seconds=eta)
