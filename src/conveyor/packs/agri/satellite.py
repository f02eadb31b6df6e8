"""Satellite imagery: the :class:`SatelliteProvider` interface with the order lifecycle, and a
local provider making Sentinel-2 L2A-shaped scenes.

An image is ordered for a plot's bounding box and a day; the order is ``pending`` until the
provider has the image (``completed``, with the scene's band files) or cannot make it
(``failed``, with the reason); an order still pending 7 days after it was placed is ``expired``
(:data:`ORDER_EXPIRY`) and is never completed afterwards. Callers poll :meth:`status` (the pack's
schedule checks pending orders every 15 minutes).

A scene (:class:`Scene`) is four single-band GeoTIFFs in a UTM projection, shaped like a
Sentinel-2 L2A product of processing baseline 04.00 or later: ``B02`` (blue), ``B04`` (red) and
``B08`` (near infrared) at 10 m as ``uint16`` digital numbers, reflectance = (DN + offset) /
10,000 with ``BOA_ADD_OFFSET`` = -1000 (tagged on each file with ``PROCESSING_BASELINE``), DN 0 is
nodata; ``SCL`` is the scene classification (:data:`SCL_CLASSES`; 0 = nodata, 3 = cloud shadow,
8/9 = cloud, 10 = thin cirrus).

:class:`HttpSatellite` is the client of an HTTP order API (orders, their state, the band files
to download); :class:`~conveyor.packs.agri.peers.SatellitePeer` serves that API locally over a
:class:`LocalSatellite`, which keeps its orders as JSON files in a directory (so a worker and
the API see the same orders) and writes each completed order's scene there, deterministically
from the bounding box and day (:func:`write_scene`): a plot in drought has a vegetation vigour
that falls through the drought, so its NDVI drops against the weeks before; scenes carry
deterministic cloud blobs with shadows and a nodata strip at the swath edge.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import rasterio
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.transform import from_origin

from conveyor.packs.agri.errors import ProviderError
from conveyor.packs.kit import EgressClient, EgressError, EgressPolicy

__all__ = [
    "BANDS",
    "BOA_ADD_OFFSET",
    "ORDER_EXPIRY",
    "SCL_CLASSES",
    "Bounds",
    "HttpSatellite",
    "LocalSatellite",
    "Order",
    "OrderStatus",
    "SatelliteProvider",
    "Scene",
    "order_json",
    "utm_epsg",
    "write_scene",
]

OrderStatus = Literal["pending", "completed", "failed", "expired"]
Bounds = tuple[float, float, float, float]
"""(west, south, east, north) in degrees (WGS 84)."""

ORDER_EXPIRY = timedelta(days=7)
BANDS = ("B02", "B04", "B08", "SCL")
BOA_ADD_OFFSET = -1000
PROCESSING_BASELINE = "05.10"
RESOLUTION_M = 10.0
SCL_CLASSES = {
    0: "no data", 1: "saturated or defective", 2: "dark area pixels", 3: "cloud shadows",
    4: "vegetation", 5: "not vegetated", 6: "water", 7: "unclassified",
    8: "cloud medium probability", 9: "cloud high probability", 10: "thin cirrus",
    11: "snow",
}  # fmt: skip
MAX_ORDER_DEGREES = 0.5
"""The largest bounding box side an order may have (about 55 km): a plot, not a region."""


@dataclass(frozen=True)
class Scene:
    """A scene's band files (GeoTIFF paths by band name) and when it was acquired."""

    bands: dict[str, str]
    day: date

    def path(self, band: str) -> str:
        return self.bands[band]


@dataclass
class Order:
    id: str
    plot: str
    bounds: Bounds
    day: date
    status: OrderStatus
    placed_at: datetime
    updated_at: datetime
    reason: str = ""
    scene: Scene | None = None


class SatelliteProvider(Protocol):
    """Orders images and tells how the orders stand (see the module)."""

    name: str

    def order(self, plot: str, bounds: Bounds, day: date) -> Order:
        """Place an order; it starts ``pending``. ValueError for bounds that cannot be ordered;
        :class:`ProviderError` when the provider cannot be reached or refuses."""
        ...

    def status(self, order_id: str) -> Order:
        """The order as it stands now (pending, completed with its scene, failed, expired)."""
        ...


