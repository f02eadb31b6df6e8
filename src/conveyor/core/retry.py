"""Retry policies: how often, how far apart, and on which errors a task is tried again.

Celery already implements the mechanics (``autoretry_for``, exponential ``retry_backoff``
capped at ``retry_backoff_max``, "full jitter" that draws each delay uniformly from zero to
the backoff); a policy names them once and hands them to the task decorator::

    policy = RetryPolicy(max_attempts=5, backoff=2, backoff_max=120, retry_on=(IOError,))

    @app.task(**policy.task_options())
    def sync_account(account_id: int) -> None: ...

After the last attempt the job ends ``dead`` and waits in the dead-letter queue for a replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigurationError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff: int = 1  # seconds before the first retry; doubles each attempt
    backoff_max: int = 600
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.backoff < 1 or self.backoff_max < self.backoff:
            raise ConfigurationError("need 1 <= backoff <= backoff_max (whole seconds)")

    def task_options(self) -> dict[str, Any]:
        """Options for ``@app.task(...)``."""
        return {
            "autoretry_for": self.retry_on,
            "max_retries": self.max_attempts - 1,
            "retry_backoff": self.backoff,
            "retry_backoff_max": self.backoff_max,
            "retry_jitter": self.jitter,
            "max_attempts": self.max_attempts,
        }

    def delay_bound(self, attempt: int) -> float:
        """The longest wait before attempt ``attempt + 1`` (jitter draws below it)."""
        return float(min(self.backoff_max, self.backoff * 2 ** (attempt - 1)))
