"""Workload packs built on Conveyor's public API; each lives in a subpackage of its own."""