def utm_epsg(longitude: float, latitude: float) -> int:
    """The EPSG code of the WGS 84 / UTM zone holding the point (326zz north, 327zz south)."""
    zone = min(60, int((longitude + 180.0) // 6.0) + 1)
    return (32600 if latitude >= 0 else 32700) + zone


def check_bounds(bounds: Bounds) -> Bounds:
    if len(bounds) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in bounds):
        raise ValueError("bounds are four finite numbers: west, south, east, north")
    west, south, east, north = (float(v) for v in bounds)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise ValueError(f"bounds {bounds} are not west < east, south < north within range")
    if east - west > MAX_ORDER_DEGREES or north - south > MAX_ORDER_DEGREES:
        raise ValueError(f"an order covers at most {MAX_ORDER_DEGREES}° a side")
    return west, south, east, north


Vigour = Callable[[float, float, date], float]
"""(latitude, longitude, day) -> vegetation vigour 0..1 (1 = healthy canopy)."""


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def write_scene(
    directory: Path,
    bounds: Bounds,
    day: date,
    *,
    vigour: float = 0.9,
    cloud_fraction: float = 0.1,
    pad_m: float = 200.0,
    seed: int | None = None,
) -> Scene:
    """Write a Sentinel-2 L2A-shaped scene covering ``bounds`` (plus ``pad_m`` around) into
    ``directory``: B02, B04, B08 (uint16 DN with the -1000 offset, nodata 0) and SCL (uint8).

    Reflectances: vegetation red = 0.03 + 0.12·(1 - v), NIR = 0.15 + 0.30·v, blue = 0.02 +
    0.04·(1 - v), with ±8 % pixel noise, so NDVI ≈ 0.85 at v = 1 and ≈ 0.33 at v = 0.2. Clouds
    (SCL 9, bright in every band) cover about ``cloud_fraction``; their shadows (SCL 3, dark) sit
    beside them; the westmost 3 % of columns are nodata (DN 0, SCL 0), a swath edge.
    """
    west, south, east, north = check_bounds(bounds)
    epsg = utm_epsg((west + east) / 2, (south + north) / 2)
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    xs, ys = to_utm.transform([west, east, west, east], [south, south, north, north])
    x0 = math.floor((min(xs) - pad_m) / RESOLUTION_M) * RESOLUTION_M
    y1 = math.ceil((max(ys) + pad_m) / RESOLUTION_M) * RESOLUTION_M
    width = math.ceil((max(xs) + pad_m - x0) / RESOLUTION_M)
    height = math.ceil((y1 - (min(ys) - pad_m)) / RESOLUTION_M)
    rng = np.random.default_rng(seed if seed is not None else _seed(bounds, day.isoformat()))
    bands, scl = synthetic_bands(rng, height, width, vigour, cloud_fraction)
    directory.mkdir(parents=True, exist_ok=True)
    transform = from_origin(x0, y1, RESOLUTION_M, RESOLUTION_M)
    paths: dict[str, str] = {}
    arrays: list[tuple[str, NDArray[Any]]] = [*bands.items(), ("SCL", scl)]
    for name, data in arrays:
        path = directory / f"{name}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=1,
            dtype=data.dtype, crs=f"EPSG:{epsg}", transform=transform, nodata=0,
            tiled=width >= 256 and height >= 256, blockxsize=256, blockysize=256,
        ) as dst:  # fmt: skip
            dst.write(data, 1)
            dst.update_tags(PROCESSING_BASELINE=PROCESSING_BASELINE,
                            BOA_ADD_OFFSET=str(BOA_ADD_OFFSET), BAND=name,
                            ACQUISITION_DATE=day.isoformat())  # fmt: skip
        paths[name] = str(path)
    return Scene(paths, day)


def synthetic_bands(
    rng: np.random.Generator, height: int, width: int, vigour: float, cloud_fraction: float
) -> tuple[dict[str, NDArray[np.uint16]], NDArray[np.uint8]]:
    """B02, B04, B08 digital numbers and the SCL array of a synthetic scene (see
    :func:`write_scene`); rows are made in strips so a whole tile stays within memory."""
    v = min(1.0, max(0.0, vigour))
    out = {b: np.zeros((height, width), np.uint16) for b in ("B02", "B04", "B08")}
    scl = np.full((height, width), 4, np.uint8)
    clouds = _cloud_centres(rng, height, width, cloud_fraction)
    means = {"B02": 0.02 + 0.04 * (1 - v), "B04": 0.03 + 0.12 * (1 - v), "B08": 0.15 + 0.30 * v}
    strip = 1024
    for top in range(0, height, strip):
        rows = min(strip, height - top)
        cloud = np.zeros((rows, width), bool)
        shadow = np.zeros((rows, width), bool)
        for cy, cx, r in clouds:
            _disc(cloud, top, cy, cx, r)
            _disc(shadow, top, cy + r, cx + r, r)
        shadow &= ~cloud
        for name, mean in means.items():
            refl = mean * (1 + 0.08 * rng.standard_normal((rows, width), np.float32))
            refl = np.where(cloud, 0.45, np.where(shadow, refl * 0.3, refl))
            out[name][top : top + rows] = np.clip(refl * 10000 - BOA_ADD_OFFSET, 1, 65535)
        block = scl[top : top + rows]
        block[shadow] = 3
        block[cloud] = 9
    edge = max(1, int(width * 0.03))
    arrays: list[NDArray[Any]] = [*out.values(), scl]
    for array in arrays:
        array[:, :edge] = 0
    return out, scl


