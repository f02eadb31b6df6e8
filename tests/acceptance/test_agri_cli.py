"""``conveyor agri import|assess|verify-proof|payouts`` as a user runs them: subprocesses
against the test ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from conveyor.packs.agri import store
from conveyor.packs.agri.policies import policy_from
from conveyor.packs.agri.samples import DEMO_WALLET, drought_history, square
from conveyor.testing.services import ServiceSet


def agri(services: ServiceSet, *args: str, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "agri", *args],
        env=services.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_policy(ledger: Engine) -> str:
    number = f"CLI-{uuid.uuid4().hex[:8]}"
    planting = date.today() - timedelta(days=60)
    store.create_policy(
        ledger,
        policy_from(
            {
                "policy_number": number,
                "farmer_wallet": DEMO_WALLET,
                "crop": "maize",
                "planting_date": planting,
                "sum_insured": "300.00",
            }
        ),
    )
    return number


def test_import_assess_verify_and_list(
    services: ServiceSet, ledger: Engine, tmp_path: Path
) -> None:
    number = make_policy(ledger)
    features = [
        {"type": "Feature", "properties": {"name": f"f{i}", "policy_number": number},
         "geometry": square(36.0 + i / 10, -1.0)}
        for i in range(3)
    ]  # fmt: skip
    geojson = tmp_path / "plots.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    done = agri(services, "import", str(geojson))
    assert done.returncode == 0, done.stderr
    plots = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["name"] for p in plots] == ["f0", "f1", "f2"]

    csv = tmp_path / "plots.csv"
    wkt = "POLYGON((36.5 -1, 36.51 -1, 36.51 -0.99, 36.5 -0.99, 36.5 -1))"
    csv.write_text(f'name,policy_number,geometry\ncsv field,{number},"{wkt}"\n')
    assert agri(services, "import", str(csv)).returncode == 0, "CSV with a WKT cell"

    plot_id = uuid.UUID(plots[0]["id"])
    end = date.today() - timedelta(days=1)
    store.store_weather(ledger, plot_id, drought_history(end), "test")
    first = agri(services, "assess", str(plot_id))
    assert first.returncode == 0, first.stderr
    assessed = json.loads(first.stdout)
    assert assessed["status"] == "completed" and assessed["triggered"]
    again = json.loads(agri(services, "assess", str(plot_id)).stdout)
    assert again["id"] == assessed["id"]  # once per plot and period

    good = agri(services, "verify-proof", assessed["proof_cid"])
    assert good.returncode == 0 and json.loads(good.stdout)["valid"] is True
    document = tmp_path / "proof.json"
    document.write_bytes(store.proof_document(ledger, assessed["proof_cid"]))
    assert (
        agri(services, "verify-proof", assessed["proof_cid"], "-d", str(document)).returncode == 0
    )
    document.write_bytes(document.read_bytes().replace(b"maize", b"wheat"))
    tampered = agri(services, "verify-proof", assessed["proof_cid"], "-d", str(document))
    assert tampered.returncode == 1 and json.loads(tampered.stdout)["valid"] is False

    listed = agri(services, "payouts")
    assert listed.returncode == 0


def test_bad_input_is_refused_with_the_place_named(
    services: ServiceSet, ledger: Engine, tmp_path: Path
) -> None:
    number = make_policy(ledger)
    bad = tmp_path / "bad.csv"
    bowtie = "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"
    bad.write_text(f'name,policy_number,geometry\nok,{number},"{bowtie}"\n,{number},x\n')
    refused = agri(services, "import", str(bad))
    assert refused.returncode == 2
    assert "row 2" in refused.stderr or "line 2" in refused.stderr, refused.stderr
    assert agri(services, "import", str(tmp_path / "missing.geojson")).returncode == 2
    garbage = tmp_path / "garbage.geojson"
    garbage.write_bytes(b"\x00\xff{not json")
    assert agri(services, "import", str(garbage)).returncode == 2
    assert agri(services, "assess", "not-a-uuid").returncode == 2
    assert agri(services, "assess", str(uuid.uuid4())).returncode == 1
    assert agri(services, "verify-proof", "Qm-not-a-cid", "-d", str(garbage)).returncode == 2
    assert agri(services, "verify-proof", "bnothere").returncode == 1
    assert agri(services, "payouts", "--status", "garbage").returncode == 2
