"""Open-Meteo daily answers checked before use: garbage of every shape is a ProviderError
naming what was wrong, never a crash or a silent zero; nulls are missing days."""

from __future__ import annotations

import contextlib
import json
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.packs.agri.errors import ProviderError
from conveyor.packs.agri.indices import DailyWeather
from conveyor.packs.agri.weather import parse_daily, retry_after_seconds

START = date(2026, 6, 1)


def answer(**daily: Any) -> bytes:
    body = {
        "latitude": -1.25, "longitude": 36.75,
        "daily_units": {"time": "iso8601", "precipitation_sum": "mm",
                        "temperature_2m_max": "°C", "temperature_2m_min": "°C"},
        "daily": {"time": ["2026-06-01", "2026-06-02"], "precipitation_sum": [0.0, 12.5],
                  "temperature_2m_max": [28.1, 25.0], "temperature_2m_min": [15.2, 14.0]}
        | daily,
    }  # fmt: skip
    return json.dumps(body).encode()


def test_a_good_answer() -> None:
    series = parse_daily(answer(), START, START + timedelta(days=1))
    assert series.days == [
        DailyWeather(date(2026, 6, 1), 0.0, 28.1, 15.2),
        DailyWeather(date(2026, 6, 2), 12.5, 25.0, 14.0),
    ]
    assert series.missing == [] and (series.latitude, series.longitude) == (-1.25, 36.75)


def test_nulls_and_absent_days_are_missing() -> None:
    series = parse_daily(answer(precipitation_sum=[None, 12.5]), START, START + timedelta(days=2))
    assert [d.day for d in series.days] == [date(2026, 6, 2)]
    assert series.missing == [date(2026, 6, 1), date(2026, 6, 3)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"error": true, "reason": "boom"}', "reported an error: boom"),
        (b"{}", "no 'daily' object"),
        (answer(time="x"), "no 'time' array"),
        (answer(precipitation_sum=[1.0]), "1 values for 2 days"),
        (answer(time=["2026-06-01", "2026-06-01"]), "repeats"),
        (answer(time=["2026-06-01", "June 2"]), r"time\[1\] is not a date"),
        (answer(precipitation_sum=[-1.0, 0.0]), "outside 0.0..2000.0"),
        (answer(temperature_2m_max=[True, 1.0]), "not a number"),
        (answer(temperature_2m_min=[30.0, 14.0]), "minimum above its maximum"),
        (answer(time=["2026-05-01", "2026-06-02"]), "outside"),
    ],
)
def test_garbage_is_named(body: bytes, message: str) -> None:
    with pytest.raises(ProviderError, match=message):
        parse_daily(body, START, START + timedelta(days=1))


def test_a_unit_other_than_mm_is_refused() -> None:
    body = json.loads(answer())
    body["daily_units"]["precipitation_sum"] = "inch"
    with pytest.raises(ProviderError, match="not mm"):
        parse_daily(json.dumps(body).encode(), START, START + timedelta(days=1))


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["time", "precipitation_sum", "temperature_2m_max",
                                         "temperature_2m_min", "other"]), json_values))  # fmt: skip
def test_any_daily_object_is_parsed_or_refused_clearly(daily: dict[str, Any]) -> None:
    body = json.dumps({"daily": daily}).encode()
    try:
        series = parse_daily(body, START, START + timedelta(days=3))
    except ProviderError:
        return
    assert len(series.days) + len(series.missing) == 4


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_parsed_or_refused_clearly(body: bytes) -> None:
    with contextlib.suppress(ProviderError):
        parse_daily(body, START, START)


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "7"}, default=1.0) == 7.0
    assert retry_after_seconds({}, default=1.0) == 1.0
    assert retry_after_seconds({"Retry-After": "soon"}, default=2.0) == 2.0
    assert retry_after_seconds({"Retry-After": "-5"}, default=1.0) == 0.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, default=1.0) == 0
    assert retry_after_seconds({"Retry-After": "inf"}, default=3.0) == 3.0