def _disc(mask: NDArray[np.bool_], top: int, cy: int, cx: int, r: int) -> None:
    """Set the pixels of ``mask`` (rows ``top``.. of the scene) within ``r`` of (cy, cx)."""
    rows, width = mask.shape
    y0, y1 = max(cy - r, top), min(cy + r + 1, top + rows)
    x0, x1 = max(cx - r, 0), min(cx + r + 1, width)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    mask[y0 - top : y1 - top, x0:x1] |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def _cloud_centres(
    rng: np.random.Generator, height: int, width: int, fraction: float
) -> list[tuple[int, int, int]]:
    """Round clouds (row, column, radius) covering about ``fraction`` of the scene."""
    if fraction <= 0:
        return []
    radius = max(3, min(height, width) // 12)
    count = max(1, round(fraction * height * width / (math.pi * radius * radius)))
    return [(int(rng.integers(0, height)), int(rng.integers(0, width)), radius)
            for _ in range(count)]  # fmt: skip


def _drought_free(latitude: float, longitude: float, day: date) -> float:
    return 0.9


@dataclass
class LocalSatellite:
    """The local provider (see the module): orders complete ``ready_after`` after they were
    placed — unless ``fails`` names a reason for the order (then they fail) — and expire
    after :data:`ORDER_EXPIRY` if still pending. ``vigour`` says how healthy the canopy is at a
    point on a day (the weather peer's drought regimes, in ``make run``); ``cloud_fraction``
    how much of each scene is cloud."""

    directory: Path
    ready_after: timedelta = timedelta(minutes=20)
    vigour: Vigour = _drought_free
    cloud_fraction: float = 0.1
    fails: Callable[[Order], str | None] = lambda order: None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    name: str = "local-sentinel2"

    def order(self, plot: str, bounds: Bounds, day: date) -> Order:
        checked = check_bounds(bounds)
        now = self.clock()
        order = Order(str(uuid.uuid4()), plot, checked, day, "pending", now, now)
        self._save(order)
        return order

    def status(self, order_id: str) -> Order:
        order = self._load(order_id)
        if order.status != "pending":
            return order
        now = self.clock()
        if now - order.placed_at >= ORDER_EXPIRY:
            order.status, order.reason = "expired", "still pending 7 days after it was placed"
        elif now - order.placed_at >= self.ready_after:
            reason = self.fails(order)
            if reason:
                order.status, order.reason = "failed", reason
            else:
                west, south, east, north = order.bounds
                vigour = self.vigour((south + north) / 2, (west + east) / 2, order.day)
                order.scene = write_scene(
                    self.directory / "scenes" / order.id, order.bounds, order.day,
                    vigour=vigour, cloud_fraction=self.cloud_fraction,
                )  # fmt: skip
                order.status = "completed"
        else:
            return order
        order.updated_at = now
        self._save(order)
        return order

    def _path(self, order_id: str) -> Path:
        try:
            return self.directory / "orders" / f"{uuid.UUID(order_id)}.json"
        except ValueError:
            raise ProviderError(f"{self.name}: {order_id[:60]!r} is not an order id") from None

    def _save(self, order: Order) -> None:
        path = self._path(order.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = asdict(order)
        record["day"] = order.day.isoformat()
        record["placed_at"] = order.placed_at.isoformat()
        record["updated_at"] = order.updated_at.isoformat()
        if order.scene is not None:
            record["scene"] = {"bands": order.scene.bands, "day": order.scene.day.isoformat()}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(path)

    def _load(self, order_id: str) -> Order:
        path = self._path(order_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise ProviderError(f"{self.name}: no order {order_id}") from None
        except ValueError as exc:
            raise ProviderError(f"{self.name}: order {order_id} is unreadable") from exc
        try:
            scene = record.get("scene")
            return Order(
                id=record["id"],
                plot=record["plot"],
                bounds=check_bounds(tuple(record["bounds"])),
                day=date.fromisoformat(record["day"]),
                status=record["status"],
                placed_at=datetime.fromisoformat(record["placed_at"]),
                updated_at=datetime.fromisoformat(record["updated_at"]),
                reason=record.get("reason", ""),
                scene=Scene(scene["bands"], date.fromisoformat(scene["day"])) if scene else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(f"{self.name}: order {order_id} is unreadable") from exc


ORDER_STATES = frozenset({"pending", "completed", "failed", "expired"})
_ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_BAND_BYTES = 256 * 1024 * 1024
"""The largest band file downloaded (a whole 10,980² uint16 tile is 241 MB)."""


class HttpSatellite:
    """A satellite order API over HTTP (the shape :class:`~conveyor.packs.agri.peers.
    SatellitePeer` serves; see docs/agri.md), through the kit's ``EgressClient``:

    - ``POST /v1/orders`` ``{"plot", "bbox": [w, s, e, n], "date", "product": "S2L2A"}`` →
      ``201`` the order;
    - ``GET /v1/orders/{id}`` → ``{"id", "state", "reason", "created", "updated", "assets":
      {"B02": path, …}}`` (assets once completed);
    - ``GET`` each asset → the band's GeoTIFF, saved under ``directory/scenes/{id}/``.

    A bearer ``api_key`` authenticates. Any other status or a malformed answer is a
    :class:`ProviderError`."""

    name = "http-satellite"

    def __init__(
        self, url: str, directory: Path, *, api_key: str = "", policy: EgressPolicy | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.directory = Path(directory)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = EgressClient(policy, user_agent="conveyor-agri")

    def close(self) -> None:
        self.client.close()

    def _request(
        self, method: str, path: str, body: Any = None, max_bytes: int | None = None
    ) -> Any:
        try:
            return self.client.request(method, f"{self.url}{path}", json=body,
                                       headers=self.headers, max_bytes=max_bytes)  # fmt: skip
        except EgressError as exc:
            raise ProviderError(f"{self.name}: {exc}") from exc

    def _order(self, answer: Any, expected: int) -> Order:
        if answer.status_code != expected:
            raise ProviderError(f"{self.name} answered {answer.status_line}")
        try:
            body = answer.json()
            order_id = str(body["id"])
            if not _ORDER_ID.fullmatch(order_id) or body["state"] not in ORDER_STATES:
                raise ValueError("id or state")
            order = Order(
                id=order_id, plot=str(body["plot"]), bounds=check_bounds(tuple(body["bbox"])),
                day=date.fromisoformat(body["date"]), status=body["state"],
                placed_at=datetime.fromisoformat(body["created"]),
                updated_at=datetime.fromisoformat(body["updated"]),
                reason=str(body.get("reason") or "")[:300],
            )  # fmt: skip
            assets = body.get("assets") or {}
            if not isinstance(assets, dict):
                raise ValueError("assets")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ProviderError(f"{self.name}'s order answer is malformed") from exc
        if order.status == "completed":
            order.scene = Scene(self._download(order.id, assets), order.day)
        return order

    def _download(self, order_id: str, assets: dict[str, Any]) -> dict[str, str]:
        missing = [b for b in BANDS if not isinstance(assets.get(b), str)]
        if missing:
            raise ProviderError(f"{self.name}: a completed order lacks {', '.join(missing)}")
        folder = self.directory / "scenes" / order_id
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        for band in BANDS:
            path = folder / f"{band}.tif"
            if not path.exists():
                link = str(assets[band])
                if not link.startswith("/"):
                    raise ProviderError(f"{self.name}: asset {band} is not a path on the service")
                answer = self._request("GET", link, max_bytes=MAX_BAND_BYTES)
                if not answer.is_success:
                    raise ProviderError(f"{self.name}: asset {band} answered {answer.status_line}")
                temporary = path.with_suffix(".part")
                temporary.write_bytes(answer.content)
                temporary.replace(path)
            paths[band] = str(path)
        return paths

    def order(self, plot: str, bounds: Bounds, day: date) -> Order:
        west, south, east, north = check_bounds(bounds)
        body = {"plot": plot, "bbox": [west, south, east, north], "date": day.isoformat(),
                "product": "S2L2A"}  # fmt: skip
        return self._order(self._request("POST", "/v1/orders", body), 201)

    def status(self, order_id: str) -> Order:
        if not _ORDER_ID.fullmatch(order_id):
            raise ProviderError(f"{self.name}: {order_id[:60]!r} is not an order id")
        return self._order(self._request("GET", f"/v1/orders/{order_id}"), 200)


def order_json(order: Order, asset_base: str) -> dict[str, Any]:
    """An order as the HTTP order API shows it (see :class:`HttpSatellite`)."""
    return {
        "id": order.id, "plot": order.plot, "bbox": list(order.bounds),
        "date": order.day.isoformat(), "state": order.status, "reason": order.reason or None,
        "created": order.placed_at.isoformat(), "updated": order.updated_at.isoformat(),
        "assets": {b: f"{asset_base}/{order.id}/assets/{b}.tif" for b in BANDS}
        if order.status == "completed" else None,
    }  # fmt: skip
