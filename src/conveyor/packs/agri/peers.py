"""Local peers of the agri pack's outside services, for tests, benchmarks and ``make run``.

:class:`WeatherPeer` is a real HTTP server on 127.0.0.1 speaking Open-Meteo's shapes:
``GET /v1/forecast`` and ``GET /v1/archive`` with ``latitude``, ``longitude``, ``daily``
(``precipitation_sum``, ``temperature_2m_max``, ``temperature_2m_min``), ``start_date``,
``end_date`` and ``timezone``; the daily answer object (``daily_units`` and ``daily`` arrays);
``400 {"error": true, "reason": …}`` for a parameter it cannot use, with Open-Meteo's wording;
``429`` with ``Retry-After`` past its optional rate limit. It counts every request and keeps
their arrival times, so a benchmark can check at the server that a client's limit held.

Its weather is a deterministic synthetic climate per location (:func:`synthetic_day`): the same
coordinates and day always give the same values. Each location has a regime —
``normal``, ``drought`` or ``flood`` — from its coordinates (:func:`regime_of`, about one in
five a drought and one in ten a flood) or set by hand; the anomaly applies only to days in the
event window (by default the 90 days up to the peer's ``today``), so the years before are the
location's normal climatology a rain deficit is measured against.

:class:`SatellitePeer` serves an HTTP satellite order API over the local Sentinel-2 provider.
:class:`IpfsPeer` is a pinning service speaking the IPFS HTTP RPC and Pinata's API that
recomputes every document's CID and refuses a mismatch.

The egress guard refuses loopback unless allowed: tests allow each peer's ``allow_entry``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import policy as email_policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from conveyor.packs.agri.errors import ProviderError
from conveyor.packs.agri.indices import DailyWeather
from conveyor.packs.agri.proofs import cid_of
from conveyor.packs.agri.satellite import LocalSatellite, order_json
from conveyor.packs.agri.weather import DAILY_VARIABLES, EXPECTED_UNITS

__all__ = [
    "IpfsPeer",
    "LoopbackPeer",
    "Regime",
    "SatellitePeer",
    "WeatherPeer",
    "regime_of",
    "synthetic_day",
]

Regime = Literal["normal", "drought", "flood"]
ARCHIVE_FIRST_DAY = date(1940, 1, 1)
FORECAST_DAYS_AHEAD = 16


def _unit_random(*parts: object) -> random.Random:
    """A random generator seeded by ``parts`` (stable across runs and machines)."""
    seed = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def regime_of(latitude: float, longitude: float) -> Regime:
    """The regime coordinates fall in when nobody set one: 20 % drought, 10 % flood."""
    draw = _unit_random("regime", round(latitude, 4), round(longitude, 4)).random()
    return "drought" if draw < 0.2 else "flood" if draw < 0.3 else "normal"


def synthetic_day(
    latitude: float, longitude: float, day: date, regime: Regime = "normal", *, event: bool = False
) -> DailyWeather:
    """One day of the synthetic climate at a point (see the module); ``event`` says whether the
    day is in the regime's event window.

    Normal climate: a seasonal cycle (peak on day 200 in the north, 20 in the south) of
    Tmax ≈ 30 - 0.3·|lat| ± 6 °C and Tmin 8-12 °C below; rain on about 35 % of days, wetter in
    the season, amounts exponential with a 9 mm mean. Drought (in the event): rain on 4 % of
    days, at most 3 mm, and Tmax 5 °C hotter. Flood (in the event): every fourth day 45-120 mm.
    """
    rng = _unit_random("day", round(latitude, 4), round(longitude, 4), day.isoformat())
    peak = 200 if latitude >= 0 else 20
    season = math.cos(2 * math.pi * (day.timetuple().tm_yday - peak) / 365.25)
    tmax = 30.0 - 0.3 * abs(latitude) + 6.0 * season + rng.gauss(0.0, 2.0)
    tmin = tmax - 8.0 - 4.0 * rng.random()
    wet = rng.random() < 0.35 + 0.1 * season
    rain = rng.expovariate(1 / 9.0) if wet else 0.0
    if event and regime == "drought":
        rain = min(rain, 3.0) if rng.random() < 0.04 else 0.0
        tmax += 5.0
        tmin += 2.0
    elif event and regime == "flood" and day.toordinal() % 4 == 0:
        rain = 45.0 + 75.0 * rng.random()
    return DailyWeather(day, round(min(rain, 400.0), 1), round(tmax, 1), round(tmin, 1))


@dataclass
class LoopbackPeer:
    """A threaded HTTP server on 127.0.0.1 whose handler calls :meth:`handle`."""

    bind_port: int = 0
    """The port to listen on; 0 picks a free one (see :attr:`port`)."""
    server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:  # fmt: skip
        raise NotImplementedError

    def start(self) -> Any:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, content = peer.handle(self.command, self.path, self.headers, raw)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.bind_port), Handler)
        self.server.daemon_threads = True
        server = self.server
        threading.Thread(target=lambda: server.serve_forever(0.05), daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None, "start the peer first"
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow_entry(self) -> str:
        """This peer as a ``CONVEYOR_EGRESS_ALLOW`` entry (this address and port only)."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[
    int, dict[str, str], bytes
]:  # fmt: skip
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def _error(reason: str) -> tuple[int, dict[str, str], bytes]:
    return _json(400, {"error": True, "reason": reason})


