"""Global limits on how fast and how many of a task run, shared by every worker.

A task declares them as options (``@app.task(global_rate_limit="10/s", limit_key="customer",
max_concurrency=2)``) or in ``CONVEYOR_LIMITS``. The key names a task argument, so limits
apply per customer, per tenant, per anything the arguments carry.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigurationError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
}


def parse_rate(text: str) -> float:
    """ "10/s", "100/m", "3600/h" -> runs per second."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"rate {text!r} is not of the form N/s, N/m or N/h with N > 0 (e.g. '10/s')"
        )
    return float(match.group(1)) / _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class LimitSpec:
    rate_per_second: float | None = None
    burst: int = 1
    key_argument: str | None = None
    max_concurrency: int | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LimitSpec | None:
        rate = options.get("global_rate_limit") or options.get("rate")
        concurrency = options.get("max_concurrency") or options.get("concurrency")
        if rate is None and concurrency is None:
            return None
        if concurrency is not None and int(concurrency) < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, not {concurrency!r}")
        return cls(
            rate_per_second=parse_rate(str(rate)) if rate is not None else None,
            burst=max(1, int(options.get("rate_burst") or options.get("burst") or 1)),
            key_argument=options.get("limit_key") or options.get("key"),
            max_concurrency=int(concurrency) if concurrency is not None else None,
        )

    def key_value(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> str:
        """The value of the key argument in this call ("" when the limit is per task)."""
        if self.key_argument is None:
            return ""
        try:
            bound = inspect.signature(fn).bind_partial(*args, **kwargs)
        except TypeError:
            return "?"
        value = bound.arguments.get(self.key_argument, kwargs.get(self.key_argument))
        return "?" if value is None else str(value)[:200]
