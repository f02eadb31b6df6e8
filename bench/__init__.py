"""Conveyor's benchmarks: ``make bench`` (``python -m bench``).

Each benchmark starts what it needs as child processes against embedded PostgreSQL and Redis
(started once per run), measures, stops every process it started and prints a table; nothing
is written outside a temporary directory that is removed at the end. Figures that have a
reference are reported as ratios against it, measured in the same run on the same machine.
"""
