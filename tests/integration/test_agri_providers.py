"""The agri pack's providers against real local peers: the Open-Meteo client against the local
weather server (loopback, allowlisted in the egress policy as an operator would), the object
stores (a directory; moto's standalone S3 server as a separate process) and the IPFS pinning
client against the local pinning peer that recomputes every CID."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.egress import parse_allowlist
from conveyor.packs.agri.errors import ObjectNotFound, ProviderError, ProviderRateLimited
from conveyor.packs.agri.ipfs import IpfsRpc, Pinata, multipart
from conveyor.packs.agri.objectstore import FileStore, ObjectStore, S3Store
from conveyor.packs.agri.peers import IpfsPeer, SatellitePeer, WeatherPeer, synthetic_day
from conveyor.packs.agri.proofs import cid_of
from conveyor.packs.agri.raster import plot_stats
from conveyor.packs.agri.satellite import HttpSatellite, LocalSatellite
from conveyor.packs.agri.weather import OpenMeteo, WeatherSeries
from conveyor.packs.kit import EgressClient, EgressPolicy

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


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


PLOT_BOUNDS = (36.80, -1.30, 36.81, -1.29)
PLOT = {"type": "Polygon", "coordinates": [[
    [36.80, -1.30], [36.81, -1.30], [36.81, -1.29], [36.80, -1.29], [36.80, -1.30]]]}  # fmt: skip


def test_an_order_goes_pending_then_completed_with_a_scene(tmp_path: Path) -> None:
    clock = Clock()
    provider = LocalSatellite(tmp_path, clock=clock)
    order = provider.order("plot-1", PLOT_BOUNDS, date(2026, 6, 1))
    assert order.status == "pending"
    clock.now += timedelta(minutes=5)
    assert provider.status(order.id).status == "pending"
    clock.now += timedelta(minutes=30)
    done = provider.status(order.id)
    assert done.status == "completed" and done.scene is not None
    assert LocalSatellite(tmp_path, clock=clock).status(order.id) == done  # kept on disk
    stats = plot_stats(done.scene.bands, PLOT)
    assert stats.ndvi is not None and stats.ndvi.mean > 0.75


def test_orders_fail_or_expire_after_seven_days(tmp_path: Path) -> None:
    clock = Clock()
    failing = LocalSatellite(tmp_path, clock=clock, fails=lambda order: "fully clouded")
    failed = failing.order("plot-1", PLOT_BOUNDS, date(2026, 6, 1))
    clock.now += timedelta(hours=1)
    assert (failing.status(failed.id).status, failing.status(failed.id).reason) == (
        "failed", "fully clouded")  # fmt: skip
    slow = LocalSatellite(tmp_path, clock=clock, ready_after=timedelta(days=30))
    order = slow.order("plot-2", PLOT_BOUNDS, date(2026, 6, 1))
    clock.now += timedelta(days=6, hours=23)
    assert slow.status(order.id).status == "pending"
    clock.now += timedelta(hours=1)
    assert slow.status(order.id).status == "expired"
    clock.now += timedelta(days=30)
    assert slow.status(order.id).status == "expired"  # never completed afterwards


def test_orders_refuse_garbage(tmp_path: Path) -> None:
    provider = LocalSatellite(tmp_path)
    with pytest.raises(ValueError, match="at most"):
        provider.order("p", (30.0, 0.0, 31.0, 0.1), date(2026, 6, 1))
    with pytest.raises(ValueError, match="west < east"):
        provider.order("p", (31.0, 0.0, 30.9, 0.1), date(2026, 6, 1))
    with pytest.raises(ProviderError, match="not an order id"):
        provider.status("../../etc/passwd")
    with pytest.raises(ProviderError, match="no order"):
        provider.status(str(uuid.uuid4()))


def test_the_drought_plots_canopy_withers_in_the_local_provider(tmp_path: Path) -> None:
    peer = WeatherPeer(today=TODAY)
    peer.set_regime(-1.295, 36.805, "drought")
    clock = Clock()
    provider = LocalSatellite(tmp_path, clock=clock, vigour=peer.vigour, ready_after=timedelta(0))
    early = provider.order("p", PLOT_BOUNDS, TODAY - timedelta(days=95))
    late = provider.order("p", PLOT_BOUNDS, TODAY - timedelta(days=5))
    ndvi = []
    for order in (early, late):
        scene = provider.status(order.id).scene
        assert scene is not None
        found = plot_stats(scene.bands, PLOT).ndvi
        assert found is not None
        ndvi.append(found.mean)
    assert ndvi[0] > 0.75 and ndvi[1] < 0.45


# -- object stores -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 server as a real process on loopback; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def s3_store(url: str, **options: Any) -> S3Store:
    store = S3Store(
        "agri-proofs", endpoint_url=url, access_key="testing", secret_key="testing",
        policy=allowing(url.removeprefix("http://")), **options,
    )  # fmt: skip
    store.create_bucket()
    return store


def check_store(store: ObjectStore) -> None:
    assert store.keys() == []
    store.put("ndvi/plot-1/2026-06-01.tif", b"II*\x00cog", "image/tiff")
    store.put("proofs/bafk.json", b'{"a":1}', "application/json")
    store.put("proofs/bafk.json", b'{"a":2}', "application/json")  # replaced
    assert store.get("proofs/bafk.json") == b'{"a":2}'
    assert store.exists("ndvi/plot-1/2026-06-01.tif") and not store.exists("ndvi/none.tif")
    assert store.keys("proofs/") == ["proofs/bafk.json"]
    assert store.keys() == ["ndvi/plot-1/2026-06-01.tif", "proofs/bafk.json"]
    store.delete("proofs/bafk.json")
    store.delete("proofs/bafk.json")  # deleting a missing object is fine
    with pytest.raises(ObjectNotFound, match=r"proofs/bafk\.json"):
        store.get("proofs/bafk.json")
    for bad in ("../etc/passwd", "/abs", "a//b", "a/./b", "", "sp ace", "x" * 1025):
        with pytest.raises(ValueError, match="object key"):
            store.put(bad, b"x")


def test_the_filesystem_store(tmp_path: Path) -> None:
    check_store(FileStore(tmp_path / "objects"))
    assert not (tmp_path / "etc").exists()


def test_the_s3_store_against_motos_server(moto_server: str) -> None:
    check_store(s3_store(moto_server, prefix="tenant-a"))
    other = s3_store(moto_server, prefix="tenant-b")
    other.put("x.json", b"{}")
    assert s3_store(moto_server, prefix="tenant-a").keys() == ["ndvi/plot-1/2026-06-01.tif"]
    assert other.keys() == ["x.json"]


def test_the_s3_store_refuses_an_unlisted_endpoint_and_reports_failures(moto_server: str) -> None:
    with pytest.raises(ProviderError, match=r"S3 endpoint refused.*loopback"):
        S3Store("agri-proofs", endpoint_url=moto_server)
    dead = f"http://127.0.0.1:{free_port()}"
    store = S3Store("agri-proofs", endpoint_url=dead, access_key="t", secret_key="t",
                    policy=allowing(dead.removeprefix("http://")), timeout=1.0)  # fmt: skip
    with pytest.raises(ProviderError, match=r"S3 put 'a\.json' failed"):
        store.put("a.json", b"{}")
    policy = allowing(moto_server.removeprefix("http://"))
    missing = S3Store("no-such-bucket", endpoint_url=moto_server, access_key="t",
                      secret_key="t", policy=policy)  # fmt: skip
    with pytest.raises(ProviderError, match="NoSuchBucket"):
        missing.put("a.json", b"{}")
    with pytest.raises(ValueError, match="bucket name"):
        S3Store("Not_A_Bucket")


# -- IPFS pinning --------------------------------------------------------------------------


@pytest.fixture()
def ipfs_peer() -> Iterator[IpfsPeer]:
    peer = IpfsPeer().start()
    yield peer
    peer.stop()


DOCUMENT = b'{"formulas":"agri-formulas/1","payout":"1250.00","plot":"p-1"}'


def test_pinning_through_the_ipfs_rpc(ipfs_peer: IpfsPeer) -> None:
    client = IpfsRpc(ipfs_peer.url, allowing(ipfs_peer.allow_entry))
    cid = client.pin(DOCUMENT, "proof-p-1.json")
    assert cid == cid_of(DOCUMENT) and cid.startswith("bafkrei")
    assert ipfs_peer.pins[cid] == DOCUMENT
    ipfs_peer.script("wrong_cid")
    with pytest.raises(ProviderError, match="but its CID is"):
        client.pin(DOCUMENT, "proof-p-1.json")
    ipfs_peer.script("server_error")
    with pytest.raises(ProviderError, match="HTTP 500"):
        client.pin(DOCUMENT, "proof-p-1.json")


def test_pinning_through_a_pinata_compatible_api(ipfs_peer: IpfsPeer) -> None:
    client = Pinata(ipfs_peer.jwt, ipfs_peer.url, allowing(ipfs_peer.allow_entry))
    assert client.pin(DOCUMENT, "proof.json") == cid_of(DOCUMENT)
    ipfs_peer.script("wrong_cid")
    with pytest.raises(ProviderError, match="refused"):
        client.pin(DOCUMENT, "proof.json")
    with pytest.raises(ProviderError, match="credentials"):
        Pinata("wrong", ipfs_peer.url, allowing(ipfs_peer.allow_entry)).pin(DOCUMENT, "p.json")


def test_the_peer_refuses_a_document_whose_cid_does_not_match(ipfs_peer: IpfsPeer) -> None:
    body, content_type = multipart([
        ("file", "p.json", "application/json", DOCUMENT),
        ("pinataMetadata", None, "application/json",
         json.dumps({"keyvalues": {"cid": cid_of(b"another document")}}).encode()),
        ("pinataOptions", None, "application/json", b'{"cidVersion": 1}'),
    ])  # fmt: skip
    with EgressClient(allowing(ipfs_peer.allow_entry)) as http:
        answer = http.post(
            f"{ipfs_peer.url}/pinning/pinFileToIPFS", content=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {ipfs_peer.jwt}"},
        )  # fmt: skip
        assert answer.status_code == 400 and b"refused" in answer.content
        plain = http.post(f"{ipfs_peer.url}/api/v0/add?cid-version=0", content=body,
                          headers={"Content-Type": content_type})  # fmt: skip
        assert plain.status_code == 400
    assert ipfs_peer.pins == {}


def test_pinning_refuses_garbage_documents(ipfs_peer: IpfsPeer) -> None:
    client = IpfsRpc(ipfs_peer.url, allowing(ipfs_peer.allow_entry))
    with pytest.raises(ValueError, match="one raw IPFS block"):
        client.pin(b"x" * 300_000, "big.json")
    with pytest.raises(ValueError, match="non-empty"):
        client.pin(b"", "empty.json")
    with pytest.raises(ValueError, match="pin name"):
        client.pin(DOCUMENT, 'bad"name')
    with pytest.raises(ProviderError, match="loopback"):
        IpfsRpc(ipfs_peer.url).pin(DOCUMENT, "p.json")
    assert ipfs_peer.requests == 0


def test_the_peers_run_as_one_process_for_make_run() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.packs.agri.peers", "--today", "2026-06-30",
         "--drought", "5.0,5.0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        urls = dict(process.stdout.readline().split() for _ in range(3))
        entries = [u.removeprefix("http://") for u in urls.values()]
        with OpenMeteo(allowing(*entries), forecast_url=urls["weather"],
                       today=lambda: TODAY) as client:  # fmt: skip
            dry = client.forecast(5.0, 5.0, TODAY - timedelta(days=59), TODAY)
        assert sum(d.precipitation_mm for d in dry.days) < 20
        pinned = IpfsRpc(urls["ipfs"], allowing(*entries)).pin(DOCUMENT, "p.json")
        assert pinned == cid_of(DOCUMENT)
        key = "peer-satellite-key"
        satellite = HttpSatellite(urls["satellite"], Path("/nonexistent"), api_key=key,
                                  policy=allowing(*entries))  # fmt: skip
        assert satellite.order("p", PLOT_BOUNDS, TODAY).status == "pending"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_a_damaged_order_record_is_a_clear_error(tmp_path: Path) -> None:
    provider = LocalSatellite(tmp_path)
    order = provider.order("p", PLOT_BOUNDS, date(2026, 6, 1))
    path = tmp_path / "orders" / f"{order.id}.json"
    for damage in ("{", '{"id": 1}', '{"bounds": "x"}', "[]"):
        path.write_text(damage)
        with pytest.raises(ProviderError, match="unreadable"):
            provider.status(order.id)


@pytest.fixture()
def satellite_peer(tmp_path: Path) -> Iterator[tuple[SatellitePeer, Clock]]:
    clock = Clock()
    peer = SatellitePeer(provider=LocalSatellite(tmp_path / "provider", clock=clock)).start()
    yield peer, clock
    peer.stop()


def test_orders_over_the_http_order_api(
    satellite_peer: tuple[SatellitePeer, Clock], tmp_path: Path
) -> None:
    peer, clock = satellite_peer
    client = HttpSatellite(peer.url, tmp_path / "client", api_key=peer.key,
                           policy=allowing(peer.allow_entry))  # fmt: skip
    order = client.order("plot-1", PLOT_BOUNDS, date(2026, 6, 1))
    assert (order.status, order.bounds, order.scene) == ("pending", PLOT_BOUNDS, None)
    assert client.status(order.id).status == "pending"
    clock.now += timedelta(minutes=25)
    done = client.status(order.id)
    assert done.status == "completed" and done.scene is not None
    assert Path(done.scene.bands["B04"]).parent == tmp_path / "client" / "scenes" / order.id
    stats = plot_stats(done.scene.bands, PLOT)
    assert stats.ndvi is not None and stats.ndvi.mean > 0.75
    clock.now += timedelta(days=8)
    assert client.status(order.id).status == "completed"  # completed stays completed


def test_the_http_order_api_refusals_are_clear(
    satellite_peer: tuple[SatellitePeer, Clock], tmp_path: Path
) -> None:
    peer, _ = satellite_peer
    policy = allowing(peer.allow_entry)
    with pytest.raises(ProviderError, match="HTTP 401"):
        HttpSatellite(peer.url, tmp_path, api_key="wrong", policy=policy).order(
            "p", PLOT_BOUNDS, date(2026, 6, 1)
        )
    client = HttpSatellite(peer.url, tmp_path, api_key=peer.key, policy=policy)
    with pytest.raises(ProviderError, match="HTTP 404"):
        client.status(str(uuid.uuid4()))
    with pytest.raises(ProviderError, match="not an order id"):
        client.status("../../x")
    with pytest.raises(ValueError, match="at most"):
        client.order("p", (30.0, 0.0, 31.0, 0.1), date(2026, 6, 1))
    with pytest.raises(ProviderError, match="loopback"):
        HttpSatellite(peer.url, tmp_path, api_key=peer.key).order(
            "p", PLOT_BOUNDS, date(2026, 6, 1)
        )
