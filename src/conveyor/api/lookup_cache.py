"""A small per-process cache of ledger lookups, for checks that run on every request.

API keys (``api.auth``) and dashboard users (``web.accounts``) are both looked up by id on
each request and both must stop working soon after they are revoked or disabled: an entry is
trusted for ``seconds`` and then read again, and misses are cached too, so a flood of unknown
ids costs one query each per period rather than one per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_ENTRIES = 10_000


class LookupCache(Generic[K, V]):
    """``load(key)`` results, each kept for ``seconds``; cleared wholesale when full."""

    def __init__(
        self,
        load: Callable[[K], V | None],
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.load = load
        self.seconds = seconds
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V | None]] = {}
        self._lock = threading.Lock()

    def cached(self, key: K) -> tuple[bool, V | None]:
        """(fresh, value) from the cache alone; ``fresh`` is False when it must be loaded."""
        hit = self._entries.get(key)
        if hit is None or self.clock() - hit[0] >= self.seconds:
            return False, None
        return True, hit[1]

    def get(self, key: K) -> V | None:
        """The value from the cache if fresh, else loaded (blocking; call from a thread)."""
        fresh, value = self.cached(key)
        if fresh:
            return value
        value = self.load(key)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (self.clock(), value)
        return value

    def forget(self, key: K) -> None:
        """Drop one entry, so the next :meth:`get` loads it."""
        self._entries.pop(key, None)
