"""The factory's settings, keyring and verifier for one API (or CLI) process, built once from
the environment on first use — at an entry point's request, never at import."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.packs.factory.config import FactorySettings
from conveyor.packs.factory.tokens import Keyring
from conveyor.packs.factory.verify import Verifier

if TYPE_CHECKING:
    from conveyor.packs.kit import Services


@dataclass(frozen=True)
class Factory:
    """What the routes, pages and commands share."""

    settings: FactorySettings
    keyring: Keyring
    verifier: Verifier


_built: dict[int, Factory] = {}
_lock = threading.Lock()


def factory_of(services: Services) -> Factory:
    """The factory of ``services`` (one per engine, so the verifier's cache is shared)."""
    key = id(services.engine)
    with _lock:
        found = _built.get(key)
        if found is None or found.verifier.engine is not services.engine:
            api = services.settings
            settings = FactorySettings().with_base_url(api.api_host, api.api_port)
            keyring = Keyring.from_settings(settings, services.settings.env)
            found = Factory(settings, keyring, Verifier(services.engine, keyring))
            _built[key] = found
        return found
