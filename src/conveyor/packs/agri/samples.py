"""Sample data for the agri pack: demo policies and plots (``make run``), and a daily weather
history with a drought at its end (the demo's drought plot, and tests).

Plain values, deterministic; nothing here talks to a database or the network.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from conveyor.packs.agri.indices import DailyWeather

DEMO_WALLET = "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1"
"""A well-known development address (no key of ours): the demo farmer."""


def square(lon: float, lat: float, size: float = 0.01) -> dict[str, Any]:
    """A GeoJSON square of ``size`` degrees with its south-west corner at (lon, lat)."""
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def drought_history(end: date, *, years: int = 4, dry_days: int = 30) -> list[DailyWeather]:
    """Daily weather from ``years`` years before ``end`` to ``end``: 10 mm every third day and
    mild days before, then ``dry_days`` days without rain and hot (31 °C) to ``end``."""
    start = end.replace(year=end.year - years)
    days = []
    for i in range((end - start).days + 1):
        day = start + timedelta(days=i)
        recent = (end - day).days < dry_days
        rain = 0.0 if recent else (10.0 if i % 3 == 0 else 0.0)
        days.append(DailyWeather(day, rain, 31.0 if recent else 27.0, 17.0))
    return days
