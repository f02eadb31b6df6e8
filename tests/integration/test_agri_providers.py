"""The agri pack's providers against real local peers: the Open-Meteo client against the local
weather server (loopback, allowlisted in the egress policy as an operator would), the object
stores (a directory; moto's standalone S3 server as a separate process) and the IPFS pinning
client against the local pinning peer that recomputes every CID."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from conveyor.egress import parse_allowlist
from conveyor.packs.agri.errors import ProviderError, ProviderRateLimited
from conveyor.packs.agri.peers import WeatherPeer, synthetic_day
from conveyor.packs.agri.weather import OpenMeteo, WeatherSeries
from conveyor.packs.kit import EgressPolicy

TODAY = date(2026, 6, 30)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture()
def weather_peer() -> Iterator[WeatherPeer]:
    peer = WeatherPeer(today=TODAY).start()
    yield peer
    peer.stop()


def allowing(*entries: str) -> EgressPolicy:
    return EgressPolicy(allow=parse_allowlist(entries), timeout=5.0)


def meteo(peer: WeatherPeer, sleeps: Sleeps | None = None, **options: object) -> OpenMeteo:
    return OpenMeteo(
        allowing(peer.allow_entry),
        forecast_url=peer.url,
        archive_url=peer.url,
        sleep=sleeps if sleeps is not None else Sleeps(),
        today=lambda: TODAY,
        **options,  # type: ignore[arg-type]
    )


def test_daily_weather_round_trip(weather_peer: WeatherPeer) -> None:
    with meteo(weather_peer) as client:
        series = client.forecast(-1.2921, 36.8219, TODAY - timedelta(days=9), TODAY)
    assert isinstance(series, WeatherSeries)
    assert [d.day for d in series.days] == [TODAY - timedelta(days=9 - i) for i in range(10)]
    assert series.missing == []
    assert series.days[3] == weather_peer.day(-1.2921, 36.8219, series.days[3].day)
    assert all(d.tmin_c <= d.tmax_c and d.precipitation_mm >= 0 for d in series.days)


def test_span_across_the_archive_line_asks_both_apis(weather_peer: WeatherPeer) -> None:
    with meteo(weather_peer) as client:
        series = client.daily(10.0, 20.0, TODAY - timedelta(days=40), TODAY)
    assert len(series.days) == 41 and series.missing == []
    assert weather_peer.requests == 2


def test_archive_nulls_are_listed_missing_not_zero(weather_peer: WeatherPeer) -> None:
    with meteo(weather_peer) as client:
        series = client.archive(10.0, 20.0, TODAY - timedelta(days=7), TODAY)
    assert series.missing == [TODAY - timedelta(days=i) for i in range(4, -1, -1)]
    assert len(series.days) == 3


def test_the_synthetic_climate_is_deterministic_with_droughts_and_floods() -> None:
    day = date(2026, 5, 1)
    assert synthetic_day(1.0, 2.0, day) == synthetic_day(1.0, 2.0, day)
    dry = [synthetic_day(1.0, 2.0, day + timedelta(days=i), "drought", event=True)
           for i in range(60)]  # fmt: skip
    normal = [synthetic_day(1.0, 2.0, day + timedelta(days=i)) for i in range(60)]
    wet = [synthetic_day(1.0, 2.0, day + timedelta(days=i), "flood", event=True)
           for i in range(60)]  # fmt: skip
    total = [sum(d.precipitation_mm for d in s) for s in (dry, normal, wet)]
    assert total[0] < 0.1 * total[1] < total[1] < total[2]
    assert max(d.precipitation_mm for d in wet) >= 45.0


def test_a_drought_plot_is_dry_in_the_event_window_only(weather_peer: WeatherPeer) -> None:
    weather_peer.set_regime(5.0, 5.0, "drought")
    with meteo(weather_peer) as client:
        recent = client.forecast(5.0, 5.0, TODAY - timedelta(days=59), TODAY)
        last_year = client.archive(
            5.0, 5.0, TODAY - timedelta(days=424), TODAY - timedelta(days=365)
        )
    assert sum(d.precipitation_mm for d in recent.days) < 0.2 * sum(
        d.precipitation_mm for d in last_year.days
    )


def test_a_400_carries_open_meteos_reason(weather_peer: WeatherPeer) -> None:
    with meteo(weather_peer) as client, pytest.raises(ProviderError, match="out of allowed range"):
        client.forecast(1.0, 1.0, TODAY - timedelta(days=400), TODAY)
    with pytest.raises(ValueError, match="latitude"):
        meteo(weather_peer).forecast(91.0, 1.0, TODAY, TODAY)


def test_429_is_retried_after_retry_after(weather_peer: WeatherPeer) -> None:
    sleeps = Sleeps()
    weather_peer.script("rate_limit", "rate_limit")
    with meteo(weather_peer, sleeps) as client:
        series = client.forecast(1.0, 1.0, TODAY, TODAY)
    assert len(series.days) == 1
    assert sleeps == [1.0, 1.0]
    weather_peer.script(*["rate_limit"] * 4)
    with meteo(weather_peer, Sleeps()) as client, pytest.raises(ProviderRateLimited) as caught:
        client.forecast(1.0, 1.0, TODAY, TODAY)
    assert caught.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("scripted", "message"),
    [
        ("server_error", "HTTP 502"),
        ("not_json", "not JSON"),
        ("unequal", "values for"),
        ("nan", "not a number"),
    ],
)
def test_garbage_answers_are_clear_errors(
    weather_peer: WeatherPeer, scripted: str, message: str
) -> None:
    weather_peer.script(scripted)
    with meteo(weather_peer) as client, pytest.raises(ProviderError, match=message):
        client.forecast(1.0, 1.0, TODAY - timedelta(days=3), TODAY)


def test_the_egress_guard_refuses_an_unlisted_peer(weather_peer: WeatherPeer) -> None:
    client = OpenMeteo(EgressPolicy(), forecast_url=weather_peer.url, today=lambda: TODAY)
    with client, pytest.raises(ProviderError, match="loopback"):
        client.forecast(1.0, 1.0, TODAY, TODAY)
    assert weather_peer.requests == 0


def test_the_peers_rate_limit_answers_429_and_counts(weather_peer: WeatherPeer) -> None:
    weather_peer.rate_limit = 3
    with meteo(weather_peer, max_retries=0) as client:
        for _ in range(3):
            client.forecast(1.0, 1.0, TODAY, TODAY)
        with pytest.raises(ProviderRateLimited):
            client.forecast(1.0, 1.0, TODAY, TODAY)
    assert (weather_peer.requests, weather_peer.refused) == (4, 1)
    assert weather_peer.max_in_window(1.0) == 4
