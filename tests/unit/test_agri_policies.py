"""Policies and plots: field checks, wallets, the growth-stage calendar."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.packs.agri.crops import CROPS, STAGE_MULTIPLIERS, Stage
from conveyor.packs.agri.errors import InvalidPolicy
from conveyor.packs.agri.policies import (
    Policy,
    checksum_wallet,
    plot_from,
    policy_from,
)

# EIP-55's own test vectors.
EIP55 = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]

SQUARE = {
    "type": "Polygon",
    "coordinates": [[[36.8, -1.3], [36.801, -1.3], [36.801, -1.299], [36.8, -1.299], [36.8, -1.3]]],
}


def policy(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "policy_number": "KE-2026-0001",
        "farmer_wallet": EIP55[0].lower(),
        "crop": "maize",
        "planting_date": "2026-03-01",
        "sum_insured": "1000.00",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("address", EIP55)
def test_wallet_checksummed(address: str) -> None:
    assert checksum_wallet(address.lower()) == address
    assert checksum_wallet(address.upper().replace("0X", "0x")) == address
    assert checksum_wallet(address) == address


@pytest.mark.parametrize(
    ("wallet", "why"),
    [
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "checksum is wrong"),
        ("0x" + "0" * 40, "zero address"),
        ("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "0x followed"),
        ("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae", "0x followed"),
        ("0xzzaeb6053f3e94c9b9a09f33669435e7ef1beaed", "0x followed"),
        (12, "string"),
    ],
)
def test_bad_wallet_named(wallet: Any, why: str) -> None:
    with pytest.raises(InvalidPolicy, match=rf"farmer_wallet: .*{why}"):
        policy_from(policy(farmer_wallet=wallet))


def test_policy_defaults_and_calendar() -> None:
    p = policy_from(policy(crop=" Maize "))
    assert p.crop == "maize"
    assert p.farmer_wallet == EIP55[0]
    assert p.sum_insured == Decimal("1000.00")
    assert p.effective_cover_start == date(2026, 3, 1)
    # maize: 150-day season, day 0 is planting, so the last day is 1 March + 149 days.
    assert p.effective_cover_end == date(2026, 7, 28)
    periods = p.calendar.periods()
    assert [x.stage for x in periods] == list(Stage)
    # flowering starts on day 55 (25 April) and lasts to day 74 (14 May).
    assert (periods[2].start, periods[2].end) == (date(2026, 4, 25), date(2026, 5, 14))
    # stages tile the season without gaps
    for before, after in itertools.pairwise(periods):
        assert (after.start - before.end).days == 1
    assert p.calendar.stage_on(date(2026, 2, 28)) is None
    assert p.calendar.stage_on(date(2026, 3, 1)) is Stage.GERMINATION
    assert p.calendar.stage_on(date(2026, 4, 24)) is Stage.VEGETATIVE
    assert p.calendar.stage_on(date(2026, 4, 25)) is Stage.FLOWERING
    assert p.calendar.stage_on(date(2026, 7, 28)) is Stage.SENESCENCE
    assert p.calendar.stage_on(date(2026, 7, 29)) is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"crop": "banana"}, "crop: unknown crop"),
        ({"sum_insured": "0"}, "sum_insured"),
        ({"sum_insured": "10.001"}, "sum_insured"),
        ({"sum_insured": "NaN"}, "sum_insured"),
        ({"sum_insured": "1e12"}, "sum_insured"),
        ({"deductible_pct": 100}, "deductible_pct"),
        ({"deductible_pct": -1}, "deductible_pct"),
        ({"currency": "usd"}, "currency"),
        ({"policy_number": ""}, "policy_number"),
        ({"planting_date": "2026-02-30"}, "planting_date"),
        ({"cover_start": "2026-02-01"}, "before planting"),
        ({"cover_start": "2026-04-01", "cover_end": "2026-03-30"}, "cover ends"),
        ({"cover_end": "2026-07-29"}, "after the maize season does"),
        ({"thresholds": {"drought": {"trigger": 50, "exit": 40}}}, "exit .* above trigger"),
        ({"thresholds": {"drought": {"trigger": 50, "exit": 140}}}, "percentage"),
        ({"thresholds": {"flood": {"trigger": -1, "exit": 40}}}, "thresholds.flood.trigger"),
        ({"thresholds": {"heat": {"trigger": 1, "exit": "inf"}}}, "thresholds.heat.exit"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_policy_fields_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPolicy, match=field):
        policy_from(policy(**changes))


def test_policy_frozen_and_dumps_json() -> None:
    p = policy_from(policy())
    dumped = p.model_dump(mode="json")
    assert dumped["sum_insured"] == "1000.00"
    assert dumped["thresholds"]["flood"] == {"trigger": 150.0, "exit": 300.0}
    assert Policy.model_validate(dumped) == p


def test_plot_checked_and_measured() -> None:
    plot = plot_from({"name": " North field ", "policy_number": "KE-2026-0001", "geometry": SQUARE})
    assert plot.name == "North field"
    # 0.001° x 0.001° near the equator: 111.32 m x 110.57 m = 1.2309 ha
    assert plot.area_ha == pytest.approx(1.2309, rel=1e-3)
    assert plot.bbox == pytest.approx((36.8, -1.3, 36.801, -1.299))


def test_plot_bad_geometry_named() -> None:
    bad = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(InvalidPolicy, match=r"geometry: .*Self-intersection"):
        plot_from({"name": "x", "policy_number": "P", "geometry": bad})


def test_crop_table_is_consistent() -> None:
    assert set(STAGE_MULTIPLIERS) == set(Stage)
    for profile in CROPS.values():
        offsets = profile.stage_offsets
        assert offsets[0] == 0
        assert list(offsets) == sorted(set(offsets))
        assert offsets[-1] < profile.season_days
        assert profile.gdd_base_c < profile.gdd_cap_c


@given(st.dictionaries(st.text(max_size=20), st.none() | st.integers() | st.text(max_size=20)))
def test_garbage_policy_is_invalid_policy(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidPolicy):
        policy_from(data)


@given(
    st.recursive(
        st.none() | st.integers() | st.floats() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    )
)
def test_garbage_plot_is_invalid_policy(geometry: Any) -> None:
    with pytest.raises(InvalidPolicy):
        plot_from({"name": "x", "policy_number": "P", "geometry": geometry})


def test_assessment_periods_fixed_by_the_policy() -> None:
    p = policy_from(policy(cover_end="2026-04-15"))
    # 1 March..15 April: 30 + 16 days
    assert p.periods() == [
        (date(2026, 3, 1), date(2026, 3, 30)),
        (date(2026, 3, 31), date(2026, 4, 15)),
    ]
    assert p.period_containing(date(2026, 3, 30)) == (date(2026, 3, 1), date(2026, 3, 30))
    assert p.period_containing(date(2026, 4, 15)) == (date(2026, 3, 31), date(2026, 4, 15))
    assert p.period_containing(date(2026, 4, 16)) is None
    assert p.period_containing(date(2026, 2, 28)) is None
    # the maize season (150 days) is exactly five periods
    assert len(policy_from(policy()).periods()) == 5
    assert p.periods(7)[-1] == (date(2026, 4, 12), date(2026, 4, 15))
    with pytest.raises(InvalidPolicy, match="1 to 366"):
        p.periods(0)
