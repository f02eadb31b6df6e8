"""Daily weather for a point: the :class:`WeatherProvider` interface and the Open-Meteo client.

:class:`OpenMeteo` speaks Open-Meteo's forecast API (``/v1/forecast``) and its historical
archive API (``/v1/archive``, ERA5 reanalysis, about five days behind), asking for the daily
variables ``precipitation_sum`` (mm), ``temperature_2m_max`` and ``temperature_2m_min`` (°C)
in UTC days. Its answers are checked before use: ``400 {"error": true, "reason": …}`` becomes a
:class:`ProviderError` carrying the reason; ``429`` is retried after its ``Retry-After`` (seconds
or an HTTP date, capped) and becomes :class:`ProviderRateLimited` when the retries are spent; any
other status, a body that is not JSON, arrays of unequal length, a unit other than mm/°C, a
value that is not a number or out of physical range is a :class:`ProviderError` naming the
field — never a silent zero. A day the provider leaves ``null`` (the archive's last days, a
forecast's horizon) is listed in :attr:`WeatherSeries.missing`, not invented.

Every request goes through the kit's guarded :class:`~conveyor.packs.kit.EgressClient`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from conveyor.packs.agri.errors import ProviderError, ProviderRateLimited
from conveyor.packs.agri.indices import DailyWeather
from conveyor.packs.kit import Answer, EgressClient, EgressError, EgressPolicy

__all__ = [
    "ARCHIVE_LAG_DAYS",
    "DAILY_VARIABLES",
    "DailyWeather",
    "OpenMeteo",
    "WeatherProvider",
    "WeatherSeries",
    "parse_daily",
    "retry_after_seconds",
]

DAILY_VARIABLES = ("precipitation_sum", "temperature_2m_max", "temperature_2m_min")
ARCHIVE_LAG_DAYS = 5
"""Days the ERA5 archive runs behind today; newer days are asked of the forecast API."""
FORECAST_URL = "https://api.open-meteo.com"
ARCHIVE_URL = "https://archive-api.open-meteo.com"
EXPECTED_UNITS = {"precipitation_sum": "mm", "temperature_2m_max": "°C",
                  "temperature_2m_min": "°C"}  # fmt: skip
MAX_DAYS = 366 * 5
"""The longest span one request asks for (the archive answers decades; a plot needs less)."""


@dataclass(frozen=True)
class WeatherSeries:
    """What a provider answered for a point and a span of days."""

    latitude: float
    longitude: float
    days: list[DailyWeather]
    missing: list[date] = field(default_factory=list)
    """Days in the span the provider had no value for (``null``), in order."""
    source: str = ""


class WeatherProvider(Protocol):
    """Daily weather at a point for the days ``start``..``end`` (both included, UTC)."""

    name: str

    def daily(self, latitude: float, longitude: float, start: date, end: date) -> WeatherSeries:
        """Raises :class:`ProviderError` (or :class:`ProviderRateLimited`) when no usable answer
        came, and ValueError for coordinates or days out of range."""
        ...


Sleep = Callable[[float], None]


class OpenMeteo:
    """Open-Meteo's forecast and archive APIs (see the module). ``forecast_url`` and
    ``archive_url`` point at another deployment (self-hosted, the commercial ``customer-``
    hosts with ``api_key``, or the local peer of :mod:`conveyor.packs.agri.peers`)."""

    name = "open-meteo"

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        *,
        forecast_url: str = FORECAST_URL,
        archive_url: str = ARCHIVE_URL,
        api_key: str | None = None,
        max_retries: int = 3,
        max_retry_after: float = 60.0,
        sleep: Sleep = time.sleep,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.client = EgressClient(policy, user_agent="conveyor-agri")
        self.forecast_url = forecast_url.rstrip("/")
        self.archive_url = archive_url.rstrip("/")
        self.api_key = api_key
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self.today = today

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> OpenMeteo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def daily(self, latitude: float, longitude: float, start: date, end: date) -> WeatherSeries:
        """The archive for days older than :data:`ARCHIVE_LAG_DAYS`, the forecast API for the
        rest (a span across the line asks both and joins them)."""
        _check_request(latitude, longitude, start, end)
        line = self.today() - timedelta(days=ARCHIVE_LAG_DAYS)
        if end < line:
            return self.archive(latitude, longitude, start, end)
        if start >= line:
            return self.forecast(latitude, longitude, start, end)
        old = self.archive(latitude, longitude, start, line - timedelta(days=1))
        new = self.forecast(latitude, longitude, line, end)
        return WeatherSeries(latitude, longitude, old.days + new.days,
                             old.missing + new.missing, self.name)  # fmt: skip

    def forecast(self, latitude: float, longitude: float, start: date, end: date) -> WeatherSeries:
        return self._get(f"{self.forecast_url}/v1/forecast", latitude, longitude, start, end)

    def archive(self, latitude: float, longitude: float, start: date, end: date) -> WeatherSeries:
        return self._get(f"{self.archive_url}/v1/archive", latitude, longitude, start, end)

    def _get(
        self, endpoint: str, latitude: float, longitude: float, start: date, end: date
    ) -> WeatherSeries:
        _check_request(latitude, longitude, start, end)
        params: dict[str, str] = {
            "latitude": f"{latitude:.5f}",
            "longitude": f"{longitude:.5f}",
            "daily": ",".join(DAILY_VARIABLES),
            "timezone": "UTC",
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
        }
        if self.api_key:
            params["apikey"] = self.api_key
        answer = self._send(f"{endpoint}?{urlencode(params)}")
        series = parse_daily(answer.content, start, end)
        return WeatherSeries(latitude, longitude, series.days, series.missing, self.name)

    def _send(self, url: str) -> Answer:
        attempt = 0
        while True:
            try:
                answer = self.client.request("GET", url)
            except EgressError as exc:
                raise ProviderError(f"Open-Meteo: {exc}") from exc
            if answer.status_code != 429:
                break
            wait = retry_after_seconds(answer.headers, default=1.0)
            if attempt >= self.max_retries or wait > self.max_retry_after:
                raise ProviderRateLimited(
                    f"Open-Meteo: still rate limited (HTTP 429) after {attempt} retries;"
                    f" it asks to wait {wait:g} s",
                    wait,
                )
            attempt += 1
            self.sleep(wait)
        if answer.status_code == 400:
            raise ProviderError(f"Open-Meteo refused the request: {_reason(answer)}")
        if not answer.is_success:
            raise ProviderError(f"Open-Meteo answered {answer.status_line}")
        return answer


def retry_after_seconds(headers: Mapping[str, str], *, default: float) -> float:
    """``Retry-After`` as seconds to wait: a number of seconds or an HTTP date; ``default``
    when absent or unreadable, never negative."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else default


