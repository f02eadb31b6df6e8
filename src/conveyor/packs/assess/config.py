"""The assess pack's settings (``CONVEYOR_ASSESS_*``) and the analyzers a deployment runs.

- ``CONVEYOR_ASSESS_QUEUE``: the queue the pack's tasks are sent to (unset: the app's default
  queue). A deployment gives assessments their own workers this way.
- ``CONVEYOR_ASSESS_EXTRA_ANALYZERS``: JSON list of ``module:attribute`` import strings, each an
  :class:`~conveyor.packs.assess.analyzers.Analyzer`, run after the ten of the registry by the
  assessments that ask for them (an in-house analyzer, the LLM-backed one). The API and the
  workers must be given the same list.
- ``CONVEYOR_ASSESS_LIMITS``: JSON object, analyzer name → soft time limit in seconds,
  overriding the registry's (the hard limit stays 30 s above it). Read by the workers.
"""

from __future__ import annotations

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
    limits: dict[str, int] = Field(default_factory=dict)


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
    settings = settings or AssessSettings()
    out = dict(ANALYZERS)
    for spec in settings.extra_analyzers:
        extra = _import(spec)
        if extra.name in out:
            raise ConfigurationError(
                f"CONVEYOR_ASSESS_EXTRA_ANALYZERS: {spec!r} is named {extra.name!r}, which is taken"
            )
        out[extra.name] = extra
    for name, soft in settings.limits.items():
        if name not in out:
            raise ConfigurationError(f"CONVEYOR_ASSESS_LIMITS: no analyzer named {name!r}")
        if not 1 <= soft <= 86_400:
            raise ConfigurationError(f"CONVEYOR_ASSESS_LIMITS: {name}: {soft} must be 1 to 86400 s")
        from dataclasses import replace

        out[name] = replace(out[name], soft_limit=soft, hard_limit=soft + HARD_LIMIT_MARGIN)
    return out


def default_analyzers() -> list[str]:
    """What an assessment runs when it does not say: the registry's ten."""
    return list(ANALYZERS)
