"""Damage and payouts against the worked example of docs/agri.md, computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.packs.agri.crops import CROPS, Stage
from conveyor.packs.agri.damage import (
    NdviObservation,
    assess,
    evidence,
    linear,
    ndvi_baseline,
)
from conveyor.packs.agri.errors import AssessmentError
from conveyor.packs.agri.indices import DailyWeather, weather_indices
from conveyor.packs.agri.policies import Threshold, plot_from, policy_from
from conveyor.packs.agri.proofs import FORMULAS_VERSION, canonical, cid_of, verify

START = date(2026, 3, 1)
RAIN = [0, 0.5, 12, 0, 0, 0, 0, 3, 25, 0]
TMAX = [30, 32, 36, 37, 38, 34, 33, 36, 31, 30]
TMIN = [18, 19, 20, 21, 22, 20, 19, 20, 18, 17]
SERIES = [
    DailyWeather(START + timedelta(days=i), float(r), float(hi), float(lo))
    for i, (r, hi, lo) in enumerate(zip(RAIN, TMAX, TMIN, strict=True))
]
INDICES = weather_indices(SERIES, climatology_mm=100.0, profile=CROPS["maize"])


def policy(**changes: Any) -> Any:
    data: dict[str, Any] = {
        "policy_number": "KE-1",
        "farmer_wallet": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "crop": "maize",
        # 10 March is day 59 after 10 January: flowering (days 55..74), multiplier 1.3
        "planting_date": "2026-01-10",
        "sum_insured": "1000.00",
        "deductible_pct": 10,
    }
    data.update(changes)
    return policy_from(data)


def test_linear() -> None:
    t = Threshold(trigger=30, exit=80)
    assert [linear(v, t) for v in (0, 30, 55, 80, 200)] == [0, 0, 0.5, 1, 1]


def test_worked_example_by_hand() -> None:
    a = assess(policy(), INDICES, ndvi_mean=0.42, ndvi_baseline=0.70)
    drought, flood, heat = a.perils
    assert drought.damage == pytest.approx((59.5 - 30) / (80 - 30))  # 0.59
    assert flood.index == pytest.approx(28.0) and flood.damage == 0  # trigger 150 mm / 3 days
    assert heat.index == pytest.approx(7.0) and heat.damage == 0  # trigger 20 °C·day
    assert a.weather_damage == pytest.approx(0.59)
    assert a.satellite is not None
    assert a.satellite.drop_pct == pytest.approx(40.0)  # (0.70 - 0.42) / 0.70
    assert a.satellite.damage == pytest.approx((40 - 10) / (60 - 10))  # 0.6
    assert a.composite == pytest.approx(0.6 * 0.59 + 0.4 * 0.6)  # 0.594
    assert a.stage is Stage.FLOWERING and a.stage_multiplier == 1.3
    assert a.adjusted == pytest.approx(0.7722)
    assert a.payable_fraction == pytest.approx(0.6722)
    assert a.payout == Decimal("672.20")
    assert a.triggered
    assert a.notes == ()
    assert a.formulas_version == FORMULAS_VERSION


def test_without_ndvi_weather_alone_and_said() -> None:
    a = assess(policy(), INDICES, ndvi_mean=None, ndvi_baseline=0.7)
    assert (a.weather_weight, a.satellite_weight, a.satellite) == (1.0, 0.0, None)
    assert a.composite == pytest.approx(0.59)
    # 0.59 x 1.3 = 0.767, less 10 % = 0.667 -> 667.00
    assert a.payout == Decimal("667.00")
    assert "NDVI" in a.notes[0]
    assert "baseline" in assess(policy(), INDICES, ndvi_mean=0.4, ndvi_baseline=None).notes[0]
    bare = assess(policy(), INDICES, ndvi_mean=0.02, ndvi_baseline=0.05)
    assert "no vegetation" in bare.notes[0]


def test_greener_than_baseline_is_no_satellite_damage() -> None:
    a = assess(policy(), INDICES, ndvi_mean=0.8, ndvi_baseline=0.7)
    assert a.satellite is not None and a.satellite.drop_pct == 0 and a.satellite.damage == 0


def test_stage_and_deductible() -> None:
    # planted 1 March: 10 March is day 9, germination (x0.8): 0.594 x 0.8 = 0.4752 - 0.5 < 0
    a = assess(
        policy(planting_date="2026-03-01", deductible_pct=50),
        INDICES,
        ndvi_mean=0.42,
        ndvi_baseline=0.70,
    )
    assert a.stage is Stage.GERMINATION
    assert a.payout == 0 and not a.triggered
    # a damage over 1 after the multiplier is capped at 1: full sum insured less deductible
    full = assess(
        policy(deductible_pct=0, thresholds={"drought": {"trigger": 0, "exit": 10}}),
        INDICES,
        ndvi_mean=0.0,
        ndvi_baseline=0.70,
    )
    assert full.adjusted == 1.0 and full.payout == Decimal("1000.00")


def test_period_outside_cover_refused() -> None:
    with pytest.raises(AssessmentError, match="not inside the policy's cover"):
        assess(policy(planting_date="2026-03-05"), INDICES, ndvi_mean=None, ndvi_baseline=None)


def test_ndvi_baseline_60_days_before() -> None:
    before = date(2026, 3, 1)
    obs = [
        NdviObservation(before - timedelta(days=61), 0.1, 1.0),  # too early
        NdviObservation(before - timedelta(days=60), 0.6, 1.0),
        NdviObservation(before - timedelta(days=30), 0.7, 0.9),
        NdviObservation(before - timedelta(days=20), 0.2, 0.3),  # mostly cloud: not counted
        NdviObservation(before - timedelta(days=1), 0.8, 0.5),
        NdviObservation(before, 0.1, 1.0),  # inside the period: not baseline
    ]
    assert ndvi_baseline(obs, before) == pytest.approx(0.7)
    assert ndvi_baseline(obs[:3], before) is None


def test_assessment_is_a_verifiable_proof_result() -> None:
    a = assess(policy(), INDICES, ndvi_mean=0.42, ndvi_baseline=0.70)
    data = canonical(a.to_json())
    assert verify(data, cid_of(data))
    assert a.to_json()["payout"] == "672.20" and a.to_json()["stage"] == "flowering"


@given(
    st.floats(0, 1),
    st.floats(0.1, 1),
    st.floats(0, 99),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=2),
)
def test_payout_never_exceeds_sum_insured(
    ndvi: float, baseline: float, deductible: float, sum_insured: Decimal
) -> None:
    a = assess(
        policy(deductible_pct=deductible, sum_insured=str(sum_insured)),
        INDICES,
        ndvi_mean=ndvi,
        ndvi_baseline=baseline,
    )
    assert Decimal(0) <= a.payout <= sum_insured
    assert 0 <= a.composite <= 1 and 0 <= a.adjusted <= 1


def test_evidence_document_of_an_assessment() -> None:
    p = policy()
    plot = plot_from(
        {
            "name": "North",
            "policy_number": "KE-1",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]],
            },
        }
    )
    a = assess(p, INDICES, ndvi_mean=0.42, ndvi_baseline=0.70)
    ndvi = {"mean": 0.42, "p10": 0.3, "p90": 0.5, "valid_fraction": 0.93, "baseline": 0.70}
    at = datetime(2026, 3, 11, 0, 10, tzinfo=UTC)
    doc = evidence(
        plot_id="p-1",
        plot=plot,
        policy=p,
        indices=INDICES,
        assessment=a,
        ndvi=ndvi,
        generated_at=at,
    )
    assert doc["formulas_version"] == FORMULAS_VERSION
    assert doc["result"]["payout"] == "672.20"
    assert doc["policy"]["sum_insured"] == "1000.00"
    assert doc["weather"]["drought"]["deficit_pct"] == pytest.approx(59.5)
    assert doc["plot"]["area_ha"] == pytest.approx(123.09, rel=1e-4)
    data = canonical(doc)
    cid = cid_of(data)
    assert verify(data, cid)
    # Made again from the same inputs, the document is the same bytes: the CID is stable.
    again = evidence(
        plot_id="p-1",
        plot=plot,
        policy=p,
        indices=INDICES,
        assessment=a,
        ndvi=dict(reversed(list(ndvi.items()))),
        generated_at=at,
    )
    assert cid_of(canonical(again)) == cid
    other = assess(
        p,
        weather_indices(SERIES[:5], climatology_mm=50.0, profile=CROPS["maize"]),
        ndvi_mean=None,
        ndvi_baseline=None,
    )
    with pytest.raises(AssessmentError, match="different periods"):
        evidence(
            plot_id="p-1",
            plot=plot,
            policy=p,
            indices=INDICES,
            assessment=other,
            ndvi=None,
            generated_at=at,
        )


def test_payouts_never_sum_past_the_sum_insured() -> None:
    p = policy()
    a = assess(p, INDICES, ndvi_mean=0.42, ndvi_baseline=0.70, paid_before=Decimal("500.00"))
    # 672.20 would take the policy to 1,172.20: capped at the 500.00 left
    assert a.payout == Decimal("500.00")
    assert a.paid_before == Decimal("500.00")
    assert "capped at 500.00" in a.notes[-1]
    assert a.to_json()["paid_before"] == "500.00"
    spent = assess(p, INDICES, ndvi_mean=0.42, ndvi_baseline=0.70, paid_before=Decimal("1000"))
    assert spent.payout == 0 and not spent.triggered
    with pytest.raises(AssessmentError, match="paid before"):
        assess(p, INDICES, ndvi_mean=None, ndvi_baseline=None, paid_before=Decimal("1000.01"))


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 100)), min_size=1, max_size=5))
def test_all_periods_together_never_pay_past_the_sum_insured(
    seasons: list[tuple[float, float]],
) -> None:
    # Every period of a policy assessed in turn, each told what the earlier ones paid.
    p = policy(deductible_pct=0, planting_date="2026-01-10")
    paid = Decimal("0.00")
    for ndvi, climatology in seasons:
        w = weather_indices(SERIES, climatology_mm=climatology, profile=CROPS["maize"])
        a = assess(p, w, ndvi_mean=ndvi, ndvi_baseline=0.7, paid_before=paid)
        assert a.payout >= 0
        paid += a.payout
    assert paid <= p.sum_insured
