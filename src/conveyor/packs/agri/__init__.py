"""The agri pack: parametric crop insurance — plots and policies, weather and satellite indices,
damage assessments, payouts with proofs anyone can verify (issue 15).

The domain modules are plain functions over plain values, no I/O:

- :mod:`.geometry` — GeoJSON plot polygons: validation, geodesic area, bbox;
- :mod:`.crops` — the crop table: growth-stage day offsets, GDD base, heat threshold;
- :mod:`.policies` — Plot and Policy models, the growth-stage calendar;
- :mod:`.indices` — drought, flood, heat, growing degree days and a stress score from daily weather;
- :mod:`.damage` — composite damage, growth-stage multipliers, deductible, payout;
- :mod:`.proofs` — canonical JSON (RFC 8785), CIDv1 and the evidence document;
- :mod:`.imports` — plots from GeoJSON and CSV, every error numbered by feature or row.

The plumbing stores and moves it: :mod:`.tables` (one migration, ``0020_agri``), :mod:`.store`
(rows), :mod:`.chain` (payout transactions, never sent twice), :mod:`.tasks` (thin; the seed's
nine schedules), :mod:`.api` (``/api/v1/agri``) and :mod:`.cli` (``conveyor agri …``).

The formulas, with units and worked examples, are in ``docs/agri.md``.
"""

from __future__ import annotations

from conveyor.packs import NavEntry, Pack

PACK = Pack(
    name="agri",
    title="Agri",
    tasks="conveyor.packs.agri.tasks:register",
    api="conveyor.packs.agri.api:router",
    cli="conveyor.packs.agri.cli:app",
    web="conveyor.packs.agri.web:router",
    public_web="conveyor.packs.agri.web_proofs:router",
    templates_dir="templates",
    nav=(
        NavEntry("Plots", "agri_plots", "agri-plots"),
        NavEntry("Payouts", "agri_payouts", "agri-payouts"),
        NavEntry("Proofs", "agri_proof_form", "agri-proofs"),
    ),
    tables="conveyor.packs.agri.tables:metadata",
    local="conveyor.packs.agri.demo:start_local",
    health="conveyor.packs.agri.health:health",
)
