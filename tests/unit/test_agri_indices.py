"""Weather indices against values computed by hand (docs/agri.md shows the same example)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.packs.agri.crops import CROPS
from conveyor.packs.agri.errors import InvalidWeather
from conveyor.packs.agri.indices import (
    DailyWeather,
    climatology_mm,
    drought,
    flood,
    growing_degree_days,
    heat,
    stress_score,
    weather_indices,
)

START = date(2026, 3, 1)
RAIN = [0, 0.5, 12, 0, 0, 0, 0, 3, 25, 0]
TMAX = [30, 32, 36, 37, 38, 34, 33, 36, 31, 30]
TMIN = [18, 19, 20, 21, 22, 20, 19, 20, 18, 17]


def series(
    rain: list[float] = RAIN,
    tmax: list[float] = TMAX,
    tmin: list[float] = TMIN,
    start: date = START,
) -> list[DailyWeather]:
    return [
        DailyWeather(start + timedelta(days=i), float(r), float(hi), float(lo))
        for i, (r, hi, lo) in enumerate(zip(rain, tmax, tmin, strict=False))
    ]


def test_drought_by_hand() -> None:
    d = drought(series(), climatology_mm=100.0)
    assert d.rain_mm == pytest.approx(40.5)
    assert d.deficit_mm == pytest.approx(59.5)
    assert d.deficit_pct == pytest.approx(59.5)
    assert d.longest_dry_spell_days == 4  # 4..7 March
    assert d.days_since_heavy_rain == 1  # 25 mm on 9 March, the series ends on the 10th


def test_drought_wetter_than_normal_and_no_heavy_rain() -> None:
    d = drought(series(rain=[5] * 10), climatology_mm=30.0)
    assert (d.deficit_mm, d.deficit_pct, d.longest_dry_spell_days) == (0.0, 0.0, 0)
    assert d.days_since_heavy_rain is None
    # a climatology of 0 mm (a desert season): no deficit, not a division by zero
    assert drought(series(rain=[0] * 10), climatology_mm=0.0).deficit_pct == 0.0


def test_flood_by_hand() -> None:
    f = flood(series())
    assert f.max_daily_mm == 25
    assert f.max_3day_mm == pytest.approx(28.0)  # 8..10 March: 3 + 25 + 0, also 7..9
    assert f.wet_days == 3
    assert f.intensity_mm_per_wet_day == pytest.approx(40 / 3)
    short = flood(series(rain=[4, 5], tmax=[30, 30], tmin=[20, 20]))
    assert short.max_3day_mm == 9


def test_heat_by_hand() -> None:
    h = heat(series(), threshold_c=35.0)
    assert h.hot_days == 4  # 36, 37, 38, 36
    assert h.heat_degree_days == pytest.approx(1 + 2 + 3 + 1)
    assert h.longest_hot_run_days == 3
    # "over" is strict: a day at the threshold is not hot
    assert heat(series(), threshold_c=38.0).hot_days == 0


def test_growing_degree_days_by_hand() -> None:
    # base 10, cap 30: every Tmax is >= 30 so counts as 30; GDD = sum(5 + Tmin/2) = 50 + 97
    assert growing_degree_days(series(), 10.0, 30.0) == pytest.approx(147.0)
    # a cold day below the base counts 0, never negative
    cold = series(rain=[0], tmax=[8], tmin=[2])
    assert growing_degree_days(cold, 10.0, 30.0) == 0.0


def test_stress_score_by_hand() -> None:
    d = drought(series(), 100.0)
    s = stress_score(d, flood(series()), heat(series(), 35.0))
    assert s.drought == pytest.approx(0.7 * 0.595 + 0.3 * 4 / 30)  # 0.4565
    assert s.flood == pytest.approx(28 / 300)
    assert s.heat == pytest.approx(7 / 80)
    assert s.score == s.drought


def test_weather_indices_use_the_crop() -> None:
    w = weather_indices(series(), climatology_mm=100.0, profile=CROPS["maize"])
    assert (w.start, w.end, w.days) == (START, START + timedelta(days=9), 10)
    assert w.heat.threshold_c == 35.0
    assert w.growing_degree_days == pytest.approx(147.0)
    data = w.to_json()
    assert data["start"] == "2026-03-01" and data["drought"]["deficit_pct"] == pytest.approx(59.5)


def test_climatology_by_hand() -> None:
    history = []
    for year, daily in ((2023, 1.0), (2024, 2.0), (2025, 3.0)):
        first = date(year, 1, 1)
        history += [DailyWeather(first + timedelta(days=i), daily, 30, 20) for i in range(365)]
    # 1..10 March: 10, 20 and 30 mm in the three years
    assert climatology_mm(history, date(2026, 3, 1), date(2026, 3, 10)) == pytest.approx(20.0)
    # 29 February 2028..4 March maps to 28 February..4 March in years without a 29th (2025:
    # 5 days x 3 mm, 2023: 5 x 1 mm) and to 29 February..4 March in 2024 (5 x 2 mm); 2027 and
    # 2026 are not in the history. Mean of 15, 10 and 5.
    leap = climatology_mm(history, date(2028, 2, 29), date(2028, 3, 4))
    assert leap == pytest.approx(10.0)
    with pytest.raises(InvalidWeather, match="in 3 earlier year"):
        climatology_mm(history, date(2026, 3, 1), date(2026, 3, 10), min_years=4)
    with pytest.raises(InvalidWeather, match="no weather history"):
        climatology_mm([], START, START)
    with pytest.raises(InvalidWeather, match="1 to 366 days"):
        climatology_mm(history, START, START - timedelta(days=1))


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ([], "empty"),
        (series()[:3] + series()[4:], "follows a gap"),
        (series()[:3] + series()[2:], "repeated or out of order"),
        (series(rain=[-1]), "precipitation -1.0"),
        (series(rain=[5000]), "outside 0..2000"),
        (series(rain=[math.nan]), "finite"),
        (series(rain=[1], tmax=[10], tmin=[20]), "Tmin <= Tmax"),
        (series(rain=[1], tmax=[math.inf], tmin=[20]), "finite"),
    ],
)
def test_bad_series_named(rows: list[DailyWeather], why: str) -> None:
    with pytest.raises(InvalidWeather, match=why):
        flood(rows)


def test_bad_climatology_and_gdd_cap() -> None:
    with pytest.raises(InvalidWeather, match="climatology"):
        drought(series(), -1.0)
    with pytest.raises(InvalidWeather, match="cap"):
        growing_degree_days(series(), 30.0, 10.0)


days = st.lists(
    st.tuples(st.floats(0, 300), st.floats(-20, 50), st.floats(0, 20)),
    min_size=1,
    max_size=60,
)


@given(days)
def test_indices_stay_in_range(rows: list[tuple[float, float, float]]) -> None:
    weather = [
        DailyWeather(START + timedelta(days=i), r, hi, hi - spread)
        for i, (r, hi, spread) in enumerate(rows)
    ]
    w = weather_indices(weather, climatology_mm=200.0, profile=CROPS["wheat"])
    assert 0 <= w.drought.deficit_pct <= 100
    assert 0 <= w.stress.score <= 1
    assert w.flood.max_daily_mm <= w.flood.max_3day_mm <= w.drought.rain_mm + 1e-6
    assert 0 <= w.drought.longest_dry_spell_days <= len(weather)
    assert w.heat.longest_hot_run_days <= w.heat.hot_days <= len(weather)
    assert w.growing_degree_days >= 0
