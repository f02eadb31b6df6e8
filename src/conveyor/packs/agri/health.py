"""The agri pack's health, the seed's ``health_check``: its object store, the weather provider,
the chain and the pinning service, each "ok" or why not — shown under ``details.agri`` of
``/readyz`` (details only: Open-Meteo being down must not take the API out of service)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conveyor.packs.agri.config import AgriSettings
from conveyor.packs.kit import EgressClient, EgressPolicy, Services

TIMEOUT = 2.0


def _probe(check: Callable[[], Any]) -> str:
    try:
        check()
    except Exception as exc:  # a health check reports every failure, never raises
        return f"unavailable: {type(exc).__name__}: {str(exc)[:200]}"
    return "ok"


def health(services: Services) -> dict[str, str]:
    """Each dependency of the pack: "ok", "not configured" or why it is unavailable."""
    from conveyor.packs.agri.objectstore import FileStore
    from conveyor.packs.agri.weather import OpenMeteo

    agri = AgriSettings()
    egress = dataclasses.replace(EgressPolicy.from_settings(services.settings), timeout=TIMEOUT)
    data = agri.data_dir or Path(services.settings.home) / "agri"
    objects = FileStore(data / "objects")

    def object_store() -> None:
        objects.put("health/probe", datetime.now(UTC).isoformat().encode())
        objects.get("health/probe")

    def weather() -> None:
        day = datetime.now(UTC).date() - timedelta(days=2)
        provider = OpenMeteo(
            egress,
            forecast_url=agri.weather_forecast_url,
            archive_url=agri.weather_archive_url,
            max_retries=0,
        )
        with provider:
            provider.daily(0.0, 0.0, day, day)

    out = {"object_store": _probe(object_store), "weather": _probe(weather)}
    for name, url, body in (
        ("chain", agri.eth_rpc_url, b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'),
        ("ipfs", agri.ipfs_url, b""),
    ):
        if not url:
            out[name] = "not configured"
            continue
        target = url if name == "chain" else url.rstrip("/") + "/api/v0/version"

        def call(target: str = target, body: bytes = body) -> None:
            with EgressClient(egress) as client:
                answer = client.post(
                    target, content=body, headers={"Content-Type": "application/json"}
                )
            if not answer.is_success:
                raise RuntimeError(f"answered {answer.status_line}")

        out[name] = _probe(call)
    return out
