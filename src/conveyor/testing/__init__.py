"""Fixtures other projects can use to test against real Conveyor parts."""
