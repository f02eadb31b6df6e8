"""The agri flow end to end with a real worker: weather moved in from the local Open-Meteo
peer, indices, the trigger check asking for an assessment of a drought plot, its payout sent on
the local chain (eth-tester behind HTTP JSON-RPC) and confirmed, the proof verifying — and the
schedules' tasks run again creating no second assessment or payout.

Its own services (PostgreSQL, Redis) and worker: the worker needs the peers' addresses in its
environment, and no other worker may take these tasks."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.packs.agri import tasks
from conveyor.packs.agri.localchain import ChainPeer
from conveyor.packs.agri.peers import IpfsPeer, WeatherPeer
from conveyor.packs.agri.proofs import cid_of
from conveyor.packs.agri.samples import DEMO_WALLET, square
from conveyor.testing.services import Process, provision_services, start_api, wait_for

pytest.importorskip("web3")
BASE = "/api/v1/agri"
LON, LAT = 36.5, -1.5


@dataclass
class Stack:
    client: Any
    weather: WeatherPeer
    chain: ChainPeer
    pinning: IpfsPeer


@pytest.fixture(scope="module")
def stack(artifacts: Path) -> Iterator[Stack]:
    weather = WeatherPeer(today=datetime.now(UTC).date()).start()
    weather.set_regime(LAT + 0.005, LON + 0.005, "drought")
    node = ChainPeer().start()
    pinning = IpfsPeer().start()
    home = Path(tempfile.mkdtemp(prefix="conveyor-agri-flow-"))
    allow = [weather.allow_entry, node.allow_entry, pinning.allow_entry]
    try:
        with provision_services(home, egress_allow=allow) as svc:
            env = {
                **svc.env(),
                "CONVEYOR_AGRI_WEATHER_FORECAST_URL": weather.url,
                "CONVEYOR_AGRI_WEATHER_ARCHIVE_URL": weather.url,
                "CONVEYOR_AGRI_ETH_RPC_URL": node.url,
                "CONVEYOR_AGRI_IPFS_URL": pinning.url,
                "CONVEYOR_AGRI_DATA_DIR": str(home / "agri"),
            }
            procs = [
                Process(
                    ["worker", "-c", "2", "-n", "agriflow@%h"], env, artifacts / "agri-worker.log"
                ),
                Process(["recorder"], env, artifacts / "agri-recorder.log"),
            ]
            for p in procs:
                p.start()
            # The API as a process of its own too: this test process already holds the session's
            # Celery app (another broker), which an in-process API would publish through.
            api, url = start_api(env, artifacts / "agri-api.log")
            procs.append(api)
            try:
                with httpx.Client(base_url=url, timeout=30) as client:
                    wait_for(
                        lambda: any(w["alive"] for w in client.get("/api/v1/workers").json()),
                        timeout=60,
                        message="the agri worker's first heartbeat",
                    )
                    yield Stack(client, weather, node, pinning)
            finally:
                for p in procs:
                    p.stop()
    finally:
        weather.stop()
        node.stop()
        pinning.stop()
        shutil.rmtree(home, ignore_errors=True)


def run(stack: Stack, task: str, timeout: float = 120, **kwargs: Any) -> dict[str, Any]:
    r = stack.client.post("/api/v1/jobs", json={"task": task, "kwargs": kwargs})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = stack.client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in ("succeeded", "failed", "dead", "cancelled") else None

    job = wait_for(ended, timeout=timeout, message=f"{task} to end")
    assert job["state"] == "succeeded", job
    result: dict[str, Any] = stack.client.get(f"/api/v1/jobs/{job_id}/result").json()["result"]
    return result


def test_a_drought_plot_is_assessed_and_paid_once(stack: Stack) -> None:
    client = stack.client
    number = f"FLOW-{uuid.uuid4().hex[:6]}"
    planting = date.today() - timedelta(days=60)
    policy = {
        "policy_number": number,
        "farmer_wallet": DEMO_WALLET,
        "crop": "maize",
        "planting_date": planting.isoformat(),
        "sum_insured": "500.00",
    }
    assert client.post(f"{BASE}/policies", json=policy).status_code == 201
    body = {"name": "Dry field", "policy_number": number, "geometry": square(LON, LAT)}
    plot = client.post(f"{BASE}/plots", json=body).json()
    before = stack.chain.w3.eth.get_balance(stack.chain.w3.to_checksum_address(DEMO_WALLET))

    cycle = run(stack, tasks.WEATHER_TASK)
    assert cycle["plots"] == 1 and not cycle["failed"], cycle
    assert stack.weather.requests >= 1
    series = client.get(f"{BASE}/plots/{plot['id']}/weather").json()["items"]
    assert len(series) > 3 * 365
    indices = run(stack, tasks.INDICES_TASK)
    assert indices["plots"] == 1, indices
    (latest,) = client.get(f"{BASE}/plots/{plot['id']}/indices").json()["items"]
    assert latest["stress"] >= 0.5, latest

    assert run(stack, tasks.TRIGGERS_TASK)["triggered"] == 1

    def assessed() -> dict[str, Any] | None:
        items = client.get(f"{BASE}/assessments", params={"plot_id": plot["id"]}).json()["items"]
        done = items and items[0]["status"] == "completed" and items[0]["pinned"]
        return items[0] if done else None

    assessment = wait_for(assessed, timeout=60, message="the assessment, its proof pinned")
    assert assessment["triggered"] and float(assessment["payout_amount"]) > 0
    assert assessment["pinned"] and assessment["proof_key"]
    assert (
        stack.pinning.pins[assessment["proof_cid"]]
        == client.get(f"{BASE}/proofs/{assessment['proof_cid']}").content
    )

    paid = run(stack, tasks.PAYOUTS_TASK)
    assert paid["approved"] >= 1 and not paid["failed"], paid
    (payout,) = client.get(f"{BASE}/payouts", params={"plot_id": plot["id"]}).json()["items"]
    assert payout["status"] == "confirmed" and payout["tx_hash"].startswith("0x")
    w3 = stack.chain.w3
    tx = w3.eth.get_transaction(payout["tx_hash"])
    assert bytes(tx["input"]) == b"AGR1" + assessment["proof_cid"].encode()
    after = w3.eth.get_balance(w3.to_checksum_address(DEMO_WALLET))
    assert after - before == int(float(payout["amount"]) * 10**18)
    document = client.get(f"{BASE}/proofs/{assessment['proof_cid']}").content
    assert cid_of(document) == assessment["proof_cid"]
    verify = client.post(f"{BASE}/proofs/verify", json={"cid": assessment["proof_cid"]})
    assert verify.json()["valid"] is True

    # The schedules fire again: nothing new is assessed, approved or paid.
    assert run(stack, tasks.TRIGGERS_TASK)["triggered"] == 0
    again = run(stack, tasks.PAYOUTS_TASK)
    assert again["approved"] == 0 and again["sent"] == []
    items = client.get(f"{BASE}/assessments", params={"plot_id": plot["id"]}).json()["items"]
    assert len(items) == 1
    assert w3.eth.get_balance(w3.to_checksum_address(DEMO_WALLET)) == after
