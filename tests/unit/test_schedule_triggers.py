"""Triggers and fire times (core.schedules): cron aliases, bad fields named, intervals, and DST
on real transition dates in a European and an American zone."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.core.schedules import (
    Trigger,
    fires_between,
    jitter_offset,
    next_fires,
    parse_cron,
    parse_interval,
    zone,
)
from conveyor.errors import InvalidSchedule


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron(expr: str) -> Trigger:
    return Trigger("cron", cron=parse_cron(expr))


@pytest.mark.parametrize(
    ("alias", "expr"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_aliases(alias: str, expr: str) -> None:
    assert parse_cron(alias) == expr


def test_weekly_fires_on_sunday_midnight_in_its_zone() -> None:
    fires = next_fires(cron("@weekly"), "Europe/Berlin", utc("2026-12-02T12:00:00"), 2)
    local = [f.astimezone(zone("Europe/Berlin")) for f in fires]
    assert [f.weekday() for f in local] == [6, 6]
    assert [(f.hour, f.minute) for f in local] == [(0, 0), (0, 0)]
    assert fires[1] - fires[0] == timedelta(days=7)


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 32 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("*/0 * * * *", "minute"),
        ("x * * * *", "minute"),
    ],
)
def test_a_bad_field_is_named(expr: str, field: str) -> None:
    with pytest.raises(InvalidSchedule) as err:
        parse_cron(expr)
    assert f"the {field} field" in str(err.value)
    assert err.value.field == "cron"


@pytest.mark.parametrize("expr", ["", "* * * *", "0 * * * * *", "@sometimes"])
def test_wrong_shapes_are_refused(expr: str) -> None:
    with pytest.raises(InvalidSchedule, match="cron"):
        parse_cron(expr)


def test_a_date_that_never_exists_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match="day-of-month"):
        parse_cron("0 0 31 2 *")


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        (" 5M ", 300.0),
    ],
)
def test_intervals(given: str | float, seconds: float) -> None:
    assert parse_interval(given) == seconds


@pytest.mark.parametrize("given", [0, -1, "0s", "-5m", "5w", "soon", "", float("nan"), True])
def test_bad_intervals(given: str | float) -> None:
    with pytest.raises(InvalidSchedule, match="every"):
        parse_interval(given)


def test_intervals_count_from_the_anchor() -> None:
    every = Trigger("interval", every=300)
    assert next_fires(every, "UTC", utc("2026-12-05T07:03:10"), 2) == [
        utc("2026-12-05T07:05:00"),
        utc("2026-12-05T07:10:00"),
    ]
    anchored = Trigger("interval", every=300, anchor=utc("2026-12-05T07:01:00"))
    assert next_fires(anchored, "UTC", utc("2026-12-05T07:03:10"), 1) == [
        utc("2026-12-05T07:06:00")
    ]
    # Strictly after: a fire time itself is not its own next fire.
    assert next_fires(every, "UTC", utc("2026-12-05T07:05:00"), 1) == [utc("2026-12-05T07:10:00")]


def test_one_off() -> None:
    at = Trigger("at", at=utc("2026-12-24T18:00:00"))
    assert next_fires(at, "UTC", utc("2026-12-05T00:00:00"), 3) == [utc("2026-12-24T18:00:00")]
    assert next_fires(at, "UTC", utc("2026-12-25T00:00:00"), 3) == []


def test_unknown_timezone() -> None:
    for name in ("Mars/Olympus", "", "../etc/passwd", "Europe/Berlin "):
        with pytest.raises(InvalidSchedule, match="timezone"):
            zone(name)


def test_fires_between_is_bounded() -> None:
    every = Trigger("interval", every=60)
    fires = fires_between(every, "UTC", utc("2026-12-05T00:00:00"), utc("2026-12-05T01:00:00"), 500)
    assert len(fires) == 60 and fires[0] == utc("2026-12-05T00:01:00")
    assert fires[-1] == utc("2026-12-05T01:00:00")
    assert (
        len(fires_between(every, "UTC", utc("2026-12-05T00:00:00"), utc("2026-12-06T00:00:00"), 7))
        == 7
    )


def test_jitter_is_deterministic_and_bounded() -> None:
    offsets = {jitter_offset(f"s:{i}", 10) for i in range(200)}
    assert all(0 <= o < 10 for o in offsets) and len(offsets) > 100
    assert jitter_offset("s:1", 10) == jitter_offset("s:1", 10)
    assert jitter_offset("s:1", 0) == 0


# --- DST -----------------------------------------------------------------------------------------
def local_fires(expr: str, tz: str, after: str, n: int) -> list[str]:
    fires = next_fires(cron(expr), tz, utc(after), n)
    return [f.astimezone(zone(tz)).isoformat() for f in fires]


def test_berlin_spring_forward_missing_time_fires_once_at_the_next_valid_instant() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that night.
    assert local_fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00", 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_berlin_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    assert local_fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00", 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_new_york_spring_forward() -> None:
    # 2026-03-08: 02:00 EST becomes 03:00 EDT.
    assert local_fires("15 2 * * *", "America/New_York", "2026-03-07T12:00:00", 2) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:15:00-04:00",
    ]


def test_new_york_fall_back() -> None:
    # 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    assert local_fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00", 2) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_sub_hourly_cron_keeps_real_time_across_fall_back() -> None:
    fires = next_fires(cron("*/30 * * * *"), "Europe/Berlin", utc("2026-10-24T23:50:00"), 6)
    assert [b - a for a, b in itertools.pairwise(fires)] == [timedelta(minutes=30)] * 5
