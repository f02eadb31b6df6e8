"""Damage and payout of one plot over one period (formulas: ``docs/agri.md``, "Formulas").

1. Each peril's index, in its unit, becomes a damage fraction linear between the policy's
   trigger (0) and exit (1): ``clamp((index - trigger) / (exit - trigger), 0, 1)``.
2. Weather damage is the worst peril's.
3. Satellite damage is the NDVI drop below the plot's 60-day baseline, in percent of the
   baseline, through the policy's ``ndvi_drop`` trigger and exit the same way.
4. Composite = 0.6 x weather + 0.4 x satellite. Without a usable NDVI (no observation, no
   baseline, or a baseline without vegetation) the composite is the weather damage alone, and
   the assessment says so in ``notes`` and in the weights it records — never a silent zero.
5. Growth-stage multiplier of the stage on the period's last day; the result is capped at 1.
6. Deductible: ``payable = max(0, adjusted - deductible_pct / 100)``.
7. Payout = payable x sum insured, rounded down to the cent, and never more than what the
   policy has left: the sum insured less what earlier periods paid (``paid_before``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from conveyor.packs.agri.crops import STAGE_MULTIPLIERS, Stage
from conveyor.packs.agri.errors import AssessmentError
from conveyor.packs.agri.indices import WeatherIndices
from conveyor.packs.agri.policies import PERIL_UNITS, Peril, Plot, Policy, Threshold
from conveyor.packs.agri.proofs import FORMULAS_VERSION, evidence_document

WEATHER_WEIGHT = 0.6
SATELLITE_WEIGHT = 0.4
BASELINE_DAYS = 60
MIN_BASELINE_OBSERVATIONS = 3
MIN_VALID_FRACTION = 0.5
"""An NDVI observation with less of the plot clear of cloud and nodata does not count."""
MIN_BASELINE_NDVI = 0.1
"""Below this the baseline is bare soil or water: a relative drop means nothing."""
CENT = Decimal("0.01")


def linear(value: float, threshold: Threshold) -> float:
    """0 at or below ``trigger``, 1 at or above ``exit``, linear between."""
    fraction = (value - threshold.trigger) / (threshold.exit - threshold.trigger)
    return min(1.0, max(0.0, fraction))


@dataclass(frozen=True)
class NdviObservation:
    day: date
    mean: float
    valid_fraction: float


def ndvi_baseline(
    observations: Sequence[NdviObservation], before: date, *, days: int = BASELINE_DAYS
) -> float | None:
    """The plot's NDVI baseline: the mean of the daily means of the ``days`` days before
    ``before`` (the period's start), counting observations at least half clear; None when
    fewer than :data:`MIN_BASELINE_OBSERVATIONS` count."""
    first = before - timedelta(days=days)
    usable = [
        o.mean
        for o in observations
        if first <= o.day < before
        and o.valid_fraction >= MIN_VALID_FRACTION
        and math.isfinite(o.mean)
    ]
    if len(usable) < MIN_BASELINE_OBSERVATIONS:
        return None
    return math.fsum(usable) / len(usable)


@dataclass(frozen=True)
class PerilDamage:
    peril: str
    index: float
    unit: str
    trigger: float
    exit: float
    damage: float


@dataclass(frozen=True)
class SatelliteDamage:
    ndvi_mean: float
    ndvi_baseline: float
    drop_pct: float
    damage: float


@dataclass(frozen=True)
class Assessment:
    """One assessment: every step of the formulas, so a proof can be re-checked by hand."""

    policy_number: str
    period_start: date
    period_end: date
    perils: tuple[PerilDamage, ...]
    weather_damage: float
    satellite: SatelliteDamage | None
    weather_weight: float
    satellite_weight: float
    composite: float
    stage: Stage
    stage_multiplier: float
    adjusted: float
    deductible_pct: float
    payable_fraction: float
    sum_insured: Decimal
    payout: Decimal
    notes: tuple[str, ...]
    paid_before: Decimal = Decimal("0.00")
    """What earlier periods of the policy paid; the payout is capped at the rest."""
    formulas_version: str = FORMULAS_VERSION

    @property
    def triggered(self) -> bool:
        return self.payout > 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["period_start"] = self.period_start.isoformat()
        data["period_end"] = self.period_end.isoformat()
        data["stage"] = self.stage.value
        data["sum_insured"] = str(self.sum_insured)
        data["payout"] = str(self.payout)
        data["paid_before"] = str(self.paid_before)
        data["triggered"] = self.triggered
        data["perils"] = [asdict(p) for p in self.perils]
        data["notes"] = list(self.notes)
        return data


def _peril_damages(policy: Policy, indices: WeatherIndices) -> tuple[PerilDamage, ...]:
    values = {
        Peril.DROUGHT: indices.drought.deficit_pct,
        Peril.FLOOD: indices.flood.max_3day_mm,
        Peril.HEAT: indices.heat.heat_degree_days,
    }
    damages = []
    for peril, value in values.items():
        threshold: Threshold = getattr(policy.thresholds, peril.value)
        damages.append(
            PerilDamage(
                peril=peril.value,
                index=value,
                unit=PERIL_UNITS[peril.value],
                trigger=threshold.trigger,
                exit=threshold.exit,
                damage=linear(value, threshold),
            )
        )
    return tuple(damages)


def assess(
    policy: Policy,
    indices: WeatherIndices,
    *,
    ndvi_mean: float | None,
    ndvi_baseline: float | None,
    paid_before: Decimal = Decimal("0.00"),
) -> Assessment:
    """Damage and payout for ``policy`` over the period of ``indices`` (see the module);
    ``paid_before`` is what the policy's earlier periods paid."""
    if not Decimal(0) <= paid_before <= policy.sum_insured:
        raise AssessmentError(
            f"paid before ({paid_before}) must be between 0 and the sum insured "
            f"({policy.sum_insured})"
        )
    start, end = indices.start, indices.end
    if start < policy.effective_cover_start or end > policy.effective_cover_end:
        raise AssessmentError(
            f"the period {start}..{end} is not inside the policy's cover "
            f"{policy.effective_cover_start}..{policy.effective_cover_end}"
        )
    stage = policy.calendar.stage_on(end)
    if stage is None:  # cover is inside the season unless set otherwise
        raise AssessmentError(f"the crop is not in the field on {end}")
    perils = _peril_damages(policy, indices)
    weather = max(p.damage for p in perils)
    notes: list[str] = []
    satellite: SatelliteDamage | None = None
    if ndvi_mean is None or not math.isfinite(ndvi_mean):
        notes.append("no usable NDVI observation for the period: weather damage alone")
    elif ndvi_baseline is None or not math.isfinite(ndvi_baseline):
        notes.append("no 60-day NDVI baseline for the plot: weather damage alone")
    elif ndvi_baseline < MIN_BASELINE_NDVI:
        notes.append(
            f"NDVI baseline {ndvi_baseline:.3f} is below {MIN_BASELINE_NDVI} (no vegetation): "
            "weather damage alone"
        )
    else:
        drop = max(0.0, 100.0 * (ndvi_baseline - ndvi_mean) / ndvi_baseline)
        satellite = SatelliteDamage(
            ndvi_mean=ndvi_mean,
            ndvi_baseline=ndvi_baseline,
            drop_pct=drop,
            damage=linear(drop, policy.thresholds.ndvi_drop),
        )
    if satellite is None:
        weights = (1.0, 0.0)
        composite = weather
    else:
        weights = (WEATHER_WEIGHT, SATELLITE_WEIGHT)
        composite = WEATHER_WEIGHT * weather + SATELLITE_WEIGHT * satellite.damage
    multiplier = STAGE_MULTIPLIERS[stage]
    adjusted = min(1.0, composite * multiplier)
    payable = max(0.0, adjusted - policy.deductible_pct / 100.0)
    payout = (policy.sum_insured * Decimal(repr(payable))).quantize(CENT, rounding=ROUND_DOWN)
    left = policy.sum_insured - paid_before
    if payout > left:
        notes.append(f"payout {payout} capped at {left}: the sum insured less {paid_before} paid")
        payout = left
    return Assessment(
        policy_number=policy.policy_number,
        period_start=start,
        period_end=end,
        perils=perils,
        weather_damage=weather,
        satellite=satellite,
        weather_weight=weights[0],
        satellite_weight=weights[1],
        composite=composite,
        stage=stage,
        stage_multiplier=multiplier,
        adjusted=adjusted,
        deductible_pct=policy.deductible_pct,
        payable_fraction=payable,
        sum_insured=policy.sum_insured,
        payout=payout,
        notes=tuple(notes),
        paid_before=paid_before,
    )


def evidence(
    *,
    plot_id: str,
    plot: Plot,
    policy: Policy,
    indices: WeatherIndices,
    assessment: Assessment,
    ndvi: Mapping[str, Any] | None,
    generated_at: datetime,
) -> dict[str, Any]:
    """The proof document of ``assessment`` (see :func:`.proofs.evidence_document`): the plot
    and its boundary, the policy as agreed, the weather indices with their climatology, the
    NDVI statistics as measured (or None) and every step of the damage and payout."""
    if (indices.start, indices.end) != (assessment.period_start, assessment.period_end):
        raise AssessmentError("the indices and the assessment are of different periods")
    return evidence_document(
        plot={
            "id": plot_id,
            "name": plot.name,
            "area_ha": plot.area_ha,
            "bbox": list(plot.bbox),
            "geometry": plot.geometry,
        },
        policy=policy.model_dump(mode="json"),
        period={"start": indices.start, "end": indices.end, "days": indices.days},
        weather=indices.to_json(),
        ndvi=ndvi,
        result=assessment.to_json(),
        generated_at=generated_at,
    )
