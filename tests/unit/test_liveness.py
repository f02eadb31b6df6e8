"""How fast a dead worker's jobs are recovered follows from the defaults; the promise is 15 s."""

from __future__ import annotations

from conveyor.config import Settings
from conveyor.ledger import events as ev


def test_default_intervals_recover_a_dead_workers_jobs_within_15_seconds() -> None:
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    # Worst case: the worker dies just after a beat, is judged silent SILENT_BEATS intervals
    # later, and the reconciler's next round comes one reconcile interval after that.
    assert ev.SILENT_BEATS * defaults["heartbeat_interval"] + defaults["reconcile_interval"] <= 15


def test_a_heartbeat_is_alive_for_three_intervals() -> None:
    beat = {"heartbeat_at": 100.0, "interval": 2.0}
    assert ev.heartbeat_alive(beat, 105.9)
    assert not ev.heartbeat_alive(beat, 106.0)
