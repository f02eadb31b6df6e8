"""Conveyor's Celery runtime: app factory, install(), progress and cancel checks."""