@dataclass
class WeatherPeer(LoopbackPeer):
    """The local Open-Meteo (see the module).

    ``rate_limit`` requests per second (a rolling one-second window) are answered; the rest get
    429 with ``Retry-After: 1``. :meth:`script` makes the next answers ``"rate_limit"``,
    ``"server_error"``, ``"not_json"``, ``"unequal"`` (arrays of unequal length), ``"nan"`` (a
    string where a number belongs) or ``"nulls"`` (the last two days null), for tests.
    """

    today: date = field(default_factory=lambda: datetime.now(UTC).date())
    event_days: int = 90
    regimes: dict[tuple[float, float], Regime] = field(default_factory=dict)
    rate_limit: float | None = None
    clock: Callable[[], float] = time.monotonic
    requests: int = 0
    refused: int = 0
    arrivals: list[float] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def script(self, *answers: str) -> WeatherPeer:
        self.queue.extend(answers)
        return self

    def regime(self, latitude: float, longitude: float) -> Regime:
        return self.regimes.get((round(latitude, 4), round(longitude, 4))) or regime_of(
            latitude, longitude
        )

    def set_regime(self, latitude: float, longitude: float, regime: Regime) -> None:
        self.regimes[(round(latitude, 4), round(longitude, 4))] = regime

    def day(self, latitude: float, longitude: float, day: date) -> DailyWeather:
        """What this peer answers for one day at a point."""
        event = self.today - timedelta(days=self.event_days) < day <= self.today
        return synthetic_day(latitude, longitude, day, self.regime(latitude, longitude),
                             event=event)  # fmt: skip

    def vigour(self, latitude: float, longitude: float, day: date) -> float:
        """The canopy's vigour 0..1 at a point on a day, for the local satellite provider: 0.9,
        falling linearly to 0.3 over the first 45 days of a drought's event window."""
        start = self.today - timedelta(days=self.event_days)
        if self.regime(latitude, longitude) != "drought" or not start < day <= self.today:
            return 0.9
        return 0.9 - 0.6 * min(1.0, (day - start).days / 45)

    def max_in_window(self, seconds: float = 1.0) -> int:
        """The most requests that arrived within any ``seconds``-long window (answered or not)."""
        times = sorted(self.arrivals)
        best, first = 0, 0
        for last, t in enumerate(times):
            while t - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:  # fmt: skip
        now = self.clock()
        with self.lock:
            self.requests += 1
            self.arrivals.append(now)
            scripted = self.queue.pop(0) if self.queue else None
            if self.rate_limit is not None:
                recent = sum(1 for t in self.arrivals[-int(self.rate_limit) - 1 :] if now - t < 1.0)
                if recent > self.rate_limit:
                    scripted = "rate_limit"
            if scripted == "rate_limit":
                self.refused += 1
        if scripted == "rate_limit":
            reason = "Minutely API request limit exceeded. Please try again in one minute."
            return _json(429, {"error": True, "reason": reason}, {"Retry-After": "1"})
        if scripted == "server_error":
            return 502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"
        if scripted == "not_json":
            return 200, {"Content-Type": "application/json"}, b'{"daily": [1, 2'
        parts = urlsplit(path)
        if method != "GET" or parts.path not in ("/v1/forecast", "/v1/archive"):
            return _json(404, {"error": True, "reason": "Not Found"})
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            answer = self._daily(parts.path == "/v1/archive", query)
        except _Refused as exc:
            return _error(str(exc))
        if scripted == "unequal":
            answer["daily"]["precipitation_sum"].pop()
        elif scripted == "nan":
            answer["daily"]["temperature_2m_max"][0] = "NaN"
        elif scripted == "nulls":
            for name in DAILY_VARIABLES:
                answer["daily"][name][-2:] = [None] * len(answer["daily"][name][-2:])
        return _json(200, answer)

    def _daily(self, archive: bool, query: dict[str, str]) -> dict[str, Any]:
        latitude = _coordinate(query, "latitude", 90)
        longitude = _coordinate(query, "longitude", 180)
        names = [n for n in query.get("daily", "").split(",") if n]
        for name in names:
            if name not in DAILY_VARIABLES:
                raise _Refused(
                    f"Cannot initialize WeatherVariable from invalid String value {name} for key"
                    " daily"
                )
        if not names:
            raise _Refused("Parameter 'daily' is required by this server")
        start, end = _date(query, "start_date"), _date(query, "end_date")
        if end < start:
            raise _Refused("End-date must be larger or equals than start date")
        first = ARCHIVE_FIRST_DAY if archive else self.today - timedelta(days=92)
        last = self.today if archive else self.today + timedelta(days=FORECAST_DAYS_AHEAD)
        for name, value in (("start_date", start), ("end_date", end)):
            if not first <= value <= last:
                raise _Refused(f"Parameter '{name}' is out of allowed range from {first} to {last}")
        times: list[str] = []
        columns: dict[str, list[float | None]] = {n: [] for n in names}
        archive_edge = self.today - timedelta(days=5)
        day = start
        while day <= end:
            times.append(day.isoformat())
            weather = self.day(latitude, longitude, day)
            values = {
                "precipitation_sum": weather.precipitation_mm,
                "temperature_2m_max": weather.tmax_c,
                "temperature_2m_min": weather.tmin_c,
            }
            for name in names:  # the archive (ERA5) lags: its newest days are null
                columns[name].append(None if archive and day > archive_edge else values[name])
            day += timedelta(days=1)
        return {
            "latitude": round(latitude, 4),
            "longitude": round(longitude, 4),
            "generationtime_ms": 0.05,
            "utc_offset_seconds": 0,
            "timezone": "GMT",
            "timezone_abbreviation": "GMT",
            "elevation": 100.0,
            "daily_units": {"time": "iso8601", **{n: EXPECTED_UNITS[n] for n in names}},
            "daily": {"time": times, **columns},
        }


