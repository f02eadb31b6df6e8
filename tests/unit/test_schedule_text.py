"""A schedule's trigger and next fire in words (conveyor.web.schedule_text, formatting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from conveyor.web.formatting import format_clock, format_from_now
from conveyor.web.schedule_text import (
    cron_in_words,
    interval_in_words,
    next_fire_in_words,
    trigger_in_words,
)

NOW = datetime(2026, 12, 5, 14, 1, tzinfo=UTC)


def test_cron_expressions_and_aliases_in_words() -> None:
    assert cron_in_words("*/5 * * * *") == "every 5 minutes"
    assert cron_in_words("0 2 * * 0") == "at 02:00, only on Sunday"
    assert cron_in_words("30 9 * * 1-5") == "at 09:30, Monday through Friday"
    assert cron_in_words("@daily") == cron_in_words("@MIDNIGHT") == "every day at 00:00"
    assert cron_in_words("@hourly") == "every hour, on the hour"
    # Not describable: shown as it is, never an error on the page.
    assert cron_in_words("not a cron") == "not a cron"


def test_intervals_use_the_largest_whole_unit() -> None:
    assert interval_in_words(300) == "every 5 minutes"
    assert interval_in_words(timedelta(hours=1)) == "every hour"
    assert interval_in_words(172800) == "every 2 days"
    assert interval_in_words(90) == "every 90 seconds"
    assert interval_in_words(1) == "every second"
    assert interval_in_words(2.5) == "every 2.5 seconds"


def test_trigger_names_the_zone_of_a_cron_that_is_not_utc() -> None:
    assert trigger_in_words("cron", cron="0 2 * * *") == "at 02:00"
    berlin = trigger_in_words("cron", cron="0 2 * * *", timezone="Europe/Berlin")
    assert berlin == "at 02:00 (Europe/Berlin)"
    assert trigger_in_words("interval", every=600) == "every 10 minutes"
    once = datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
    assert (
        trigger_in_words("at", at=once, timezone="Europe/Berlin", now=NOW)
        == "once, 2026-12-24 18:00 Europe/Berlin"
    )


def test_next_fire_is_relative_in_utc_and_in_the_schedules_zone() -> None:
    fire = NOW + timedelta(minutes=4)
    assert next_fire_in_words(fire, NOW) == "in 4m 00s · 14:05 UTC"
    assert (
        next_fire_in_words(fire, NOW, "Europe/Berlin")
        == "in 4m 00s · 14:05 UTC · 15:05 Europe/Berlin"
    )
    # A time on another day than today (in that zone) carries its date.
    assert next_fire_in_words(fire, NOW, "America/New_York").endswith("09:05 America/New_York")
    tomorrow = next_fire_in_words(fire + timedelta(days=1), NOW)
    assert tomorrow == "in 1d 00h · 2026-12-06 14:05 UTC"
    assert next_fire_in_words(None, NOW) == "no further fires"
    assert next_fire_in_words(fire, NOW, paused=True) == "paused"


def test_clock_and_distance() -> None:
    assert format_clock(datetime(2026, 12, 5, 14, 5, 30, tzinfo=UTC), UTC, NOW) == "14:05:30 UTC"
    tokyo = format_clock(NOW, ZoneInfo("Asia/Tokyo"), NOW)
    assert tokyo == "23:01 Asia/Tokyo"
    assert format_from_now(NOW - timedelta(seconds=12), NOW) == "12.0 s ago"
    assert format_from_now(NOW, NOW) == "now"
