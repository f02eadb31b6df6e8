"""``conveyor up`` for the agri pack: the local peers and the demo's policies and plots.

When no weather host and no chain are configured (``CONVEYOR_AGRI_WEATHER_*_URL`` at
Open-Meteo's defaults and ``CONVEYOR_AGRI_ETH_RPC_URL`` unset), :func:`start_local` starts, in
the ``up`` process, the local Open-Meteo peer (:class:`~.peers.WeatherPeer`), the local pinning
service (:class:`~.peers.IpfsPeer`) and the local chain (:class:`~.localchain.ChainPeer`),
points the children at them, and adds three demo plots under two policies if the demo policies
are missing: one in a drought (the peer's regime for its coordinates), one normal, one in a
flood. The pack's schedules then do the rest: weather every 5 minutes, the trigger check every
10 (it computes the day's indices if the midnight run has not), the drought plot's assessment
with its proof stored and pinned, and its payout sent and confirmed on the local chain within
the next payout run — about 20 minutes after ``make run`` starts, all on the dashboard.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine

from conveyor.config import Settings
from conveyor.errors import ResourceConflict
from conveyor.packs import LocalServices, psycopg_url
from conveyor.packs.agri import store
from conveyor.packs.agri.config import AgriSettings
from conveyor.packs.agri.policies import plot_from, policy_from
from conveyor.packs.agri.samples import DEMO_WALLET, square

log = logging.getLogger(__name__)

DEMO_PLOTS: list[tuple[str, str, float, float, str]] = [
    # policy, plot name, south-west corner (lon, lat), the peer's regime there
    ("DEMO-001", "Kibwezi dry field", 37.95, -2.40, "drought"),
    ("DEMO-001", "Kibwezi river field", 37.97, -2.42, "normal"),
    ("DEMO-002", "Budalangi flood plain", 34.02, 0.10, "flood"),
]


DEMO_POLICIES = [("DEMO-001", "maize", "1500.00"), ("DEMO-002", "rice", "900.00")]


def seed(engine: Any) -> int:
    """Add the demo policies and plots if missing; how many plots were added."""
    planting = datetime.now(UTC).date() - timedelta(days=60)
    added = 0
    for number, crop, sum_insured in (
        ("DEMO-001", "maize", "1500.00"),
        ("DEMO-002", "rice", "900.00"),
    ):
        policy = policy_from(
            {
                "policy_number": number,
                "farmer_wallet": DEMO_WALLET,
                "crop": crop,
                "planting_date": planting,
                "sum_insured": sum_insured,
            }
        )
        try:
            store.create_policy(engine, policy)
        except ResourceConflict:
            continue  # seeded by an earlier `make run`
        plots = [
            plot_from({"name": name, "policy_number": number, "geometry": square(lon, lat)})
            for policy_number, name, lon, lat, _ in DEMO_PLOTS
            if policy_number == number
        ]
        added += len(store.create_plots(engine, plots))
    return added


def _local_chain() -> Any:
    try:
        from conveyor.packs.agri.localchain import ChainPeer

        return ChainPeer().start()
    except ImportError:  # web3[tester] is a dev dependency
        log.warning("agri: no local chain (pip install 'web3[tester]'); payouts stay approved")
        return None


def start_local(settings: Settings) -> LocalServices | None:
    """Start the local weather peer and chain and seed the demo (see the module), unless the
    pack is configured against real services."""
    agri = AgriSettings()
    if (
        agri.eth_rpc_url
        or agri.weather_forecast_url != AgriSettings.model_fields["weather_forecast_url"].default
    ):
        return None
    from conveyor.packs.agri.peers import IpfsPeer, WeatherPeer

    weather = WeatherPeer(today=datetime.now(UTC).date())
    for _, _, lon, lat, regime in DEMO_PLOTS:
        # The peer asks for weather at the plot's centroid: the square's middle.
        weather.set_regime(lat + 0.005, lon + 0.005, regime)  # type: ignore[arg-type]
    weather.start()
    env = {
        "CONVEYOR_AGRI_WEATHER_FORECAST_URL": weather.url,
        "CONVEYOR_AGRI_WEATHER_ARCHIVE_URL": weather.url,
    }
    pinning = IpfsPeer().start()
    env["CONVEYOR_AGRI_IPFS_URL"] = pinning.url
    allow = [weather.allow_entry, pinning.allow_entry]
    chain = _local_chain()
    if chain is not None:
        env["CONVEYOR_AGRI_ETH_RPC_URL"] = chain.url
        allow.append(chain.allow_entry)
    url = psycopg_url(settings).replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    try:
        added = seed(engine)
    finally:
        engine.dispose()
    log.info(
        "agri: local weather %s, chain %s, %d demo plots added",
        weather.url,
        env.get("CONVEYOR_AGRI_ETH_RPC_URL"),
        added,
    )

    def stop() -> None:
        weather.stop()
        pinning.stop()
        if chain is not None:
            chain.stop()

    return LocalServices(env=env, allow=allow, stop=stop)
