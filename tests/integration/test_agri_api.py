"""The agri pack through its REST API: policies and plots (CRUD, bad input refused with the
field named), the weather series stored in month partitions, an assessment computed once per
plot and period from stored weather, and proofs anyone can verify."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from conveyor.packs.agri import assessment, store
from conveyor.packs.agri.proofs import canonical, cid_of
from conveyor.packs.agri.samples import DEMO_WALLET, drought_history, square

BASE = "/api/v1/agri"
WALLET = DEMO_WALLET
SQUARE = square(36.80, -1.30)


def policy_body(number: str, **extra: Any) -> dict[str, Any]:
    planting = date.today() - timedelta(days=60)
    return {
        "policy_number": number,
        "farmer_wallet": WALLET,
        "crop": "maize",
        "planting_date": planting.isoformat(),
        "sum_insured": "1000.00",
        **extra,
    }


def make_policy(client: Any, **extra: Any) -> dict[str, Any]:
    r = client.post(f"{BASE}/policies", json=policy_body(f"P-{uuid.uuid4().hex[:8]}", **extra))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def make_plot(client: Any, policy: dict[str, Any], geometry: Any = SQUARE) -> dict[str, Any]:
    body = {"name": "North field", "policy_number": policy["policy_number"], "geometry": geometry}
    r = client.post(f"{BASE}/plots", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_policy_crud_and_refusals(client: Any) -> None:
    policy = make_policy(client)
    assert policy["farmer_wallet"] == "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1"  # EIP-55
    assert policy["sum_insured"] == "1000.00"
    assert client.get(f"{BASE}/policies/{policy['id']}").json()["plots"] == []
    again = client.post(f"{BASE}/policies", json=policy_body(policy["policy_number"]))
    assert again.status_code == 409
    for bad, field in [
        ({"farmer_wallet": "0x123"}, "farmer_wallet"),
        ({"crop": "cactus"}, "crop"),
        ({"sum_insured": "-5"}, "sum_insured"),
        ({"deductible_pct": 150}, "deductible_pct"),
    ]:
        r = client.post(f"{BASE}/policies", json={**policy_body("X-1"), **bad})
        assert r.status_code == 422, (bad, r.text)
        assert field in r.text
    for garbage in ["not json at all", "[1, 2]", "null", '{"policy_number": {}}']:
        r = client.post(
            f"{BASE}/policies", content=garbage, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422, garbage
    assert client.get(f"{BASE}/policies/{uuid.uuid4()}").status_code == 404
    assert client.get(f"{BASE}/policies/not-a-uuid").status_code == 422
    assert client.delete(f"{BASE}/policies/{policy['id']}").status_code == 204
    assert client.get(f"{BASE}/policies/{policy['id']}").status_code == 404


def test_plot_crud_and_bad_polygons(client: Any) -> None:
    policy = make_policy(client)
    plot = make_plot(client, policy)
    assert 100 < plot["area_ha"] < 130  # 0.01 by 0.01 degrees near the equator ≈ 123 ha
    assert plot["policy_id"] == policy["id"]
    listed = client.get(f"{BASE}/plots", params={"policy_id": policy["id"]}).json()["items"]
    assert [p["id"] for p in listed] == [plot["id"]]
    bowtie = {
        "type": "Polygon",
        "coordinates": [
            [[36.80, -1.30], [36.81, -1.29], [36.81, -1.30], [36.80, -1.29], [36.80, -1.30]]
        ],
    }
    open_ring = {"type": "Polygon", "coordinates": [SQUARE["coordinates"][0][:-1]]}
    for geometry in [bowtie, open_ring, {"type": "Point", "coordinates": [1, 2]}, "garbage", 7]:
        body = {"name": "x", "policy_number": policy["policy_number"], "geometry": geometry}
        r = client.post(f"{BASE}/plots", json=body)
        assert r.status_code == 422, (geometry, r.text)
        assert "geometry" in r.text
    unknown = {"name": "x", "policy_number": "NOPE-404", "geometry": SQUARE}
    assert client.post(f"{BASE}/plots", json=unknown).status_code == 404
    batch = [
        {"name": "a", "policy_number": policy["policy_number"], "geometry": SQUARE},
        {"name": "b", "policy_number": policy["policy_number"], "geometry": bowtie},
    ]
    r = client.post(f"{BASE}/plots", json=batch)
    assert r.status_code == 422 and "plot 2" in r.text
    assert len(client.get(f"{BASE}/plots", params={"policy_id": policy["id"]}).json()["items"]) == 1
    moved = {**SQUARE, "coordinates": [[[x + 0.1, y] for x, y in SQUARE["coordinates"][0]]]}
    body = {"name": "Renamed", "policy_number": policy["policy_number"], "geometry": moved}
    updated = client.put(f"{BASE}/plots/{plot['id']}", json=body).json()
    assert updated["name"] == "Renamed" and updated["min_lon"] == pytest.approx(36.9)
    assert client.delete(f"{BASE}/plots/{plot['id']}").status_code == 204
    assert client.get(f"{BASE}/plots/{plot['id']}").status_code == 404
    assert client.put(f"{BASE}/plots/{plot['id']}", json=body).status_code == 404


def test_weather_lands_in_month_partitions_and_reads_back(client: Any, ledger: Engine) -> None:
    plot = make_plot(client, make_policy(client))
    end = date.today() - timedelta(days=1)
    series = drought_history(end, years=1)
    assert store.store_weather(ledger, uuid.UUID(plot["id"]), series, "test") == len(series)
    assert store.store_weather(ledger, uuid.UUID(plot["id"]), series[-5:], "test") == 5
    got = client.get(f"{BASE}/plots/{plot['id']}/weather").json()["items"]
    assert len(got) == len(series) and got[0]["day"] == series[0].day.isoformat()
    start = (end - timedelta(days=9)).isoformat()
    window = client.get(f"{BASE}/plots/{plot['id']}/weather", params={"start": start}).json()
    assert len(window["items"]) == 10
    bad = client.get(f"{BASE}/plots/{plot['id']}/weather", params={"start": "2026-13-01"})
    assert bad.status_code == 422
    with ledger.connect() as conn:
        where = conn.execute(
            text(
                "SELECT tableoid::regclass::text, count(*) FROM agri_weather"
                " WHERE plot_id = :p GROUP BY 1"
            ),
            {"p": plot["id"]},
        ).all()
    names = {name for name, _ in where}
    assert store.month_partition(end) in names
    assert "agri_weather_default" not in names


def test_assessment_is_computed_once_and_its_proof_verifies(client: Any, ledger: Engine) -> None:
    policy = make_policy(client, deductible_pct=5)
    plot = make_plot(client, policy)
    plot_id = uuid.UUID(plot["id"])
    end = date.today() - timedelta(days=1)
    store.store_weather(ledger, plot_id, drought_history(end), "test")
    start = end - timedelta(days=29)
    first = assessment.assess(ledger, plot_id, start, end)
    assert first["status"] == "completed", first
    assert first["triggered"] and float(first["payout_amount"]) > 0
    again = assessment.assess(ledger, plot_id, start, end)
    assert again["id"] == first["id"] and again["proof_cid"] == first["proof_cid"]
    rows = client.get(f"{BASE}/assessments", params={"plot_id": plot["id"]}).json()["items"]
    assert [r["id"] for r in rows] == [first["id"]]

    cid = first["proof_cid"]
    document = client.get(f"{BASE}/proofs/{cid}")
    assert document.status_code == 200
    assert cid_of(document.content) == cid  # recomputed here, from the bytes served
    assert canonical(json.loads(document.content)) == document.content
    assert json.loads(document.content)["result"]["payout"] == first["payout_amount"]
    verified = client.post(f"{BASE}/proofs/verify", json={"cid": cid}).json()
    assert verified["valid"] is True
    tampered = document.content.replace(b'"maize"', b'"wheat"')
    body = {"cid": cid, "document": tampered.decode()}
    assert client.post(f"{BASE}/proofs/verify", json=body).json()["valid"] is False
    for bad in ["Qmabc", "bafy", "x" * 59, ""]:
        r = client.post(f"{BASE}/proofs/verify", json={"cid": bad, "document": "{}"})
        assert r.status_code == 200 and r.json()["valid"] is False and r.json()["reason"]
    assert client.get(f"{BASE}/proofs/{cid_of(b'nothing')}").status_code == 404
    assert client.get(f"{BASE}/proofs/%00").status_code == 422
    nul = client.post(f"{BASE}/proofs/verify", json={"cid": "\x00"})
    assert nul.status_code == 200 and nul.json()["valid"] is False


def test_assessment_without_weather_is_a_visible_failure(client: Any, ledger: Engine) -> None:
    plot = make_plot(client, make_policy(client))
    end = date.today() - timedelta(days=1)
    row = assessment.assess(ledger, uuid.UUID(plot["id"]), end - timedelta(days=29), end)
    assert row["status"] == "failed" and "weather" in row["error"]
    assert row["proof_cid"] is None
    r = client.post(f"{BASE}/assessments", json={"plot_id": str(uuid.uuid4())})
    assert r.status_code == 404
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    r = client.post(f"{BASE}/assessments", json={"plot_id": plot["id"], "day": tomorrow})
    assert r.status_code == 422 and "not ended" in r.text
    r = client.post(f"{BASE}/assessments", json={"plot_id": plot["id"], "day": "2001-01-01"})
    assert r.status_code == 422 and "outside" in r.text


def test_pages_show_plots_assessments_payouts_and_proofs(client: Any, ledger: Engine) -> None:
    policy = make_policy(client, deductible_pct=5)
    plot = make_plot(client, policy)
    plot_id = uuid.UUID(plot["id"])
    end = date.today() - timedelta(days=1)
    store.store_weather(ledger, plot_id, drought_history(end), "test")
    row = assessment.assess(ledger, plot_id, end - timedelta(days=29), end)
    page = client.get("/agri/plots")
    assert page.status_code == 200 and plot["id"] in page.text
    page = client.get(f"/agri/plots/{plot['id']}")
    assert page.status_code == 200
    assert 'id="plot-polygon"' in page.text and "<path" in page.text
    assert row["proof_cid"] in page.text
    assert client.get("/agri/plots/nope").status_code == 404
    assert client.get(f"/agri/plots/{uuid.uuid4()}").status_code == 404
    assert client.get("/agri/payouts?status=garbage").status_code == 200
    proof = client.get(f"/proofs/{row['proof_cid']}")
    assert proof.status_code == 200 and 'data-valid="true"' in proof.text
    forged = client.get(f"/proofs/{cid_of(b'forged')}")
    assert forged.status_code == 200 and 'data-valid="false"' in forged.text


def test_readyz_shows_the_agri_checks_without_failing_on_them(client: Any) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    agri = ready.json()["details"]["agri"]
    assert agri["object_store"] == "ok"
    # No weather host is reachable from the test (Open-Meteo, refused or unreachable): the
    # failure is a detail, the API stays ready.
    assert agri["weather"].startswith("unavailable")
    assert agri["chain"] == "not configured"