def _reason(answer: Answer) -> str:
    """The ``reason`` of Open-Meteo's ``{"error": true, "reason": …}``, cut short; the status
    line when the body is not that shape."""
    try:
        body = answer.json()
    except ValueError:
        return answer.status_line
    if isinstance(body, dict) and body.get("error") is True and isinstance(body.get("reason"), str):
        return str(body["reason"])[:300]
    return answer.status_line


def _check_request(latitude: float, longitude: float, start: date, end: date) -> None:
    if not (isinstance(latitude, int | float) and math.isfinite(latitude)
            and -90 <= latitude <= 90):  # fmt: skip
        raise ValueError(f"latitude must be within -90..90, not {latitude!r}")
    if not (isinstance(longitude, int | float) and math.isfinite(longitude)
            and -180 <= longitude <= 180):  # fmt: skip
        raise ValueError(f"longitude must be within -180..180, not {longitude!r}")
    if end < start:
        raise ValueError(f"the span ends ({end}) before it starts ({start})")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValueError(f"a request covers at most {MAX_DAYS} days")


# Physical bounds: a value outside is garbage, not weather (world records: 1,825 mm of rain in
# a day, 56.7 °C and -89.2 °C).
_BOUNDS = {"precipitation_sum": (0.0, 2000.0), "temperature_2m_max": (-95.0, 65.0),
           "temperature_2m_min": (-95.0, 65.0)}  # fmt: skip


