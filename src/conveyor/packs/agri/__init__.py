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

The formulas, with units and worked examples, are in ``docs/agri.md``.
"""
