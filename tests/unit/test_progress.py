from datetime import UTC, datetime, timedelta

from conveyor.core.progress import estimate


def test_rate_and_eta_from_reported_span() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    est = estimate(60, 100, 20, t0, t0 + timedelta(seconds=4))
    assert est.percent == 60
    assert est.rate == 10
    assert est.eta_seconds == 4


def test_unknown_total_has_rate_but_no_eta() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    est = estimate(50, None, 0, t0, t0 + timedelta(seconds=5))
    assert est.rate == 10 and est.eta_seconds is None and est.percent is None


def test_single_report_has_no_rate() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert estimate(5, 10, 5, t0, t0).rate is None
