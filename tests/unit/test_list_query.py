"""The jobs list's GET parameters: parsed forgivingly, reproduced exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.web.list_query import ListQuery


def parse(**params: str) -> ListQuery:
    return ListQuery.parse(
        None,
        None,
        None,
        params.pop("q", None),
        None,
        None,
        **params,  # type: ignore[arg-type]
    )


def test_time_filters_parse_and_round_trip() -> None:
    query = parse(within="1h", after="2026-11-30T14:05", before="2026-12-01")
    assert not query.problems
    assert query.after == datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
    assert query.before == datetime(2026, 12, 1, tzinfo=UTC)
    assert query.filter_params() == [
        ("within", "1h"),
        ("after", "2026-11-30T14:05"),
        ("before", "2026-12-01T00:00"),
    ]
    assert query.filtered and query.timed
    again = parse(**dict(query.filter_params()))
    assert again == query


def test_relative_range_counts_back_from_now_and_keeps_the_later_bound() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert parse(within="24h").job_filter(now).created_after == now - timedelta(hours=24)
    late = parse(within="7d", after="2026-11-30T06:00").job_filter(now)
    assert late.created_after == datetime(2026, 11, 30, 6, tzinfo=UTC)
    offset = parse(after="2026-11-30T14:00+02:00")
    assert offset.after == datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_unusable_time_filters_are_dropped_and_reported() -> None:
    query = parse(within="1y", after="soon", before="2026-13-01")
    assert query.within is None and query.after is None and query.before is None
    assert len(query.problems) == 3
    backwards = parse(after="2026-12-01", before="2026-11-01")
    assert backwards.after is None and backwards.before is None
    assert "not before" in backwards.problems[0]


def test_the_schedule_filter_is_an_id_kept_in_every_link() -> None:
    schedule = "0b1c6e0e-2f0a-4b8e-9a8e-6f4f5f2d9c11"
    query = parse(schedule=f" {schedule.upper()} ")
    assert query.schedule == schedule and query.filtered
    assert query.job_filter().schedule_id == schedule
    assert ("schedule", schedule) in query.filter_params()
    assert query.without_schedule().query_string() == ""
    bad = parse(schedule="nightly")
    assert bad.schedule is None and "'nightly' is not a schedule id" in bad.problems[0]


def test_the_workflow_filter_is_canonical_round_trips_and_narrows_the_jobs() -> None:
    wanted = "0190A0B0-0000-7000-8000-0000000000AB"
    query = parse(workflow=f" {wanted} ")
    assert not query.problems and query.filtered
    assert query.workflow == wanted.lower()
    assert query.filter_params() == [("workflow", wanted.lower())]
    assert parse(**dict(query.filter_params())) == query
    assert query.job_filter().workflow_id == wanted.lower()
    assert query.without_workflow() == parse()
    bad = parse(workflow="nope")
    assert bad.workflow is None and not bad.filtered
    assert bad.problems == ("'nope' is not a workflow id; the workflow filter was dropped",)
