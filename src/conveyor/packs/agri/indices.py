"""Weather indices of a plot from its daily series — drought, flood, heat, growing degree days —
and a composite stress score. Formulas, units and worked examples: ``docs/agri.md``.

Every function takes the days of one period, in order, one row a day (:func:`check_series`
refuses a gap, a repeated day, a negative rainfall, Tmin above Tmax or a non-finite value —
a gap would make a dry spell look shorter and a deficit look larger, silently). Units:
precipitation in mm/day, temperatures in °C, degree days in °C·day.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from conveyor.packs.agri.crops import CropProfile
from conveyor.packs.agri.errors import InvalidWeather

DRY_DAY_MM = 1.0
"""A day with less rain than this is dry (mm)."""
WET_DAY_MM = 1.0
"""A day with at least this much rain is wet (ETCCDI's wet-day threshold, mm)."""
HEAVY_RAIN_MM = 10.0
"""A day with more rain than this is heavy (mm): what ``days_since_heavy_rain`` looks for."""
FLOOD_WINDOW_DAYS = 3
MAX_DAILY_MM = 2000.0
"""More than the world's wettest day on record (1,825 mm, Réunion 1966): a unit error."""

# The composite stress score's saturation points (see docs/agri.md, "Stress score").
DROUGHT_DEFICIT_WEIGHT = 0.7
DRY_SPELL_FULL_DAYS = 30
FLOOD_FULL_MM = 300.0
HEAT_FULL_DEGREE_DAYS = 80.0


@dataclass(frozen=True)
class DailyWeather:
    day: date
    precipitation_mm: float
    tmax_c: float
    tmin_c: float


def check_series(series: Sequence[DailyWeather]) -> None:
    """Refuse a series the indices cannot use, naming the day and what is wrong."""
    if not series:
        raise InvalidWeather("the weather series is empty")
    previous: date | None = None
    for row in series:
        values = (row.precipitation_mm, row.tmax_c, row.tmin_c)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise InvalidWeather(f"{row.day}: weather values must be finite numbers, got {values}")
        if not 0.0 <= row.precipitation_mm <= MAX_DAILY_MM:
            raise InvalidWeather(
                f"{row.day}: precipitation {row.precipitation_mm} mm is outside 0..{MAX_DAILY_MM:g}"
            )
        if not -90.0 <= row.tmin_c <= row.tmax_c <= 60.0:
            raise InvalidWeather(
                f"{row.day}: temperatures must satisfy -90 <= Tmin <= Tmax <= 60 °C, "
                f"got Tmin {row.tmin_c}, Tmax {row.tmax_c}"
            )
        if previous is not None and row.day != previous + timedelta(days=1):
            what = "is repeated or out of order" if row.day <= previous else "follows a gap"
            raise InvalidWeather(f"{row.day}: the day {what} (after {previous}); one row a day")
        previous = row.day


def _longest_run(flags: Sequence[bool]) -> int:
    longest = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        longest = max(longest, current)
    return longest


@dataclass(frozen=True)
class DroughtIndex:
    rain_mm: float
    climatology_mm: float
    deficit_mm: float
    """max(0, climatology - rain)."""
    deficit_pct: float
    """deficit / climatology x 100; 0 where the climatology itself is 0 mm."""
    longest_dry_spell_days: int
    """Most consecutive days with less than 1 mm."""
    days_since_heavy_rain: int | None
    """Days from the last day over 10 mm to the series' last day; None if there was none."""


def drought(series: Sequence[DailyWeather], climatology_mm: float) -> DroughtIndex:
    """Rain deficit against ``climatology_mm`` (the normal total for the same days), dry spells."""
    check_series(series)
    return _drought(series, climatology_mm)


def _drought(series: Sequence[DailyWeather], climatology_mm: float) -> DroughtIndex:
    if not math.isfinite(climatology_mm) or climatology_mm < 0:
        raise InvalidWeather(f"the climatology must be a total >= 0 mm, got {climatology_mm}")
    rain = math.fsum(row.precipitation_mm for row in series)
    deficit = max(0.0, climatology_mm - rain)
    heavy = [i for i, row in enumerate(series) if row.precipitation_mm > HEAVY_RAIN_MM]
    return DroughtIndex(
        rain_mm=rain,
        climatology_mm=climatology_mm,
        deficit_mm=deficit,
        deficit_pct=100.0 * deficit / climatology_mm if climatology_mm > 0 else 0.0,
        longest_dry_spell_days=_longest_run([r.precipitation_mm < DRY_DAY_MM for r in series]),
        days_since_heavy_rain=len(series) - 1 - heavy[-1] if heavy else None,
    )


@dataclass(frozen=True)
class FloodIndex:
    max_daily_mm: float
    max_3day_mm: float
    """The largest total of 3 consecutive days (of all days when the series is shorter)."""
    wet_days: int
    intensity_mm_per_wet_day: float
    """Simple daily intensity (ETCCDI SDII): rain on wet days / number of wet days; 0 if none."""


def flood(series: Sequence[DailyWeather]) -> FloodIndex:
    """Largest daily and 3-day rain totals and the rain's intensity."""
    check_series(series)
    return _flood(series)


def _flood(series: Sequence[DailyWeather]) -> FloodIndex:
    rain = [row.precipitation_mm for row in series]
    window = min(FLOOD_WINDOW_DAYS, len(rain))
    totals = [math.fsum(rain[i : i + window]) for i in range(len(rain) - window + 1)]
    wet = [r for r in rain if r >= WET_DAY_MM]
    return FloodIndex(
        max_daily_mm=max(rain),
        max_3day_mm=max(totals),
        wet_days=len(wet),
        intensity_mm_per_wet_day=math.fsum(wet) / len(wet) if wet else 0.0,
    )


@dataclass(frozen=True)
class HeatIndex:
    threshold_c: float
    hot_days: int
    """Days with Tmax above the threshold."""
    heat_degree_days: float
    """Sum over days of max(0, Tmax - threshold), °C·day."""
    longest_hot_run_days: int


def heat(series: Sequence[DailyWeather], threshold_c: float) -> HeatIndex:
    """Days, degree days and the longest run of days with Tmax above ``threshold_c``."""
    check_series(series)
    return _heat(series, threshold_c)


def _heat(series: Sequence[DailyWeather], threshold_c: float) -> HeatIndex:
    hot = [row.tmax_c > threshold_c for row in series]
    return HeatIndex(
        threshold_c=threshold_c,
        hot_days=sum(hot),
        heat_degree_days=math.fsum(max(0.0, row.tmax_c - threshold_c) for row in series),
        longest_hot_run_days=_longest_run(hot),
    )


def growing_degree_days(series: Sequence[DailyWeather], base_c: float, cap_c: float) -> float:
    """GDD, McMaster & Wilhelm's method 2: Tmax and Tmin clipped to [base, cap], then
    sum of ((Tmax + Tmin) / 2 - base) over days, in °C·day."""
    check_series(series)
    return _growing_degree_days(series, base_c, cap_c)


def _growing_degree_days(series: Sequence[DailyWeather], base_c: float, cap_c: float) -> float:
    if not cap_c > base_c:
        raise InvalidWeather(f"the GDD cap ({cap_c} °C) must be above the base ({base_c} °C)")

    def clip(t: float) -> float:
        return min(max(t, base_c), cap_c)

    return math.fsum((clip(r.tmax_c) + clip(r.tmin_c)) / 2.0 - base_c for r in series)


@dataclass(frozen=True)
class StressScore:
    score: float
    """max(drought, flood, heat): 0 calm .. 1 severe."""
    drought: float
    flood: float
    heat: float


def stress_score(d: DroughtIndex, f: FloodIndex, h: HeatIndex) -> StressScore:
    """Each peril scaled to 0..1, the score is the worst of them (perils do not average out:
    a plot in full drought is not half as stressed because it is not also flooded)."""
    drought_part = DROUGHT_DEFICIT_WEIGHT * d.deficit_pct / 100.0 + (
        1.0 - DROUGHT_DEFICIT_WEIGHT
    ) * min(1.0, d.longest_dry_spell_days / DRY_SPELL_FULL_DAYS)
    flood_part = min(1.0, f.max_3day_mm / FLOOD_FULL_MM)
    heat_part = min(1.0, h.heat_degree_days / HEAT_FULL_DEGREE_DAYS)
    parts = (min(1.0, drought_part), flood_part, heat_part)
    return StressScore(max(parts), *parts)


@dataclass(frozen=True)
class WeatherIndices:
    """All indices of one plot over one period, as a proof document records them."""

    start: date
    end: date
    days: int
    drought: DroughtIndex
    flood: FloodIndex
    heat: HeatIndex
    growing_degree_days: float
    stress: StressScore

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data


def weather_indices(
    series: Sequence[DailyWeather], *, climatology_mm: float, profile: CropProfile
) -> WeatherIndices:
    """Every index of a period, with the crop's GDD base/cap and heat threshold."""
    check_series(series)  # once: the parts below trust it
    d = _drought(series, climatology_mm)
    f = _flood(series)
    h = _heat(series, profile.heat_c)
    return WeatherIndices(
        start=series[0].day,
        end=series[-1].day,
        days=len(series),
        drought=d,
        flood=f,
        heat=h,
        growing_degree_days=_growing_degree_days(series, profile.gdd_base_c, profile.gdd_cap_c),
        stress=stress_score(d, f, h),
    )


def _years_back(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year - years, day=28)


def climatology_mm(
    history: Sequence[DailyWeather], start: date, end: date, *, min_years: int = 3
) -> float:
    """The normal rain total of the days ``start..end``: the mean of that same calendar window's
    total over each earlier year the history covers completely (at least ``min_years``)."""
    if end < start or (end - start).days >= 366:
        raise InvalidWeather(f"a climatology window is 1 to 366 days, not {start}..{end}")
    rain: dict[date, float] = {}
    for row in history:
        if not math.isfinite(row.precipitation_mm) or row.precipitation_mm < 0:
            raise InvalidWeather(f"{row.day}: precipitation {row.precipitation_mm} in the history")
        rain[row.day] = row.precipitation_mm
    if not rain:
        raise InvalidWeather("no weather history to compute a climatology from")
    totals = []
    earliest = min(rain)
    years = 1
    while _years_back(start, years) >= earliest:
        first, last = _years_back(start, years), _years_back(end, years)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        if all(d in rain for d in days):
            totals.append(math.fsum(rain[d] for d in days))
        years += 1
    if len(totals) < min_years:
        raise InvalidWeather(
            f"the history covers {start:%m-%d}..{end:%m-%d} in {len(totals)} earlier year(s); "
            f"a climatology needs {min_years}"
        )
    return math.fsum(totals) / len(totals)
