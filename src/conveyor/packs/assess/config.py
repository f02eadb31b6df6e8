"""The assess pack's settings (``CONVEYOR_ASSESS_*``) and the analyzers a deployment runs.

- ``CONVEYOR_ASSESS_QUEUE``: the queue the pack's tasks are sent to (unset: the app's default
  queue). A deployment gives assessments their own workers this way.
- ``CONVEYOR_ASSESS_EXTRA_ANALYZERS``: JSON list of ``module:attribute`` import strings, each an
  :class:`~conveyor.packs.assess.analyzers.Analyzer`, run after the ten of the registry by the
  assessments that ask for them (an in-house analyzer, the LLM-backed one). The API and the
  workers must be given the same list.
- ``CONVEYOR_ASSESS_LIMITS``: JSON object, analyzer name → soft time limit in seconds
  (the hard limit stays 30 s above it) or ``[soft, hard]``, overriding the registry's. Read by
  the workers.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.errors import ConfigurationError
from conveyor.packs.assess.analyzers import ANALYZERS, HARD_LIMIT_MARGIN, Analyzer

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class AssessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_ASSESS_", extra="ignore")

    queue: str | None = Field(default=None, min_length=1, max_length=255)
    extra_analyzers: list[str] = Field(default_factory=list)
    limits: dict[str, int | tuple[int, int]] = Field(default_factory=dict)


def assess_settings() -> AssessSettings:
    """The settings from the environment, built once per distinct environment (a start reads
    them for every signature: building pydantic settings costs milliseconds)."""
    keys = ("CONVEYOR_ASSESS_QUEUE", "CONVEYOR_ASSESS_EXTRA_ANALYZERS", "CONVEYOR_ASSESS_LIMITS")
    return _settings_for(tuple(os.environ.get(k) for k in keys))


@cache
def _settings_for(values: tuple[str | None, ...]) -> AssessSettings:
    return AssessSettings()


@cache
def _import(spec: str) -> Analyzer:
    module_name, _, attr = spec.partition(":")
    try:
        import importlib

        value = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"CONVEYOR_ASSESS_EXTRA_ANALYZERS: cannot import {spec!r}: {exc}"
        ) from None
    if not isinstance(value, Analyzer):
        raise ConfigurationError(f"CONVEYOR_ASSESS_EXTRA_ANALYZERS: {spec!r} is not an Analyzer")
    return value


def analyzers(settings: AssessSettings | None = None) -> dict[str, Analyzer]:
    """The registry's analyzers and the configured extras, with the configured limits."""
    settings = settings or assess_settings()
    out = dict(ANALYZERS)
    for spec in settings.extra_analyzers:
        extra = _import(spec)
        if extra.name in out:
            raise ConfigurationError(
                f"CONVEYOR_ASSESS_EXTRA_ANALYZERS: {spec!r} is named {extra.name!r}, which is taken"
            )
        out[extra.name] = extra
    for name, limit in settings.limits.items():
        if name not in out:
            raise ConfigurationError(f"CONVEYOR_ASSESS_LIMITS: no analyzer named {name!r}")
        soft, hard = (limit, limit + HARD_LIMIT_MARGIN) if isinstance(limit, int) else limit
        if not 1 <= soft < hard <= 86_400 + HARD_LIMIT_MARGIN:
            raise ConfigurationError(
                f"CONVEYOR_ASSESS_LIMITS: {name}: {limit} must be a soft limit of 1 to 86400 s,"
                " or [soft, hard] with soft < hard"
            )
        out[name] = replace(out[name], soft_limit=soft, hard_limit=hard)
    return out


def default_analyzers() -> list[str]:
    """What an assessment runs when it does not say: the registry's ten."""
    return list(ANALYZERS)
