"""The agri pack's domain cost: a damage assessment with its proof, for 10,000 plots.

Per plot, as the assessment task will do it after loading rows: weather indices over a 30-day
series, the damage and payout, the evidence document, its RFC 8785 bytes and CIDv1. The
reference, measured in the same run, is the arithmetic floor: the same core figures (rain
deficit, largest 3-day total, heat degree days, per-peril damage, composite, payout) for all
plots at once as numpy array operations — no validation, no per-plot objects, no proof. The
ratio says what the checked, per-plot, proof-carrying path costs over bare arithmetic.

Run: ``.venv/bin/python -m bench.agri_damage [--plots 10000]`` (no services needed).
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np

from bench.machine import describe
from bench.report import Figure, median, render
from conveyor.packs.agri.crops import CROPS
from conveyor.packs.agri.damage import assess, evidence
from conveyor.packs.agri.indices import DailyWeather, weather_indices
from conveyor.packs.agri.policies import Plot, Policy, plot_from, policy_from
from conveyor.packs.agri.proofs import canonical, cid_of

DAYS = 30
START = date(2026, 4, 1)
CLIMATOLOGY_MM = 90.0


Inputs = tuple[Policy, list[Plot], np.ndarray, np.ndarray, np.ndarray]
BASELINE = 0.62
FLOOR_ROUNDS = 9


def _inputs(plots: int, seed: int = 15) -> Inputs:
    rng = np.random.default_rng(seed)
    ndvi = rng.uniform(0.30, 0.70, plots)
    # Gamma-distributed rain (most days dry, a few wet) and a warm season around 33 °C.
    rain = np.where(rng.random((plots, DAYS)) < 0.3, rng.gamma(0.8, 12.0, (plots, DAYS)), 0.0)
    tmax = 33.0 + rng.normal(0.0, 3.0, (plots, DAYS))
    policy = policy_from(
        {
            "policy_number": "BENCH-1",
            "farmer_wallet": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "crop": "maize",
            "planting_date": "2026-02-15",
            "sum_insured": "1000.00",
        }
    )
    shapes = []
    jitter = random.Random(seed)
    for i in range(plots):
        x, y = 30.0 + (i % 100) * 0.01, -1.0 + (i // 100) * 0.01
        d = 0.002 + jitter.random() * 0.003
        ring = [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]
        shapes.append(
            plot_from(
                {
                    "name": f"plot {i}",
                    "policy_number": "BENCH-1",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                }
            )
        )
    return policy, shapes, rain, tmax, ndvi


def per_plot(
    policy: Policy, plots: list[Plot], rain: np.ndarray, tmax: np.ndarray, ndvi: np.ndarray
) -> int:
    """The domain path, plot by plot; returns how many paid (so nothing is optimised away)."""
    profile = CROPS[policy.crop]
    days = [START + timedelta(days=d) for d in range(DAYS)]
    at = datetime(2026, 5, 1, tzinfo=UTC)
    paid = 0
    for i, plot in enumerate(plots):
        series = [
            DailyWeather(days[d], float(rain[i, d]), float(tmax[i, d]), float(tmax[i, d]) - 12.0)
            for d in range(DAYS)
        ]
        indices = weather_indices(series, climatology_mm=CLIMATOLOGY_MM, profile=profile)
        mean = float(ndvi[i])
        result = assess(policy, indices, ndvi_mean=mean, ndvi_baseline=BASELINE)
        document = evidence(
            plot_id=str(i),
            plot=plot,
            policy=policy,
            indices=indices,
            assessment=result,
            ndvi={"mean": mean, "baseline": BASELINE},
            generated_at=at,
        )
        cid_of(canonical(document))
        paid += result.triggered
    return paid


def floor(policy: Policy, rain: np.ndarray, tmax: np.ndarray, ndvi: np.ndarray) -> int:
    """The core arithmetic for every plot at once (the reference)."""
    t = policy.thresholds
    deficit = np.maximum(0.0, CLIMATOLOGY_MM - rain.sum(axis=1)) / CLIMATOLOGY_MM * 100.0
    c = np.cumsum(rain, axis=1)
    three = np.concatenate([c[:, 2:3], c[:, 3:] - c[:, :-3]], axis=1).max(axis=1)
    hdd = np.maximum(0.0, tmax - CROPS[policy.crop].heat_c).sum(axis=1)

    def lin(v: np.ndarray, trigger: float, exit_: float) -> np.ndarray:
        return np.clip((v - trigger) / (exit_ - trigger), 0.0, 1.0)

    weather = np.maximum.reduce(
        [
            lin(deficit, t.drought.trigger, t.drought.exit),
            lin(three, t.flood.trigger, t.flood.exit),
            lin(hdd, t.heat.trigger, t.heat.exit),
        ]
    )
    drop = np.maximum(0.0, (BASELINE - ndvi) / BASELINE * 100.0)
    composite = 0.6 * weather + 0.4 * lin(drop, t.ndvi_drop.trigger, t.ndvi_drop.exit)
    # The period ends on day 74 after planting: flowering, x1.3.
    payable = np.maximum(0.0, np.minimum(1.0, composite * 1.3) - policy.deductible_pct / 100)
    payout = np.floor(payable * float(policy.sum_insured) * 100.0) / 100.0
    return int((payout > 0).sum())


def run(plots: int) -> list[Figure]:
    policy, shapes, rain, tmax, ndvi = _inputs(plots)
    began = time.perf_counter()
    paid = per_plot(policy, shapes, rain, tmax, ndvi)
    python_s = time.perf_counter() - began
    # The floor takes milliseconds: the median of several rounds, so one preemption by a
    # neighbour on a shared machine does not decide the ratio.
    rounds = []
    for _ in range(FLOOR_ROUNDS):
        began = time.perf_counter()
        floor_paid = floor(policy, rain, tmax, ndvi)
        rounds.append(time.perf_counter() - began)
    floor_s = median(rounds)
    section = "agri damage"
    return [
        Figure(section, f"assessments with proof, {plots:,} plots", f"{plots / python_s:,.0f}/s"),
        Figure(section, "numpy floor (core arithmetic only)", f"{plots / floor_s:,.0f}/s"),
        Figure(section, "ratio to the floor", f"{python_s / floor_s:,.0f}x"),
        # The two paths must agree on who is paid: a check that the floor computes the same thing.
        Figure(
            section,
            "plots paid (per plot / floor)",
            f"{paid:,} / {floor_paid:,}",
            met=paid == floor_paid,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agri_damage")
    parser.add_argument("--plots", type=int, default=10_000)
    args = parser.parse_args()
    print(render(run(args.plots), describe(), markdown=False))


if __name__ == "__main__":
    main()
