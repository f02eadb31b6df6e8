"""Which jobs with a missing message the reconciler ends instead of re-sending (#12.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.ledger.reconciler import _never_to_run
from conveyor.ledger.repository import StaleJob

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def stale(expires_at: datetime | None = None) -> StaleJob:
    return StaleJob("j", "q", NOW - timedelta(minutes=20), expires_at)


def test_a_lost_message_is_resent() -> None:
    assert _never_to_run(stale(), NOW, None) is None
    assert _never_to_run(stale(NOW + timedelta(hours=1)), NOW, None) is None


def test_an_expired_job_is_never_resent() -> None:
    reason = _never_to_run(stale(NOW - timedelta(seconds=1)), NOW, None)
    assert reason is not None and reason[0] == "Expired"


def test_a_job_queued_before_its_queue_was_purged_is_never_resent() -> None:
    purged_at = (NOW - timedelta(minutes=10)).timestamp()
    reason = _never_to_run(stale(), NOW, purged_at)
    assert reason is not None and reason[0] == "Purged"
    # A purge before the job was queued did not take its message.
    earlier = (NOW - timedelta(minutes=30)).timestamp()
    assert _never_to_run(stale(), NOW, earlier) is None
