"""The agri pack's settings (``CONVEYOR_AGRI_*``), built at entry points like Conveyor's.

The payout key's default is eth-tester's first funded account (private key ``0x…01``): it works
against the local chain of tests and ``make run`` and is refused in production.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.errors import ConfigurationError

DEV_PAYOUT_KEY = "0x" + "00" * 31 + "01"
"""eth-tester's first default account: funded on every local chain, public knowledge."""


class AgriSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_AGRI_", extra="ignore")

    # Weather: Open-Meteo's forecast and archive hosts (or the local peer's address), and how
    # many past days each cycle asks for per plot.
    weather_forecast_url: str = "https://api.open-meteo.com"
    weather_archive_url: str = "https://archive-api.open-meteo.com"
    weather_days: int = Field(default=60, ge=1, le=366)
    # Where the local satellite provider keeps its scenes and the filesystem object store its
    # objects (NDVI rasters, proofs); unset: `agri/` under CONVEYOR_HOME.
    data_dir: Path | None = None
    # Proof documents are pinned through this IPFS HTTP RPC endpoint (a Kubo node, a gateway
    # or the local pinning peer); unset, they are only kept in the object store.
    ipfs_url: str | None = None
    # Payouts: any JSON-RPC endpoint (sent through the egress guard); unset means payouts stay
    # `approved` and the payout schedule reports that no chain is configured.
    eth_rpc_url: str | None = None
    payout_private_key: SecretStr = SecretStr(DEV_PAYOUT_KEY)
    receipt_timeout: float = Field(default=120.0, gt=0)
    # Assessments: how many days one assessment period covers, and the stress score (0..1)
    # from which the trigger schedule asks for an assessment.
    period_days: int = Field(default=30, ge=1, le=366)
    trigger_stress: float = Field(default=0.5, ge=0, le=1)
    # Assessments older than this move to the object store (the seed's 90 days).
    archive_after_days: float = Field(default=90.0, gt=0)

    def check(self, env: str) -> None:
        """Refuse the public development key in production."""
        if env == "production" and self.payout_private_key.get_secret_value() == DEV_PAYOUT_KEY:
            raise ConfigurationError(
                "CONVEYOR_AGRI_PAYOUT_PRIVATE_KEY is eth-tester's public development key; in"
                " production set the key of the account that pays farmers"
            )