class _Refused(Exception):
    pass


def _coordinate(query: dict[str, str], name: str, bound: int) -> float:
    raw = query.get(name)
    if raw is None:
        raise _Refused(f"Parameter '{name}' is required")
    try:
        value = float(raw)
    except ValueError:
        raise _Refused(
            f"Cannot initialize Float from invalid String value {raw} for key {name}"
        ) from None
    if not math.isfinite(value) or not -bound <= value <= bound:
        label = name.capitalize()
        raise _Refused(f"{label} must be in range of -{bound} to {bound}°. Given: {value}.")
    return value


def _date(query: dict[str, str], name: str) -> date:
    raw = query.get(name)
    if raw is None:
        raise _Refused(f"Parameter '{name}' is required by this server")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _Refused(f"Invalid date format '{raw}' for key {name}") from None


def _form_parts(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body by name (the last of a repeated name)."""
    message = BytesParser(policy=email_policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise _Refused("the body is not multipart/form-data")
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = payload
    return parts


@dataclass
class IpfsPeer(LoopbackPeer):
    """A local pinning service speaking both the IPFS HTTP RPC (``/api/v0/add``, ``/api/v0/cat``)
    and Pinata's ``/pinning/pinFileToIPFS``. It computes every document's CID itself with
    :func:`~conveyor.packs.agri.proofs.cid_of` and refuses (400) a Pinata upload whose metadata
    names another CID, or an ``add`` without ``cid-version=1`` and ``raw-leaves=true``.
    ``script("wrong_cid")`` makes the next answer name a wrong CID (a lying service), for
    tests of the clients' check; ``"server_error"`` a 500."""

    jwt: str = "peer-pinata-jwt"
    pins: dict[str, bytes] = field(default_factory=dict)
    requests: int = 0
    queue: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def script(self, *answers: str) -> IpfsPeer:
        self.queue.extend(answers)
        return self

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:  # fmt: skip
        with self.lock:
            self.requests += 1
            scripted = self.queue.pop(0) if self.queue else None
        if scripted == "server_error":
            return _json(500, {"Message": "internal error", "Code": 0, "Type": "error"})
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            if method == "POST" and parts.path == "/api/v0/add":
                return self._add(query, headers, body, scripted)
            if method == "POST" and parts.path == "/api/v0/cat":
                document = self.pins.get(query.get("arg", ""))
                if document is None:
                    return _json(500, {"Message": "block was not found locally (offline)",
                                       "Code": 0, "Type": "error"})  # fmt: skip
                return 200, {"Content-Type": "application/octet-stream"}, document
            if method == "POST" and parts.path == "/pinning/pinFileToIPFS":
                return self._pinata(headers, body, scripted)
        except _Refused as exc:
            return _json(400, {"Message": str(exc), "Code": 0, "Type": "error"})
        return _json(404, {"Message": "404 page not found", "Code": 0, "Type": "error"})

    def _document(self, headers: Any, body: bytes) -> tuple[bytes, dict[str, bytes]]:
        parts = _form_parts(headers.get("Content-Type", ""), body)
        document = parts.get("file")
        if not document:
            raise _Refused("file argument 'data' is required")
        return document, parts

    def _add(self, query: dict[str, str], headers: Any, body: bytes, scripted: str | None) -> tuple[
        int, dict[str, str], bytes
    ]:  # fmt: skip
        if query.get("cid-version") != "1" or query.get("raw-leaves") != "true":
            raise _Refused("this node pins only with cid-version=1 and raw-leaves=true")
        document, _ = self._document(headers, body)
        cid = self._pin(document)
        shown = _wrong(cid) if scripted == "wrong_cid" else cid
        return _json(200, {"Name": "document", "Hash": shown, "Size": str(len(document))})

    def _pinata(self, headers: Any, body: bytes, scripted: str | None) -> tuple[
        int, dict[str, str], bytes
    ]:  # fmt: skip
        if headers.get("Authorization") != f"Bearer {self.jwt}":
            return _json(401, {"error": {"reason": "INVALID_CREDENTIALS",
                                         "details": "Invalid/expired credentials"}})  # fmt: skip
        document, parts = self._document(headers, body)
        try:
            options = json.loads(parts.get("pinataOptions", b"{}"))
            metadata = json.loads(parts.get("pinataMetadata", b"{}"))
        except ValueError:
            raise _Refused("pinataOptions and pinataMetadata are JSON") from None
        if not isinstance(options, dict) or options.get("cidVersion") != 1:
            raise _Refused("this service pins with cidVersion 1 only")
        cid = cid_of(document)
        claimed = metadata.get("keyvalues", {}).get("cid") if isinstance(metadata, dict) else None
        if claimed is not None and claimed != cid:
            raise _Refused(f"the document's CID is {cid}, not {str(claimed)[:80]}: refused")
        self._pin(document)
        shown = _wrong(cid) if scripted == "wrong_cid" else cid
        return _json(200, {"IpfsHash": shown, "PinSize": len(document),
                           "Timestamp": datetime.now(UTC).isoformat()})  # fmt: skip

    def _pin(self, document: bytes) -> str:
        cid = cid_of(document)
        with self.lock:
            self.pins[cid] = document
        return cid


def _wrong(cid: str) -> str:
    return cid_of(cid.encode())


def main(argv: list[str] | None = None) -> int:
    """``python -m conveyor.packs.agri.peers``: the local weather server, pinning service and
    satellite order API as one process (for ``make run``), until interrupted. Prints each
    one's URL."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m conveyor.packs.agri.peers",
                                     description=main.__doc__)  # fmt: skip
    parser.add_argument("--weather-port", type=int, default=0)
    parser.add_argument("--ipfs-port", type=int, default=0)
    parser.add_argument("--satellite-port", type=int, default=0)
    parser.add_argument("--satellite-dir", type=Path, help="where the local provider keeps"
                        " orders and scenes (default: a temporary directory)")  # fmt: skip
    parser.add_argument("--today", type=date.fromisoformat, help="the weather's today (UTC)")
    parser.add_argument("--rate-limit", type=float, help="weather requests per second")
    parser.add_argument("--drought", action="append", default=[], metavar="LAT,LON",
                        help="a location in drought (repeatable)")  # fmt: skip
    parser.add_argument("--flood", action="append", default=[], metavar="LAT,LON")
    args = parser.parse_args(argv)
    weather = WeatherPeer(bind_port=args.weather_port, rate_limit=args.rate_limit)
    if args.today:
        weather.today = args.today
    chosen: list[tuple[Regime, list[str]]] = [("drought", args.drought), ("flood", args.flood)]
    for regime, points in chosen:
        for point in points:
            try:
                lat, lon = (float(v) for v in point.split(","))
            except ValueError:
                parser.error(f"--{regime} {point!r}: expected LAT,LON")
            weather.set_regime(lat, lon, regime)
    ipfs = IpfsPeer(bind_port=args.ipfs_port)
    scratch = tempfile.TemporaryDirectory(prefix="conveyor-agri-satellite-")
    provider = LocalSatellite(args.satellite_dir or Path(scratch.name), vigour=weather.vigour)
    satellite = SatellitePeer(bind_port=args.satellite_port, provider=provider)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    peers: list[LoopbackPeer] = [weather, ipfs, satellite]
    for peer in peers:
        peer.start()
    print(f"weather {weather.url}\nipfs {ipfs.url}\nsatellite {satellite.url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for peer in peers:
            peer.stop()
        scratch.cleanup()
    return 0


@dataclass
class SatellitePeer(LoopbackPeer):
    """The HTTP order API of :class:`~conveyor.packs.agri.satellite.HttpSatellite` over a
    :class:`~conveyor.packs.agri.satellite.LocalSatellite`: ``POST /v1/orders``,
    ``GET /v1/orders/{id}``, ``GET /v1/orders/{id}/assets/{band}.tif``; a bearer ``key``;
    ``{"error": …}`` with 400, 401 and 404."""

    provider: LocalSatellite | None = None
    key: str = "peer-satellite-key"

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[
        int, dict[str, str], bytes
    ]:  # fmt: skip
        provider = self.provider
        assert provider is not None, "give the peer a LocalSatellite"
        if headers.get("Authorization") != f"Bearer {self.key}":
            return _json(401, {"error": "a valid bearer key is required"})
        parts = urlsplit(path).path.strip("/").split("/")
        try:
            if method == "POST" and parts == ["v1", "orders"]:
                request = json.loads(body)
                order = provider.order(str(request["plot"]), tuple(request["bbox"]),
                                       date.fromisoformat(request["date"]))  # fmt: skip
                return _json(201, order_json(order, "/v1/orders"))
            if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "orders"]:
                return _json(200, order_json(provider.status(parts[2]), "/v1/orders"))
            if method == "GET" and len(parts) == 5 and parts[3] == "assets":
                order = provider.status(parts[2])
                band = parts[4].removesuffix(".tif")
                if order.scene is None or band not in order.scene.bands:
                    return _json(404, {"error": "no such asset"})
                content = Path(order.scene.bands[band]).read_bytes()
                return 200, {"Content-Type": "image/tiff"}, content
        except ProviderError as exc:
            return _json(404, {"error": str(exc)})
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": f"the request cannot be used: {exc}"})
        return _json(404, {"error": "not found"})


if __name__ == "__main__":
    raise SystemExit(main())
