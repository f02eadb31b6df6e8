"""Policies and plots: what is insured, where, for how much, and against what.

Units of the per-peril thresholds (see ``docs/agri.md``, "Formulas"); each peril pays nothing
at or below ``trigger``, all of its share at or above ``exit``, linearly between:

- ``drought`` — rain deficit against the plot's climatology over the assessed period, in percent
  (0 to 100) of the climatological total;
- ``flood`` — the largest rain total of 3 consecutive days in the period, in millimetres (a
  total over 3 days: not mm/day, not a monthly figure);
- ``heat`` — heat degree days above the crop's heat threshold over the period, in °C·day;
- ``ndvi_drop`` — fall of the plot's mean NDVI below its 60-day baseline, in percent of the
  baseline (0 to 100); it scales the satellite part of the damage.

Money is ``Decimal`` with at most 2 places; the deductible is a percentage of the sum insured.
Assessments are made per period (:meth:`Policy.periods`): fixed windows from the cover's start.
The farmer's wallet is an EIP-55 checksummed address: all-lower or all-upper case hex is
accepted and checksummed, mixed case must carry a correct checksum (a wrong one is a typo).
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from eth_utils.address import to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from conveyor.packs.agri.crops import STAGES, CropProfile, Stage, crop
from conveyor.packs.agri.errors import InvalidGeometry, InvalidPolicy
from conveyor.packs.agri.geometry import Bbox, PlotGeometry, parse_geometry

MAX_SUM_INSURED = Decimal("1000000000")
PERIOD_DAYS = 30
"""Length of an assessment period (days) unless a caller asks for another."""
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_ZERO_ADDRESS = "0x" + "0" * 40
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{2,9}")


class Peril(StrEnum):
    DROUGHT = "drought"
    FLOOD = "flood"
    HEAT = "heat"


PERIL_UNITS = {
    "drought": "% rain deficit against climatology",
    "flood": "mm in 3 consecutive days",
    "heat": "°C·day above the crop's heat threshold",
    "ndvi_drop": "% below the 60-day NDVI baseline",
}


class Threshold(BaseModel):
    """Where a peril starts paying (``trigger``) and where it pays in full (``exit``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: float = Field(ge=0, allow_inf_nan=False)
    exit: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.exit > self.trigger:
            raise ValueError(f"exit ({self.exit}) must be above trigger ({self.trigger})")
        return self


class Thresholds(BaseModel):
    """Per-peril trigger and exit, each in the unit of :data:`PERIL_UNITS`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drought: Threshold = Threshold(trigger=30.0, exit=80.0)
    flood: Threshold = Threshold(trigger=150.0, exit=300.0)
    heat: Threshold = Threshold(trigger=20.0, exit=80.0)
    ndvi_drop: Threshold = Threshold(trigger=10.0, exit=60.0)

    @model_validator(mode="after")
    def _percentages(self) -> Self:
        for name in ("drought", "ndvi_drop"):
            threshold: Threshold = getattr(self, name)
            if threshold.exit > 100.0:
                raise ValueError(f"{name} is a percentage: exit {threshold.exit} is above 100")
        return self


def checksum_wallet(value: str) -> str:
    """``value`` as an EIP-55 checksummed address; ValueError says what is wrong with it."""
    text = value.strip()
    if not _ADDRESS.fullmatch(text):
        raise ValueError("a wallet is 0x followed by 40 hexadecimal digits")
    if text.lower() == _ZERO_ADDRESS:
        raise ValueError("the zero address cannot receive a payout")
    checksummed: str = to_checksum_address(text)
    digits = text[2:]
    mixed = digits != digits.lower() and digits != digits.upper()
    if mixed and text != checksummed:
        raise ValueError(
            f"the address's EIP-55 checksum is wrong (a typo?); {checksummed} is valid"
        )
    return checksummed


@dataclass(frozen=True)
class StagePeriod:
    stage: Stage
    start: date
    end: date
    """The last day of the stage (inclusive)."""


@dataclass(frozen=True)
class GrowthCalendar:
    """A crop's stages laid on the calendar from its planting date."""

    profile: CropProfile
    planting_date: date

    @property
    def season_end(self) -> date:
        """The last day of the season (inclusive)."""
        return self.planting_date + timedelta(days=self.profile.season_days - 1)

    def periods(self) -> list[StagePeriod]:
        offsets = (*self.profile.stage_offsets, self.profile.season_days)
        return [
            StagePeriod(
                stage,
                self.planting_date + timedelta(days=offsets[i]),
                self.planting_date + timedelta(days=offsets[i + 1] - 1),
            )
            for i, stage in enumerate(STAGES)
        ]

    def stage_on(self, day: date) -> Stage | None:
        """The stage the crop is in on ``day``; None before planting or after the season."""
        if day < self.planting_date or day > self.season_end:
            return None
        elapsed = (day - self.planting_date).days
        current = STAGES[0]
        for stage, offset in zip(STAGES, self.profile.stage_offsets, strict=True):
            if elapsed >= offset:
                current = stage
        return current


class Policy(BaseModel):
    """A parametric policy on one season of one crop."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_number: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.\-/]*$")
    farmer_wallet: str
    crop: str
    planting_date: date
    sum_insured: Decimal = Field(gt=0, le=MAX_SUM_INSURED, decimal_places=2, allow_inf_nan=False)
    currency: str = "USDC"
    deductible_pct: float = Field(default=10.0, ge=0, lt=100, allow_inf_nan=False)
    thresholds: Thresholds = Thresholds()
    cover_start: date | None = None
    """First day covered; the planting date when not given."""
    cover_end: date | None = None
    """Last day covered (inclusive); the end of the crop's season when not given."""

    @field_validator("farmer_wallet", mode="before")
    @classmethod
    def _wallet(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("a wallet is a string, 0x followed by 40 hexadecimal digits")
        return checksum_wallet(value)

    @field_validator("crop", mode="before")
    @classmethod
    def _crop(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("a crop is a name, e.g. 'maize'")
        try:
            return crop(value).name
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.fullmatch(value):
            raise ValueError("a currency is 3 to 10 capital letters or digits, e.g. USDC")
        return value

    @model_validator(mode="after")
    def _cover(self) -> Self:
        if self.planting_date.year < 1900 or self.planting_date.year > 2200:
            raise ValueError(f"planting date {self.planting_date} is not plausible")
        if self.effective_cover_end < self.effective_cover_start:
            raise ValueError(
                f"cover ends ({self.effective_cover_end}) before it starts "
                f"({self.effective_cover_start})"
            )
        if self.effective_cover_start < self.planting_date:
            raise ValueError("cover cannot start before planting")
        if self.effective_cover_end > self.calendar.season_end:
            raise ValueError(
                f"cover cannot end after the {self.crop} season does "
                f"({self.calendar.season_end}, day {self.profile.season_days - 1})"
            )
        return self

    @property
    def profile(self) -> CropProfile:
        return crop(self.crop)

    @property
    def calendar(self) -> GrowthCalendar:
        return GrowthCalendar(self.profile, self.planting_date)

    @property
    def effective_cover_start(self) -> date:
        return self.cover_start or self.planting_date

    @property
    def effective_cover_end(self) -> date:
        return self.cover_end or self.calendar.season_end

    def periods(self, period_days: int = PERIOD_DAYS) -> list[tuple[date, date]]:
        """The assessment periods of the cover: consecutive windows of ``period_days`` from
        the cover's start, the last one cut at its end (both days inclusive).

        Periods are fixed by the policy alone, never by when an assessment runs, so
        (plot, period) names one assessment: a re-run on another day finds the same period.
        """
        if not 1 <= period_days <= 366:
            raise InvalidPolicy(f"an assessment period is 1 to 366 days, not {period_days}")
        start, end = self.effective_cover_start, self.effective_cover_end
        out = []
        while start <= end:
            last = min(end, start + timedelta(days=period_days - 1))
            out.append((start, last))
            start = last + timedelta(days=1)
        return out

    def period_containing(
        self, day: date, period_days: int = PERIOD_DAYS
    ) -> tuple[date, date] | None:
        """The assessment period ``day`` falls in; None outside the cover."""
        if not self.effective_cover_start <= day <= self.effective_cover_end:
            return None
        index = (day - self.effective_cover_start).days // period_days
        return self.periods(period_days)[index]


_measured: ContextVar[PlotGeometry | None] = ContextVar("agri_plot_measured", default=None)


class Plot(BaseModel):
    """A field under a policy: its boundary (checked, see :mod:`.geometry`) and name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    policy_number: str = Field(min_length=1, max_length=64)
    geometry: dict[str, Any]
    _checked: PlotGeometry = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or not value.isprintable():
            raise ValueError("a plot name is printable text")
        return value.strip()

    @field_validator("geometry", mode="before")
    @classmethod
    def _geometry(cls, value: Any) -> dict[str, Any]:
        try:
            checked = parse_geometry(value)
        except InvalidGeometry as exc:
            raise ValueError(str(exc)) from None
        _measured.set(checked)
        return checked.geojson

    @model_validator(mode="after")
    def _measure(self) -> Self:
        # The field validator measured this very dict: take its result rather than checking
        # the polygon twice (half the cost of a plot import). Anything else is measured here.
        checked = _measured.get()
        _measured.set(None)
        if checked is None or checked.geojson is not self.geometry:
            checked = parse_geometry(self.geometry)
        self._checked = checked
        return self

    @property
    def area_ha(self) -> float:
        return self._checked.area_ha

    @property
    def bbox(self) -> Bbox:
        return self._checked.bbox

    @property
    def centroid(self) -> tuple[float, float]:
        return self._checked.centroid

    @property
    def checked(self) -> PlotGeometry:
        return self._checked


def describe(error: ValidationError) -> str:
    """A pydantic error as one line: ``field: what is wrong`` for each problem."""
    parts = []
    for problem in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in problem["loc"]) or "value"
        message = str(problem["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def policy_from(data: Any) -> Policy:
    """A :class:`Policy` from decoded JSON; :class:`InvalidPolicy` names each bad field."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise InvalidPolicy(describe(exc)) from None


def plot_from(data: Any) -> Plot:
    """A :class:`Plot` from decoded JSON; :class:`InvalidPolicy` names each bad field."""
    try:
        return Plot.model_validate(data)
    except ValidationError as exc:
        raise InvalidPolicy(describe(exc)) from None