def parse_daily(content: bytes, start: date, end: date) -> WeatherSeries:
    """Open-Meteo's daily answer as a :class:`WeatherSeries`, checked (see the module): every
    day of ``start``..``end`` either has all three values or is listed as missing."""
    try:
        body: Any = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderError("Open-Meteo's answer is not JSON") from exc
    if not isinstance(body, dict):
        raise ProviderError("Open-Meteo's answer is not a JSON object")
    if body.get("error") is True:
        raise ProviderError(f"Open-Meteo reported an error: {str(body.get('reason'))[:300]}")
    daily = body.get("daily")
    if not isinstance(daily, dict):
        raise ProviderError("Open-Meteo's answer has no 'daily' object")
    units = body.get("daily_units")
    if isinstance(units, dict):
        for name, unit in EXPECTED_UNITS.items():
            if name in units and units[name] != unit:
                raise ProviderError(
                    f"Open-Meteo's daily {name} is in {str(units[name])[:20]!r}, not {unit}"
                )
    times = daily.get("time")
    if not isinstance(times, list):
        raise ProviderError("Open-Meteo's daily answer has no 'time' array")
    columns: dict[str, list[Any]] = {}
    for name in DAILY_VARIABLES:
        column = daily.get(name)
        if not isinstance(column, list):
            raise ProviderError(f"Open-Meteo's daily answer has no {name!r} array")
        if len(column) != len(times):
            raise ProviderError(
                f"Open-Meteo's daily {name!r} has {len(column)} values for {len(times)} days"
            )
        columns[name] = column
    seen: dict[date, DailyWeather | None] = {}
    for i, raw_day in enumerate(times):
        day = _day(raw_day, i)
        if day in seen:
            raise ProviderError(f"Open-Meteo's daily time[{i}] repeats {day}")
        values = [_value(columns[name][i], name, i) for name in DAILY_VARIABLES]
        rain, tmax, tmin = values
        if rain is None or tmax is None or tmin is None:
            seen[day] = None
            continue
        if tmin > tmax:
            raise ProviderError(f"Open-Meteo's day {day} has a minimum above its maximum")
        seen[day] = DailyWeather(day, rain, tmax, tmin)
    days: list[DailyWeather] = []
    missing: list[date] = []
    outside = [d for d in seen if not start <= d <= end]
    if outside:
        raise ProviderError(f"Open-Meteo answered {outside[0]}, outside {start}..{end}")
    current = start
    while current <= end:
        found = seen.get(current)
        if found is None:
            missing.append(current)
        else:
            days.append(found)
        current += timedelta(days=1)
    lat, lon = body.get("latitude"), body.get("longitude")
    return WeatherSeries(
        float(lat) if isinstance(lat, int | float) else math.nan,
        float(lon) if isinstance(lon, int | float) else math.nan,
        days,
        missing,
        "open-meteo",
    )


def _day(raw: Any, i: int) -> date:
    if not isinstance(raw, str):
        raise ProviderError(f"Open-Meteo's daily time[{i}] is not a date")
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ProviderError(f"Open-Meteo's daily time[{i}] is not a date: {raw[:20]!r}") from exc


def _value(raw: Any, name: str, i: int) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ProviderError(f"Open-Meteo's daily {name}[{i}] is not a number")
    low, high = _BOUNDS[name]
    if not low <= raw <= high:
        raise ProviderError(f"Open-Meteo's daily {name}[{i}] = {raw} is outside {low}..{high}")
    return float(raw)
